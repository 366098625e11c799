"""The reconcile core as named cases, the way crossplane writes its reconciler tests: for each case, the facts a
pass starts from and the whole decision it must reach, its status, events, action, requeue and Secret included.
No Kubernetes, no backend: the core is pure. Below the cases, the few rules that need more than one pass."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import ComputeState, ObservedCompute, ObservedService, ProbeResult, ServiceState
from gpu_model_operator.capacity import Capacity, capped_replicas
from gpu_model_operator.decision import (
    Action,
    Decision,
    Event,
    Facts,
    Observation,
    Problem,
    PublishedSecret,
    Timing,
    derive_kstatus,
    normal,
    warning,
)
from gpu_model_operator.models import (
    AzureMLSpec,
    Condition,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    GpuStatus,
    Operation,
    Ownership,
    Phase,
    ReplicaStatus,
    Retry,
    parse_spec,
)
from gpu_model_operator.reconcile import decide, may_observe, record_cost, settled, still_settled

NOW = "2026-01-01T00:00:00Z"
OWNER = "team-a/digits/uid-1"  # namespace/name/uid, as owner tags say
#: A tag written before owner tags carried the uid.
LEGACY_OWNER = "team-a/digits"
FP = "fp-1"
URI = "https://x/score"
KEYS = ("k1", "k2")
SECRET = "digits-scoring-keys"
TIMING = Timing(poll=10, retry_base=900, max_backoff=300, budget_limit=300, budget_window=900)


def spec(**service: Any) -> AzureMLSpec:
    parsed = parse_spec(
        {
            "backend": "azureml",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"name": "gpu-cluster", "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 2}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "digits-svc", "replicas": 2, **service},
        }
    )
    assert isinstance(parsed, AzureMLSpec)
    return parsed


def compute(state: ComputeState = ComputeState.READY, gpus: int = 2, per_node: int = 1, **kw: Any) -> ObservedCompute:
    """A cluster of ``gpus // per_node`` nodes of ``per_node`` GPUs (one-GPU nodes by default)."""
    kw.setdefault("created_by_operator", True)
    return ObservedCompute("gpu-cluster", state, (per_node,) * (gpus // per_node), **kw)


def service(
    state: ServiceState = ServiceState.HEALTHY, replicas: int = 2, fingerprint: str | None = FP, **kw: Any
) -> ObservedService:
    kw.setdefault("owner", OWNER)
    return ObservedService("digits-svc", state, replicas=replicas, scoring_uri=URI, fingerprint=fingerprint, **kw)


ABSENT = ObservedService("digits-svc", ServiceState.ABSENT)
OURS = PublishedSecret({"scoringUri": URI, "primaryKey": "k1", "secondaryKey": "k2"}, ours=True)


def observe(comp: ObservedCompute, svc: ObservedService, others: tuple[int, ...] = (), **kw: Any) -> Observation:
    return Observation(comp, svc, others, FP, owner=OWNER, secret_name=SECRET, **kw)


def facts(obs: Observation | None = None, previous: GpuModelDeploymentStatus | None = None, **kw: Any) -> Facts:
    kw.setdefault("spec", spec())
    return Facts(3, previous or GpuModelDeploymentStatus(), NOW, TIMING, observation=obs, **kw)


def cond(type_: str, value: bool | None, reason: str, message: str, since: str = NOW) -> Condition:
    text = "Unknown" if value is None else ("True" if value else "False")
    return Condition(
        type=type_, status=text, reason=reason, message=message, last_transition_time=since, observed_generation=3
    )


def status(*conditions: Condition, **fields: Any) -> GpuModelDeploymentStatus:
    """The status a pass on the base spec writes: generation 3, its names, and ``fields``."""
    base: dict[str, Any] = {
        "observed_generation": 3,
        "compute_name": "gpu-cluster",
        "service_name": "digits-svc",
        "conditions": list(conditions),
        "ownership": Ownership(compute_created=True),
    }
    return GpuModelDeploymentStatus(**{**base, **fields})


def counts(effective: int, requested: int = 2, total: int = 2, others: int = 0) -> dict[str, Any]:
    return {
        "replicas": ReplicaStatus(requested=requested, effective=effective),
        "replicas_summary": f"{effective}/{requested}",
        "gpus": GpuStatus(total=total, held_by_others=others, held=effective),
    }


def op(kind: Action, target: str = "digits-svc") -> Operation:
    return Operation(kind=kind.value, target=target, started_at=NOW)


CREATED = Ownership(compute_created=True, service_created=True)
COMPUTE_OK = cond(c.COMPUTE_READY, True, c.COMPUTE_AVAILABLE, "compute gpu-cluster is ready with 2 GPU(s)")
WAITING = cond(c.SERVICE_READY, False, c.WAITING_FOR_COMPUTE, "waiting for compute gpu-cluster")
HEALTHY = "service digits-svc is healthy with 2 replica(s) each on its own GPU"
RETRY_HINT = (
    "retried automatically at 2026-01-01T00:15:00Z (attempt 1), or at once with kubectl annotate gmd NAME "
    "gpumodel.io/retry-now=$(date +%s) --overwrite after fixing what it names"
)
EARLIER = (
    "service digits-svc exists (Healthy, 2 replica(s)) and was created by another GpuModelDeployment named "
    "team-a/digits (an earlier one of that name, or one in another cluster), not by this one: it is left as it is, "
    "never changed or deleted. Choose another spec.service.name, or annotate the resource gpumodel.io/take-over=true "
    "to let the operator redeploy it from this spec and delete it with the resource"
)
EXISTS = (
    "service digits-svc exists (Healthy, 2 replica(s)) and was not created by the operator: it is left as it is, "
    "never changed or deleted. Choose another spec.service.name, or annotate the resource gpumodel.io/take-over=true "
    "to let the operator redeploy it from this spec and delete it with the resource"
)
CONFLICT = (
    f"Secret {SECRET} exists and was not created by the operator for this GpuModelDeployment; it is left as it is, "
    "and the scoring keys are not published. Delete or rename it"
)
BUDGET = "call budget spent: 300 backend calls in the last 900s; the next pass is in 42s (setting --call-budget)"


def ready_status() -> GpuModelDeploymentStatus:
    """Where a Ready resource stands, for the cases that start from one."""
    return status(
        COMPUTE_OK,
        cond(c.SERVICE_READY, True, c.SERVICE_HEALTHY, HEALTHY),
        cond(c.READY, True, c.PROBE_SUCCEEDED, f"{HEALTHY}; the scoring probe answered"),
        phase=Phase.READY,
        ownership=CREATED,
        scoring_uri=URI,
        probed_generation=3,
        keys_secret_name=SECRET,
        **counts(2),
    )


@dataclass(frozen=True)
class Case:
    facts: Facts
    want: Decision


CASES: dict[str, Case] = {
    # ---- before the backend ---------------------------------------------------------------------------
    "unknown-policy-is-refused-for-good": Case(
        facts(policy="sometimes", spec=None),
        Decision(
            Action.NONE,
            0,
            GpuModelDeploymentStatus(
                observed_generation=3,
                phase=Phase.FAILED,
                last_error="annotation gpumodel.io/reconcile-policy must be one of manage, skip, detach-on-delete, "
                "not 'sometimes'",
                conditions=[
                    cond(
                        c.SERVICE_READY,
                        False,
                        c.INVALID_SPEC,
                        "annotation gpumodel.io/reconcile-policy must be one "
                        "of manage, skip, detach-on-delete, not 'sometimes'",
                    ),
                    cond(
                        c.READY,
                        False,
                        c.INVALID_SPEC,
                        "annotation gpumodel.io/reconcile-policy must be one of "
                        "manage, skip, detach-on-delete, not 'sometimes'",
                    ),
                ],
            ),
            (
                warning(
                    c.INVALID_SPEC,
                    "annotation gpumodel.io/reconcile-policy must be one of manage, skip, "
                    "detach-on-delete, not 'sometimes'",
                ),
            ),
            permanent=True,
            error_reason=c.INVALID_SPEC,
        ),
    ),
    "skip-leaves-the-backend-alone": Case(
        facts(policy="skip"),
        Decision(
            Action.NONE,
            0,
            GpuModelDeploymentStatus(
                observed_generation=3,
                conditions=[
                    cond(
                        c.READY,
                        None,
                        c.RECONCILE_SKIPPED,
                        "gpumodel.io/reconcile-policy: skip; the operator leaves the backend as it is",
                    )
                ],
            ),
        ),
    ),
    "over-budget-keeps-the-conditions-and-says-why-once": Case(
        facts(budget_wait=42, previous=ready_status()),
        Decision(
            Action.NONE,
            2,
            ready_status().model_copy(update={"last_error": BUDGET}),
            (warning(c.CALL_BUDGET_EXHAUSTED, BUDGET),),
            requeue_after=42,
            error_reason=c.CALL_BUDGET_EXHAUSTED,
        ),
    ),
    "a-missing-configmap-is-retried-slowly": Case(
        facts(problem=Problem(c.SOURCE_NOT_FOUND, "ConfigMap src not found", transient=True, slow=True)),
        Decision(
            Action.NONE,
            0,
            GpuModelDeploymentStatus(
                observed_generation=3,
                last_error="ConfigMap src not found",
                conditions=[
                    cond(c.SERVICE_READY, False, c.SOURCE_NOT_FOUND, "ConfigMap src not found"),
                    cond(c.READY, False, c.SOURCE_NOT_FOUND, "ConfigMap src not found"),
                ],
            ),
            (warning(c.SOURCE_NOT_FOUND, "ConfigMap src not found"),),
            requeue_after=30,
            error_reason=c.SOURCE_NOT_FOUND,
        ),
    ),
    "quota-is-a-compute-failure-for-good": Case(
        facts(problem=Problem(c.QUOTA_EXCEEDED, "not enough quota", transient=False)),
        Decision(
            Action.NONE,
            0,
            GpuModelDeploymentStatus(
                observed_generation=3,
                phase=Phase.FAILED,
                last_error="not enough quota",
                conditions=[
                    cond(c.COMPUTE_READY, False, c.QUOTA_EXCEEDED, "not enough quota"),
                    cond(c.READY, False, c.QUOTA_EXCEEDED, "not enough quota"),
                ],
            ),
            (warning(c.QUOTA_EXCEEDED, "not enough quota"),),
            permanent=True,
            error_reason=c.QUOTA_EXCEEDED,
        ),
    ),
    "throttling-backs-off-as-retry-after-says": Case(
        facts(problem=Problem(c.BACKEND_UNAVAILABLE, "throttled", transient=True, retry_after=7), transient_streak=4),
        Decision(
            Action.NONE,
            0,
            GpuModelDeploymentStatus(
                observed_generation=3,
                last_error="throttled",
                conditions=[
                    cond(c.SERVICE_READY, False, c.BACKEND_UNAVAILABLE, "throttled"),
                    cond(c.READY, False, c.BACKEND_UNAVAILABLE, "throttled"),
                ],
            ),
            (warning(c.BACKEND_UNAVAILABLE, "throttled"),),
            requeue_after=7,
            error_reason=c.BACKEND_UNAVAILABLE,
        ),
    ),
    "an-outage-while-ready-keeps-ready": Case(
        facts(
            problem=Problem(c.BACKEND_UNAVAILABLE, "HTTP 503", transient=True),
            transient_streak=3,
            previous=ready_status(),
        ),
        Decision(
            Action.NONE,
            2,
            ready_status().model_copy(update={"last_error": "HTTP 503"}),
            (warning(c.BACKEND_UNAVAILABLE, "HTTP 503"),),
            requeue_after=40,  # 10 s, doubled per consecutive failure
            error_reason=c.BACKEND_UNAVAILABLE,
        ),
    ),
    # ---- the compute -----------------------------------------------------------------------------------
    "an-absent-compute-is-created": Case(
        facts(observe(compute(ComputeState.ABSENT, gpus=0), ABSENT)),
        Decision(
            Action.CREATE_COMPUTE,
            0,
            status(
                cond(c.COMPUTE_READY, False, c.PROVISIONING, "creating compute gpu-cluster"),
                WAITING,
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "creating compute gpu-cluster"),
                phase=Phase.PROVISIONING,
                ownership=Ownership(),
                operation=op(Action.CREATE_COMPUTE, "gpu-cluster"),
                **counts(0, total=0),
            ),
            (normal(c.CREATED_COMPUTE, "creating compute gpu-cluster"),),
            requeue_after=10,
        ),
    ),
    "a-creating-compute-is-waited-for": Case(
        facts(observe(compute(ComputeState.CREATING, gpus=0, message="Creating"), ABSENT)),
        Decision(
            Action.NONE,
            0,
            status(
                cond(c.COMPUTE_READY, False, c.PROVISIONING, "compute gpu-cluster is being created: Creating"),
                WAITING,
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "compute gpu-cluster is being created: Creating"),
                phase=Phase.PROVISIONING,
                ownership=Ownership(),
                **counts(0, total=0),
            ),
            requeue_after=10,
        ),
    ),
    "a-failed-compute-is-permanent": Case(
        facts(observe(compute(ComputeState.FAILED, gpus=0, message="quota"), ABSENT)),
        Decision(
            Action.NONE,
            0,
            status(
                cond(c.COMPUTE_READY, False, c.COMPUTE_FAILED, "compute gpu-cluster failed: quota"),
                WAITING,
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "compute gpu-cluster failed: quota"),
                phase=Phase.FAILED,
                ownership=Ownership(),
                last_error="compute gpu-cluster failed: quota",
                **counts(0, total=0),
            ),
            (warning(c.COMPUTE_FAILED, "compute gpu-cluster failed: quota"),),
            permanent=True,
        ),
    ),
    "retry-now-recreates-a-failed-compute-of-ours": Case(
        facts(observe(compute(ComputeState.FAILED, gpus=0, message="quota"), ABSENT, retry_token="2")),
        Decision(
            Action.RECREATE_COMPUTE,
            0,
            status(
                cond(
                    c.COMPUTE_READY,
                    False,
                    c.PROVISIONING,
                    "compute gpu-cluster failed: quota; deleting it to create it again (gpumodel.io/retry-now)",
                ),
                WAITING,
                cond(
                    c.READY,
                    False,
                    c.WAITING_FOR_SERVICE,
                    "compute gpu-cluster failed: quota; deleting it to create it again (gpumodel.io/retry-now)",
                ),
                phase=Phase.PROVISIONING,
                ownership=Ownership(),
                operation=op(Action.RECREATE_COMPUTE, "gpu-cluster"),
                retry=Retry(handled_token="2"),
                **counts(0, total=0),
            ),
            (
                normal(
                    c.RETRYING,
                    "compute gpu-cluster failed: quota; deleting it to create it again (gpumodel.io/retry-now)",
                ),
            ),
            requeue_after=10,
        ),
    ),
    "a-compute-of-unknown-size-fails-deciding": Case(
        facts(observe(compute(gpus=0, capacity_error="its GPUs cannot be counted"), ABSENT)),
        Decision(
            Action.NONE,
            0,
            status(
                cond(c.COMPUTE_READY, False, c.INVALID_VM_SIZE, "compute gpu-cluster: its GPUs cannot be counted"),
                cond(c.READY, False, c.INVALID_VM_SIZE, "compute gpu-cluster: its GPUs cannot be counted"),
                phase=Phase.FAILED,
                last_error="compute gpu-cluster: its GPUs cannot be counted",
                **counts(0, total=0),
            ),
            (warning(c.INVALID_VM_SIZE, "compute gpu-cluster: its GPUs cannot be counted"),),
            permanent=True,
        ),
    ),
    # ---- the service -----------------------------------------------------------------------------------
    "an-absent-service-is-deployed": Case(
        facts(observe(compute(), ABSENT)),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.DEPLOYING, "deploying service digits-svc"),
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "deploying service digits-svc"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                **counts(2),
            ),
            (normal(c.DEPLOYED_SERVICE, "deploying service digits-svc"),),
            requeue_after=10,
        ),
    ),
    "replicas-are-capped-visibly": Case(
        facts(observe(compute(), ABSENT), spec=spec(replicas=3)),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.DEPLOYING, "deploying service digits-svc"),
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "deploying service digits-svc"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                **counts(2, requested=3),
            ),
            (
                warning(
                    c.REPLICAS_CAPPED,
                    "replicas capped at 2: 3 replicas requested but the compute has 2 GPUs "
                    "(2 node(s) of 1 GPU(s)); replicas of 1 GPU(s), each on one node, allow 2",
                ),
                normal(c.DEPLOYED_SERVICE, "deploying service digits-svc"),
            ),
            requeue_after=10,
        ),
    ),
    "no-gpu-free-is-insufficient-not-failed": Case(
        facts(observe(compute(), ABSENT, others=(1, 1))),
        Decision(
            Action.NONE,
            0,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.INSUFFICIENT_GPUS,
                    "cannot deploy digits-svc: 2 replicas requested "
                    "but the compute has 2 GPUs (2 node(s) of 1 GPU(s), 2 held by other services); replicas of "
                    "1 GPU(s), each on one node, allow 0",
                ),
                cond(
                    c.READY,
                    False,
                    c.INSUFFICIENT_GPUS,
                    "cannot deploy digits-svc: 2 replicas requested but the "
                    "compute has 2 GPUs (2 node(s) of 1 GPU(s), 2 held by other services); replicas of 1 GPU(s), "
                    "each on one node, allow 0",
                ),
                phase=Phase.DEGRADED,
                last_error="cannot deploy digits-svc: 2 replicas requested but the compute has 2 GPUs (2 node(s) "
                "of 1 GPU(s), 2 held by other services); replicas of 1 GPU(s), each on one node, allow 0",
                **counts(0, others=2),
            ),
            (
                warning(
                    c.INSUFFICIENT_GPUS,
                    "replicas capped at 0: 2 replicas requested but the compute has 2 GPUs "
                    "(2 node(s) of 1 GPU(s), 2 held by other services); replicas of 1 GPU(s), each on one node, "
                    "allow 0",
                ),
            ),
        ),
    ),
    "a-transitioning-service-is-waited-for": Case(
        facts(observe(compute(), service(ServiceState.TRANSITIONING))),
        Decision(
            Action.NONE,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.DEPLOYING, "service digits-svc is updating"),
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "service digits-svc is updating"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                **counts(2),
            ),
            requeue_after=10,
        ),
    ),
    "changed-inputs-redeploy": Case(
        facts(observe(compute(), service(fingerprint="old"))),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.DEPLOYING,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
                cond(
                    c.READY,
                    False,
                    c.WAITING_FOR_SERVICE,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                **counts(2),
            ),
            (
                normal(
                    c.REDEPLOYED_SERVICE,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
            ),
            requeue_after=10,
        ),
    ),
    "a-rolling-update-without-room-is-not-started": Case(
        facts(observe(compute(surges_on_redeploy=True), service(fingerprint="old"))),
        Decision(
            Action.NONE,
            2,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.INSUFFICIENT_GPUS,
                    "cannot redeploy service digits-svc: a rolling "
                    "update of 2 replica(s) starts a new replica of 1 GPU(s) beside the old ones, and no node of "
                    "compute gpu-cluster has room; the old replicas keep serving. Free GPUs, add nodes, or lower "
                    "the replicas",
                ),
                cond(
                    c.READY,
                    False,
                    c.INSUFFICIENT_GPUS,
                    "cannot redeploy service digits-svc: a rolling update of "
                    "2 replica(s) starts a new replica of 1 GPU(s) beside the old ones, and no node of compute "
                    "gpu-cluster has room; the old replicas keep serving. Free GPUs, add nodes, or lower the "
                    "replicas",
                ),
                phase=Phase.DEGRADED,
                ownership=CREATED,
                last_error="cannot redeploy service digits-svc: a rolling update of 2 replica(s) starts a new "
                "replica of 1 GPU(s) beside the old ones, and no node of compute gpu-cluster has room; the old "
                "replicas keep serving. Free GPUs, add nodes, or lower the replicas",
                **counts(2),
            ),
            (
                warning(
                    c.INSUFFICIENT_GPUS,
                    "cannot redeploy service digits-svc: a rolling update of 2 replica(s) "
                    "starts a new replica of 1 GPU(s) beside the old ones, and no node of compute gpu-cluster has "
                    "room; the old replicas keep serving. Free GPUs, add nodes, or lower the replicas",
                ),
            ),
        ),
    ),
    "replica-drift-scales-in-place": Case(
        facts(observe(compute(), service(replicas=1))),
        Decision(
            Action.SCALE,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.UPDATING, "scaling service digits-svc from 1 to 2 replicas"),
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "scaling service digits-svc from 1 to 2 replicas"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.SCALE),
                **counts(2),
            ),
            (normal(c.SCALED_SERVICE, "scaling service digits-svc from 1 to 2 replicas"),),
            requeue_after=10,
        ),
    ),
    "a-scale-the-backend-refused-is-reported-not-repeated": Case(
        facts(
            observe(compute(), service(replicas=1, message="0/2 nodes are available: Insufficient nvidia.com/gpu")),
            previous=GpuModelDeploymentStatus(operation=op(Action.SCALE)),
        ),
        Decision(
            Action.NONE,
            1,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.SCALE_FAILED,
                    "scaling service digits-svc to 2 replicas failed: 0/2 "
                    "nodes are available: Insufficient nvidia.com/gpu",
                ),
                cond(
                    c.READY,
                    False,
                    c.SCALE_FAILED,
                    "scaling service digits-svc to 2 replicas failed: 0/2 nodes "
                    "are available: Insufficient nvidia.com/gpu",
                ),
                phase=Phase.DEGRADED,
                ownership=CREATED,
                last_error="scaling service digits-svc to 2 replicas failed: 0/2 nodes are available: "
                "Insufficient nvidia.com/gpu",
                **counts(1),
            ),
            (
                warning(
                    c.SCALE_FAILED,
                    "scaling service digits-svc to 2 replicas failed: 0/2 nodes are available: "
                    "Insufficient nvidia.com/gpu",
                ),
            ),
        ),
    ),
    "unhealthy-replicas-are-repaired": Case(
        facts(observe(compute(), service(ServiceState.UNHEALTHY, message="replica 0 exited"))),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.DEPLOYING, "repairing service digits-svc: replica 0 exited"),
                cond(c.READY, False, c.WAITING_FOR_SERVICE, "repairing service digits-svc: replica 0 exited"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                **counts(2),
            ),
            (normal(c.REDEPLOYED_SERVICE, "repairing service digits-svc: replica 0 exited"),),
            requeue_after=10,
        ),
    ),
    "healthy-awaits-the-probe": Case(
        facts(observe(compute(), service())),
        Decision(
            Action.NONE,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, True, c.SERVICE_HEALTHY, HEALTHY),
                cond(c.READY, False, c.PROBE_PENDING, "scoring probe: waiting for the scoring probe"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                **counts(2),
            ),
            requeue_after=10,
        ),
    ),
    "a-failed-probe-is-not-ready": Case(
        facts(observe(compute(), service(), probe=ProbeResult(False, "GET x answered 503"))),
        Decision(
            Action.NONE,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, True, c.SERVICE_HEALTHY, HEALTHY),
                cond(c.READY, False, c.PROBE_FAILED, "scoring probe: GET x answered 503"),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                **counts(2),
            ),
            requeue_after=10,
        ),
    ),
    "probed-is-ready-and-publishes-the-keys": Case(
        facts(observe(compute(), service(), probe=ProbeResult(True), keys=KEYS)),
        Decision(
            Action.NONE,
            2,
            ready_status(),
            (normal(c.KEYS_PUBLISHED, f"scoring URI and keys are in Secret {SECRET}"),),
            publish={"scoringUri": URI, "primaryKey": "k1", "secondaryKey": "k2"},
        ),
    ),
    "rotated-keys-are-published-again": Case(
        facts(
            observe(compute(), service(), probe=ProbeResult(True), keys=("k3", "k2"), secret=OURS),
            previous=ready_status(),
        ),
        Decision(
            Action.NONE,
            2,
            ready_status(),
            (normal(c.KEYS_PUBLISHED, f"refreshed: scoring URI and keys in Secret {SECRET}"),),
            publish={"scoringUri": URI, "primaryKey": "k3", "secondaryKey": "k2"},
        ),
    ),
    "a-settled-secret-is-not-written": Case(
        facts(observe(compute(), service(), probe=ProbeResult(True), keys=KEYS, secret=OURS), previous=ready_status()),
        Decision(Action.NONE, 2, ready_status()),
    ),
    "someone-elses-secret-is-a-conflict": Case(
        facts(
            observe(
                compute(),
                service(),
                probe=ProbeResult(True),
                keys=KEYS,
                secret=PublishedSecret({"password": "x"}, ours=False),
            )
        ),
        Decision(
            Action.NONE,
            2,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, True, c.SERVICE_HEALTHY, HEALTHY),
                cond(c.READY, False, c.SECRET_CONFLICT, CONFLICT),
                phase=Phase.FAILED,
                ownership=CREATED,
                last_error=CONFLICT,
                **counts(2),
            ),
            (warning(c.SECRET_CONFLICT, CONFLICT),),
            requeue_after=60,
        ),
    ),
    "another-resources-service-is-a-conflict": Case(
        facts(observe(compute(), service(owner="team-b/other"))),
        Decision(
            Action.NONE,
            0,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.SERVICE_CONFLICT,
                    "service name digits-svc is already used by GpuModelDeployment team-b/other; choose another name",
                ),
                cond(
                    c.READY,
                    False,
                    c.SERVICE_CONFLICT,
                    "service name digits-svc is already used by GpuModelDeployment team-b/other; choose another name",
                ),
                phase=Phase.FAILED,
                last_error="service name digits-svc is already used by GpuModelDeployment team-b/other; choose "
                "another name",
                **counts(0),
            ),
            (
                warning(
                    c.SERVICE_CONFLICT,
                    "service name digits-svc is already used by GpuModelDeployment team-b/other; choose another name",
                ),
            ),
            permanent=True,
        ),
    ),
    "a-service-made-outside-the-operator-is-left-alone": Case(
        facts(observe(compute(), service(owner=None, fingerprint=None))),
        Decision(
            Action.NONE,
            0,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.SERVICE_EXISTS, EXISTS),
                cond(c.READY, False, c.SERVICE_EXISTS, EXISTS),
                phase=Phase.FAILED,
                ownership=Ownership(compute_created=True, service_adopted=True),
                last_error=EXISTS,
                **counts(0),
            ),
            (warning(c.SERVICE_EXISTS, EXISTS),),
            permanent=True,
        ),
    ),
    "a-service-of-an-earlier-resource-of-this-name-is-not-ours": Case(
        # Deleted with Retain and created again, or the same namespace/name in another cluster: another uid.
        facts(observe(compute(), service(owner="team-a/digits/uid-0"))),
        Decision(
            Action.NONE,
            0,
            status(
                COMPUTE_OK,
                cond(c.SERVICE_READY, False, c.SERVICE_EXISTS, EARLIER),
                cond(c.READY, False, c.SERVICE_EXISTS, EARLIER),
                phase=Phase.FAILED,
                ownership=Ownership(compute_created=True, service_adopted=True),
                last_error=EARLIER,
                **counts(0),
            ),
            (warning(c.SERVICE_EXISTS, EARLIER),),
            permanent=True,
        ),
    ),
    "a-tag-from-before-uids-is-ours-by-our-own-record": Case(
        facts(
            observe(compute(), service(owner=LEGACY_OWNER), probe=ProbeResult(True), keys=KEYS, secret=OURS),
            previous=ready_status(),
        ),
        Decision(Action.NONE, 2, ready_status()),
    ),
    "taking-over-is-explicit": Case(
        facts(observe(compute(), service(owner=None, fingerprint=None), take_over=True)),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.DEPLOYING,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
                cond(
                    c.READY,
                    False,
                    c.WAITING_FOR_SERVICE,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                **counts(2),
            ),
            (
                normal(
                    c.REDEPLOYED_SERVICE,
                    "redeploying service digits-svc: entry script, environment, model or resources changed",
                ),
            ),
            requeue_after=10,
        ),
    ),
    "a-failure-says-when-it-is-retried": Case(
        facts(observe(compute(), service(ServiceState.FAILED, message="pip could not reach the index"))),
        Decision(
            Action.NONE,
            0,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.SERVICE_FAILED,
                    f"service digits-svc failed: pip could not reach the index; {RETRY_HINT}",
                ),
                cond(
                    c.READY,
                    False,
                    c.SERVICE_FAILED,
                    f"service digits-svc failed: pip could not reach the index; {RETRY_HINT}",
                ),
                phase=Phase.FAILED,
                ownership=CREATED,
                retry=Retry(next_at="2026-01-01T00:15:00Z"),
                last_error=f"service digits-svc failed: pip could not reach the index; {RETRY_HINT}",
                **counts(2),
            ),
            (warning(c.SERVICE_FAILED, "service digits-svc failed: pip could not reach the index"),),
            permanent=True,
        ),
    ),
    "retry-now-redeploys-a-failed-service": Case(
        facts(
            observe(
                compute(),
                service(ServiceState.FAILED, message="pip could not reach the index"),
                retry_token="1733000000",
            )
        ),
        Decision(
            Action.DEPLOY,
            2,
            status(
                COMPUTE_OK,
                cond(
                    c.SERVICE_READY,
                    False,
                    c.DEPLOYING,
                    "retrying service digits-svc (attempt 1, as "
                    "gpumodel.io/retry-now asked) after: service digits-svc failed: pip could not reach the index",
                ),
                cond(
                    c.READY,
                    False,
                    c.WAITING_FOR_SERVICE,
                    "retrying service digits-svc (attempt 1, as "
                    "gpumodel.io/retry-now asked) after: service digits-svc failed: pip could not reach the index",
                ),
                phase=Phase.DEPLOYING,
                ownership=CREATED,
                operation=op(Action.DEPLOY),
                retry=Retry(handled_token="1733000000", attempts=1),
                **counts(2),
            ),
            (
                normal(
                    c.RETRYING,
                    "retrying service digits-svc (attempt 1, as gpumodel.io/retry-now asked) after: "
                    "service digits-svc failed: pip could not reach the index",
                ),
            ),
            requeue_after=10,
        ),
    ),
}


