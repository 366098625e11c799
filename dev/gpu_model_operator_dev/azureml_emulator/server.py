"""The emulator's HTTPS server: one aiohttp app for every Azure host, plus the CONNECT proxy and admin API.

Why one app: after discovery every Azure ML service host is the emulator's own address, so routing is by path;
only the storage account is told apart by its Host header (an aiohttp domain sub-app), because blob paths are
free-form. Middlewares, outermost first: the call log with fault injection (what tests count; an injected
answer carries ``"fault": <action>``, a reset connection is logged with status 0), then ARM's throttling (it counts
every call and, when on, answers 429 before the request goes further; see :mod:`.throttling`), then bearer-token
checks, then Azure's contract (``api-version``, each answer in its version's shape, and in conformance mode the
schema checks), then the v2 overlay.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from . import arm, auth, data_plane, mms, throttling, v2
from .admin import admin_routes
from .certs import CertFiles, write_certificates
from .contract import conformance
from .faults import FaultRule
from .proxy import ConnectProxy
from .state import EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Real Microsoft hosts the SDK may still call with a custom cloud: MSAL's instance discovery for non-ADFS
#: tenants. The proxy tunnels them to the emulator and its certificate names them (test CA only).
INTERCEPTED_HOSTS = ("login.microsoftonline.com",)

#: Paths that carry no Azure AD token: cloud metadata, the authority, discovery, scoring (v1 services and v2
#: Kubernetes endpoints), the admin API.
_UNAUTHENTICATED = (
    "/metadata/",
    "/discovery/",
    "/common/discovery/",
    "/api/v1/service/",
    "/api/v1/endpoint/",
    "/_emulator/",
)


def _needs_token(request: web.Request, storage_suffix: str) -> bool:
    path = request.path
    host = request.host.split(":")[0]
    if host.endswith("." + storage_suffix) or host.endswith("." + v2.INFERENCE_SUFFIX):
        return False
    return not (path.startswith(_UNAUTHENTICATED) or "/.well-known/" in path or "/oauth2/" in path)


def _reset_connection(request: web.Request) -> None:
    """Drop the TCP connection with a RST, as a crashed front end or a flaky network does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _fault_response(rule: FaultRule) -> web.Response:
    headers = {"x-ms-failure-cause": "injected"}
    if rule.retry_after is not None:
        headers["Retry-After"] = str(
            int(rule.retry_after) if float(rule.retry_after).is_integer() else rule.retry_after
        )
    return web.json_response(rule.error_body(), status=rule.status, headers=headers)


def build_app(state: EmulatorState) -> web.Application:
    """The aiohttp application serving every emulated host of ``state``."""

    async def inject(request: web.Request, handler: Handler, entry: dict[str, Any]) -> web.StreamResponse:
        rule = state.faults.match_http(request.method, request.host, request.path)
        if rule is None:
            return await handler(request)
        entry["fault"] = rule.action
        if rule.action == "delay":
            await asyncio.sleep(rule.delay_s)
            return await handler(request)
        if rule.action == "reset":
            _reset_connection(request)
            raise web.HTTPServiceUnavailable(reason="connection reset by fault injection")
        return _fault_response(rule)

    @web.middleware
    async def calls_and_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        entry: dict[str, Any] = {
            "t": time.time(),
            "method": request.method,
            "host": request.host,
            "path": request.path,
            "query": dict(request.query),
            "status": 0,
        }
        try:
            response = await inject(request, handler, entry)
            entry["status"] = response.status
            return response
        except web.HTTPException as exc:
            entry["status"] = 0 if entry.get("fault") == "reset" else exc.status
            raise
        finally:
            state.record_call(entry)

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _needs_token(request, state.config.storage_suffix):
            refused = auth.check_bearer(state, request)
            if refused is not None:
                return refused
        return await handler(request)

    arm_throttling = throttling.middleware(state, v2.INFERENCE_SUFFIX)
    middlewares = [calls_and_faults, arm_throttling, bearer, conformance.middleware(state), v2.middleware(state)]
    app = web.Application(middlewares=middlewares, client_max_size=1024**3)
    app.add_domain(f"*.blob.{state.config.storage_suffix}", data_plane.blob_app(state))
    v2.install(app, state)
    app.add_routes(admin_routes(state))
    app.add_routes(throttling.admin_routes(state))
    app.add_routes(auth.routes(state))
    app.add_routes(arm.routes(state))
    app.add_routes(mms.routes(state))
    app.add_routes(data_plane.scoring_routes(state))
    return app


