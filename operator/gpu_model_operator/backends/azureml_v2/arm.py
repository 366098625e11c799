"""The calls to Azure the backend makes, each a blocking function for the session's pool (what the bodies hold, and
how Azure's answers read, is :mod:`.bodies`).

Endpoints, deployments, keys and computes are plain ARM requests (:class:`..azure.arm.Arm`) with JSON bodies in
Azure's REST shape, to the paths and with the api-versions azure-ai-ml 1.35's own operations use (its
``MLClient.online_endpoints`` on 2022-02-01-preview, ``online_deployments`` on 2023-04-01-preview, ``compute`` on
2023-08-01-preview; see the emulator's reference trace), so what is sent is what the REST reference documents.
Writes return once Azure accepted them: the state is read back later with a GET (what a restarted operator does
anyway), where the SDK's ``begin_*`` would poll on a thread of its own until the operation ends. A missing
resource reads as None, never as an error.

Assets use azure-ai-ml's public operations where it has them (``models``, ``environments``, a deployment's
``get_logs``, the region's ``list_sizes`` and ``list_usage``). A code version has none (``MLClient`` keeps its code
operations private): it is made as the REST reference describes it, a pending upload (``startPendingUpload``)
whose blob container takes the entry script through azure-storage-blob, then the version's PUT naming it.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from ...keys import ScoringToken
from ..azure.failures import error_line
from .session import Workspace

#: The api-versions azure-ai-ml 1.35 sends for each kind of resource (its ``MLClient`` operations).
ENDPOINTS_API, DEPLOYMENTS_API, COMPUTE_API, CODES_API = (
    "2022-02-01-preview",
    "2023-04-01-preview",
    "2023-08-01-preview",
    "2023-04-01",
)
#: Azure Monitor's Metrics List (``{resourceUri}/providers/Microsoft.Insights/metrics``), the stable version of its
#: REST specification (specification/monitor/resource-manager/Microsoft.Insights/stable/2023-10-01/metrics_API.json).
METRICS_API = "2023-10-01"
#: The online endpoint's metric of requests, and its namespace (supported-metrics,
#: microsoft-machinelearningservices-workspaces-onlineendpoints-metrics: ``RequestsPerMinute``, Count, aggregation
#: Average, dimensions ``deployment``, ``statusCode``, ``statusCodeClass``, ``modelStatusCode``, grain PT1M).
REQUESTS_METRIC, ENDPOINT_METRICS = "RequestsPerMinute", "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
#: Where the entry script goes in a code version's blob container (the code's root, which ``scoringScript`` is
#: relative to).
CODE_FOLDER = "code"


def _path(ws: Workspace, *segments: str) -> str:
    """A resource id under the workspace, each segment quoted as the SDKs' generated operations quote it."""
    parts = ["subscriptions", ws.subscription_id, "resourceGroups", ws.resource_group, "providers"]
    parts += ["Microsoft.MachineLearningServices", "workspaces", ws.name, *segments]
    return "/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


def get_endpoint(ws: Workspace, name: str) -> dict[str, Any] | None:
    return ws.arm.get(_path(ws, "onlineEndpoints", name), ENDPOINTS_API)


def list_endpoints(ws: Workspace) -> list[dict[str, Any]]:
    return ws.arm.list(_path(ws, "onlineEndpoints"), ENDPOINTS_API)


def list_deployments(ws: Workspace, endpoint: str) -> list[dict[str, Any]]:
    try:
        return ws.arm.list(_path(ws, "onlineEndpoints", endpoint, "deployments"), DEPLOYMENTS_API)
    except ResourceNotFoundError:
        return []


def put_endpoint(ws: Workspace, name: str, body: dict[str, Any]) -> None:
    ws.arm.send("PUT", _path(ws, "onlineEndpoints", name), ENDPOINTS_API, body, ok=(200, 201))


def delete_endpoint(ws: Workspace, name: str) -> None:
    try:
        ws.arm.send("DELETE", _path(ws, "onlineEndpoints", name), ENDPOINTS_API, ok=(200, 202, 204))
    except ResourceNotFoundError:
        return


def put_deployment(ws: Workspace, endpoint: str, name: str, body: dict[str, Any]) -> str | None:
    """The deployment's PUT; the URL of its operation's status, where Azure's failure reason will be."""
    path = _path(ws, "onlineEndpoints", endpoint, "deployments", name)
    return ws.arm.start("PUT", path, DEPLOYMENTS_API, body, ok=(200, 201))


