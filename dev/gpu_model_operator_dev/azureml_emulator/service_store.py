"""AKS web services: validate, deploy, scale (JSON patch), keys, delete, each deployment an MMS operation.

Why: ``Model.deploy`` validates, POSTs the service, and polls ``/operations/<id>`` until a terminal state;
``service.update(num_replicas=...)`` PATCHes and polls again. The GPU check happens when the operation settles,
as on AKS, where a replica that cannot be scheduled fails the deployment rather than the request.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import TYPE_CHECKING, Any

from .model_store import iso
from .resources import ErrorBody, Operation, Service, WsKey, service_replicas

if TYPE_CHECKING:
    from .state import EmulatorState

AUTOSCALER_DEFAULTS: dict[str, Any] = {
    "autoscaleEnabled": False,
    "minReplicas": 1,
    "maxReplicas": 10,
    "refreshPeriodInSeconds": 1,
    "targetUtilization": 70,
}
RESOURCE_DEFAULTS: dict[str, Any] = {"cpu": 0.1, "cpuLimit": None, "memoryInGB": 0.5, "memoryInGBLimit": None, "gpu": 0}
PROBE_DEFAULTS: dict[str, Any] = {
    "periodSeconds": 10,
    "initialDelaySeconds": 310,
    "timeoutSeconds": 2,
    "successThreshold": 1,
    "failureThreshold": 3,
}
DATA_COLLECTION_DEFAULTS: dict[str, Any] = {"eventHubEnabled": False, "storageEnabled": False}
BUSY_STATES = ("Transitioning", "Deleting")

Result = tuple[int, dict[str, Any], Operation | None]


def seeded_environment_request() -> dict[str, Any]:
    """What ``Model.deploy`` sends as ``environmentImageRequest`` for the guide's GPU environment (from the
    reference trace), without model ids: a seeded service runs no model the emulator knows."""
    conda = {"name": "myenv", "dependencies": ["python=3.8", {"pip": ["azureml-defaults", "tensorflow-gpu"]}]}
    return {
        "driverProgram": "score.py",
        "assets": [
            {"id": "score.py", "url": "aml://artifact/LocalUpload/seeded/score.py", "mimeType": "text/x-python"}
        ],
        "modelIds": [],
        "environment": {
            "name": "myenv",
            "version": None,
            "environmentVariables": {"AZUREML_ENTRY_SCRIPT": "score.py"},
            "python": {
                "userManagedDependencies": False,
                "interpreterPath": "python",
                "condaDependenciesFile": None,
                "baseCondaEnvironment": None,
                "condaDependencies": conda,
            },
            "docker": {
                "enabled": False,
                "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04",
                "baseDockerfile": None,
                "buildContext": None,
                "sharedVolumes": True,
                "shmSize": "2g",
                "arguments": [],
                "baseImageRegistry": {"address": None, "username": None, "password": None, "registryIdentity": None},
                "platform": {"os": "Linux", "architecture": "amd64"},
            },
            "spark": {"repositories": [], "packages": [], "precachePackages": True},
            "databricks": {
                "mavenLibraries": [], "pypiLibraries": [], "rcranLibraries": [], "jarLibraries": [], "eggLibraries": [],
            },
            "r": None,
            "inferencingStackVersion": None,
            "assetId": None,
        },
    }  # fmt: skip


def mms_error(status: int, code: str, message: str) -> ErrorBody:
    return {
        "code": code,
        "statusCode": status,
        "message": message,
        "details": [],
        "error": {"code": code, "message": message},
    }


def _merged(defaults: dict[str, Any], given: Any) -> dict[str, Any]:
    given = given if isinstance(given, dict) else {}
    merged = {k: (given[k] if given.get(k) is not None else v) for k, v in defaults.items()}
    merged.update({k: v for k, v in given.items() if k not in defaults})
    return merged


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace``/``remove`` on object paths (all the SDK sends); raises ValueError."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts or op.get("op") not in ("add", "replace", "remove"):
            raise ValueError(f"unsupported patch operation {op!r}")
        parent: Any = doc
        for part in parts[:-1]:
            if not isinstance(parent.get(part), dict):
                parent[part] = {}
            parent = parent[part]
        if op["op"] == "remove":
            parent.pop(parts[-1], None)
        else:
            parent[parts[-1]] = op.get("value")
    return doc


class ServiceStore:
    """Services per workspace; keys, scoring hooks and the operations that move their ``state``."""

    def __init__(self, state: EmulatorState) -> None:
        self._s = state

    # -- reads ----------------------------------------------------------------------------------------------

    def get(self, ws: WsKey, name: str) -> Service | None:
        self._s.advance()
        with self._s.lock:
            return self._s.services.get(ws, {}).get(name)

    def find(self, name: str) -> Service | None:
        """A service by name in any workspace (scoring URIs do not name the workspace)."""
        self._s.advance()
        with self._s.lock:
            return next((s[name] for s in self._s.services.values() if name in s), None)

    def docs(self, ws: WsKey, query: dict[str, str]) -> list[dict[str, Any]]:
        self._s.advance()
        with self._s.lock:
            docs = [copy.deepcopy(s.doc) for s in self._s.services.get(ws, {}).values()]
        if query.get("computeType"):
            docs = [d for d in docs if d["computeType"].upper() == query["computeType"].upper()]
        if query.get("modelName"):
            docs = [d for d in docs if any(m["name"] == query["modelName"] for m in d["models"])]
        if query.get("modelId"):
            docs = [d for d in docs if any(m["id"] == query["modelId"] for m in d["models"])]
        return docs

    # -- validation -----------------------------------------------------------------------------------------

    def validate_name(self, ws: WsKey, name: str) -> ErrorBody | None:
        if self.get(ws, name) is None:
            return None
        return {
            "error": {
                "code": "Conflict",
                "message": f"Service {name} with the same name already exists, please "
                "use a different service name or delete the existing service.",
            }
        }

    def validate(self, ws: WsKey, request: dict[str, Any]) -> ErrorBody | None:
        """``/services/validate``: the checks MMS makes before accepting a create, update or delete."""
        if request.get("type") == "Create" and isinstance(request.get("createRequest"), dict):
            problem = self._create_problem(ws, request["createRequest"])
            if problem is None and self._s.config.validate_capacity:
                problem = self._s.gpu_capacity_error(ws, request["createRequest"])
            return {"error": problem} if problem else None
        if request.get("type") in ("Update", "Delete") and self.get(ws, str(request.get("serviceName"))) is None:
            return {"error": mms_error(404, "NotFound", f"Service {request.get('serviceName')} not found")}
        return None

    def validate_resource(self, ws: WsKey, body: dict[str, Any]) -> ErrorBody | None:
        if not self._s.config.validate_capacity:
            return None
        problem = self._s.gpu_capacity_error(ws, body)
        return {"error": problem} if problem else None

    def _create_problem(self, ws: WsKey, body: dict[str, Any]) -> ErrorBody | None:
        compute_name = str(body.get("computeName"))
        compute = self._s.compute_store.get(ws, compute_name)
        if compute is None:
            return mms_error(400, "BadArgument", f"Compute {compute_name} not found in the workspace.")
        if compute.state != "Succeeded":
            return mms_error(
                400,
                "BadArgument",
                f"Compute {compute_name} is in state {compute.state}; it must be Succeeded to deploy to it.",
            )
        image_request = body.get("environmentImageRequest") or {}
        for model_id in image_request.get("modelIds") or []:
            if self._s.model_store.get(ws, str(model_id)) is None:
                return mms_error(404, "ModelNotFound", f"Model with id {model_id} not found.")
        return None

    # -- writes ---------------------------------------------------------------------------------------------

    def _new_doc(self, ws: WsKey, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body["name"])
        now = iso()
        image_request = body.get("environmentImageRequest") or {}
        models = [self._s.model_store.get(ws, str(i)) for i in image_request.get("modelIds") or []]
        return {
            "id": name,
            "name": name,
            "description": body.get("description"),
            "kvTags": body.get("kvTags") or {},
            "properties": body.get("properties") or {},
            "computeType": body.get("computeType") or "AKS",
            "computeName": body.get("computeName"),
            "state": "Transitioning",
            "error": None,
            "createdTime": now,
            "updatedTime": now,
            "createdBy": self._s.model_store._created_by(),
            "imageId": body.get("imageId"),
            "numReplicas": body.get("numReplicas"),
            "autoScaler": _merged(AUTOSCALER_DEFAULTS, body.get("autoScaler")),
            "containerResourceRequirements": _merged(RESOURCE_DEFAULTS, body.get("containerResourceRequirements")),
            "livenessProbeRequirements": _merged(PROBE_DEFAULTS, body.get("livenessProbeRequirements")),
            "dataCollection": _merged(DATA_COLLECTION_DEFAULTS, body.get("dataCollection")),
            "appInsightsEnabled": bool(body.get("appInsightsEnabled")),
            "authEnabled": body.get("authEnabled") is not False,
            "aadAuthEnabled": bool(body.get("aadAuthEnabled")),
            "maxConcurrentRequestsPerContainer": body.get("maxConcurrentRequestsPerContainer") or 1,
            "maxQueueWaitMs": body.get("maxQueueWaitMs") or 500,
            "scoringTimeoutMs": body.get("scoringTimeoutMs") or 60000,
            "namespace": body.get("namespace") or f"azureml-{ws[2]}",
            "scoringUri": f"{self._s.base_url}/api/v1/service/{name}/score",
            "swaggerUri": f"{self._s.base_url}/api/v1/service/{name}/swagger.json",
            "environmentImageRequest": image_request or None,
            "models": [m for m in models if m],
            "deploymentStatus": {"desiredReplicas": 0, "updatedReplicas": 0, "availableReplicas": 0, "error": None},
        }

    def seed(self, ws: WsKey, body: dict[str, Any]) -> Service:
        """A service that exists already, Healthy (deployed before the test, by someone else): an MMS create body
        (``name``, ``computeName``, ``numReplicas``, ``containerResourceRequirements``, ``kvTags``...). Without an
        ``environmentImageRequest`` it gets the one ``Model.deploy`` sends for the guide's environment, as every
        service deployed with an ``InferenceConfig`` has one (the SDK's ``update`` relies on it)."""
        with self._s.lock:
            defaults = {"computeType": "AKS", "environmentImageRequest": seeded_environment_request()}
            doc = self._new_doc(ws, {**defaults, **body})
            replicas = service_replicas(doc)
            doc["state"] = "Healthy"
            counts = ("desiredReplicas", "updatedReplicas", "availableReplicas")
            doc["deploymentStatus"] = {**dict.fromkeys(counts, replicas), "error": None}
            service = Service(ws=ws, doc=doc)
            self._s.services.setdefault(ws, {})[service.name] = service
            return service

    def create(self, ws: WsKey, body: dict[str, Any]) -> Result:
        """POST /services: returns (HTTP status, service doc or error body, operation)."""
        if not body.get("name"):
            return 400, mms_error(400, "BadArgument", "A service name is required."), None
        with self._s.lock:
            existing = self.get(ws, str(body["name"]))
            if existing is not None and not body.get("overwrite"):
                return 409, mms_error(409, "Conflict", f"Service {body['name']} already exists."), None
            if existing is not None and existing.doc["state"] in BUSY_STATES:
                return 409, mms_error(409, "Conflict", f"Service {body['name']} has an operation in progress."), None
            problem = self._create_problem(ws, body)
            if problem is not None:
                return int(problem["statusCode"]), problem, None
            doc = self._new_doc(ws, body)
            service = existing or Service(ws=ws, doc=doc)
            service.doc = doc
            keys = body.get("keys") or {}
            service.primary_key = keys.get("primaryKey") or service.primary_key
            service.secondary_key = keys.get("secondaryKey") or service.secondary_key
            self._s.services.setdefault(ws, {})[service.name] = service
            op = self._start(service, "Deploy", self._s.config.latencies.service_create_s, check_gpus=True)
            return 202, copy.deepcopy(doc), op

    def patch(self, ws: WsKey, name: str, ops: list[dict[str, Any]]) -> Result:
        """PATCH /services/<name> with a JSON patch; scaling is checked against the cluster's free GPUs."""
        with self._s.lock:
            service = self.get(ws, name)
            if service is None:
                return 404, mms_error(404, "NotFound", f"Service {name} not found"), None
            if service.doc["state"] in BUSY_STATES:
                return 409, mms_error(409, "Conflict", f"Service {name} has an operation in progress."), None
            try:
                new_doc = apply_json_patch(copy.deepcopy(service.doc), ops)
            except (ValueError, AttributeError) as exc:
                return 400, mms_error(400, "BadArgument", str(exc)), None
            previous = service.doc
            service.doc = new_doc
            op = self._start(
                service, "Update", self._s.config.latencies.service_update_s, check_gpus=True, previous=previous
            )
            return 202, copy.deepcopy(new_doc), op

    def delete(self, ws: WsKey, name: str) -> Operation | None:
        with self._s.lock:
            service = self.get(ws, name)
            if service is None:
                return None
            previous = copy.deepcopy(service.doc)
            op = self._start(
                service,
                "Delete",
                self._s.config.latencies.service_delete_s,
                check_gpus=False,
                previous=previous,
                state="Deleting",
            )

            def gone() -> None:
                self._s.services.get(ws, {}).pop(name, None)

            op.on_success = gone
            return op

    def _start(
        self,
        service: Service,
        op_type: str,
        latency_s: float,
        check_gpus: bool,
        previous: dict[str, Any] | None = None,
        state: str = "Transitioning",
    ) -> Operation:
        """Put the service in a transitional state and start the operation that settles it."""
        error = self._s.gpu_capacity_error(service.ws, service.doc, previous) if check_gpus else None
        rule = self._s.faults.match_resource({"operation_failed"}, "service", service.name)
        if rule is not None:
            error = mms_error(
                400,
                rule.code or "DeploymentFailed",
                rule.message or f"Injected fault: service {op_type.lower()} failed.",
            )
        service.doc["state"], service.doc["updatedTime"] = state, iso()
        op = self._s.start_operation(
            "service",
            op_type,
            service.name,
            service.ws,
            latency_s,
            error=error,
            fail_state=rule.op_state if rule else "Failed",
        )
        service.doc["operationId"] = op.id

        def succeeded() -> None:
            replicas = service_replicas(service.doc)
            service.doc.update(state="Healthy", error=None, updatedTime=iso(time.time()))
            service.doc["deploymentStatus"] = {
                "desiredReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "error": None,
            }

        def failed() -> None:
            if previous is not None and previous.get("state") == "Healthy":
                service.doc = copy.deepcopy(previous)
                service.doc["state"] = "Healthy"
            else:
                service.doc["state"] = "Failed"
            service.doc.update(error=op.error, updatedTime=iso(time.time()))
            service.doc["deploymentStatus"] = dict(service.doc.get("deploymentStatus") or {}, error=op.error)

        op.on_success, op.on_failure = succeeded, failed
        return op

    def regenerate_key(self, ws: WsKey, name: str, key_type: str, key: str | None) -> Service | None:

        with self._s.lock:
            service = self.get(ws, name)
            if service is None:
                return None
            new_key = key or secrets.token_urlsafe(24)
            if key_type.lower() == "primary":
                service.primary_key = new_key
            else:
                service.secondary_key = new_key
            return service