def with_kstatus(decision: Decision) -> Decision:
    """The case's decision with the Reconciling and Stalled conditions every pass derives from its phase and Ready
    (tests/unit/test_kstatus.py holds that derivation to its own table)."""
    status = decision.status.model_copy(deep=True)
    derive_kstatus(status, 3, NOW)
    return replace(decision, status=status)


def with_cost(facts: Facts, decision: Decision) -> Decision:
    """The case's decision with the cost estimate every pass that observed records (tests/unit/test_costs.py holds
    the estimate to its own table)."""
    status = decision.status.model_copy(deep=True)
    record_cost(facts, status)
    return replace(decision, status=status)


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    case = CASES[name]
    assert decide(case.facts) == with_cost(case.facts, with_kstatus(case.want))


# ---- rules over several passes ------------------------------------------------------------------------


def test_running_twice_changes_nothing() -> None:
    o = observe(compute(), service(), probe=ProbeResult(True), keys=KEYS, secret=OURS)
    first = decide(facts(o))
    second = decide(replace(facts(o), previous=first.status, now="2026-01-01T01:00:00Z"))
    assert second.status == first.status and second.action == Action.NONE and second.events == ()


def test_the_transition_time_moves_only_when_the_value_does() -> None:
    first = decide(facts(observe(compute(), ABSENT)))
    later = decide(
        replace(
            facts(observe(compute(), service(ServiceState.TRANSITIONING))),
            previous=first.status,
            now="2026-01-01T00:05:00Z",
        )
    )
    before = next(x for x in first.status.conditions if x.type == c.READY)
    after = next(x for x in later.status.conditions if x.type == c.READY)
    assert before.last_transition_time == after.last_transition_time == NOW


