"""Blob storage for uploads and the deployed services' scoring endpoints.

Why: the SDK uploads entry scripts and model files to ``https://<account>.blob.<suffix>/...`` (PUT, then HEAD
to compare sizes) through the vendored Azure Storage client, which reaches the emulator through its CONNECT
proxy. A deployed service's ``scoring_uri`` must answer like AKS does: key auth, a health route, and
``/score`` answering with a canned reply, an echo, or whatever a real inference server plugged in answers.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from email.utils import formatdate
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from .resources import Blob
    from .state import EmulatorState

STORAGE_VERSION = "2019-02-02"


def _storage_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": STORAGE_VERSION, "Date": formatdate(usegmt=True)}
    headers.update(extra or {})
    return headers


def _blob_headers(blob: Blob) -> dict[str, str]:
    return _storage_headers(
        {
            "ETag": blob.etag,
            "Last-Modified": formatdate(blob.modified, usegmt=True),
            "Content-MD5": base64.b64encode(hashlib.md5(blob.data).digest()).decode(),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-server-encrypted": "true",
            "Accept-Ranges": "bytes",
            "x-ms-creation-time": formatdate(blob.modified, usegmt=True),
            "x-ms-lease-state": "available",
            "x-ms-lease-status": "unlocked",
        }
    )


def blob_app(state: EmulatorState) -> web.Application:
    """The storage account's host (matched by domain): Put Blob, Put Block/Block List, Get/Head Blob."""

    async def put_blob(request: web.Request) -> web.Response:
        key = request.match_info["path"]
        data = await request.read()
        comp = request.query.get("comp")
        if comp == "block":
            with state.lock:
                state.blocks.setdefault(key, {})[request.query["blockid"]] = data
            return web.Response(status=201, headers=_storage_headers())
        if comp == "blocklist":
            ids = [el.text or "" for el in ElementTree.fromstring(data)]
            with state.lock:
                blocks = state.blocks.pop(key, {})
            data = b"".join(blocks.get(i, b"") for i in ids)
        sent_md5 = request.headers.get("Content-MD5")
        actual_md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        if comp is None and sent_md5 and sent_md5 != actual_md5:
            return web.Response(
                status=400,
                text='<?xml version="1.0" encoding="utf-8"?><Error><Code>'
                "Md5Mismatch</Code><Message>The MD5 value specified in the request did not match "
                "the MD5 value calculated by the server.</Message></Error>",
                content_type="application/xml",
                headers=_storage_headers({"x-ms-error-code": "Md5Mismatch"}),
            )
        blob = state.put_blob(key, data, request.headers.get("x-ms-blob-content-type", ""))
        headers = _blob_headers(blob)
        headers["x-ms-request-server-encrypted"] = "true"
        return web.Response(status=201, headers=headers)

    async def get_blob(request: web.Request) -> web.Response:
        blob = state.blob(request.match_info["path"])
        if blob is None:
            error = (
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                "<Message>The specified blob does not exist.</Message></Error>"
            )
            return web.Response(
                status=404,
                text=error,
                content_type="application/xml",
                headers=_storage_headers({"x-ms-error-code": "BlobNotFound"}),
            )
        headers = _blob_headers(blob)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(blob.data))
            return web.Response(status=200, headers=headers, content_type=blob.content_type)
        return web.Response(status=200, body=blob.data, headers=headers, content_type=blob.content_type)

    app = web.Application()
    app.router.add_put("/{path:.+}", put_blob)
    app.router.add_get("/{path:.+}", get_blob, allow_head=True)
    return app


def scoring_routes(state: EmulatorState) -> list[web.RouteDef]:
    """``/api/v1/service/<name>/``: health, swagger and score, as AKS's scoring front end answers them."""

    async def health(request: web.Request) -> web.Response:
        service = state.service_store.find(request.match_info["name"])
        if service is None:
            return web.Response(status=404, text="Service not found\n")
        if service.doc.get("state") != "Healthy":
            return web.Response(status=503, text=f"Service is {service.doc.get('state')}\n")
        return web.Response(status=200, text="Healthy\n")

    async def swagger(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if state.service_store.find(name) is None:
            return web.Response(status=404, text="Service not found\n")
        return web.json_response(
            {
                "swagger": "2.0",
                "info": {"title": name, "version": "1.0"},
                "paths": {f"/api/v1/service/{name}/score": {"post": {}}},
            }
        )

    async def score(request: web.Request) -> web.Response:
        service = state.service_store.find(request.match_info["name"])
        if service is None:
            return web.Response(status=404, text="Service not found\n")
        if service.doc.get("authEnabled"):
            given = request.headers.get("Authorization", "")
            if given not in (f"Bearer {service.primary_key}", f"Bearer {service.secondary_key}"):
                return web.Response(
                    status=401,
                    text="Authorization header is missing or invalid\n",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if service.doc.get("state") != "Healthy":
            return web.Response(status=503, text=f"Service is {service.doc.get('state')}\n")
        body = await request.read()
        backend = service.backend_url or state.default_scoring_backend
        if backend:
            return await _forward(backend, body, request.headers.get("Content-Type", "application/json"))
        if service.recorded_response is not None:
            return web.json_response(service.recorded_response)
        return web.Response(status=200, body=body, content_type=request.content_type or "application/json")

    return [
        web.get("/api/v1/service/{name}", health),
        web.get("/api/v1/service/{name}/", health),
        web.get("/api/v1/service/{name}/swagger.json", swagger),
        web.post("/api/v1/service/{name}/score", score),
    ]


async def _forward(url: str, body: bytes, content_type: str) -> web.Response:
    """Relay a scoring request to a real inference server (e.g. the Azure ML inference HTTP server)."""
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.post(url, data=body, headers={"Content-Type": content_type}) as resp,
        ):
            payload = await resp.read()
            return web.Response(status=resp.status, body=payload, content_type=resp.content_type or "application/json")
    except aiohttp.ClientError as exc:
        return web.Response(status=502, text=f"Scoring backend {url} unreachable: {exc}\n")
