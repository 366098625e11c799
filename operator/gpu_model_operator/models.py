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
import itertools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel, to_snake

# The SDK's GPU base image (azureml.core.runconfig.DEFAULT_GPU_IMAGE), copied so the model layer does not
# import the Azure SDK; a unit test keeps the two equal.
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04"

SERVICE_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
#: Azure ML's compute names: a letter first, letters, digits and dashes, and a dash followed later by a letter (so
#: never ending in a dash or a dash and digits), 3 to 24 characters (the studio's and the AKS attach page's rules,
#: and the REST specification's ``computeName`` pattern; RE2 has no look-ahead, hence the alternation).
COMPUTE_NAME_PATTERN = r"^[a-zA-Z]([a-zA-Z0-9]*|[a-zA-Z0-9-]*-[a-zA-Z0-9]*[a-zA-Z][a-zA-Z0-9]*)$"
#: Azure's most instances of one managed online deployment (how-to-manage-quotas, "Number of instances per
#: deployment: 50"); more needs a limit increase from Azure support.
MAX_MANAGED_INSTANCES = 50
#: An online deployment's longest request timeout (reference-yaml-deployment-managed-online,
#: request_settings.request_timeout_ms: "max 180000").
MAX_REQUEST_TIMEOUT_MS = 180_000
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

    compute_name: Annotated[str, Field(min_length=3, max_length=24, pattern=COMPUTE_NAME_PATTERN)]
    instance_type: Annotated[str, Field(min_length=1, max_length=63)]
    #: GPUs of each node the instance type schedules on: Azure ML does not report an attached cluster's nodes.
    node_gpus: Annotated[list[Annotated[int, Field(ge=0, le=64)]], Field(min_length=1, max_length=1000)]


class _Compute(_Model):
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE


class _AksCompute(_Compute):
    #: The compute target in the workspace (azureml).
    name: Annotated[str, Field(min_length=3, max_length=24, pattern=COMPUTE_NAME_PATTERN)]


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


class AuthMode(str, enum.Enum):
    """How clients authenticate to an online endpoint (Azure's ``authMode``; azureml-v2)."""

    #: Two keys that never expire (``listKeys``); the default.
    KEY = "Key"
    #: Azure ML tokens (``POST .../token``) that expire: the operator keeps a fresh one in the keys Secret.
    AML_TOKEN = "AMLToken"


class V2Service(Service):
    """The service of an online endpoint (azureml-v2): the endpoint's name, its instances, and how clients
    authenticate."""

    #: Key (the default) or AMLToken. Immutable: the operator sets it when it creates the endpoint.
    auth_mode: AuthMode = AuthMode.KEY


class LocalOptions(_Model):
    allow_cpu_fallback: bool = False


#: Azure's most mirrored traffic (how-to-safely-rollout-online-endpoints, "Mirroring has the following limitations":
#: "The maximum mirrored traffic you can configure is 50%").
MAX_MIRROR_PERCENT = 50
#: Canary steps a rollout may have (a bound for the CRD's CEL rules' cost, far above what a rollout needs).
MAX_CANARY_STEPS = 10


class CanaryStep(_Model):
    """One canary step: the new deployment takes ``trafficPercent`` of the live requests for ``holdSeconds`` at
    least, then its check decides (:mod:`gpu_model_operator.canary`)."""

    traffic_percent: Annotated[int, Field(ge=1, le=99)]
    hold_seconds: Annotated[int, Field(ge=0)]


class Rollout(_Model):
    """How azureml-v2 checks a new deployment before, and while, it takes the traffic: the scoring probe, then
    mirrored traffic and canary steps where the spec asks for them (blue/green in one step by default)."""

    #: The JSON body of the scoring probe; without it the probe sends ``{}``. Only a 2xx answer passes: Azure's 424
    #: (the model's run() failed) does not, as a client sending that request could not score.
    probe_request: Annotated[str | None, Field(min_length=2, max_length=65536)] = None
    #: Canary steps, in increasing traffic; after the last, all the traffic. None: all at once (blue/green).
    steps: Annotated[list[CanaryStep], Field(max_length=MAX_CANARY_STEPS)] = Field(default_factory=list)
    #: The most errors (5xx, 408, 424) a step's check lets the new deployment answer, in percent of its requests:
    #: 1 by default, the threshold of Flagger's and Argo Rollouts' canary analysis examples (99% success).
    max_error_percent: Annotated[float, Field(ge=0, le=100)] = 1.0
    #: Requests below which a step's error rate is not judged (its probe alone decides): 100 by default, so that one
    #: error is never more than 1% of what is judged.
    min_requests: Annotated[int, Field(ge=1)] = 100
    #: Live requests copied to the new deployment before it takes any (Azure's mirrorTraffic; managed endpoints
    #: only, at most 50%); its answers are discarded. 0: no mirroring.
    mirror_percent: Annotated[int, Field(ge=0, le=MAX_MIRROR_PERCENT)] = 0
    #: How long the mirroring lasts before its check.
    mirror_seconds: Annotated[int, Field(ge=0)] = 300

    @model_validator(mode="after")
    def _increasing(self) -> Rollout:
        """The CRD's CEL rule: each step takes more traffic than the one before."""
        shares = [step.traffic_percent for step in self.steps]
        if any(b <= a for a, b in itertools.pairwise(shares)):
            raise ValueError("spec.rollout.steps must take increasing trafficPercent, each more than the one before")
        return self