def test_a_retry_now_value_is_acted_on_once() -> None:
    failed = service(ServiceState.FAILED, message="x")
    retried = decide(facts(observe(compute(), failed, retry_token="7")))
    again = decide(replace(facts(observe(compute(), failed, retry_token="7")), previous=retried.status))
    assert retried.action == Action.DEPLOY and again.action == Action.NONE
    assert again.status.retry.attempts == 1


def test_automatic_retries_back_off() -> None:
    failed = service(ServiceState.FAILED, message="x")
    first = decide(facts(observe(compute(), failed)))
    early = decide(replace(facts(observe(compute(), failed)), previous=first.status, now="2026-01-01T00:14:59Z"))
    assert early.action == Action.NONE
    due = decide(replace(facts(observe(compute(), failed)), previous=first.status, now="2026-01-01T00:15:00Z"))
    assert due.action == Action.DEPLOY and due.status.retry.attempts == 1
    still = decide(replace(facts(observe(compute(), failed)), previous=due.status, now="2026-01-01T00:16:00Z"))
    assert still.status.retry.next_at == "2026-01-01T00:46:00Z"  # twice the base after the second failure
    healthy = decide(
        replace(
            facts(observe(compute(), service(), probe=ProbeResult(True), keys=KEYS, secret=OURS)), previous=still.status
        )
    )
    assert healthy.status.retry == Retry()


