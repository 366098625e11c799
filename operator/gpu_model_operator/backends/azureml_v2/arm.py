"""The azure-ai-ml calls the backend makes, each a blocking function for the session's pool, and Azure's answers
turned into :mod:`.rollout`'s views.

Reads and writes go through the SDK's generated ARM operations (``OnlineEndpoints``, ``OnlineDeployments``,
``Compute``) with plain JSON bodies in Azure's REST shape, so what is sent is what the REST reference documents
(and what ``azure-ai-ml`` itself sends, see the emulator's reference trace); writes pass ``polling=False`` (see
:mod:`.session`). A missing resource reads as None, never as an error. Assets use the public operations
(``environments``, ``models``) and the workspace's code operations (``MLClient._code``, which uploads the entry
script to the workspace's datastore as the SDK's own deployments do).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from .errors import operation_error
from .rollout import DeploymentView, EndpointView
from .session import Workspace

#: ARM tag names may not contain "/" (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources,
#: "Limitations"), so these differ from the v1 services' tags.
MANAGED_BY, MANAGER = "managed-by", "gpu-model-operator"
OWNER_TAG, FINGERPRINT_TAG = "gpumodel-owner", "gpumodel-fingerprint"


def _ops(ws: Workspace) -> tuple[Any, Any]:
    """The generated endpoint and deployment operations, and their client's keyword arguments."""
    endpoints = ws.client.online_endpoints
    return endpoints._online_operation, ws.client.online_deployments._online_deployment


def _kwargs(ws: Workspace) -> dict[str, Any]:
    return {**ws.scope(), **ws.client.online_endpoints._init_kwargs}


def _dkwargs(ws: Workspace) -> dict[str, Any]:
    return {**ws.scope(), **ws.client.online_deployments._init_kwargs}


def get_endpoint(ws: Workspace, name: str) -> dict[str, Any] | None:
    try:
        return dict(_ops(ws)[0].get(endpoint_name=name, **_kwargs(ws)).as_dict())
    except ResourceNotFoundError:
        return None


def list_endpoints(ws: Workspace) -> list[dict[str, Any]]:
    return [dict(e.as_dict()) for e in _ops(ws)[0].list(**_kwargs(ws))]


def list_deployments(ws: Workspace, endpoint: str) -> list[dict[str, Any]]:
    try:
        return [dict(d.as_dict()) for d in _ops(ws)[1].list(endpoint_name=endpoint, **_dkwargs(ws))]
    except ResourceNotFoundError:
        return []


def put_endpoint(ws: Workspace, name: str, body: dict[str, Any]) -> None:
    _ops(ws)[0].begin_create_or_update(endpoint_name=name, body=body, polling=False, **_kwargs(ws))


def delete_endpoint(ws: Workspace, name: str) -> None:
    try:
        _ops(ws)[0].begin_delete(endpoint_name=name, polling=False, **_kwargs(ws))
    except ResourceNotFoundError:
        return


def put_deployment(ws: Workspace, endpoint: str, name: str, body: dict[str, Any]) -> None:
    ops = _ops(ws)[1]
    ops.begin_create_or_update(endpoint_name=endpoint, deployment_name=name, body=body, polling=False, **_dkwargs(ws))


def scale_deployment(
    ws: Workspace, endpoint: str, name: str, instances: int, tags: Mapping[str, str] | None = None
) -> None:
    """A PATCH of the instance count (and the tags, whole, where given) alone: the deployment keeps what it runs
    (an old one being made room beside keeps its model, code and environment)."""
    body: dict[str, Any] = {"sku": {"capacity": instances}}
    if tags is not None:
        body["tags"] = dict(tags)
    _ops(ws)[1].begin_update(endpoint_name=endpoint, deployment_name=name, body=body, polling=False, **_dkwargs(ws))


def delete_deployment(ws: Workspace, endpoint: str, name: str) -> None:
    try:
        _ops(ws)[1].begin_delete(endpoint_name=endpoint, deployment_name=name, polling=False, **_dkwargs(ws))
    except ResourceNotFoundError:
        return


def list_keys(ws: Workspace, endpoint: str) -> tuple[str, str]:
    keys = _ops(ws)[0].list_keys(endpoint_name=endpoint, **_kwargs(ws)).as_dict()
    return str(keys.get("primaryKey") or ""), str(keys.get("secondaryKey") or "")


def failure_logs(ws: Workspace, endpoint: str, deployment: str, lines: int = 40) -> str:
    """Why a deployment failed, from its inference server's console (``getLogs``): Azure's GET of a failed
    deployment says Failed and nothing more. The lines naming an error, else the last few."""
    text = str(ws.client.online_deployments.get_logs(name=deployment, endpoint_name=endpoint, lines=lines) or "")
    found = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in found if "error" in ln.lower() or "traceback" in ln.lower()]
    return " | ".join((errors or found)[-3:])[:600]


def get_compute(ws: Workspace, name: str) -> dict[str, Any] | None:
    ops = ws.client.compute
    try:
        return dict(ops._operation.get(ws.resource_group, ws.name, name, **ops._init_kwargs).as_dict())
    except ResourceNotFoundError:
        return None


