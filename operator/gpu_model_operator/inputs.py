"""A pass's inputs: the resource as kopf gives it, and what its spec points to in its own namespace (the source
ConfigMap, the credentials Secret), resolved into the backend's :class:`~.backends.base.DeploymentInputs`.

Everything a user can get wrong here is an :class:`InputError` with a reason and a message that says what to fix;
the core turns it into a condition and a Warning like any other problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import conditions as c
from . import models
from .annotations import ABORT, POLICY_DETACH, POLICY_MANAGE, PROMOTE, RECONCILE_POLICY, RETRY_NOW, TAKE_OVER
from .backends.base import DeploymentInputs, SpecT, owner_id
from .kube import KubeClient
from .models import (
    AzureMLSpec,
    BackendKind,
    GpuModelDeploymentSpec,
    KubernetesEndpointCompute,
    LocalSpec,
    SecretWorkspace,
)

CREDENTIAL_KEYS = ("tenantId", "clientId", "clientSecret")


class InputError(Exception):
    """The spec or what it points to is wrong; only the user can fix it (``transient``: or time, as a ConfigMap
    applied after the resource)."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.transient = reason, message, transient


@dataclass
class Resource:
    """The parts of a GpuModelDeployment a pass needs, taken from kopf's body."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return owner_id(self.namespace, self.name, self.uid)

    @property
    def policy(self) -> str:
        """The reconcile-policy annotation, as in Azure Service Operator: manage, skip or detach-on-delete."""
        return self.annotations.get(RECONCILE_POLICY, POLICY_MANAGE)

    @property
    def retry_token(self) -> str | None:
        """The gpumodel.io/retry-now annotation's value: a new value asks for a retry of a failure at once."""
        return self.annotations.get(RETRY_NOW)

    @property
    def take_over(self) -> bool:
        """The user's explicit opt-in to manage a service or compute that existed before (``true``)."""
        return self.annotations.get(TAKE_OVER, "").strip().lower() == "true"

    @property
    def promote(self) -> bool:
        """The user asks the rollout under way to skip its remaining canary steps (``true``)."""
        return self.annotations.get(PROMOTE, "").strip().lower() == "true"

    @property
    def abort(self) -> bool:
        """The user asks the rollout under way to be given up now (``true``)."""
        return self.annotations.get(ABORT, "").strip().lower() == "true"


def parse_spec(res: Resource, enabled: Collection[BackendKind]) -> GpuModelDeploymentSpec:
    """The resource's spec, of the member of the union its ``backend`` names, if that backend is enabled here."""
    spec = valid_spec(res)
    if spec.backend not in enabled:
        listed = ", ".join(kind.value for kind in enabled) or "none"
        why = (
            " (it runs the entry script and its packages on the operator's own machine, with the operator's "
            "permissions: it is for a developer's machine, never a cluster install)"
            if spec.backend == BackendKind.LOCAL
            else ""
        )
        raise InputError(
            c.BACKEND_NOT_ENABLED,
            f"backend {spec.backend.value} is not enabled in this operator{why}; enabled: {listed} "
            "(setting --backend, GMO_BACKENDS)",
        )
    return spec


def valid_spec(res: Resource) -> GpuModelDeploymentSpec:
    """The resource's spec, or InvalidSpec naming the first field the CRD would have refused (an old CRD, a CEL
    rule the apiserver skipped: the model checks what a backend relies on, whatever the apiserver did)."""
    try:
        return models.parse_spec(res.spec)
    except ValidationError as exc:
        raise InputError(c.INVALID_SPEC, f"the spec is invalid: {_first_error(exc, res.spec)}") from exc


