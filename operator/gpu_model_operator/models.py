"""Pydantic models of the GpuModelDeployment spec and status.

They mirror the CRD schema in ``crds/`` field for field (camelCase on the wire, snake_case in Python);
``tests/unit/test_crd_agreement.py`` fails when the two drift apart. The CRD rejects bad input at
``kubectl apply``; these models are the operator's typed view of what the apiserver accepted.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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


class SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]


class ConfigMapRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]


class WorkloadIdentity(_Model):
    """An Entra application federated with the operator's ServiceAccount (azureml-v2): no secret is stored."""

    client_id: Annotated[str, Field(min_length=1, max_length=64)]
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]


class Workspace(_Model):
    subscription_id: Annotated[str, Field(min_length=1, max_length=64)]
    resource_group: Annotated[str, Field(min_length=1, max_length=90)]
    name: Annotated[str, Field(min_length=3, max_length=33)]
    #: Exactly one of the two (CEL); azureml (v1) takes only the Secret.
    credentials_secret_ref: SecretRef | None = None
    workload_identity: WorkloadIdentity | None = None


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


class Compute(_Model):
    #: The compute target (azureml); azureml-v2 names its compute in ``kubernetes`` or has none (``managed``).
    name: Annotated[str | None, Field(min_length=2, max_length=16, pattern=COMPUTE_NAME_PATTERN)] = None
    provision: Provision | None = None
    attach: Attach | None = None
    managed: ManagedCompute | None = None
    kubernetes: KubernetesCompute | None = None
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE


class ModelRef(_Model):
    name: Annotated[str | None, Field(min_length=1, max_length=255, pattern=MODEL_NAME_PATTERN)] = None
    version: Annotated[int | None, Field(ge=1)] = None
    path: Annotated[str | None, Field(min_length=1)] = None


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


class GpuModelDeploymentSpec(_Model):
    backend: BackendKind
    workspace: Workspace | None = None
    compute: Compute | None = None
    model: ModelRef
    source: Source
    environment: Environment = Field(default_factory=Environment)
    service: Service
    local: LocalOptions = Field(default_factory=LocalOptions)
    rollout: Rollout = Field(default_factory=Rollout)


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
