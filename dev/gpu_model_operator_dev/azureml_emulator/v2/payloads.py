"""JSON documents in the shapes ``azure-ai-ml`` reads: online endpoints and deployments, Kubernetes computes,
asset versions, datastores, usages, VM sizes and ARM operation status.

Why these fields: each is one the SDK's models (``_restclient/arm_ml_service/models``) deserialize and its
entities read; e.g. ``OnlineEndpoint._from_rest_object`` merges ``properties.properties`` into a dict when
``systemData`` is present (so it must be an object, never null), tells Kubernetes endpoints from managed ones by
``properties.compute``, and ``OnlineDeployment._from_rest_object`` dispatches on
``properties.endpointComputeType``. Asset ids must be full ARM ids: the SDK parses name and version out of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model_store import iso
from ..resources import Operation, WsKey
from .model import AssetVersion, KubernetesCompute, OnlineDeployment, OnlineEndpoint
from .skus import SKUS
from .store_errors import PROVIDER

if TYPE_CHECKING:
    from ..state import EmulatorState

#: The host of managed endpoints' scoring URIs: ``<endpoint>.<region>.inference.ml.azure.com``
#: (how-to-deploy-online-endpoints, "scoring_uri").
INFERENCE_SUFFIX = "inference.ml.azure.com"


def system_data(created: float, modified: float) -> dict[str, Any]:
    return {
        "createdAt": iso(created),
        "createdBy": "emulator",
        "createdByType": "Application",
        "lastModifiedAt": iso(modified),
        "lastModifiedBy": "emulator",
        "lastModifiedByType": "Application",
    }


def workspace_id(state: EmulatorState, ws: WsKey) -> str:
    """The workspace's ARM id in the case it was created with (ARM echoes the stored case)."""
    found = state.workspaces.get(ws)
    sub, rg, name = (found.subscription_id, found.resource_group, found.name) if found else ws
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/workspaces/{name}"


def scoring_uri(state: EmulatorState, e: OnlineEndpoint, route: str = "score") -> str:
    """Managed: Azure's host name (the client's proxy tunnels it here). Kubernetes: the inference router's own
    address and ``/api/v1/endpoint/<name>/score`` (how-to-attach-kubernetes-to-workspace, azureml-fe)."""
    if e.compute:
        return f"{state.base_url}/api/v1/endpoint/{e.name}/{route}"
    return f"https://{e.name.lower()}.{e.location.lower()}.{INFERENCE_SUFFIX}/{route}"


def endpoint(state: EmulatorState, e: OnlineEndpoint) -> dict[str, Any]:
    props = {
        "authMode": e.props.get("authMode"),
        "description": e.props.get("description"),
        "properties": {
            **dict(e.props.get("properties") or {}),
            "azureml.onlineendpointid": f"{workspace_id(state, e.ws)}/onlineEndpoints/{e.name}",
        },
        "scoringUri": scoring_uri(state, e),
        "swaggerUri": scoring_uri(state, e, "swagger.json"),
        "traffic": e.traffic,
        "mirrorTraffic": dict(e.props.get("mirrorTraffic") or {}),
        "provisioningState": e.state,
        "publicNetworkAccess": e.props.get("publicNetworkAccess") or "Enabled",
        "compute": e.compute,
    }
    found = {
        "id": f"{workspace_id(state, e.ws)}/onlineEndpoints/{e.name}",
        "name": e.name,
        "type": f"{PROVIDER}/workspaces/onlineEndpoints",
        "location": e.location,
        "tags": e.tags,
        "identity": e.identity,
        "properties": props,
        "systemData": system_data(e.created, e.modified),
    }
    if e.kind:  # a string when present (the specification's ``kind`` is not nullable)
        found["kind"] = e.kind
    return found


def deployment(state: EmulatorState, d: OnlineDeployment) -> dict[str, Any]:
    props = {**d.props, "provisioningState": d.state}
    props.setdefault("properties", {})
    found = {
        "id": f"{workspace_id(state, d.ws)}/onlineEndpoints/{d.endpoint}/deployments/{d.name}",
        "name": d.name,
        "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
        "location": d.location,
        "tags": d.tags,
        "sku": _sku(d),
        "properties": props,
        "systemData": system_data(d.created, d.modified),
    }
    if d.kind:
        found["kind"] = d.kind
    return found


def _sku(d: OnlineDeployment) -> dict[str, Any]:
    """The deployment's ``sku`` (common types' Sku: ``name`` required, ``tier`` one of its enum when given)."""
    found: dict[str, Any] = {"name": d.sku.get("name") or "Default", "capacity": d.instance_count}
    if d.sku.get("tier"):
        found["tier"] = d.sku["tier"]
    return found


def quantities(instance_types: dict[str, Any]) -> dict[str, Any]:
    """Instance types as the compute answers them: requests and limits are Kubernetes quantities written as strings
    (InstanceResourceSchema's values are strings), whatever number a cluster's definition used."""
    found = {}
    for name, spec in instance_types.items():
        resources = dict((spec or {}).get("resources") or {})
        found[name] = {
            **dict(spec or {}),
            "resources": {
                part: {k: str(v) for k, v in dict(values or {}).items()} for part, values in resources.items()
            },
        }
    return found