def test_a_compute_is_ours_only_by_its_tag_or_a_take_over() -> None:
    """A stale record of having started a create never makes a compute someone else made ours."""
    theirs = compute(created_by_operator=False)
    stale = GpuModelDeploymentStatus(ownership=Ownership(compute_created=True))
    adopted = decide(replace(facts(observe(theirs, ABSENT)), previous=stale)).status
    assert adopted.ownership.compute_adopted and not adopted.ownership.compute_created
    assert next(x for x in adopted.conditions if x.type == c.COMPUTE_READY).reason == c.COMPUTE_ADOPTED
    taken = decide(replace(facts(observe(theirs, ABSENT, take_over=True)), previous=stale)).status
    assert taken.ownership.compute_created and not taken.ownership.compute_adopted


def test_a_compute_tagged_for_an_earlier_resource_of_the_name_is_adopted() -> None:
    """Issue 20, defect 3: the owner tag with the uid decides, not managed-by; a pre-uid tag of this name is ours
    only where our own record says we created it."""
    kept = compute(created_by_operator=False, owner="team-a/digits/uid-0")  # an earlier one's, kept by Retain
    fresh = decide(facts(observe(kept, ABSENT))).status
    assert (fresh.ownership.compute_adopted, fresh.ownership.compute_created) == (True, False)
    assert next(x for x in fresh.conditions if x.type == c.COMPUTE_READY).reason == c.COMPUTE_ADOPTED
    legacy = compute(created_by_operator=False, owner=LEGACY_OWNER)
    recorded = GpuModelDeploymentStatus(ownership=Ownership(compute_created=True))
    assert decide(replace(facts(observe(legacy, ABSENT)), previous=recorded)).status.ownership.compute_created
    assert decide(facts(observe(legacy, ABSENT))).status.ownership.compute_adopted