def operation_error(ws: Workspace, url: str) -> str | None:
    """Why an operation failed, from its status (``error``: Azure reports a deployment's ImageBuildFailure,
    OutOfQuota, OutOfCapacity or ResourceNotReady there, never in the deployment's own document:
    how-to-troubleshoot-online-endpoints, "Deployment operation status can report the following common deployment
    errors"); None while it runs, once it succeeded, or when Azure no longer has it."""
    status = ws.arm.operation(url)
    if status is None or str(status.get("status", "")).lower() in ("inprogress", "running", "succeeded"):
        return None
    error = status.get("error")
    return error_line(error) if error else f"the operation ended {status.get('status')}"


def scale_deployment(
    ws: Workspace, endpoint: str, name: str, instances: int, tags: Mapping[str, str] | None = None
) -> None:
    """A PATCH of the instance count (and the tags, whole, where given) alone: the deployment keeps what it runs
    (an old one being made room beside keeps its model, code and environment)."""
    body: dict[str, Any] = {"sku": {"capacity": instances}}
    if tags is not None:
        body["tags"] = dict(tags)
    path = _path(ws, "onlineEndpoints", endpoint, "deployments", name)
    ws.arm.send("PATCH", path, DEPLOYMENTS_API, body, ok=(200, 202))


def tag_deployment(ws: Workspace, endpoint: str, name: str, tags: Mapping[str, str]) -> None:
    """A PATCH of the tags alone, whole (ARM's PATCH replaces them): a record on the deployment, nothing it runs."""
    path = _path(ws, "onlineEndpoints", endpoint, "deployments", name)
    ws.arm.send("PATCH", path, DEPLOYMENTS_API, {"tags": dict(tags)}, ok=(200, 202))


def delete_deployment(ws: Workspace, endpoint: str, name: str) -> None:
    path = _path(ws, "onlineEndpoints", endpoint, "deployments", name)
    try:
        ws.arm.send("DELETE", path, DEPLOYMENTS_API, ok=(200, 202, 204))
    except ResourceNotFoundError:
        return


def request_metrics(ws: Workspace, endpoint: str, deployment: str, start: str, end: str) -> dict[str, Any]:
    """The deployment's requests per minute from ``start`` to ``end``, one series per status code class and status
    code: ``$filter`` picks the deployment and splits by the other two ("A eq 'a1' and B eq '*'", the specification's
    FilterParameter); ``top`` is the number of series (10 by default, fewer than the status codes a deployment can
    answer); ``interval`` the metric's one-minute grain."""
    path = _path(ws, "onlineEndpoints", endpoint) + "/providers/Microsoft.Insights/metrics"
    params = {
        "metricnames": REQUESTS_METRIC,
        "metricnamespace": ENDPOINT_METRICS,
        "timespan": f"{start}/{end}",
        "interval": "PT1M",
        "aggregation": "Average",
        "$filter": f"deployment eq '{deployment}' and statusCodeClass eq '*' and statusCode eq '*'",
        "top": "100",
    }
    return dict(ws.arm.send("GET", path, METRICS_API, params=params) or {})


def list_keys(ws: Workspace, endpoint: str) -> tuple[str, str]:
    keys = ws.arm.send("POST", _path(ws, "onlineEndpoints", endpoint, "listKeys"), ENDPOINTS_API) or {}
    return str(keys.get("primaryKey") or ""), str(keys.get("secondaryKey") or "")


def get_token(ws: Workspace, endpoint: str) -> ScoringToken:
    """An Azure ML token of an ``AMLToken`` endpoint (Online Endpoints - Get Token: ``POST .../token``, answered
    with EndpointAuthToken, whose times are seconds since the epoch)."""
    answer = ws.arm.send("POST", _path(ws, "onlineEndpoints", endpoint, "token"), ENDPOINTS_API) or {}
    return ScoringToken.from_azure(
        str(answer.get("accessToken") or ""),
        float(answer.get("expiryTimeUtc") or 0),
        float(answer.get("refreshAfterTimeUtc") or 0),
    )


def failure_logs(ws: Workspace, endpoint: str, deployment: str, lines: int = 40) -> str:
    """Why a deployment failed, from its inference server's console (``getLogs``): Azure's GET of a failed
    deployment says Failed and nothing more. The lines naming an error, else the last few."""
    text = str(ws.client.online_deployments.get_logs(name=deployment, endpoint_name=endpoint, lines=lines) or "")
    found = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in found if "error" in ln.lower() or "traceback" in ln.lower()]
    return " | ".join((errors or found)[-3:])[:600]