class EmulatorServer:
    """Owns the HTTPS site and the proxy on the running event loop; see :func:`start_emulator` for threads."""

    def __init__(
        self, state: EmulatorState, state_dir: Path, host: str = "127.0.0.1", port: int = 0, proxy_port: int = 0
    ) -> None:
        self.state = state
        self.state_dir = state_dir
        self._host, self._port, self._proxy_port = host, port, proxy_port
        self._runner: web.AppRunner | None = None
        self._proxy: ConnectProxy | None = None
        self.certs: CertFiles | None = None
        self.port = 0
        self.proxy_port = 0

    async def start(self) -> None:
        suffix = self.state.config.storage_suffix
        self.certs = write_certificates(
            self.state_dir / "tls",
            [f"*.blob.{suffix}", f"*.{suffix}", suffix, *INTERCEPTED_HOSTS, *v2.tls_names(self.state.config.location)],
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.server_cert, self.certs.server_key)
        self._runner = web.AppRunner(build_app(self.state), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.state.base_url = f"https://{self._host}:{self.port}"
        self._proxy = ConnectProxy(
            self._host, self.port, [suffix, *INTERCEPTED_HOSTS, *v2.PROXIED_SUFFIXES], self.state.record_call
        )
        self.proxy_port = await self._proxy.start(self._host, self._proxy_port)
        self._forget_cached_cloud()

    def _forget_cached_cloud(self) -> None:
        """The SDK caches the metadata document; a stale one (another port) would send it elsewhere."""
        config_dir = self.azure_config_dir
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "cloudEndpoints.json").unlink(missing_ok=True)

    @property
    def azure_config_dir(self) -> Path:
        return self.state_dir / "azure-config"

    async def stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def client_env_v2(self) -> dict[str, str]:
        """What an ``azure-ai-ml`` / ``azure-identity`` client process needs on top of :meth:`client_env`.

        azure-ai-ml reads the custom cloud from ``ARM_CLOUD_METADATA_URL`` and picks it by
        ``AZUREML_CURRENT_CLOUD`` (``_azure_environments._get_default_cloud_name``); it must not be
        ``AzureCloud``, which the SDK never looks up. azure-identity credentials take their authority from
        ``AZURE_AUTHORITY_HOST`` (``ClientSecretCredential``, ``WorkloadIdentityCredential``, and
        ``DefaultAzureCredential``'s environment and workload identity parts); ``AZURE_TENANT_ID`` is the tenant
        the emulator's tokens carry.
        """
        env = self.client_env()
        env.update(
            AZUREML_CURRENT_CLOUD=v2.V2_CLOUD,
            AZURE_AUTHORITY_HOST=self.state.base_url,
            AZURE_TENANT_ID=self.state.config.tenant_id,
        )
        return env

    def client_env(self) -> dict[str, str]:
        """Environment a client process must have *before* importing azureml (it reads it at import)."""
        assert self.certs is not None, "start() first"
        base = self.state.base_url
        proxy = f"http://{self._host}:{self.proxy_port}"
        no_proxy = f"{self._host},localhost"
        bundle = str(self.certs.ca_bundle)
        return {
            "ARM_CLOUD_METADATA_URL": f"{base}/metadata/endpoints?api-version=2019-05-01",
            "AZUREML_CURRENT_CLOUD": "AzureCloud",
            "AZURE_CONFIG_DIR": str(self.azure_config_dir),
            "AZUREML_AUTH_CONFIG_DIR": str(self.state_dir / "azureml-auth"),
            "REQUESTS_CA_BUNDLE": bundle,
            "SSL_CERT_FILE": bundle,
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        }
