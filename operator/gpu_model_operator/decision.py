"""The vocabulary of the reconcile core: what a pass knows (``Facts``), what one check concludes (``Outcome``),
and what the pass decides (``Decision``), with the one function that binds an outcome to the status.

Pure data and pure functions, as the core is: no kopf, no Kubernetes client, no SDK, no clock. Every condition,
the phase and ``lastError`` are written in one place, :func:`bind`, from the one outcome a pass ends with; so a
reader finds why a status says what it says by finding the check that returned the outcome.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from . import conditions as c
from . import kstatus
from .backends.base import ObservedCompute, ObservedService, ProbeResult
from .backends.endpoint import RequestCounts, RolloutStep
from .keys import ScoringToken
from .models import (
    CanaryStatus,
    Condition,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    Operation,
    Phase,
    Retry,
)
from .prices import DEFAULT as DEFAULT_PRICES
from .prices import PriceTable


class Action(str, enum.Enum):
    NONE = "None"
    CREATE_COMPUTE = "CreateCompute"
    RECREATE_COMPUTE = "RecreateCompute"  # delete a failed compute of ours; the next pass creates it again
    DEPLOY = "Deploy"  # create the service, redeploy changed inputs, or repair dead replicas
    SCALE = "Scale"  # change the replica count in place


class DeleteAction(str, enum.Enum):
    DELETE_SERVICE = "DeleteService"
    DELETE_COMPUTE = "DeleteCompute"
    WAIT = "Wait"
    DONE = "Done"


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


def warning(reason: str, message: str) -> Event:
    return Event("Warning", reason, message)


def normal(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


# ---- what a pass knows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedSecret:
    """The keys Secret as it is in the cluster: its decoded data, and whether it is the operator's own."""

    data: dict[str, str]
    ours: bool


@dataclass(frozen=True)
class Observation:
    """What the backend (and the cluster, for the keys Secret) showed in this pass."""

    compute: ObservedCompute
    service: ObservedService
    #: The GPUs of each replica that another service runs (or is about to run) on the same compute.
    other_pods: tuple[int, ...]
    #: Hash of the inputs as they are now; differs from ``service.fingerprint`` when a redeploy is due.
    desired_fingerprint: str
    probe: ProbeResult | None = None
    #: The answer of the desired deployment of an online endpoint to a probe sent to it alone, while it has no traffic
    #: yet (:func:`~.rollout.probe_target`); its answer decides the traffic shift.
    candidate_probe: ProbeResult | None = None
    #: Azure Monitor's count of the desired deployment's requests since its canary step began (None: not read in
    #: this pass, or Azure publishes none), for the step's check (:mod:`~.canary`).
    candidate_metrics: RequestCounts | None = None
    #: "namespace/name" of the resource being reconciled, to tell our service from one we found.
    owner: str = ""
    #: The user opted in (annotation ``gpumodel.io/take-over``) to the operator managing a service or compute
    #: that existed before: redeploying, scaling and deleting it as if it had created it.
    take_over: bool = False
    #: The user asked the rollout under way to skip its remaining canary steps (``gpumodel.io/promote``), or to be
    #: given up now (``gpumodel.io/abort``).
    promote: bool = False
    abort: bool = False
    #: The value of the ``gpumodel.io/retry-now`` annotation; a value not yet acted on retries a failure at once.
    retry_token: str | None = None
    #: The service's keys as the backend gives them now (None: auth off, tokens, or not read in this pass).
    keys: tuple[str, str] | None = None
    #: The Azure ML token a client scores with now (an online endpoint with ``authMode: AMLToken``), else None.
    token: ScoringToken | None = None
    #: The keys Secret as it is; None when there is none.
    secret: PublishedSecret | None = None
    #: The name the keys Secret has (``<resource>-scoring-keys``).
    secret_name: str = ""

    @property
    def gpus_held_by_others(self) -> int:
        return sum(self.other_pods)


@dataclass(frozen=True)
class Problem:
    """What stopped the pass before or while observing: an input the user must fix, or a backend error."""

    reason: str
    message: str
    #: Retried on its own (throttling, an outage, a ConfigMap not created yet) rather than waiting for the user.
    transient: bool
    #: The backend's Retry-After, in seconds.
    retry_after: float | None = None
    #: A ConfigMap not there yet is retried at a slower pace than a throttled call.
    slow: bool = False


@dataclass(frozen=True)
class Timing:
    """The operator's settings the core's decisions depend on."""

    poll: float = 10.0
    #: The first automatic retry of a failed deployment comes this long after the failure (the resync interval).
    retry_base: float = 900.0
    max_backoff: float = 300.0
    #: The call budget (backend calls per resource per window), for the message that says it is spent.
    budget_limit: int = 0
    budget_window: float = 900.0
    #: A new deployment of an online endpoint that has not answered its probe this long after it first could is
    #: given up, and the live deployment gets back what the rollout borrowed.
    probe_deadline: float = 900.0
    #: The resync interval: a token whose refresh time comes before the next resync is replaced in a pass of its own.
    resync: float = 900.0