def kube_compute(state: EmulatorState, c: KubernetesCompute, instance_types: dict[str, Any]) -> dict[str, Any]:
    """A ``Kubernetes`` compute; the extension's connection strings are secrets and never returned on GET. What the
    emulator does not know (the identity of an attach that gave none, the virtual cluster) is left out rather than
    null: the specification does not let those fields be null."""
    found: dict[str, Any] = {
        "id": f"{workspace_id(state, c.ws)}/computes/{c.name}",
        "name": c.name,
        "type": f"{PROVIDER}/workspaces/computes",
        "location": c.location,
        "tags": None,
        "properties": {
            "computeType": "Kubernetes",
            "computeLocation": c.location,
            "description": c.description,
            "resourceId": c.resource_id,
            "createdOn": iso(c.created),
            "modifiedOn": iso(c.modified),
            "provisioningState": c.state,
            "provisioningErrors": None,
            "isAttachedCompute": True,
            "disableLocalAuth": False,
            "properties": {
                "namespace": c.namespace,
                "defaultInstanceType": c.default_instance_type,
                "instanceTypes": quantities(instance_types),
                "extensionInstanceReleaseTrain": "stable",
                "relayConnectionString": None,
                "serviceBusConnectionString": None,
                "extensionPrincipalId": None,
            },
        },
    }
    if c.identity:
        found["identity"] = c.identity
    return found


def asset_version(state: EmulatorState, ws: WsKey, a: AssetVersion) -> dict[str, Any]:
    props = {**a.props, "provisioningState": "Succeeded"}
    props.setdefault("properties", {})
    props.setdefault("tags", {})
    props.setdefault("isArchived", False)
    props.setdefault("isAnonymous", False)
    if a.kind == "models":
        props.setdefault("flavors", {})  # Model._from_rest_object iterates it
    return {
        "id": f"{workspace_id(state, ws)}/{a.kind}/{a.name}/versions/{a.version}",
        "name": a.version,
        "type": f"{PROVIDER}/workspaces/{a.kind}/versions",
        "properties": props,
        "systemData": system_data(a.created, a.modified),
    }


def asset_container(state: EmulatorState, ws: WsKey, kind: str, name: str, latest: str | None) -> dict[str, Any]:
    return {
        "id": f"{workspace_id(state, ws)}/{kind}/{name}",
        "name": name,
        "type": f"{PROVIDER}/workspaces/{kind}",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "latestVersion": latest,
            "nextVersion": str(int(latest) + 1) if latest and latest.isdigit() else "1",
            "provisioningState": "Succeeded",
        },
    }


def datastore(state: EmulatorState, ws: WsKey) -> dict[str, Any]:
    """The workspace's default blob datastore on the emulated storage account, with SAS credentials.

    Why SAS and not an account key: azure-storage-blob finds the account name for shared-key signing only in
    ``<account>.blob.core.<suffix>`` host names, which the emulated ``<account>.blob.<suffix>`` is not; a SAS
    needs no account name. Both are datastore credential types Azure offers.
    """
    found = state.workspaces.get(ws)
    container = f"azureml-blobstore-{found.workspace_id if found else 'default'}"
    return {
        "id": f"{workspace_id(state, ws)}/datastores/workspaceblobstore",
        "name": "workspaceblobstore",
        "type": f"{PROVIDER}/workspaces/datastores",
        "properties": {
            "datastoreType": "AzureBlob",
            "accountName": state.config.storage_account,
            "containerName": container,
            "endpoint": state.config.storage_suffix,
            "protocol": "https",
            "credentials": {"credentialsType": "Sas"},
            "isDefault": True,
            "serviceDataAccessAuthIdentity": "None",
            "description": None,
            "tags": {},
            "properties": {},
        },
    }


def operation_url(state: EmulatorState, ws: WsKey, op: Operation, kind: str, api_version: str) -> str:
    """``mfeOperationsStatus`` (Azure-AsyncOperation) and ``mfeOperationResults`` (Location): the operation
    resources Azure ML's management front end hands out for online endpoint operations."""
    found = state.workspaces.get(ws)
    sub = found.subscription_id if found else ws[0]
    return (
        f"{state.base_url}/subscriptions/{sub}/providers/{PROVIDER}/locations/{op.location}/{kind}/{op.id}"
        f"?api-version={api_version}"
    )


def operation_status(op: Operation) -> dict[str, Any]:
    """ARM's async operation status: ``InProgress`` then ``Succeeded`` / ``Failed`` / ``Canceled`` with ``error``."""
    status = {"Running": "InProgress", "Cancelled": "Canceled", "TimedOut": "Failed"}.get(op.state, op.state)
    body: dict[str, Any] = {"id": op.id, "name": op.id, "status": status, "startTime": iso(op.created)}
    if op.ended is not None:
        body["endTime"] = iso(op.ended)
    if op.error is not None and op.state not in ("Running", "Succeeded"):
        body["error"] = {
            "code": op.error.get("code"),
            "message": op.error.get("message"),
            **({"details": op.error["details"]} if op.error.get("details") else {}),
        }
    return body


def vm_sizes() -> dict[str, Any]:
    """Current (not retired) sizes; ``supportedComputeTypes`` lets ``list_sizes(compute_type=...)`` filter. "MIR" is
    how the specification's example names managed online endpoints (preview/2023-08-01-preview/examples/
    VirtualMachineSize/list.json, commit b2f7419737799f321a271e9327d0b18417eed538); only the sizes the managed SKU
    list names carry it."""
    return {
        "value": [
            {
                "name": s.name,
                "family": s.family,
                "vCPUs": s.vcpus,
                "gpus": s.gpus,
                "osVhdSizeMB": 1047552,
                "maxResourceVolumeMB": 65536 * max(1, s.vcpus // 4),
                "memoryGB": s.memory_gb,
                "lowPriorityCapable": True,
                "premiumIO": True,
                "supportedComputeTypes": ["AmlCompute", "ComputeInstance"] + (["MIR"] if s.managed_online else []),
            }
            for s in SKUS.values()
            if not s.retired
        ]
    }