def get_compute(ws: Workspace, name: str) -> dict[str, Any] | None:
    return ws.arm.get(_path(ws, "computes", name), COMPUTE_API)


def vm_families(ws: Workspace) -> dict[str, tuple[str, int]]:
    """Lower-case VM size -> (quota family, vCPUs), from the region's size list (``list_sizes``)."""
    sizes = ws.client.compute.list_sizes(location=ws.location)
    return {str(vars(s)["name"]).lower(): (str(vars(s)["family"]), int(vars(s)["vCPUs"])) for s in sizes}


def family_usage(ws: Workspace, family: str) -> tuple[int, int]:
    """(vCPUs used, limit) of a quota family in the workspace's region, at the scope that binds; (0, 0) where Azure
    lists none. The usage entities copy the REST model's dict: the wire names are their attributes.

    Azure lists a family's usage once per scope under the same name, told apart by ``id`` and ``type``: the
    subscription's row, each workspace's and each compute's (the REST specification's example for Usages_List,
    2023-08-01-preview; Azure/azure-rest-api-specs#6055). A workspace may have a limit below the subscription's
    (how-to-manage-quotas, "Workspace-level quotas"): what a deployment may use is the smaller room of the
    subscription's row and this workspace's. A listing without scopes (one row) is that row."""
    rows = [vars(u) for u in ws.client.compute.list_usage(location=ws.location)]
    named = [r for r in rows if str((r.get("name") or {}).get("value", "")).lower() == family.lower()]
    if not named:
        return 0, 0
    workspace = f"{ws.arm_id}/usages/".lower()
    scoped = [r for r in named if str(r.get("id") or "").lower().startswith(workspace)]
    subscription = [r for r in named if "/workspaces/" not in str(r.get("id") or "").lower()]
    candidates = (subscription[:1] + scoped[:1]) or named[:1]
    binding = min(candidates, key=lambda r: int(r.get("limit") or 0) - int(r.get("currentValue") or 0))
    return int(binding.get("currentValue") or 0), int(binding.get("limit") or 0)


def model_id(ws: Workspace, name: str, version: int) -> str | None:
    """The ARM id of a registered model version, or None when the workspace has no such version."""
    try:
        return str(ws.client.models.get(name, version=str(version)).id)
    except ResourceNotFoundError:
        return None


def ensure_environment(ws: Workspace, name: str, version: str, image: str, conda: str) -> str:
    """The environment version for a conda file on a base image; versions are named after their content, so
    creating one that exists already changes nothing."""
    from azure.ai.ml.entities import Environment

    with tempfile.TemporaryDirectory(prefix="gmo-env-") as tmp:
        conda_file = Path(tmp) / "conda.yml"
        conda_file.write_text(conda)
        env = Environment(name=name, version=version, image=image, conda_file=str(conda_file))
        return str(ws.client.environments.create_or_update(env).id)


def ensure_code(ws: Workspace, name: str, version: str, filename: str, script: str) -> str:
    """The code version holding the entry script, uploaded once: a version's content never changes (Azure
    refuses another upload under the same version), and its name carries the script's fingerprint. Made as the
    REST reference describes (Code Versions: Create Or Get Start Pending Upload, then Create Or Update)."""
    path = _path(ws, "codes", name, "versions", version)
    found = ws.arm.get(path, CODES_API)
    if found is not None:
        return str(found["id"])
    upload = {"pendingUploadType": "TemporaryBlobReference"}
    pending = ws.arm.send("POST", f"{path}/startPendingUpload", CODES_API, upload)
    blob = pending["blobReferenceForConsumption"]
    # The SAS names the container; no retry of the storage client's own (its default sleeps and retries ten times).
    with ContainerClient.from_container_url(blob["credential"]["sasUri"], retry_total=0) as container:
        container.upload_blob(f"{CODE_FOLDER}/{filename}", script.encode(), overwrite=True)
    body = {"properties": {"codeUri": f"{str(blob['blobUri']).rstrip('/')}/{CODE_FOLDER}", "isAnonymous": False}}
    return str(ws.arm.send("PUT", path, CODES_API, body, ok=(200, 201))["id"])
