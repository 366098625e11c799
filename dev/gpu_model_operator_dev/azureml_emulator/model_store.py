"""Registered models, their assets, and the artifact records behind uploaded files.

Why: ``Model.register`` uploads files through the artifact service (batch metadata, then blob PUT/HEAD),
registers an asset, then the model; ``Model(ws, name=...)`` queries the registry; ``Model.deploy`` uploads the
entry script the same way. Tests may also seed models directly, without the upload round trip.
"""

from __future__ import annotations

import datetime
import time
import uuid
from typing import TYPE_CHECKING, Any

from .resources import WsKey

if TYPE_CHECKING:
    from .state import EmulatorState


def iso(ts: float | None = None) -> str:
    """Azure's timestamp format (UTC, with offset)."""
    moment = datetime.datetime.fromtimestamp(ts if ts is not None else time.time(), datetime.timezone.utc)
    return moment.isoformat()


def not_found(what: str) -> dict[str, Any]:
    """MMS error body; the SDK reads the status from the body's ``statusCode``, not from the HTTP status."""
    return {
        "code": "NotFound",
        "statusCode": 404,
        "message": f"{what} not found",
        "correlation": {"RequestId": str(uuid.uuid4())},
        "details": [],
    }


class ModelStore:
    """Models (versioned per name), assets and artifacts of every workspace."""

    def __init__(self, state: EmulatorState) -> None:
        self._s = state

    def _created_by(self) -> dict[str, Any]:
        return {
            "userObjectId": "00000000-0000-0000-0000-00000000beef",
            "userPuId": None,
            "userIdp": None,
            "userAltSecId": None,
            "userIss": "emulator",
            "userTenantId": self._s.config.tenant_id,
            "userName": "emulator-service-principal",
        }

    def register(self, ws: WsKey, body: dict[str, Any]) -> dict[str, Any]:
        """Register a new version of ``body['name']``; versions count up from 1 per name."""
        name = str(body["name"])
        with self._s.lock:
            versions = self._s.models.setdefault(ws, {})
            version = 1 + max((m["version"] for m in versions.values() if m["name"] == name), default=0)
            now = time.time()
            model: dict[str, Any] = {
                "id": f"{name}:{version}",
                "name": name,
                "version": version,
                "framework": body.get("framework") or "Custom",
                "frameworkVersion": body.get("frameworkVersion"),
                "datasets": body.get("datasets") or [],
                "url": body.get("url"),
                "mimeType": body.get("mimeType") or "application/json",
                "description": body.get("description"),
                "createdTime": iso(now),
                "modifiedTime": iso(now),
                "unpack": bool(body.get("unpack")),
                "parentModelId": body.get("parentModelId"),
                "runId": body.get("runId"),
                "experimentName": body.get("experimentName"),
                "kvTags": body.get("kvTags") or {},
                "properties": body.get("properties") or {},
                "derivedModelIds": None,
                "sampleInputData": body.get("sampleInputData"),
                "sampleOutputData": body.get("sampleOutputData"),
                "resourceRequirements": body.get("resourceRequirements"),
                "createdBy": self._created_by(),
            }
            versions[model["id"]] = model
            return dict(model)

    def seed(
        self,
        ws: WsKey,
        name: str,
        tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Register a model without uploading files (its asset URL points at an empty artifact)."""
        return self.register(
            ws,
            {
                "name": name,
                "kvTags": tags or {},
                "properties": properties or {},
                "description": description,
                "url": f"aml://asset/{uuid.uuid4().hex}",
            },
        )

    def get(self, ws: WsKey, model_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            model = self._s.models.get(ws, {}).get(model_id)
            return dict(model) if model else None

    def delete(self, ws: WsKey, model_id: str) -> bool:
        with self._s.lock:
            return self._s.models.get(ws, {}).pop(model_id, None) is not None

    def query(
        self,
        ws: WsKey,
        name: str | None = None,
        tags: str | None = None,
        properties: str | None = None,
        framework: str | None = None,
        run_id: str | None = None,
        latest_only: bool = False,
    ) -> list[dict[str, Any]]:
        """Models matching the MMS list filters, newest first (``Model(ws, name)`` takes the first)."""
        with self._s.lock:
            found = [dict(m) for m in self._s.models.get(ws, {}).values()]
        if name:
            found = [m for m in found if m["name"] == name]
        if framework:
            found = [m for m in found if m["framework"] == framework]
        if run_id:
            found = [m for m in found if m["runId"] == run_id]
        found = [m for m in found if _pairs_match(m["kvTags"], tags) and _pairs_match(m["properties"], properties)]
        found.sort(key=lambda m: (m["createdTime"], m["version"]), reverse=True)
        if latest_only:
            latest: dict[str, dict[str, Any]] = {}
            for m in found:
                latest.setdefault(m["name"], m)
            found = list(latest.values())
        return found

    def create_asset(self, body: dict[str, Any]) -> dict[str, Any]:
        asset: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "name": body.get("name"),
            "type": body.get("type"),
            "description": body.get("description"),
            "artifacts": body.get("artifacts") or [],
            "kvTags": body.get("kvTags") or {},
            "properties": body.get("properties") or {},
            "runid": body.get("runid"),
            "meta": body.get("meta") or {},
            "createdTime": iso(),
        }
        with self._s.lock:
            self._s.assets[asset["id"]] = asset
        return dict(asset)

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        with self._s.lock:
            asset = self._s.assets.get(asset_id)
            return dict(asset) if asset else None

    def create_artifacts(self, origin: str, container: str, paths: list[str]) -> dict[str, Any]:
        """Answer the artifact service's batch metadata call: one writable blob SAS URL per path."""
        artifacts: dict[str, Any] = {}
        content: dict[str, Any] = {}
        for path in paths:
            artifact_id = f"{origin}/{container}/{path}"
            artifacts[path] = {
                "artifactId": artifact_id,
                "origin": origin,
                "container": container,
                "path": path,
                "etag": uuid.uuid4().hex,
                "createdTime": iso(),
                "dataPath": None,
            }
            content[path] = {
                "contentUri": self._s.blob_url("azureml", f"ExperimentRun/{container}/{path}"),
                "origin": origin,
                "container": container,
                "path": path,
            }
        return {"artifacts": artifacts, "artifactContentInformation": content, "errors": {}}


def _pairs_match(values: dict[str, Any], query: str | None) -> bool:
    """MMS filter syntax ``key`` or ``key=value``, comma separated, all must match."""
    if not query:
        return True
    for item in query.split(","):
        key, sep, value = item.partition("=")
        if key not in values or (sep and str(values[key]) != value):
            return False
    return True
