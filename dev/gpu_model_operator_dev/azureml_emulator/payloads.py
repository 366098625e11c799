"""JSON documents in the shapes ``azureml-core`` 1.61 reads: cloud metadata, ARM resources and operations.

Why one module: each field here is one the SDK indexes directly (``obj_dict['properties']['resourceId']``,
``content['status']``, ``['properties']['discoveryUrl']``); a missing key is a KeyError inside the SDK, so
the shapes are kept together and commented where a quirk forces them.
"""

from __future__ import annotations

from typing import Any

from .model_store import iso
from .resources import Compute, Operation, Workspace

#: ARM api-version the SDK's compute calls use, echoed in the operation URLs it polls.
MLC_API_VERSION = "2020-02-02"
ARM_PROVIDER = "Microsoft.MachineLearningServices"


def cloud_metadata(base_url: str, storage_suffix: str, name: str = "AzureCloud") -> list[dict[str, Any]]:
    """The ARM ``/metadata/endpoints`` document (a list of clouds) that ``ARM_CLOUD_METADATA_URL`` points at.

    The cloud is named ``AzureCloud`` on purpose: ``ServicePrincipalAuthentication`` and ``Workspace.get``
    default to ``cloud="AzureCloud"``, and a name missing from the list makes the SDK fetch the public cloud
    list from management.azure.com. ``resourceManager`` has no trailing slash: the SDK appends resource ids
    (which start with ``/``) to it by string concatenation.
    """
    return [
        {
            "name": name,
            "portal": base_url,
            "resourceManager": base_url,
            "authentication": {
                "loginEndpoint": base_url,
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "media": base_url,
            "graphAudience": "https://graph.windows.net/",
            "graph": base_url,
            "batch": "https://batch.core.windows.net/",
            "gallery": base_url,
            "sqlManagement": base_url,
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "vmImageAliasDoc": f"{base_url}/aliases.json",
            "suffixes": {
                "storage": storage_suffix,
                "keyVaultDns": f"vault.{storage_suffix}",
                "sqlServerHostname": f"database.{storage_suffix}",
                "acrLoginServer": f"azurecr.{storage_suffix}",
                "azureDataLakeStoreFileSystem": f"azuredatalakestore.{storage_suffix}",
                "azureDataLakeAnalyticsCatalogAndJob": f"azuredatalakeanalytics.{storage_suffix}",
            },
        }
    ]


def subscriptions(ids: list[str], tenant_id: str) -> dict[str, Any]:
    return {
        "value": [
            {
                "id": f"/subscriptions/{sub}",
                "subscriptionId": sub,
                "tenantId": tenant_id,
                "displayName": f"Emulated subscription {sub[-4:]}",
                "state": "Enabled",
                "subscriptionPolicies": {
                    "locationPlacementId": "Public_2014-09-01",
                    "quotaId": "PayAsYouGo_2014-09-01",
                    "spendingLimit": "Off",
                },
                "authorizationSource": "RoleBased",
            }
            for sub in ids
        ],
        "count": {"type": "Total", "value": len(ids)},
    }


def workspace_id_path(ws: Workspace) -> str:
    return (
        f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/"
        f"{ARM_PROVIDER}/workspaces/{ws.name}"
    )


def workspace(ws: Workspace, base_url: str, storage_account: str) -> dict[str, Any]:
    rg_id = f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers"
    return {
        "id": workspace_id_path(ws),
        "name": ws.name,
        "type": f"{ARM_PROVIDER}/workspaces",
        "location": ws.location,
        "tags": {},
        "identity": {
            "type": "SystemAssigned",
            "principalId": "00000000-0000-0000-0000-00000000c0de",
            "tenantId": "00000000-0000-0000-0000-0000000000aa",
        },
        "sku": {"name": "Basic", "tier": "Basic"},
        "properties": {
            "workspaceId": ws.workspace_id,
            "friendlyName": ws.name,
            "description": "",
            "creationTime": iso(),
            "provisioningState": "Succeeded",
            "storageAccount": f"{rg_id}/Microsoft.Storage/storageAccounts/{storage_account}",
            "keyVault": f"{rg_id}/Microsoft.Keyvault/vaults/{ws.name}kv",
            "applicationInsights": f"{rg_id}/microsoft.insights/components/{ws.name}ai",
            "containerRegistry": None,
            # The SDK calls this URL and takes every service host (api, history, modelmanagement) from it.
            "discoveryUrl": f"{base_url}/discovery/workspaces/{ws.workspace_id}",
            "hbiWorkspace": False,
            "allowPublicAccessWhenBehindVnet": False,
            "v1LegacyMode": False,
            "imageBuildCompute": None,
            "serviceProvisionedResourceGroup": None,
            "privateEndpointConnections": None,
            "storageHnsEnabled": False,
            "publicNetworkAccess": "Enabled",
        },
    }


def discovery(base_url: str) -> dict[str, str]:
    """Every Azure ML data-plane service lives on the emulator's one host."""
    keys = (
        "api",
        "catalog",
        "experimentation",
        "gallery",
        "history",
        "hyperdrive",
        "labeling",
        "modelmanagement",
        "pipelines",
        "studio",
    )
    return {key: base_url for key in keys}


def compute(ws: Workspace, c: Compute) -> dict[str, Any]:
    """The compute resource as both ARM (PUT answer) and the workspace API (``AksCompute._initialize``) read it."""
    return {
        "id": f"{workspace_id_path(ws)}/computes/{c.name}",
        "name": c.name,
        "type": f"{ARM_PROVIDER}/workspaces/computes",
        "location": c.location,
        "tags": c.tags or None,
        "properties": {
            "computeType": "AKS",
            "computeLocation": c.location,
            "description": c.description,
            "resourceId": c.resource_id,
            "createdOn": iso(c.created),
            "modifiedOn": iso(c.modified),
            "provisioningState": c.state,
            "provisioningErrors": c.errors,
            "isAttachedCompute": c.attached,
            "disableLocalAuth": False,
            "properties": {
                "agentVmSize": c.vm_size,
                "agentCount": c.agent_count,
                "clusterPurpose": c.cluster_purpose,
                "clusterFqdn": f"{c.name}-dns.hcp.{c.location}.azmk8s.io",
                "loadBalancerType": c.load_balancer_type,
                "loadBalancerSubnet": c.load_balancer_subnet,
                "systemServices": [
                    {"systemServiceType": "ScoringFrontEnd", "publicIpAddress": "127.0.0.1", "version": "1.0"}
                ],
                "aksNetworkingConfiguration": None,
            },
        },
    }


def compute_operation_url(base_url: str, ws: Workspace, op: Operation) -> str:
    """``Azure-AsyncOperation``: carries api-version itself, so the SDK adds none when polling."""
    return (
        f"{base_url}/subscriptions/{ws.subscription_id}/providers/{ARM_PROVIDER}/locations/{op.location}/"
        f"computeOperationsStatus/{op.id}?api-version={MLC_API_VERSION}&type=async"
    )


def compute_operation(op: Operation) -> dict[str, Any]:
    """ARM async status: ``InProgress`` until settled. The SDK formats ``error.statusCode``/``error.message``."""
    status = {"Running": "InProgress", "Cancelled": "Canceled", "TimedOut": "Failed"}.get(op.state, op.state)
    body: dict[str, Any] = {"id": op.id, "name": op.id, "status": status, "startTime": iso(op.created)}
    if op.ended is not None:
        body["endTime"] = iso(op.ended)
    if op.error is not None and op.state not in ("Running", "Succeeded"):
        body["error"] = dict(op.error or {}, statusCode=(op.error or {}).get("statusCode", 400))
    return body


def mms_operation(op: Operation, mms_base: str) -> dict[str, Any]:
    """MMS operation: ``state`` is one of Running/Succeeded/Failed/Cancelled/TimedOut (the SDK's terminal set)."""
    body: dict[str, Any] = {
        "id": op.id,
        "operationType": op.op_type,
        "state": op.state,
        "createdTime": iso(op.created),
        "resourceLocation": f"{mms_base}/services/{op.target}",
        "operationDetails": {"subOperationType": "DeployService" if op.op_type != "Delete" else "DeleteService"},
        "parentRequestId": op.id,
        "error": op.error if op.state not in ("Running", "Succeeded") else None,
    }
    if op.ended is not None:
        body["endTime"] = iso(op.ended)
    return body