def test_the_cap_warning_is_not_repeated_for_the_same_cap() -> None:
    capped = decide(facts(observe(compute(), ABSENT), spec=spec(replicas=3)))
    again = decide(
        replace(
            facts(observe(compute(), service(ServiceState.TRANSITIONING)), spec=spec(replicas=3)),
            previous=capped.status,
        )
    )
    assert [e.reason for e in capped.events] == [c.REPLICAS_CAPPED, c.DEPLOYED_SERVICE]
    assert again.events == ()


def short(requested: int, gpus: str, replica_gpus: int, fits: int) -> Capacity:
    """Fewer replicas fit than were requested: the cap and why."""
    message = (
        f"{requested} replicas requested but the compute has {gpus}; replicas of {replica_gpus} GPU(s), each on one "
        f"node, allow {fits}"
    )
    return Capacity(fits, False, message)


def too_big(replica_gpus: int, largest: int) -> Capacity:
    """One replica needs more GPUs than any node has."""
    message = f"each replica needs {replica_gpus} GPUs on one node, and no node of the compute has more than {largest}"
    return Capacity(0, False, message)


@dataclass(frozen=True)
class Cap:
    requested: int
    gpu_cores: int
    #: GPUs of each node, and of each other service's replica.
    nodes: tuple[int, ...]
    others: tuple[int, ...]
    want: Capacity


