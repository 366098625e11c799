"""Azure ML's ARM operations that the backends call, with the api-versions they are called at and the schema of each
request and answer; and the api-versions ARM accepts per resource type.

Why this table: it is the specification's ``paths`` section for the operations in use (operation ids as the files
name them), so the conformance check knows which definition a body must satisfy and which statuses an operation
answers with (an answer with any other 2xx status, or without the header the specification promises, is a
violation). The api-versions are those the SDKs send (``reference/`` traces: azure-ai-ml 1.35 and azureml-core 1.61),
each of which the emulator models with the schema of that version's specification file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

P = r"/providers/Microsoft\.MachineLearningServices"
WS = r"^/subscriptions/[^/]+/resourceGroups/[^/]+" + P + r"/workspaces/[^/]+"
LOC = r"^/subscriptions/[^/]+" + P + r"/locations/[^/]+"
E = WS + r"/onlineEndpoints/(?P<endpoint>[^/]+)"
D = E + r"/deployments/(?P<deployment>[^/]+)"

COMMON = "urn:gmo:arm-common-v3"
V2022 = "urn:gmo:mfe-2022-02-01-preview"
V2023 = "urn:gmo:mfe-2023-04-01-preview"
V2023_STABLE = "urn:gmo:mfe-2023-04-01"
V2023_08 = "urn:gmo:mfe-2023-08-01-preview"
MLS = "urn:gmo:mls-2023-08-01-preview"
MONITOR = "urn:gmo:monitor-2023-10-01"
#: The endpoint operations exist in both versions the SDK uses for them (online_endpoints at 2022-02-01-preview,
#: online_deployments reading the endpoint at 2023-04-01-preview).
ENDPOINT_VERSIONS = {"2022-02-01-preview": V2022, "2023-04-01-preview": V2023}


@dataclass(frozen=True)
class Operation:
    """One operation of the specification: the request's definition (None: no body, or not modelled), and the
    definition of the answer for each success status (None: no body)."""

    name: str
    method: str
    path: re.Pattern[str]
    versions: Mapping[str, str]
    request: str | None
    responses: Mapping[int, str | None]
    #: Headers the specification promises with a status (``Azure-AsyncOperation`` on 201, ``Location`` on 202).
    headers: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


def _op(
    name: str,
    method: str,
    path: str,
    versions: Mapping[str, str],
    request: str | None,
    responses: Mapping[int, str | None],
    headers: Mapping[int, tuple[str, ...]] | None = None,
) -> Operation:
    return Operation(name, method, re.compile(path + "$", re.IGNORECASE), versions, request, responses, headers or {})


CREATED = {201: ("Azure-AsyncOperation",)}
ACCEPTED = {202: ("Location",)}
DEPLOYMENT_VERSIONS = {"2023-04-01-preview": V2023}
COMPUTE_VERSIONS = {"2023-08-01-preview": MLS}

OPERATIONS: tuple[Operation, ...] = (
    # mfe.json, OnlineEndpoint tag
    _op("OnlineEndpoints_List", "GET", WS + "/onlineEndpoints", ENDPOINT_VERSIONS, None,
        {200: "OnlineEndpointTrackedResourceArmPaginatedResult"}),
    _op("OnlineEndpoints_Get", "GET", E, ENDPOINT_VERSIONS, None, {200: "OnlineEndpointTrackedResource"}),
    _op("OnlineEndpoints_CreateOrUpdate", "PUT", E, ENDPOINT_VERSIONS, "OnlineEndpointTrackedResource",
        {200: "OnlineEndpointTrackedResource", 201: "OnlineEndpointTrackedResource"}, CREATED),
    # The PATCH body's definition was not read for 2022-02-01-preview: the request is not modelled.
    _op("OnlineEndpoints_Update", "PATCH", E, ENDPOINT_VERSIONS, None,
        {200: "OnlineEndpointTrackedResource", 202: None}, ACCEPTED),
    _op("OnlineEndpoints_Delete", "DELETE", E, ENDPOINT_VERSIONS, None, {200: None, 202: None, 204: None}, ACCEPTED),
    _op("OnlineEndpoints_ListKeys", "POST", E + "/listKeys", ENDPOINT_VERSIONS, None, {200: "EndpointAuthKeys"}),
    _op("OnlineEndpoints_RegenerateKeys", "POST", E + "/regenerateKeys", ENDPOINT_VERSIONS,
        "RegenerateEndpointKeysRequest", {200: None, 202: None}, ACCEPTED),
    _op("OnlineEndpoints_GetToken", "POST", E + "/token", ENDPOINT_VERSIONS, None, {200: "EndpointAuthToken"}),
    # mfe.json, OnlineDeployment tag
    _op("OnlineDeployments_List", "GET", E + "/deployments", ENDPOINT_VERSIONS, None,
        {200: "OnlineDeploymentTrackedResourceArmPaginatedResult"}),
    _op("OnlineDeployments_Get", "GET", D, ENDPOINT_VERSIONS, None, {200: "OnlineDeploymentTrackedResource"}),
    _op("OnlineDeployments_CreateOrUpdate", "PUT", D, DEPLOYMENT_VERSIONS, "OnlineDeploymentTrackedResource",
        {200: "OnlineDeploymentTrackedResource", 201: "OnlineDeploymentTrackedResource"}, CREATED),
    _op("OnlineDeployments_Update", "PATCH", D, DEPLOYMENT_VERSIONS, "PartialMinimalTrackedResourceWithSku",
        {200: "OnlineDeploymentTrackedResource", 202: None}, ACCEPTED),
    _op("OnlineDeployments_Delete", "DELETE", D, DEPLOYMENT_VERSIONS, None, {200: None, 202: None, 204: None},
        ACCEPTED),
    _op("OnlineDeployments_GetLogs", "POST", D + "/getLogs", DEPLOYMENT_VERSIONS, "DeploymentLogsRequest",
        {200: "DeploymentLogs"}),
    # The long-running operations' status (Azure-AsyncOperation) and result (Location) resources: ARM's async
    # operation contract, the common types' OperationStatusResult.
    _op("MfeOperationsStatus_Get", "GET", LOC + "/mfeOperationsStatus/[^/]+", ENDPOINT_VERSIONS, None,
        {200: f"{COMMON}#/$defs/OperationStatusResult"}),
    _op("MfeOperationResults_Get", "GET", LOC + "/mfeOperationResults/[^/]+", ENDPOINT_VERSIONS, None,
        {200: None, 202: None, 204: None}),
    # machineLearningServices.json: computes (the Kubernetes compute of an endpoint), usages, VM sizes
    _op("Compute_List", "GET", WS + "/computes", COMPUTE_VERSIONS, None, {200: "PaginatedComputeResourcesList"}),
    _op("Compute_Get", "GET", WS + "/computes/[^/]+", COMPUTE_VERSIONS, None, {200: "ComputeResource"}),
    _op("Compute_CreateOrUpdate", "PUT", WS + "/computes/[^/]+", COMPUTE_VERSIONS, "ComputeResource",
        {200: "ComputeResource", 201: "ComputeResource"}, CREATED),
    _op("Compute_Delete", "DELETE", WS + "/computes/[^/]+", COMPUTE_VERSIONS, None, {200: None, 202: None, 204: None}),
    _op("Usages_List", "GET", LOC + "/usages", COMPUTE_VERSIONS, None, {200: "ListUsagesResult"}),
    _op("VirtualMachineSizes_List", "GET", LOC + "/vmSizes", COMPUTE_VERSIONS, None,
        {200: "VirtualMachineSizeListResult"}),
    # Azure Monitor (Microsoft.Insights 2023-10-01, metrics_API.json): an online endpoint's metrics, as a canary reads
    # them. An extension resource of another provider: its api-versions are not the endpoint's.
    _op("Metrics_List", "GET", E + r"/providers/Microsoft\.Insights/metrics", {"2023-10-01": MONITOR}, None,
        {200: "Response"}),
    # mfe.json: the asset versions a deployment names
    _op("ModelVersions_List", "GET", WS + "/models/[^/]+/versions", {"2023-08-01-preview": V2023_08}, None,
        {200: "ModelVersionResourceArmPaginatedResult"}),
    _op("ModelVersions_Get", "GET", WS + "/models/[^/]+/versions/[^/]+", {"2023-08-01-preview": V2023_08}, None,
        {200: "ModelVersionResource"}),
    _op("ModelVersions_CreateOrUpdate", "PUT", WS + "/models/[^/]+/versions/[^/]+", {"2023-08-01-preview": V2023_08},
        "ModelVersionResource", {200: "ModelVersionResource", 201: "ModelVersionResource"}),
    _op("EnvironmentVersions_List", "GET", WS + "/environments/[^/]+/versions", {"2023-04-01-preview": V2023},
        None, {200: "EnvironmentVersionResourceArmPaginatedResult"}),
    _op("EnvironmentVersions_Get", "GET", WS + "/environments/[^/]+/versions/[^/]+", {"2023-04-01-preview": V2023},
        None, {200: "EnvironmentVersionResource"}),
    _op("EnvironmentVersions_CreateOrUpdate", "PUT", WS + "/environments/[^/]+/versions/[^/]+",
        {"2023-04-01-preview": V2023}, "EnvironmentVersionResource",
        {200: "EnvironmentVersionResource", 201: "EnvironmentVersionResource"}),
    _op("CodeVersions_List", "GET", WS + "/codes/[^/]+/versions", {"2023-04-01": V2023_STABLE}, None,
        {200: "CodeVersionResourceArmPaginatedResult"}),
    _op("CodeVersions_Get", "GET", WS + "/codes/[^/]+/versions/[^/]+", {"2023-04-01": V2023_STABLE}, None,
        {200: "CodeVersionResource"}),
    _op("CodeVersions_CreateOrUpdate", "PUT", WS + "/codes/[^/]+/versions/[^/]+", {"2023-04-01": V2023_STABLE},
        "CodeVersionResource", {200: "CodeVersionResource", 201: "CodeVersionResource"}),
    _op("CodeVersions_CreateOrGetStartPendingUpload", "POST", WS + "/codes/[^/]+/versions/[^/]+/startPendingUpload",
        {"2023-04-01": V2023_STABLE}, "PendingUploadRequestDto", {200: "PendingUploadResponseDto"}),
)  # fmt: skip


def find(method: str, path: str) -> Operation | None:
    for op in OPERATIONS:
        if op.method == method.upper() and op.path.match(path):
            return op
    return None


# ---- the api-versions ARM accepts -------------------------------------------------------------------------------

#: Resource type (as ARM names it in its errors) -> the api-versions the emulator models for it: those of
#: :data:`OPERATIONS` and those the SDKs send for the rest (workspaces, datastores, asset containers, and the v1
#: SDK's computes at 2020-02-02 with its ``computeOperationsStatus``). Azure accepts many more versions; one the
#: emulator does not model is answered as ARM answers a version it does not know.
API_VERSIONS: dict[str, frozenset[str]] = {
    "workspaces": frozenset({"2022-05-01", "2023-08-01-preview", "2024-10-01-preview"}),
    "workspaces/onlineEndpoints": frozenset(ENDPOINT_VERSIONS),
    "workspaces/onlineEndpoints/deployments": frozenset(ENDPOINT_VERSIONS),
    "workspaces/computes": frozenset({"2020-02-02", *COMPUTE_VERSIONS}),
    "workspaces/models": frozenset({"2023-08-01-preview"}),
    "workspaces/models/versions": frozenset({"2023-08-01-preview"}),
    "workspaces/environments": frozenset({"2023-04-01-preview"}),
    "workspaces/environments/versions": frozenset({"2023-04-01-preview"}),
    "workspaces/codes": frozenset({"2023-04-01"}),
    "workspaces/codes/versions": frozenset({"2023-04-01"}),
    "workspaces/datastores": frozenset({"2024-10-01-preview"}),
    "locations/mfeOperationsStatus": frozenset(ENDPOINT_VERSIONS),
    "locations/mfeOperationResults": frozenset(ENDPOINT_VERSIONS),
    "locations/computeOperationsStatus": frozenset({"2020-02-02", *COMPUTE_VERSIONS}),
    "locations/usages": frozenset(COMPUTE_VERSIONS),
    "locations/vmSizes": frozenset(COMPUTE_VERSIONS),
}
_PROVIDER = re.compile(
    r"^/subscriptions/[^/]+(?:/resourceGroups/[^/]+)?/providers/Microsoft\.MachineLearningServices/(?P<rest>.+)$",
    re.IGNORECASE,
)
#: Actions (POST on a resource) are not part of the type.
_ACTIONS = {"listkeys", "regeneratekeys", "token", "getlogs", "startpendingupload", "listsecrets"}


def arm_type(path: str) -> tuple[str, str] | None:
    """(the Microsoft.MachineLearningServices resource type of ``path``, its location segment or "") as ARM names
    it in a NoRegisteredProviderFound error, or None for a path outside the provider. Resource names alternate with
    type names: ``workspaces/ws1/onlineEndpoints/e1/deployments/d1`` is ``workspaces/onlineEndpoints/deployments``;
    ``locations/eastus/usages`` is ``locations/usages``."""
    found = _PROVIDER.match(path)
    if found is None or "/providers/" in found["rest"].lower():  # an extension resource of another provider
        return None
    parts = found["rest"].strip("/").split("/")
    if parts and parts[-1].lower() in _ACTIONS:
        parts = parts[:-1]
    types = parts[0::2]
    location = parts[1] if parts[0].lower() == "locations" and len(parts) > 1 else ""
    known = {k.lower(): k for k in API_VERSIONS}
    name = "/".join(types)
    return known.get(name.lower(), name), location