#: The largest integer Azure's REST specification allows for a probe's or request settings' numbers (``int32``).
INT32_MAX = 2**31 - 1


class ProbeSettings(_Model):
    """A liveness or readiness probe of an online deployment (Azure's ProbeSettings), in seconds. Defaults and
    minimums are Azure's (reference-yaml-deployment-managed-online, "ProbeSettings"); the maximums are the REST
    specification's ``int32``, as Azure documents none. A probe tries every ``period`` seconds from ``initialDelay``
    on, and gives up after ``failureThreshold`` failures in a row: the last try is at initialDelay + (failureThreshold
    - 1) x period (300 s by default), so a model that loads longer needs a later delay or more tries."""

    initial_delay_seconds: Annotated[int, Field(ge=1, le=INT32_MAX)] = 10
    period_seconds: Annotated[int, Field(ge=1, le=INT32_MAX)] = 10
    timeout_seconds: Annotated[int, Field(ge=1, le=INT32_MAX)] = 2
    success_threshold: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    failure_threshold: Annotated[int, Field(ge=1, le=INT32_MAX)] = 30


class RequestSettings(_Model):
    """How an online deployment takes scoring requests (Azure's OnlineRequestSettings), with Azure's defaults and
    bounds (reference-yaml-deployment-managed-online, "RequestSettings")."""

    #: The scoring timeout, at most 180000 ms (Azure's limit); unset, spec.service.scoringTimeoutMs is sent (the
    #: operator's default of 60000, not Azure's 5000, so that a model answers within the same time as before).
    request_timeout_ms: Annotated[int | None, Field(ge=1, le=MAX_REQUEST_TIMEOUT_MS)] = None
    max_concurrent_requests_per_instance: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    #: Deprecated by Azure (raise the request timeout instead), sent as given.
    max_queue_wait_ms: Annotated[int, Field(ge=1, le=INT32_MAX)] = 500


class OnlineDeploymentSettings(_Model):
    """An online deployment's probes and request settings (azureml-v2). A change is a new deployment, rolled out
    blue/green like a new model."""

    liveness_probe: ProbeSettings = Field(default_factory=ProbeSettings)
    readiness_probe: ProbeSettings = Field(default_factory=ProbeSettings)
    request_settings: RequestSettings = Field(default_factory=RequestSettings)

    @model_validator(mode="after")
    def _liveness_succeeds_once(self) -> OnlineDeploymentSettings:
        """The CRD's CEL rule: "The value for liveness probe is fixed as 1" (ProbeSettings' success_threshold)."""
        if self.liveness_probe.success_threshold != 1:
            raise ValueError("spec.deployment.livenessProbe.successThreshold is fixed at 1 by Azure")
        return self


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
    service: V2Service
    deployment: OnlineDeploymentSettings = Field(default_factory=OnlineDeploymentSettings)
    rollout: Rollout = Field(default_factory=Rollout)

    @property
    def request_timeout_ms(self) -> int:
        """The deployment's scoring timeout: spec.deployment.requestSettings.requestTimeoutMs, else
        spec.service.scoringTimeoutMs (what the operator sent before the former existed)."""
        given = self.deployment.request_settings.request_timeout_ms
        return given if given is not None else self.service.scoring_timeout_ms

    @model_validator(mode="after")
    def _azure_limits(self) -> AzureMLV2Spec:
        """The CRD's CEL rules on Azure ML's limits: at most 50 instances of a managed deployment, and an endpoint
        name of single dashes (how-to-manage-quotas, "Endpoint name": "Single dashes like my-endpoint-name are
        accepted")."""
        if isinstance(self.compute, ManagedEndpointCompute) and self.service.replicas > MAX_MANAGED_INSTANCES:
            raise ValueError(
                f"spec.service.replicas is at most {MAX_MANAGED_INSTANCES} for a managed online deployment (Azure's "
                "number of instances per deployment; more needs a limit increase from Azure support)"
            )
        if self.rollout.mirror_percent and isinstance(self.compute, KubernetesEndpointCompute):
            raise ValueError(
                "spec.rollout.mirrorPercent needs a managed endpoint: Azure does not mirror traffic on Kubernetes "
                "online endpoints (how-to-safely-rollout-online-endpoints)"
            )
        if self.service.scoring_timeout_ms > MAX_REQUEST_TIMEOUT_MS:
            raise ValueError(
                f"spec.service.scoringTimeoutMs is at most {MAX_REQUEST_TIMEOUT_MS} with backend azureml-v2 (an online "
                "deployment's request timeout)"
            )
        if "--" in self.service.name:
            raise ValueError(
                "spec.service.name is an online endpoint's name with backend azureml-v2: letters, digits and single "
                "dashes (Azure refuses two dashes in a row)"
            )
        return self


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