CAPS: dict[str, Cap] = {
    "capped": Cap(3, 1, (1, 1), (), short(3, "2 GPUs (2 node(s) of 1 GPU(s))", 1, 2)),
    "fits": Cap(1, 1, (1, 1), (), Capacity(1, False, "")),
    # others spread one per node: 3 + 3 free, one 2-GPU replica fits on each
    "two-per-replica": Cap(
        4, 2, (4, 4), (1, 1), short(4, "8 GPUs (2 node(s) of 4 GPU(s), 2 held by other services)", 2, 2)
    ),
    "one-big-node": Cap(2, 2, (2, 1), (), short(2, "3 GPUs (2 node(s) of 1/2 GPUs)", 2, 1)),
    "all-held": Cap(
        5, 1, (2, 2), (1, 1, 1, 1), short(5, "4 GPUs (2 node(s) of 2 GPU(s), 4 held by other services)", 1, 0)
    ),
    "no-gpu": Cap(1, 1, (), (), too_big(1, 0)),
    # 3 GPUs free, none two on one node
    "never-spans-nodes": Cap(1, 2, (1, 1, 1), (), too_big(2, 1)),
    # fragmentation: 2 free, one on each node
    "fragmented-by-others": Cap(
        1, 2, (2, 2), (1, 1), short(1, "4 GPUs (2 node(s) of 2 GPU(s), 2 held by other services)", 2, 0)
    ),
    "others-fill-one-node": Cap(2, 1, (2, 2), (2,), Capacity(2, False, "")),
}


