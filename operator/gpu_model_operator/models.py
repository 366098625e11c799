"""Pydantic models of the GpuModelDeployment spec and status.

They mirror the CRD schema in ``crds/`` field for field (camelCase on the wire, snake_case in Python);
``tests/unit/test_crd_agreement.py`` fails when the two drift apart. The CRD rejects bad input at
``kubectl apply``; these models are the operator's typed view of what the apiserver accepted.

The spec is a union on ``backend``: :class:`LocalSpec`, :class:`AzureMLSpec` and :class:`AzureMLV2Spec` each
have only the fields their backend reads, required where the CRD's CEL rules require them for that backend, and
"exactly one of" as a union of the alternatives (a provisioned or an attached cluster; a Secret or a workload
identity; a managed or a Kubernetes endpoint). A backend then reads what it needs without asking whether it is
there. :func:`parse_spec` is the one way in; a spec the CRD would have refused fails there, naming the field.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel, to_snake

# The SDK's GPU base image (azureml.core.runconfig.DEFAULT_GPU_IMAGE), copied so the model layer does not
# import the Azure SDK; a unit test keeps the two equal.
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04"

SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
COMPUTE_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]*$"
MODEL_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict the apiserver stores, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class BackendKind(str, enum.Enum):
    AZUREML = "azureml"
    #: Azure ML SDK v2 (azure-ai-ml): managed or Kubernetes online endpoints, blue/green rollouts.
    AZUREML_V2 = "azureml-v2"
    LOCAL = "local"


class DeletionPolicy(str, enum.Enum):
    DELETE = "Delete"
    RETAIN = "Retain"


class ClusterPurpose(str, enum.Enum):
    DEV_TEST = "DevTest"
    FAST_PROD = "FastProd"


def _tag(field: str) -> Tag:
    """The tag of a union's alternative chosen by the field ``field``; in parentheses, so that an error's location
    tells it from a field (:func:`field_path` leaves it out)."""
    return Tag(f"({field})")


def _exactly_one(tags: tuple[str, ...], among: tuple[str, ...], message: str) -> Discriminator:
    """A union told apart by which one of ``among`` (camelCase field names) is set: the alternative tagged with that
    field (:func:`_tag`) when it is one of ``tags``; none, several, or one of another backend's is the error
    ``message`` at the union's field. Each alternative requires its own field, so the one chosen has it as a
    non-optional attribute."""

    def tag(value: Any) -> str | None:
        if isinstance(value, Mapping):
            found = [k for k in among if value.get(k, value.get(to_snake(k))) is not None]
        else:  # a model already validated (model_copy, a default)
            found = [k for k in among if getattr(value, to_snake(k), None) is not None]
        return f"({found[0]})" if len(found) == 1 and found[0] in tags else None

    return Discriminator(tag, custom_error_type="exactly_one", custom_error_message=message)


# ---- the parts of the spec ---------------------------------------------------------------------------


class SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]


class ConfigMapRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]


class WorkloadIdentity(_Model):
    """An Entra application federated with the operator's ServiceAccount (azureml-v2): no secret is stored."""

    client_id: Annotated[str, Field(min_length=1, max_length=64)]
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]


class _Workspace(_Model):
    subscription_id: Annotated[str, Field(min_length=1, max_length=64)]
    resource_group: Annotated[str, Field(min_length=1, max_length=90)]
    name: Annotated[str, Field(min_length=3, max_length=33)]


class SecretWorkspace(_Workspace):
    """A workspace signed in to with a service principal's Secret (azureml takes only this)."""

    credentials_secret_ref: SecretRef


class IdentityWorkspace(_Workspace):
    """A workspace signed in to with the operator's workload identity (azureml-v2)."""

    workload_identity: WorkloadIdentity


_SIGN_IN = ("credentialsSecretRef", "workloadIdentity")
#: azureml-v2's workspace: exactly one of the two sign-ins (the CRD's CEL rule on spec.workspace).
V2Workspace: TypeAlias = Annotated[
    Annotated[SecretWorkspace, _tag("credentialsSecretRef")] | Annotated[IdentityWorkspace, _tag("workloadIdentity")],
    _exactly_one(
        _SIGN_IN,
        _SIGN_IN,
        "set exactly one of spec.workspace.credentialsSecretRef (a service principal's Secret) or "
        "spec.workspace.workloadIdentity",
    ),
]


class Provision(_Model):
    vm_size: Annotated[str, Field(min_length=1, max_length=64)]
    agent_count: Annotated[int, Field(ge=1, le=100)] = 3
    location: Annotated[str | None, Field(max_length=64)] = None
    cluster_purpose: ClusterPurpose = ClusterPurpose.FAST_PROD


class Attach(_Model):
    resource_group: Annotated[str, Field(min_length=1, max_length=90)]
    cluster_name: Annotated[str, Field(min_length=1, max_length=63)]


