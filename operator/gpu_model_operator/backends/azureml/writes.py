"""The backend's writes: each function is one blocking call to Azure, run in a pool thread by ``backend``.

Services stay on azureml-core's public calls (only the reads they start with go through ``reads``). Ownership is
recorded at Azure: computes carry tags and a description naming the GpuModelDeployment, which the SDK's
provisioning and attach configurations cannot carry (and its payload builders are private), so a compute's PUT is
sent through the ARM client (:class:`..azure.arm.Arm`) with the body azureml-core 1.61 builds and the two fields
added; services carry ``gpumodel.io/owner`` and ``gpumodel.io/fingerprint`` tags.
"""

from __future__ import annotations

import tempfile
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ...models import Provision
from ..azure.arm import Arm
from ..base import TransientBackendError, is_legacy_tag_of
from . import sdk
from .reads import COMPUTE_API_VERSION, Reads

MANAGER = "gpu-model-operator"
#: ARM tag names may not contain "/", so the compute's tags differ from the services' (MMS allows it).
COMPUTE_TAGS = ("managed-by", "gpumodel-owner")
FINGERPRINT_TAG, OWNER_TAG = "gpumodel.io/fingerprint", "gpumodel.io/owner"
#: ``InferenceConfig`` checks the entry script's syntax with ``ast.parse``, which is not thread-safe in CPython
#: 3.11: deployments started together in the pool failed at random with "AST constructor recursion depth
#: mismatch" (a UserError, so a permanent failure of a valid script). Built one at a time, it costs little.
_PARSE_LOCK = threading.Lock()


def compute_owner(tags: dict[str, str] | None, description: str | None) -> str | None:
    """The owner a compute's tags name (``namespace/name/uid``), or its description where ARM kept no tags; None for
    a compute the operator did not tag. ``managed-by`` alone proves nothing: a compute made for another resource (an
    earlier one of this name, kept by deletionPolicy Retain; another cluster's) carries it too."""
    tags = tags or {}
    if tags.get(COMPUTE_TAGS[0]) == MANAGER and tags.get(COMPUTE_TAGS[1]):
        return tags[COMPUTE_TAGS[1]]
    prefix = f"managed-by {MANAGER} owner="
    text = description or ""
    return text.removeprefix(prefix).split()[0] if text.startswith(prefix) and text != prefix else None


def owns(found_owner: str | None, owner: str) -> bool:
    """Whether a compute whose tags name ``found_owner`` is the resource ``owner``'s by its uid (a tag from before
    tags carried the uid is judged by the resource's own record, in the core)."""
    return found_owner == owner


def _mark(payload: dict[str, Any], owner: str) -> dict[str, Any]:
    """The compute's PUT body with the operator's ownership: ARM tags, and the description as a fallback."""
    payload["tags"] = {**(payload.get("tags") or {}), COMPUTE_TAGS[0]: MANAGER, COMPUTE_TAGS[1]: owner}
    payload.setdefault("properties", {})["description"] = f"managed-by {MANAGER} owner={owner}"
    return payload


def _compute_path(ws: Any, name: str) -> str:
    """The compute's ARM id, each segment quoted."""
    parts = ["subscriptions", ws.subscription_id, "resourceGroups", ws.resource_group, "providers"]
    parts += ["Microsoft.MachineLearningServices", "workspaces", ws.name, "computes", name]
    return "/" + "/".join(urllib.parse.quote(str(part), safe="") for part in parts)


def attach_compute(arm: Arm, ws: Any, name: str, resource_group: str, cluster: str, owner: str) -> None:
    """The PUT of ``ComputeTarget.attach(ws, name, AksCompute.attach_configuration(resource_group, cluster))``,
    with the same body azureml-core 1.61 builds (its AKS template with what an attach leaves out dropped)."""
    resource_id = (
        f"/subscriptions/{ws.subscription_id}/resourcegroups/{resource_group}"
        f"/providers/Microsoft.ContainerService/managedClusters/{cluster}"
    )
    properties = {"loadBalancerType": "PublicIp", "loadBalancerSubnet": None}
    body = {"location": ws.location, "properties": {"computeType": "AKS", "resourceId": resource_id}}
    body["properties"]["properties"] = properties
    arm.send("PUT", _compute_path(ws, name), COMPUTE_API_VERSION, _mark(body, owner), ok=(200, 201, 202))


def provision_compute(arm: Arm, ws: Any, name: str, provision: Provision, owner: str) -> None:
    """The PUT of ``ComputeTarget.create(ws, name, AksCompute.provisioning_configuration(...))`` for an agent
    count, VM size, location and cluster purpose, with the same body azureml-core 1.61 builds."""
    properties: dict[str, Any] = {"agentCount": provision.agent_count, "agentVmSize": provision.vm_size}
    if provision.cluster_purpose.value:
        properties["clusterPurpose"] = provision.cluster_purpose.value
    compute: dict[str, Any] = {"computeType": "AKS", "properties": properties}
    if provision.location:
        compute["computeLocation"] = provision.location
    body = {"location": ws.location, "properties": compute}
    arm.send("PUT", _compute_path(ws, name), COMPUTE_API_VERSION, _mark(body, owner), ok=(200, 201, 202))