@pytest.mark.parametrize("name", CAPS)
def test_cap_arithmetic(name: str) -> None:
    case = CAPS[name]
    cap = capped_replicas(case.requested, case.gpu_cores, case.nodes, case.others, cpu_only=False, allow_cpu=False)
    assert cap == case.want


def test_cpu_only_machine_needs_opt_in() -> None:
    assert capped_replicas(2, 1, (), (), cpu_only=True, allow_cpu=False).effective == 0
    fallback = capped_replicas(2, 1, (), (), cpu_only=True, allow_cpu=True)
    assert (fallback.effective, fallback.cpu_fallback) == (2, True)


def local_spec(allow_cpu: bool) -> GpuModelDeploymentSpec:
    return parse_spec(
        {
            "backend": "local",
            "model": {"path": "/models/digits"},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "digits-svc", "replicas": 2},
            "local": {"allowCpuFallback": allow_cpu},
        }
    )


@dataclass(frozen=True)
class CpuCase:
    """A CPU-only machine: whether the spec serves on it, as the status, the action and the replicas say."""

    spec: GpuModelDeploymentSpec
    cpu_fallback: bool
    action: Action
    replicas: int


CPU_FALLBACK: dict[str, CpuCase] = {
    "local-opted-in": CpuCase(local_spec(allow_cpu=True), True, Action.DEPLOY, 2),
    "local-not-opted-in": CpuCase(local_spec(allow_cpu=False), False, Action.NONE, 0),
    "azureml-has-no-such-option": CpuCase(spec(), False, Action.NONE, 0),
}