class ManagedCompute(_Model):
    """A managed online endpoint's GPU instance type (azureml-v2): Azure runs the VMs, nothing to create."""

    instance_type: Annotated[str, Field(min_length=1, max_length=64)]


class KubernetesCompute(_Model):
    """An attached Kubernetes compute with the Azure ML extension (azureml-v2), used, never created or detached."""

    compute_name: Annotated[str, Field(min_length=2, max_length=16, pattern=COMPUTE_NAME_PATTERN)]
    instance_type: Annotated[str, Field(min_length=1, max_length=63)]
    #: GPUs of each node the instance type schedules on: Azure ML does not report an attached cluster's nodes.
    node_gpus: Annotated[list[Annotated[int, Field(ge=0, le=64)]], Field(min_length=1, max_length=1000)]


class _Compute(_Model):
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE


class _AksCompute(_Compute):
    #: The compute target in the workspace (azureml).
    name: Annotated[str, Field(min_length=2, max_length=16, pattern=COMPUTE_NAME_PATTERN)]


class ProvisionedCompute(_AksCompute):
    """An AKS cluster the operator creates (azureml)."""

    provision: Provision


class AttachedCompute(_AksCompute):
    """An existing AKS cluster the operator attaches, and detaches, never deletes (azureml)."""

    attach: Attach


class ManagedEndpointCompute(_Compute):
    """A managed online endpoint (azureml-v2): no compute of the operator's; ``deletionPolicy`` is the endpoint's."""

    managed: ManagedCompute


class KubernetesEndpointCompute(_Compute):
    """An online endpoint on an attached Kubernetes compute (azureml-v2); ``deletionPolicy`` is the endpoint's."""

    kubernetes: KubernetesCompute


#: Exactly one of these four in spec.compute (the CRD's CEL rule); each backend takes two of them.
_COMPUTE_KINDS = ("provision", "attach", "managed", "kubernetes")
AzureMLCompute: TypeAlias = Annotated[
    Annotated[ProvisionedCompute, _tag("provision")] | Annotated[AttachedCompute, _tag("attach")],
    _exactly_one(
        ("provision", "attach"),
        _COMPUTE_KINDS,
        "backend azureml takes exactly one of spec.compute.provision (create a GPU cluster) or spec.compute.attach "
        "(use an existing AKS cluster); managed and kubernetes are online endpoints of backend azureml-v2",
    ),
]
V2Compute: TypeAlias = Annotated[
    Annotated[ManagedEndpointCompute, _tag("managed")] | Annotated[KubernetesEndpointCompute, _tag("kubernetes")],
    _exactly_one(
        ("managed", "kubernetes"),
        _COMPUTE_KINDS,
        "backend azureml-v2 takes exactly one of spec.compute.managed (a GPU instance type) or "
        "spec.compute.kubernetes (an attached Kubernetes compute); provision and attach are backend azureml's",
    ),
]


class LocalModel(_Model):
    """A model directory or file on the operator's machine (local); it becomes AZUREML_MODEL_DIR."""

    path: Annotated[str, Field(min_length=1)]


class RegisteredModel(_Model):
    """A registered model of the workspace (azureml): the latest version unless one is given."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=MODEL_NAME_PATTERN)]
    version: Annotated[int | None, Field(ge=1)] = None


class RegisteredModelVersion(_Model):
    """A registered model version of the workspace (azureml-v2: a deployment pins one)."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=MODEL_NAME_PATTERN)]
    version: Annotated[int, Field(ge=1)]


class Source(_Model):
    config_map_ref: ConfigMapRef
    entry_script: Annotated[str, Field(min_length=1)] = "score.py"
    conda_file: Annotated[str | None, Field(min_length=1)] = None


class Environment(_Model):
    conda_spec: Annotated[str | None, Field(min_length=1)] = None
    base_image: Annotated[str, Field(min_length=1)] = DEFAULT_GPU_IMAGE


class Service(_Model):
    name: Annotated[str, Field(min_length=3, max_length=32, pattern=SERVICE_NAME_PATTERN)]
    replicas: Annotated[int, Field(ge=1, le=100)] = 1
    cpu_cores: Annotated[float, Field(gt=0, le=64)] = 1.0
    memory_gb: Annotated[float, Field(gt=0, le=1024)] = 4.0
    gpu_cores: Annotated[int, Field(ge=1, le=16)] = 1
    auth_enabled: bool = True
    scoring_timeout_ms: Annotated[int, Field(ge=1000, le=300000)] = 60000


class LocalOptions(_Model):
    allow_cpu_fallback: bool = False


class Rollout(_Model):
    """How azureml-v2 checks a new deployment before it takes the traffic (blue/green)."""

    #: The JSON body of the scoring probe; without it the probe sends ``{}``. Only a 2xx answer passes: Azure's 424
    #: (the model's run() failed) does not, as a client sending that request could not score.
    probe_request: Annotated[str | None, Field(min_length=2, max_length=65536)] = None