class CostItem(_Model):
    """VMs of one size that the resource runs, and what one costs per hour (None: not in the price table)."""

    size: str
    count: int
    unit_price: float | None = None
    what: str = ""


class CostStatus(_Model):
    """An estimate of what the resource runs costs per hour (the core's :mod:`~gpu_model_operator.costs`)."""

    #: None when a size it runs has no price in the table.
    per_hour: float | None = None
    currency: str = "USD"
    items: list[CostItem] = Field(default_factory=list)
    #: Where the prices come from.
    prices: str = ""
    #: What is counted (or why nothing is).
    counted: str = ""
    #: What the estimate lacks: the sizes without a price ("" when none).
    message: str = ""


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


#: ``status.rollout.canary.verdict`` of a canary that gave its new deployment up (a step failed its check, or the user
#: aborted): not retried on its own, as a failure whose cause may lie outside the spec is (the model was judged).
CANARY_GIVEN_UP = ("Failed", "Aborted")


class CanaryStatus(_Model):
    """Where a canary is: the step (0: the mirroring; 1 to ``steps``: the canary steps), the new deployment's share of
    the live (or mirrored) requests there, and what its check measured: Azure Monitor's count of its requests and
    of its errors (5xx, 408, 424) since the step began (none where Azure publishes none)."""

    #: None: before the canary's first step (a rollout aborted or promoted then).
    step: int | None = None
    steps: int
    traffic_percent: int = 0
    mirror_percent: int = 0
    hold_seconds: int = 0
    requests: int | None = None
    errors: int | None = None
    #: Holding, Passed, Failed, Aborted or Promoted.
    verdict: str


class RolloutStatus(_Model):
    """An online endpoint's rollout as the last pass left it: the step, on which deployment, why, since when the same
    step is pending (a new deployment's probe deadline counts from it), and why the new deployment was given up
    (Azure refused its write, or it never answered its probe), which Azure never saw fail: only the status
    remembers it, until what the rollout borrowed is given back and the rollout is retried."""

    step: str
    deployment: str | None = None
    #: The deployment the rollout goes to (the spec's inputs).
    to: str | None = None
    message: str = ""
    since: str | None = None
    abandoned: str | None = None
    #: The canary's step and check (spec.rollout.steps, mirrorPercent), while it runs and once it failed.
    canary: CanaryStatus | None = None


class GpuModelDeploymentStatus(_Model):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    scoring_uri: str | None = None
    replicas: ReplicaStatus = Field(default_factory=ReplicaStatus)
    replicas_summary: str | None = None
    gpus: GpuStatus = Field(default_factory=GpuStatus)
    cost: CostStatus | None = None
    cpu_fallback: bool = False
    keys_secret_name: str | None = None
    compute_name: str | None = None
    service_name: str | None = None
    ownership: Ownership = Field(default_factory=Ownership)
    operation: Operation | None = None
    probed_generation: int | None = None
    retry: Retry = Field(default_factory=Retry)
    rollout: RolloutStatus | None = None
    last_error: str | None = None


def uses_token(spec: GpuModelDeploymentSpec) -> bool:
    """Clients score with an Azure ML token (azureml-v2, ``authMode: AMLToken``) rather than with keys."""
    return isinstance(spec, AzureMLV2Spec) and spec.service.auth_mode == AuthMode.AML_TOKEN