@pytest.mark.parametrize("name", CPU_FALLBACK)
def test_only_a_local_spec_that_opts_in_serves_on_cpu(name: str) -> None:
    case = CPU_FALLBACK[name]
    cpu_only = ObservedCompute("local", ComputeState.READY, (), cpu_only=True, created_by_operator=True)
    decision = decide(facts(observe(cpu_only, ABSENT), spec=case.spec))
    said = (decision.status.cpu_fallback, decision.action, decision.replicas)
    assert said == (case.cpu_fallback, case.action, case.replicas)


def test_an_absent_attached_cluster_is_attached_not_created() -> None:
    attached = parse_spec(
        {
            **spec().to_wire(),
            "compute": {"name": "gpu-cluster", "attach": {"resourceGroup": "aks-rg", "clusterName": "aks"}},
        }
    )
    decision = decide(facts(observe(compute(ComputeState.ABSENT, gpus=0), ABSENT), spec=attached))
    assert decision.action == Action.CREATE_COMPUTE
    assert decision.events == (normal(c.CREATED_COMPUTE, "attaching compute gpu-cluster"),)


# ---- the resync of a settled resource -----------------------------------------------------------------


def test_a_ready_uncapped_generation_is_settled_for_the_short_resync() -> None:
    assert settled(ready_status(), 3, requested=2)
    assert not settled(ready_status(), 4, requested=2)  # a new generation takes the full pass
    assert not settled(ready_status(), 3, requested=3)  # so does a changed replica count
    assert not settled(ready_status().model_copy(update={"last_error": "x"}), 3, requested=2)


@dataclass(frozen=True)
class Drift:
    """A settled resource's next observation, and whether it is still settled."""

    svc: ObservedService
    probe: ProbeResult | None
    keys: tuple[str, str] | None
    secret: PublishedSecret | None
    settled: bool


DRIFT: dict[str, Drift] = {
    "settled": Drift(service(), ProbeResult(True), KEYS, OURS, True),
    "probe-fails": Drift(service(), ProbeResult(False, "503"), KEYS, OURS, False),
    "no-probe": Drift(service(), None, KEYS, OURS, False),
    "replica-died": Drift(service(replicas=1), ProbeResult(True), KEYS, OURS, False),
    # redeployed behind our back
    "redeployed": Drift(service(fingerprint="fp-old"), ProbeResult(True), KEYS, OURS, False),
    "unhealthy": Drift(service(ServiceState.UNHEALTHY), ProbeResult(True), KEYS, OURS, False),
    # deleted out of band
    "deleted": Drift(ABSENT, None, None, OURS, False),
    # a key regenerated at Azure
    "key-regenerated": Drift(service(), ProbeResult(True), ("k9", "k2"), OURS, False),
    # the Secret deleted
    "secret-deleted": Drift(service(), ProbeResult(True), KEYS, None, False),
}


@pytest.mark.parametrize("name", DRIFT)
def test_drift_seen_by_the_short_resync(name: str) -> None:
    case = DRIFT[name]
    seen = observe(compute(), case.svc, probe=case.probe, keys=case.keys, secret=case.secret)
    assert still_settled(ready_status(), seen) is case.settled


def test_events_are_typed() -> None:
    assert normal("R", "m") == Event("Normal", "R", "m") and warning("R", "m") == Event("Warning", "R", "m")


@dataclass(frozen=True)
class Observes:
    policy: str
    budget_wait: float
    observes: bool


OBSERVES: dict[str, Observes] = {
    "manage": Observes("manage", 0.0, True),
    "detach-on-delete: it changes only what deletion does": Observes("detach-on-delete", 0.0, True),
    "skip": Observes("skip", 0.0, False),
    "an unknown policy is reported, never acted on": Observes("sometimes", 0.0, False),
    "manage over the call budget": Observes("manage", 3.0, False),
    "detach-on-delete over the call budget": Observes("detach-on-delete", 3.0, False),
}


@pytest.mark.parametrize("name", OBSERVES)
def test_which_passes_call_the_backend(name: str) -> None:
    case = OBSERVES[name]
    assert may_observe(case.policy, case.budget_wait) is case.observes


def test_taking_over_an_earlier_resources_service_redeploys_it_under_this_ones_tag() -> None:
    """Same inputs (fingerprint) as the earlier resource of this name: redeployed anyway, so that the service is
    tagged as this resource's, deleted with it, and no longer needs the annotation."""
    earlier = service(owner="team-a/digits/uid-0")
    decision = decide(facts(observe(compute(), earlier, take_over=True)))
    assert decision.action == Action.DEPLOY
    message = "redeploying service digits-svc from this resource's spec (taken over)"
    assert decision.events == (normal(c.REDEPLOYED_SERVICE, message),)


def test_a_record_of_creating_it_does_not_outweigh_another_resources_tag() -> None:
    """Our status says we made it, but its tag now names another uid (an earlier resource of this name, or another
    cluster's that took it over since): the record stands for a missing tag, never against another's."""
    taken = service(owner="team-a/digits/uid-9")
    decision = decide(facts(observe(compute(), taken), previous=ready_status()))
    assert decision.action == Action.NONE
    ready = next(x for x in decision.status.conditions if x.type == c.READY)
    assert ready.reason == c.SERVICE_EXISTS and "another GpuModelDeployment named team-a/digits" in ready.message