# ---- the spec: one model per backend ------------------------------------------------------------------


class _Spec(_Model):
    """What every backend's spec has: the entry script and environment, and the service."""

    source: Source
    environment: Environment = Field(default_factory=Environment)
    service: Service

    @model_validator(mode="after")
    def _one_conda_environment(self) -> _Spec:
        """The CRD's two CEL rules on the conda environment: one of the two places, not both."""
        in_source, inline = self.source.conda_file is not None, self.environment.conda_spec is not None
        if in_source and inline:
            raise ValueError(
                "give the conda environment once: spec.source.condaFile or spec.environment.condaSpec, not both"
            )
        if not in_source and not inline:
            raise ValueError(
                "a conda environment is required: set spec.source.condaFile (a key of the source ConfigMap) or "
                "spec.environment.condaSpec"
            )
        return self


class LocalSpec(_Spec):
    """Served on the operator's own machine by the Azure ML inference server."""

    backend: Literal[BackendKind.LOCAL]
    model: LocalModel
    local: LocalOptions = Field(default_factory=LocalOptions)


class AzureMLSpec(_Spec):
    """An AKS web service of Azure ML SDK v1, on a cluster the operator provisions or attaches."""

    backend: Literal[BackendKind.AZUREML]
    workspace: SecretWorkspace
    compute: AzureMLCompute
    model: RegisteredModel


class AzureMLV2Spec(_Spec):
    """An Azure ML online endpoint (SDK v2), managed or on an attached Kubernetes compute, rolled out blue/green."""

    backend: Literal[BackendKind.AZUREML_V2]
    workspace: V2Workspace
    compute: V2Compute
    model: RegisteredModelVersion
    rollout: Rollout = Field(default_factory=Rollout)


#: The spec of any backend; ``backend`` says which (``isinstance`` or ``match`` narrows it).
GpuModelDeploymentSpec: TypeAlias = LocalSpec | AzureMLSpec | AzureMLV2Spec
#: The same union as pydantic validates it: the ``backend`` field picks the member.
TaggedSpec: TypeAlias = Annotated[GpuModelDeploymentSpec, Field(discriminator="backend")]
_SPEC: TypeAdapter[GpuModelDeploymentSpec] = TypeAdapter(TaggedSpec)


def parse_spec(data: Mapping[str, Any]) -> GpuModelDeploymentSpec:
    """The spec of a resource as the apiserver stores it (camelCase); raises pydantic's ``ValidationError``."""
    return _SPEC.validate_python(dict(data))


def field_path(loc: tuple[int | str, ...]) -> str:
    """Where a :func:`parse_spec` error is, as the user writes it (``spec.compute.provision.vmSize``): pydantic's
    location without the tags of the unions (the backend first, then any alternative of spec.compute or
    spec.workspace chosen)."""
    path = "spec"
    for step in loc[1:]:
        if isinstance(step, int):
            path += f"[{step}]"
        elif not step.startswith("("):
            path += f".{step}"
    return path


def spec_schema() -> dict[str, Any]:
    """The JSON schema of the spec union (for the test that holds it to the CRD)."""
    return _SPEC.json_schema(by_alias=True)


# ---- status ------------------------------------------------------------------------------------------


class Phase(str, enum.Enum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    DELETING = "Deleting"


class Condition(_Model):
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class ReplicaStatus(_Model):
    requested: int = 0
    effective: int = 0


class GpuStatus(_Model):
    total: int = 0
    held_by_others: int = 0
    held: int = 0


class Ownership(_Model):
    """What the operator created (and may delete) versus found and adopted (and must leave)."""

    compute_created: bool = False
    compute_adopted: bool = False
    service_created: bool = False
    service_adopted: bool = False


class Operation(_Model):
    """A long-running backend operation in flight, so a restarted operator waits on it, not redoes it."""

    kind: str
    target: str
    started_at: str
    id: str | None = None


class Retry(_Model):
    """Retries of a failed deployment: a failure is never final while its cause may be outside the spec (a
    package index that was down, a node that was full), so it is retried at the resync with back-off, and at
    once when the user annotates ``gpumodel.io/retry-now``."""

    handled_token: str | None = None
    attempts: int = 0
    next_at: str | None = None


class GpuModelDeploymentStatus(_Model):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    scoring_uri: str | None = None
    replicas: ReplicaStatus = Field(default_factory=ReplicaStatus)
    replicas_summary: str | None = None
    gpus: GpuStatus = Field(default_factory=GpuStatus)
    cpu_fallback: bool = False
    keys_secret_name: str | None = None
    compute_name: str | None = None
    service_name: str | None = None
    ownership: Ownership = Field(default_factory=Ownership)
    operation: Operation | None = None
    probed_generation: int | None = None
    retry: Retry = Field(default_factory=Retry)
    last_error: str | None = None