def delete_compute(reads: Reads, ws: Any, auth: Any, name: str, owner: str, take_over: bool) -> None:
    """Start deleting a provisioned cluster, or detach an attached one; gone or going already is success. Ownership
    is read again at the write: the core decided on its pass's observation, and the compute may have been deleted
    and made again for another resource since (its owner tag says whose it is)."""
    found = reads.compute(ws, auth, name)
    if found is None or str(found.provisioning_state).lower() == "deleting":
        return
    tagged = compute_owner(found.tags, found.description)
    if not take_over and not owns(tagged, owner) and not is_legacy_tag_of(tagged, owner):
        raise TransientBackendError(
            f"not deleting compute {name}: it is not tagged as this resource's (owner {tagged or 'none'}); "
            "the next pass observes it"
        )
    if found.is_attached:
        found.detach()  # the AKS cluster is someone else's: only the workspace's link to it goes
    else:
        found.delete()


def delete_service(reads: Reads, ws: Any, auth: Any, name: str, timeout: float) -> None:
    """The DELETE ``Webservice.delete()`` sends, without its wait: it then polls the operation every 5 s until it
    ends, holding a pool thread for as long as AKS takes (minutes), so a few deletions would starve every other
    call. A fresh connection, as the SDK's; 204 and 404 mean gone already."""
    url = f"{reads.endpoints(ws).mms}/services/{name}"
    response = requests.delete(url, headers=auth.get_authentication_header(), timeout=timeout)
    if response.status_code not in (200, 202, 204, 404):
        raise requests.HTTPError(f"Response Code: {response.status_code}: {response.text}", response=response)


def scale_service(reads: Reads, ws: Any, auth: Any, name: str, replicas: int) -> None:
    service = reads.service(ws, auth, name)
    if service is None:
        missing = f"WebserviceNotFound: Webservice with name {name} not found in provided workspace"
        raise sdk.WebserviceException(missing)
    service.update(num_replicas=replicas)


@dataclass
class Deployment:
    """What one deploy sends: the service, its model and environment, its resources and the operator's tags."""

    name: str
    compute: str
    entry_script_name: str
    entry_script: str
    conda_spec: str
    base_image: str
    replicas: int
    tags: dict[str, str]
    resources: dict[str, Any]
    owner: str
    take_over: bool


def deploy(reads: Reads, ws: Any, auth: Any, d: Deployment, model: Any) -> None:
    """Create (``Model.deploy``) or redeploy in place (``service.update``); returns once Azure accepted it."""
    compute = reads.compute(ws, auth, d.compute)
    if compute is None:
        raise sdk.ComputeTargetException(
            f"ComputeTargetNotFound: Compute Target with name {d.compute} not found in provided workspace"
        )
    existing = reads.service(ws, auth, d.name)
    with tempfile.TemporaryDirectory(prefix="gmo-deploy-") as tmp:  # the SDK uploads files, not text
        entry = Path(tmp) / d.entry_script_name
        entry.write_text(d.entry_script)
        conda = Path(tmp) / "conda.yml"
        conda.write_text(d.conda_spec)
        env = sdk.Environment.from_conda_specification(f"{d.name}-env", str(conda))
        env.docker.base_image = d.base_image
        with _PARSE_LOCK:  # InferenceConfig ast.parse()s the entry script, see _PARSE_LOCK
            config = sdk.InferenceConfig(entry_script=str(entry), environment=env)
        if existing is not None:
            # Never replace what is not ours: the reconciler decided on an observation, and a service of this
            # name may have appeared since (its owner tag says whose it is).
            owner = (existing.tags or {}).get(OWNER_TAG)
            # A tag from before tags carried the uid: the reconciler decided from this resource's own record.
            if owner != d.owner and not is_legacy_tag_of(owner, d.owner) and not d.take_over:
                raise TransientBackendError(f"service {d.name} appeared meanwhile (owner {owner or 'none'})")
        if isinstance(existing, sdk.AksWebservice) and existing.compute_name == compute.name:
            existing.update(
                models=[model], inference_config=config, num_replicas=d.replicas, tags=d.tags, **d.resources
            )
            return
        deployment = sdk.AksWebservice.deploy_configuration(
            autoscale_enabled=False, num_replicas=d.replicas, tags=d.tags, **d.resources
        )
        # Overwrite only a service that is ours (or taken over) and must move to this compute. Otherwise the SDK
        # asks Azure whether the name is free first, and Azure refuses a create over an existing service, so a
        # service made meanwhile by someone else is never replaced.
        overwrite = existing is not None
        sdk.Model.deploy(ws, d.name, [model], config, deployment, deployment_target=compute, overwrite=overwrite)


def appeared_is_transient(deploy: Callable[[], None]) -> Callable[[], None]:
    """A create refused because the name is taken is no failure of the deployment: the next pass observes the
    service that took it and decides (ours, another resource's, or someone else's)."""

    def wrapped() -> None:
        try:
            deploy()
        except Exception as exc:
            if "already exists" in str(exc) or "Response Code: 409" in str(exc):
                raise TransientBackendError(f"deploying: the service name was taken meanwhile ({exc})") from None
            raise

    return wrapped