async def load_inputs(
    kube: KubeClient,
    res: Resource,
    spec: SpecT,
    *,
    for_deletion: bool = False,
    identities: Collection[tuple[str, str]] = (),
) -> DeploymentInputs[SpecT]:
    """The spec and what it points to. Deleting needs names, not scripts: it works without the ConfigMap.
    ``identities``: the (namespace, client id) pairs allowed to sign in by workload identity (Settings)."""
    credentials = await _sign_in(kube, res.namespace, spec, identities)
    if for_deletion:
        return DeploymentInputs(
            res.namespace, res.name, res.uid, res.generation, spec, "", "", credentials, take_over=res.take_over
        )
    source = spec.source
    data = await kube.config_map_data(res.namespace, source.config_map_ref.name)
    if data is None:
        raise InputError(
            c.SOURCE_NOT_FOUND,
            f"ConfigMap {source.config_map_ref.name} not found in namespace {res.namespace}; "
            "create it (for example with kustomize's configMapGenerator from score.py and myenv.yml)",
            transient=True,
        )
    entry = _config_map_key(data, source.config_map_ref.name, source.entry_script, "spec.source.entryScript")
    if spec.environment.conda_spec is not None:
        conda = spec.environment.conda_spec
    else:
        assert source.conda_file is not None  # the spec's validator requires one of the two (the CRD too)
        conda = _config_map_key(data, source.config_map_ref.name, source.conda_file, "spec.source.condaFile")
    operation = res.status.get("operation") or {}
    return DeploymentInputs(
        namespace=res.namespace,
        name=res.name,
        uid=res.uid,
        generation=res.generation,
        spec=spec,
        entry_script=entry,
        conda_spec=conda,
        credentials=credentials,
        fingerprint=fingerprint(spec, entry, conda),
        take_over=res.take_over,
        operation_target=str(operation.get("target") or ""),
        operation_id=str(operation.get("id") or ""),
    )


async def _sign_in(
    kube: KubeClient, namespace: str, spec: GpuModelDeploymentSpec, identities: Collection[tuple[str, str]]
) -> dict[str, str]:
    """The Azure sign-in of an azureml resource: a service principal's Secret, or (azureml-v2) the workload
    identity's tenant and client ids, whose token the backend reads from the operator's own pod. That token is
    the operator's, federated with every team's application: a namespace may name only the applications the
    installer allowed it (``identities``; namespace ``*``: every namespace), else any namespace could sign in
    as another team's application."""
    if isinstance(spec, LocalSpec):
        return {}
    ws = spec.workspace
    if isinstance(ws, SecretWorkspace):
        return await _credentials(kube, namespace, ws.credentials_secret_ref.name)
    client_id = ws.workload_identity.client_id
    if not any(ns in (namespace, "*") and cid.lower() == client_id.lower() for ns, cid in identities):
        raise InputError(
            c.IDENTITY_NOT_ALLOWED,
            f"namespace {namespace} may not sign in as Entra application {client_id} "
            "(spec.workspace.workloadIdentity): the operator's installer has not allowed it there; to allow it, "
            f"run the operator with --workload-identity {namespace}={client_id} (GMO_WORKLOAD_IDENTITIES; the "
            "chart's workloadIdentity.allowed). Nothing was signed in (to delete a resource that made something "
            f"without signing in, annotate it {RECONCILE_POLICY}={POLICY_DETACH}: what it made is left running)",
        )
    return {"tenantId": ws.workload_identity.tenant_id, "clientId": client_id}


async def _credentials(kube: KubeClient, namespace: str, secret: str) -> dict[str, str]:
    data = await kube.secret_data(namespace, secret)
    if data is None:
        raise InputError(
            c.CREDENTIALS_INVALID,
            f"Secret {secret} not found in namespace {namespace}; create it with keys {', '.join(CREDENTIAL_KEYS)}",
        )
    missing = [k for k in CREDENTIAL_KEYS if not data.get(k)]
    if missing:
        raise InputError(c.CREDENTIALS_INVALID, f"Secret {secret} has no key {', '.join(missing)}")
    return {k: data[k] for k in CREDENTIAL_KEYS}