@dataclass(frozen=True)
class Facts:
    """Everything one pass of one resource is decided from."""

    generation: int
    previous: GpuModelDeploymentStatus
    now: str
    timing: Timing = field(default_factory=Timing)
    #: The reconcile-policy annotation (manage, skip, detach-on-delete; anything else is refused).
    policy: str = "manage"
    #: Seconds until the call budget allows another pass (0: it does).
    budget_wait: float = 0.0
    #: The spec, when it parsed (None: the problem says why not).
    spec: GpuModelDeploymentSpec | None = None
    problem: Problem | None = None
    #: Consecutive transient problems so far, this one included (for the back-off).
    transient_streak: int = 0
    observation: Observation | None = None
    #: The rollout step this pass took that the backend refused (``problem`` says why): a rollout Azure refused gives
    #: back what it borrowed in the next pass.
    failed_step: RolloutStep | None = None
    #: The prices the cost estimate is computed with (the installation's table, else the shipped default).
    prices: PriceTable = DEFAULT_PRICES


# ---- what one check concludes, and what the pass decides -------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One condition's value: True, False or None (Unknown), with its reason and message."""

    status: bool | None
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """The conclusion of the check a pass ends at: everything the status and the operator's next move need.

    ``ready`` None keeps every condition as it was (nothing new was observed: over budget, a blip of the backend
    while the service was Ready); ``compute`` and ``service`` None keep that condition."""

    phase: Phase | None
    ready: Verdict | None
    compute: Verdict | None = None
    service: Verdict | None = None
    action: Action = Action.NONE
    #: Replicas the action asks for, or the replicas observed when there is no action.
    replicas: int = 0
    events: tuple[Event, ...] = ()
    #: Only the user can help: no retry loop (kopf's PermanentError).
    permanent: bool = False
    #: Seconds until the next pass; None when converged (the periodic resync takes over).
    requeue_after: float | None = None
    #: What the user should read first; None clears it.
    error: str | None = None
    #: A new retry record (None: unchanged).
    retry: Retry | None = None
    #: Ready for this generation: remember that the probe answered, and the scoring URI it answered at.
    probed: bool = False
    #: The keys Secret's data to write (None: nothing to write).
    publish: dict[str, str] | None = None
    #: An online endpoint's rollout step (the action's meaning there; a step that writes nothing only informs).
    step: RolloutStep | None = None
    #: Where the online endpoint's canary is, for the status (None: no canary step in this pass).
    canary: CanaryStatus | None = None
    #: Annotations acted on, which the pass removes (gpumodel.io/promote, gpumodel.io/abort).
    clear_annotations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What one pass decided: the action to take, the status to write, the events to post, the Secret to
    publish, and when to come back. Frozen: the controller carries it out, it never edits it."""

    action: Action
    replicas: int
    status: GpuModelDeploymentStatus
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    permanent: bool = False
    publish: dict[str, str] | None = None
    #: Why this pass could not do its work (bad inputs, a backend error, the call budget), for the metrics; None
    #: when it could, whatever it found (a failed service is a state, not an error of the pass).
    error_reason: str | None = None
    #: The online endpoint's rollout step the backend takes (None: the action alone, or no endpoint).
    step: RolloutStep | None = None
    #: Annotations the pass acted on, removed with the status's write.
    clear_annotations: tuple[str, ...] = ()


def bind(status: GpuModelDeploymentStatus, outcome: Outcome, generation: int, now: str) -> None:
    """Write the outcome's conditions, phase and error into ``status``: the only place a pass does."""
    for type_, verdict in ((c.COMPUTE_READY, outcome.compute), (c.SERVICE_READY, outcome.service)):
        if verdict is not None:
            set_condition(status, type_, verdict, generation, now)
    status.last_error = outcome.error
    if outcome.ready is not None:
        set_condition(status, c.READY, outcome.ready, generation, now)
    if outcome.phase is not None:
        status.phase = outcome.phase
    derive_kstatus(status, generation, now)


def derive_kstatus(status: GpuModelDeploymentStatus, generation: int, now: str) -> None:
    """Reconciling and Stalled, kept in step with the phase and Ready (kstatus.py says how)."""
    for derived in kstatus.derive(status.phase, status.conditions):
        set_condition(status, derived.type, Verdict(derived.status, derived.reason, derived.message), generation, now)


def set_condition(status: GpuModelDeploymentStatus, type_: str, verdict: Verdict, generation: int, now: str) -> None:
    """Set one condition; lastTransitionTime moves only when its status value changes."""
    text = "Unknown" if verdict.status is None else ("True" if verdict.status else "False")
    before = get_condition(status, type_)
    since = before.last_transition_time if before is not None and before.status == text else now
    condition = Condition(
        type=type_,
        status=text,
        reason=verdict.reason,
        message=verdict.message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if before is None:
        status.conditions = [*status.conditions, condition]
    else:
        status.conditions = [condition if cond.type == type_ else cond for cond in status.conditions]


def get_condition(status: GpuModelDeploymentStatus, type_: str) -> Condition | None:
    return next((cond for cond in status.conditions if cond.type == type_), None)


def operation_for(action: Action, target: str, now: str) -> Operation:
    return Operation(kind=action.value, target=target, started_at=now)
