"""The local backend's scoring endpoint: one URL per service, as an AKS service has.

A small reverse proxy, run as its own detached process (``python -m
gpu_model_operator.backends.local_router --config FILE``). It checks ``Authorization: Bearer <key>``
against the primary and secondary keys, as Azure ML does, and round-robins over the replicas listed in
the config file, which it re-reads when the file changes, so scaling needs no restart.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web


class Router:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.mtime = 0.0
        self.config: dict[str, Any] = {}
        self.turn = itertools.count()
        self.session: ClientSession | None = None

    def current(self) -> dict[str, Any]:
        mtime = self.config_path.stat().st_mtime
        if mtime != self.mtime:
            self.config = json.loads(self.config_path.read_text())
            self.mtime = mtime
        return self.config

    def authorized(self, request: web.Request, config: dict[str, Any]) -> bool:
        if not config.get("authEnabled", True):
            return True
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        return any(hmac.compare_digest(token.encode(), key.encode()) for key in config.get("keys", []) if key)

    async def forward(self, request: web.Request, path: str) -> web.Response:
        config = self.current()
        if not self.authorized(request, config):
            return web.json_response({"error": "missing or invalid key (Authorization: Bearer <key>)"}, status=401)
        ports: list[int] = config.get("replicaPorts", [])
        body = await request.read()
        assert self.session is not None
        start = next(self.turn)
        for i in range(len(ports)):  # round-robin; a replica that refuses is skipped
            port = ports[(start + i) % len(ports)]
            headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
            try:
                async with self.session.request(
                    request.method, f"http://127.0.0.1:{port}{path}", data=body or None, headers=headers
                ) as resp:
                    payload = await resp.read()
                    return web.Response(body=payload, status=resp.status, content_type=resp.content_type)
            except ClientError:
                continue
        return web.json_response({"error": "no replica is answering"}, status=503)

    def app(self) -> web.Application:
        name = self.current()["service"]
        prefix = f"/api/v1/service/{name}"

        async def score(request: web.Request) -> web.Response:
            return await self.forward(request, "/score")

        async def health(request: web.Request) -> web.Response:
            return await self.forward(request, "/")

        async def on_startup(_: web.Application) -> None:
            timeout = ClientTimeout(total=self.current().get("timeoutMs", 60000) / 1000)
            self.session = ClientSession(timeout=timeout)

        async def on_cleanup(_: web.Application) -> None:
            if self.session is not None:
                await self.session.close()

        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_post(f"{prefix}/score", score)
        app.router.add_get(f"{prefix}/", health)
        app.router.add_get(f"{prefix}", health)
        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    router = Router(args.config)
    web.run_app(router.app(), host="127.0.0.1", port=int(router.current()["port"]), print=None, access_log=None)


if __name__ == "__main__":
    main()
