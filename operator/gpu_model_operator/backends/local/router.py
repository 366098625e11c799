"""The local backend's scoring endpoint: one URL per service, shaped like an AKS Azure ML service's.

A small reverse proxy, run as its own detached process (``python -m
gpu_model_operator.backends.local.router --config FILE``), so it outlives the operator as the replicas do.
It serves ``POST /api/v1/service/<name>/score`` and the health route ``GET /api/v1/service/<name>/``
(forwarded to a replica's ``GET /``), checks ``Authorization: Bearer <key>`` against the primary and the
secondary key as Azure ML does, and round-robins over the replica ports in the config file. The file is
re-read when its mtime changes, so scaling or a key change needs no restart; when it disappears (the
service was deleted) the router exits by itself, so it can never outlive its service for long.

Overhead is kept small on purpose: one shared client session with keep-alive connections to the
replicas, bodies passed through as bytes (compressed ones included), no access log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import itertools
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, TCPConnector, web
from multidict import CIMultiDict

#: Headers that describe one connection, not the message; never forwarded either way (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    )
)  # fmt: skip
#: The key is the router's business; the user's code never sees it.
NOT_FORWARDED = HOP_BY_HOP | {"authorization"}


@dataclass(frozen=True)
class RouterConfig:
    service: str
    port: int
    host: str = "127.0.0.1"
    auth_enabled: bool = True
    keys: tuple[str, ...] = ()
    timeout_ms: int = 60000
    replica_ports: tuple[int, ...] = ()

    @classmethod
    def load(cls, path: Path) -> RouterConfig:
        doc = json.loads(path.read_text())
        return cls(
            service=str(doc["service"]),
            port=int(doc["port"]),
            host=str(doc.get("host", "127.0.0.1")),
            auth_enabled=bool(doc.get("auth_enabled", True)),
            keys=tuple(str(k) for k in doc.get("keys", []) if k),
            timeout_ms=int(doc.get("timeout_ms", 60000)),
            replica_ports=tuple(int(p) for p in doc.get("replica_ports", [])),
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "service": self.service,
                "port": self.port,
                "host": self.host,
                "auth_enabled": self.auth_enabled,
                "keys": list(self.keys),
                "timeout_ms": self.timeout_ms,
                "replica_ports": list(self.replica_ports),
            }
        )


def authorized(header: str, config: RouterConfig) -> bool:
    """``Bearer <primary or secondary key>``, compared in constant time against every key."""
    if not config.auth_enabled:
        return True
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not config.keys:
        return False
    ok = False
    for key in config.keys:  # no short cut: the time taken does not say which key nearly matched
        ok |= hmac.compare_digest(token.strip().encode(), key.encode())
    return ok


class Router:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._mtime = -1
        self._config = RouterConfig.load(config_path)
        self._turn = itertools.count()
        self._session: ClientSession | None = None

    @property
    def config(self) -> RouterConfig:
        """The config, re-read only when the file changed (one stat per request)."""
        try:
            mtime = self.config_path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._config = RouterConfig.load(self.config_path)
                self._mtime = mtime
        except (OSError, ValueError, KeyError):
            pass  # gone or half-written: keep serving with the last good config
        return self._config

    async def forward(self, request: web.Request, path: str) -> web.StreamResponse:
        config = self.config
        if request.match_info["name"] != config.service:
            return web.json_response({"message": f"no service {request.match_info['name']!r} here"}, status=404)
        if not authorized(request.headers.get("Authorization", ""), config):
            return web.json_response(
                {"message": "missing or invalid key: send 'Authorization: Bearer <primary or secondary key>'"},
                status=401,
            )
        ports = config.replica_ports
        if not ports:
            return web.json_response({"message": "the service has no replica running"}, status=503)
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED)
        timeout = ClientTimeout(total=config.timeout_ms / 1000)
        query = f"?{request.query_string}" if request.query_string else ""
        assert self._session is not None
        start = next(self._turn)
        for i in range(len(ports)):  # round robin; a replica that refuses the connection is skipped
            url = f"http://127.0.0.1:{ports[(start + i) % len(ports)]}{path}{query}"
            try:
                async with self._session.request(
                    request.method, url, data=body or None, headers=headers, timeout=timeout
                ) as resp:
                    payload = await resp.read()
                    out = CIMultiDict((k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP)
                    return web.Response(body=payload, status=resp.status, headers=out)
            except ClientConnectorError:
                continue
            except asyncio.TimeoutError:
                return web.json_response(
                    {"message": f"the replica did not answer within {config.timeout_ms} ms (scoringTimeoutMs)"},
                    status=504,
                )
            except ClientError as exc:
                return web.json_response({"message": f"the replica failed: {exc}"}, status=502)
        return web.json_response({"message": "no replica is accepting connections"}, status=503)

    async def _watch_config(self) -> None:
        """Exit when the config file is gone: the service was deleted (or its directory removed)."""
        while True:
            await asyncio.sleep(2)
            if not self.config_path.exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def app(self) -> web.Application:
        async def score(request: web.Request) -> web.StreamResponse:
            return await self.forward(request, "/score")

        async def health(request: web.Request) -> web.StreamResponse:
            return await self.forward(request, "/")

        async def lifecycle(_: web.Application) -> AsyncIterator[None]:
            self._session = ClientSession(connector=TCPConnector(limit=0, keepalive_timeout=60), auto_decompress=False)
            watcher = asyncio.create_task(self._watch_config())
            yield
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._session.close()

        app = web.Application(client_max_size=256 * 1024 * 1024)
        prefix = "/api/v1/service/{name}"
        app.router.add_route("POST", f"{prefix}/score", score)
        app.router.add_route("GET", f"{prefix}/score", score)
        app.router.add_get(f"{prefix}/", health)
        app.router.add_get(prefix, health)
        app.cleanup_ctx.append(lifecycle)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The scoring router of one local service (run by the operator).")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    router = Router(args.config)
    config = router.config
    web.run_app(router.app(), host=config.host, port=config.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