def vm_families(ws: Workspace) -> dict[str, tuple[str, int]]:
    """Lower-case VM size -> (quota family, vCPUs), from the region's size list (``list_sizes``)."""
    sizes = ws.client.compute.list_sizes(location=ws.location)
    return {str(vars(s)["name"]).lower(): (str(vars(s)["family"]), int(vars(s)["vCPUs"])) for s in sizes}


def family_usage(ws: Workspace, family: str) -> tuple[int, int]:
    """(vCPUs used, limit) of a quota family in the workspace's region; (0, 0) where Azure lists none.
    The usage entities copy the REST model's dict: the wire names are their attributes."""
    for usage in ws.client.compute.list_usage(location=ws.location):
        fields = vars(usage)
        if str((fields.get("name") or {}).get("value", "")).lower() == family.lower():
            return int(fields.get("currentValue") or 0), int(fields.get("limit") or 0)
    return 0, 0


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
    refuses another upload under the same version), and its name carries the script's fingerprint."""
    from azure.ai.ml.entities._assets import Code

    codes = ws.client._code
    try:
        return str(codes.get(name, version).id)
    except ResourceNotFoundError:
        pass
    with tempfile.TemporaryDirectory(prefix="gmo-code-") as tmp:
        (Path(tmp) / filename).write_text(script)
        return str(codes.create_or_update(Code(name=name, version=version, path=tmp)).id)


# ---- Azure's answers as views ---------------------------------------------------------------------------------


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource.get("properties") or {}


def owner_of(endpoint: Mapping[str, Any]) -> str | None:
    """ "namespace/name" of the GpuModelDeployment the endpoint's tags name, or None (not the operator's)."""
    tags = endpoint.get("tags") or {}
    owner = tags.get(OWNER_TAG) if tags.get(MANAGED_BY) == MANAGER else None
    return str(owner) if owner else None


def endpoint_view(endpoint: Mapping[str, Any], deployments: list[dict[str, Any]]) -> EndpointView:
    props = _props(endpoint)
    return EndpointView(
        name=str(endpoint.get("name")),
        state=str(props.get("provisioningState") or "Succeeded"),
        owner=owner_of(endpoint),
        scoring_uri=props.get("scoringUri"),
        traffic={str(k): int(v) for k, v in (props.get("traffic") or {}).items()},
        deployments=tuple(deployment_view(d) for d in deployments),
        error=operation_error(props.get("error")) if props.get("error") else "",
    )


def deployment_view(deployment: Mapping[str, Any]) -> DeploymentView:
    props, sku = _props(deployment), deployment.get("sku") or {}
    error = props.get("error") or props.get("provisioningErrors")
    return DeploymentView(
        name=str(deployment.get("name")),
        state=str(props.get("provisioningState") or "Succeeded"),
        instance_count=int(sku.get("capacity") or 1),
        instance_type=props.get("instanceType"),
        error=operation_error(error) if error else "",
        tags={str(k): str(v) for k, v in (deployment.get("tags") or {}).items()},
    )


def compute_of(endpoint: Mapping[str, Any]) -> str:
    """The compute (ARM id, lower case) a Kubernetes endpoint runs on; "" for a managed one."""
    return str(_props(endpoint).get("compute") or "").lower()


#: What Azure sets on an endpoint and ignores or refuses in a PUT: the ARM envelope and the server's properties.
READ_ONLY = ("id", "name", "type", "systemData", "etag")
READ_ONLY_PROPERTIES = ("provisioningState", "scoringUri", "swaggerUri")


def endpoint_update(endpoint: Mapping[str, Any], owner: str, traffic: Mapping[str, int] | None) -> dict[str, Any]:
    """The PUT body that changes an endpoint's traffic split (or sends a failed endpoint again): the endpoint
    as read, whole, with the split and the operator's tags. ARM's PUT replaces the resource, so anything left
    out goes back to Azure's default: a private endpoint (``publicNetworkAccess: Disabled``) would turn public,
    mirrored traffic stop, a user-assigned identity be dropped. The SDK's models keep the properties they do not
    know (they are mappings of the wire's JSON), so what another tool set comes back as it was read. Only what
    the server owns is left out (the identity's principal and tenant among it)."""
    body = {k: v for k, v in endpoint.items() if k not in READ_ONLY and v is not None}
    props = {k: v for k, v in _props(endpoint).items() if k not in READ_ONLY_PROPERTIES and v is not None}
    current = {str(k): int(v) for k, v in (props.get("traffic") or {}).items() if int(v)}
    props["traffic"] = dict(traffic) if traffic is not None else current
    body["properties"] = props
    body["tags"] = tags(owner, endpoint.get("tags"))
    identity = dict(endpoint.get("identity") or {})
    if identity:
        identity = {k: v for k, v in identity.items() if k not in ("principalId", "tenantId")}
        if identity.get("userAssignedIdentities"):
            identity["userAssignedIdentities"] = {key: {} for key in identity["userAssignedIdentities"]}
        body["identity"] = identity
    return body


def tags(owner: str, existing: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**dict(existing or {}), MANAGED_BY: MANAGER, OWNER_TAG: owner}