def fingerprint(spec: GpuModelDeploymentSpec, entry_script: str, conda_spec: str) -> str:
    """What requires a redeploy when it changes; replicas are not in it (they scale in place)."""
    parts = {
        "entry": entry_script,
        "conda": conda_spec,
        "model": spec.model.to_wire(),
        "image": spec.environment.base_image,
        "service": spec.service.model_dump(mode="json", exclude={"replicas", "name"}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def compute_key(spec: GpuModelDeploymentSpec) -> str:
    """Deployments with the same key share GPUs: the same workspace compute, or this machine. Azure's names are
    case-insensitive, so the key is lower-case: two spellings of one cluster share one lock and one GPU count."""
    if isinstance(spec, LocalSpec):
        return "local"
    ws = spec.workspace
    where = f"{ws.subscription_id}/{ws.resource_group}/{ws.name}"
    if isinstance(spec, AzureMLSpec):
        return f"azureml/{where}/{spec.compute.name}".lower()
    # An attached Kubernetes compute is shared like a cluster; a managed endpoint's cap is the subscription's
    # quota, which Azure's usages already count for everyone: it is its own key.
    if isinstance(spec.compute, KubernetesEndpointCompute):
        return f"azureml-v2/{where}/{spec.compute.kubernetes.compute_name}".lower()
    return f"azureml-v2/{where}/managed/{spec.service.name}".lower()


def listing_scope(spec: GpuModelDeploymentSpec) -> str | None:
    """What one backend listing of the services on a compute covers, to share it between the resources of that
    scope: azureml lists the workspace's AKS services (one call for every compute in it); azureml-v2 the endpoints
    on one Kubernetes compute. None for local: its listing is this machine's state files, read afresh each time (a
    service stopped a moment ago must not hold GPUs)."""
    if isinstance(spec, LocalSpec):
        return None
    if isinstance(spec, AzureMLSpec):
        ws = spec.workspace
        return f"azureml/{ws.subscription_id}/{ws.resource_group}/{ws.name}".lower()
    return compute_key(spec)


def compute_name(spec: GpuModelDeploymentSpec) -> str:
    """The compute's name as status shows it: the workspace compute (azureml), the attached Kubernetes compute or
    the managed instance type (azureml-v2), or this machine."""
    if isinstance(spec, LocalSpec):
        return "local"
    if isinstance(spec, AzureMLSpec):
        return spec.compute.name
    compute = spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        return compute.kubernetes.compute_name
    return compute.managed.instance_type


def credentials_secret(spec: GpuModelDeploymentSpec) -> str | None:
    """The Secret the resource signs in to Azure with, where it names one (not local, not workload identity)."""
    if isinstance(spec, LocalSpec) or not isinstance(spec.workspace, SecretWorkspace):
        return None
    return spec.workspace.credentials_secret_ref.name


def owns_compute(spec: GpuModelDeploymentSpec) -> bool:
    """Whether deleting the resource may delete its compute: only azureml's cluster. azureml-v2's managed compute
    is Azure's and its Kubernetes compute the user's, so deletion stops at the endpoint; local's is this machine."""
    return isinstance(spec, AzureMLSpec)


@dataclass(frozen=True)
class Holding:
    """What one GpuModelDeployment holds of a compute, as its status says (the handlers index every resource's
    status by compute key, so this is derived from the cluster, and gone with the resource)."""

    owner: str
    replicas: int
    gpu_cores: int
    #: Being deleted: no reason to keep the compute.
    deleting: bool = False
    #: It has a service (created or being created) on the compute: a user. One that merely names the compute
    #: without ever having used it never holds the compute's deletion.
    uses: bool = False

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpu_cores


def holding_of(spec: Mapping[str, Any], status: Mapping[str, Any], owner: str, deleting: bool) -> Holding:
    ownership = status.get("ownership") or {}
    replicas = int((status.get("replicas") or {}).get("effective") or 0)
    gpus = int((status.get("gpus") or {}).get("held") or 0)
    cores = int((spec.get("service") or {}).get("gpuCores") or 1)
    uses = bool(ownership.get("serviceCreated")) or status.get("operation") is not None
    return Holding(owner, replicas if gpus else 0, cores, deleting=deleting, uses=uses)


def _config_map_key(data: Mapping[str, str], cm: str, key: str, field_name: str) -> str:
    if key not in data:
        have = ", ".join(sorted(data)) or "no keys"
        raise InputError(c.SOURCE_NOT_FOUND, f"ConfigMap {cm} has no key {key!r} ({field_name}); it has {have}")
    return data[key]


def _first_error(exc: ValidationError, data: Mapping[str, Any]) -> str:
    """The first error, at the field as the user writes it (``spec.compute.provision.vmSize``)."""
    err = exc.errors()[0]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(sorted(kind.value for kind in BackendKind))
        given = data.get("backend")
        return f"spec.backend: must be one of {kinds}" + (f", not {given!r}" if given is not None else "")
    return f"{models.field_path(err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
