"""The deletion core as named cases: everything a deletion step could learn in (the annotation, the backend, the
spec, a problem loading the inputs, what the backend shows, what the status records), the whole step out: its
action, message and events, and the status it writes (Ready False, reason Deleting, or what blocks it). Pure: no
Kubernetes, no backend; but for the last test, the controller's deletion of a spec it cannot parse (a fake for the
keys Secret, no backend)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.annotations import POLICY_DETACH, RECONCILE_POLICY
from gpu_model_operator.backends.base import ComputeState, ObservedCompute, ObservedService, ServiceState
from gpu_model_operator.controller import Controller
from gpu_model_operator.decision import DeleteAction, Event, Problem, normal, warning
from gpu_model_operator.deletion import DeletionDecision, DeletionFacts, created_nothing, decide_deletion
from gpu_model_operator.inputs import Resource
from gpu_model_operator.kube import KubeClient
from gpu_model_operator.models import (
    AzureMLSpec,
    BackendKind,
    DeletionPolicy,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    Operation,
    Ownership,
    Phase,
    parse_spec,
)
from gpu_model_operator.settings import Settings
from tests.unit.test_reconcile import ABSENT, LEGACY_OWNER, OWNER, compute, local_spec, service, spec


def retained(spec_: AzureMLSpec) -> AzureMLSpec:
    return spec_.model_copy(
        update={"compute": spec_.compute.model_copy(update={"deletion_policy": DeletionPolicy.RETAIN})}
    )


def v2_spec(policy: str = "Delete") -> GpuModelDeploymentSpec:
    return parse_spec(
        {
            **spec().to_wire(),
            "backend": "azureml-v2",
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}, "deletionPolicy": policy},
        }
    )


def waiting_for(who: str) -> str:
    """The creator of a compute that others still use, deleting it: the compute goes once they are gone."""
    return (
        f"waiting to delete compute gpu-cluster (deletionPolicy: Delete): still used by {who}; it is deleted once "
        f"they are gone, or annotate {RECONCILE_POLICY}={POLICY_DETACH} to leave it running"
    )


@dataclass(frozen=True)
class Case:
    """What the backend shows (``svc`` None: not observed, ``problem`` says why), what the status records, and the
    step wanted (its ``status`` left out: :class:`Step` compares what it says)."""

    svc: ObservedService | None
    comp: ObservedCompute | None
    ownership: Ownership
    want: DeletionDecision
    others: int = 0
    spec: GpuModelDeploymentSpec | None = field(default_factory=spec)
    policy: str = "manage"
    backend_enabled: bool = True
    problem: Problem | None = None
    status: GpuModelDeploymentStatus | None = None


@dataclass(frozen=True)
class Step:
    """A deletion step as the user reads it: the action, message and events, and the status's Ready reason and
    phase while it is not done."""

    action: DeleteAction
    message: str
    events: tuple[Event, ...]
    ready: str | None
    phase: Phase | None
    error_reason: str | None


def step_of(decision: DeletionDecision) -> Step:
    status = decision.status
    ready = next((cond for cond in status.conditions if cond.type == c.READY), None) if status else None
    phase = status.phase if status else None
    return Step(
        decision.action,
        decision.message,
        decision.events,
        ready.reason if ready else None,
        phase,
        decision.error_reason,
    )


def expected(case: Case) -> Step:
    """Not done: Ready False with reason Deleting (or what blocks it) and phase Deleting; done: no status."""
    want = case.want
    done = want.action == DeleteAction.DONE
    return Step(
        want.action,
        want.message,
        want.events,
        None if done else (want.error_reason or c.DELETING),
        None if done else Phase.DELETING,
        want.error_reason,
    )


LEAVE_THEIRS = "leaving service digits-svc: the operator did not create it for this resource"
DETACHED = "gpumodel.io/reconcile-policy: detach-on-delete; the service and compute are left running"
SKIPPED = "gpumodel.io/reconcile-policy: skip; the service and compute are left running"
UNSERVED = (
    "cannot finish deletion: backend azureml is not enabled in this operator, and it made service digits-svc for "
    "this resource: enable the backend (--backend) to delete them, or annotate "
    "gpumodel.io/reconcile-policy=detach-on-delete to leave them running"
)
NOTHING_UNSERVED = "backend azureml is not enabled in this operator: nothing of it was touched"
INVALID = "the spec is invalid: spec.model.path: Field required"
NO_SECRET = "Secret sp not found in namespace team-a; create it with keys tenantId, clientId, clientSecret"
THROTTLED = "reading service digits-svc: throttled by Azure (HTTP 429)"
RETAIN_ENDPOINT = "retaining endpoint digits-svc (deletionPolicy: Retain); it still bills until you delete it"
DELETE_COMPUTE = "deleting compute gpu-cluster (deletionPolicy: Delete)"
CASES: dict[str, Case] = {
    "the-service-first": Case(
        service(), compute(), Ownership(service_created=True),
        DeletionDecision(DeleteAction.DELETE_SERVICE, "deleting service digits-svc",
                         (normal(c.DELETED_SERVICE, "deleting service digits-svc"),)),
    ),
    "waits-for-the-service": Case(
        service(ServiceState.DELETING), compute(), Ownership(),
        DeletionDecision(DeleteAction.WAIT, "waiting for service digits-svc to be deleted"),
    ),
    "then-the-compute": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.DELETE_COMPUTE, DELETE_COMPUTE, (normal(c.DELETED_COMPUTE, DELETE_COMPUTE),)),
    ),
    "retain-keeps-the-cluster-and-says-it-bills": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "retaining compute gpu-cluster (deletionPolicy: Retain); it still bills until you delete it",
            (normal(c.RETAINED_COMPUTE,
                    "retaining compute gpu-cluster (deletionPolicy: Retain); it still bills until you delete it"),),
        ),
        spec=retained(spec()),
    ),
    # The compute leak the invariants found: the creator of a shared compute waits for its users, then deletes it
    # (one that merely adopted it never deletes it, so leaving it here would leave it billing for good).
    "the-creator-of-a-shared-compute-waits-for-its-other-users": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, waiting_for("1 other deployment(s)")),
        others=1,
    ),
    "a-shared-compute-retained-is-left-to-its-other-users": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it"),),
        ),
        others=1,
        spec=retained(spec()),
    ),
    "an-adopted-compute-is-never-deleted": Case(
        ABSENT, compute(created_by_operator=False), Ownership(compute_adopted=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: the operator did not create it",
            (normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: the operator did not create it"),),
        ),
    ),
    # Issue 20, defect 3: a compute tagged for another resource of this name (an earlier one kept by Retain, or
    # another cluster's) is never deleted with this one, whatever a status written before the fix recorded.
    "issue-20-a-compute-tagged-for-an-earlier-resource-of-this-name-is-left": Case(
        ABSENT, compute(created_by_operator=False, owner="team-a/digits/uid-0"), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: the operator did not create it",
            (normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: the operator did not create it"),),
        ),
    ),
    "waits-for-the-compute": Case(
        ABSENT, compute(ComputeState.DELETING), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, "waiting for compute gpu-cluster to be deleted"),
    ),
    "already-gone-is-success": Case(
        ABSENT, compute(ComputeState.ABSENT), Ownership(),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
    ),
    "an-attached-cluster-is-detached-never-deleted": Case(
        ABSENT, compute(attached=True), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DELETE_COMPUTE,
            "detaching cluster gpu-cluster (attached clusters are never deleted)",
            (normal(c.DETACHED_COMPUTE, "detaching cluster gpu-cluster (attached clusters are never deleted)"),),
        ),
    ),
    "the-adoption-record-wins-over-a-tag": Case(
        service(),  # our tag on it, but the record says adopted (someone else put the tag there)
        compute(), Ownership(service_adopted=True, compute_created=True),
        DeletionDecision(DeleteAction.WAIT, waiting_for("team-a/digits"), (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),)),
    ),
    "a-conflicting-service-elsewhere-does-not-keep-our-compute": Case(
        service(owner="team-b/other", compute_name="their-cluster"), compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DELETE_COMPUTE,
            DELETE_COMPUTE,
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS), normal(c.DELETED_COMPUTE, DELETE_COMPUTE)),
        ),
    ),
    "a-service-left-on-our-compute-keeps-it-whatever-the-letter-case": Case(
        service(owner="team-b/other", compute_name="GPU-Cluster"), compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, waiting_for("team-b/other"), (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),)),
    ),
    "an-earlier-resource-of-this-name-keeps-its-service": Case(
        service(owner="team-a/digits/uid-0"), compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, waiting_for("team-a/digits"), (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),)),
    ),
    "a-tag-from-before-uids-is-ours-by-our-own-record": Case(
        service(owner=LEGACY_OWNER), compute(), Ownership(service_created=True),
        DeletionDecision(
            DeleteAction.DELETE_SERVICE,
            "deleting service digits-svc",
            (normal(c.DELETED_SERVICE, "deleting service digits-svc"),),
        ),
    ),
    "a-tag-from-before-uids-without-our-record-is-not-ours": Case(
        service(owner=LEGACY_OWNER), compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, waiting_for("team-a/digits"), (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),)),
    ),
    # ---- azureml-v2: the policy is the endpoint's; the compute is never the operator's ------------------
    "azureml-v2-deletes-its-endpoint": Case(
        service(), None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DELETE_SERVICE, "deleting service digits-svc",
                         (normal(c.DELETED_SERVICE, "deleting service digits-svc"),)),
        spec=v2_spec(),
    ),
    "azureml-v2-retain-keeps-the-endpoint-and-says-it-bills": Case(
        service(), None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DONE, RETAIN_ENDPOINT, (normal(c.RETAINED_SERVICE, RETAIN_ENDPOINT),)),
        spec=v2_spec("Retain"),
    ),
    "azureml-v2-is-done-when-the-endpoint-is-gone": Case(
        ABSENT, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
        spec=v2_spec(),
    ),
    # ---- local: this machine is never deleted ---------------------------------------------------------------
    "local-is-done-when-the-service-is-gone": Case(
        ABSENT, compute(), Ownership(service_created=True, compute_created=True),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
        spec=local_spec(allow_cpu=False),
    ),
    # ---- every branch before the backend is decided here too ----------------------------------------------
    "detach-on-delete-leaves-everything-running": Case(
        None, None, Ownership(service_created=True, compute_created=True),
        DeletionDecision(DeleteAction.DONE, DETACHED, (normal(c.DETACHED, DETACHED),)),
        policy="detach-on-delete",
    ),
    "skip-leaves-everything-running": Case(
        None, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DONE, SKIPPED, (normal(c.DETACHED, SKIPPED),)),
        policy="skip",
    ),
    "a-backend-not-enabled-that-made-something-holds-the-finalizer": Case(
        None, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.WAIT, UNSERVED, (warning(c.BACKEND_NOT_ENABLED, UNSERVED),),
                         error_reason=c.BACKEND_NOT_ENABLED),
        backend_enabled=False, status=GpuModelDeploymentStatus(service_name="digits-svc",
                                                                ownership=Ownership(service_created=True)),
    ),
    "a-backend-not-enabled-that-made-nothing-lets-go": Case(
        None, None, Ownership(),
        DeletionDecision(DeleteAction.DONE, NOTHING_UNSERVED, (warning(c.BACKEND_NOT_ENABLED, NOTHING_UNSERVED),)),
        backend_enabled=False,
    ),
    "an-invalid-spec-that-made-something-waits-for-a-fix": Case(
        None, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.WAIT, f"cannot finish deletion: {INVALID}",
                         (warning(c.INVALID_SPEC, f"cannot finish deletion: {INVALID}"),), error_reason=c.INVALID_SPEC),
        spec=None, problem=Problem(c.INVALID_SPEC, INVALID, transient=False),
    ),
    "credentials-gone-while-something-exists-waits-and-says-so": Case(
        None, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.WAIT, f"cannot finish deletion: {NO_SECRET}",
                         (warning(c.CREDENTIALS_INVALID, f"cannot finish deletion: {NO_SECRET}"),),
                         error_reason=c.CREDENTIALS_INVALID),
        problem=Problem(c.CREDENTIALS_INVALID, NO_SECRET, transient=False),
    ),
    "credentials-never-there-and-nothing-made-lets-go": Case(
        None, None, Ownership(),
        DeletionDecision(DeleteAction.DONE, f"nothing to delete: nothing was created for this resource ({NO_SECRET})"),
        problem=Problem(c.CREDENTIALS_INVALID, NO_SECRET, transient=False),
    ),
    "azure-throttling-waits-it-out": Case(
        None, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.WAIT, f"cannot finish deletion: {THROTTLED}",
                         (warning(c.BACKEND_UNAVAILABLE, f"cannot finish deletion: {THROTTLED}"),),
                         error_reason=c.BACKEND_UNAVAILABLE),
        problem=Problem(c.BACKEND_UNAVAILABLE, THROTTLED, transient=True, retry_after=5),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    case = CASES[name]
    status = case.status or GpuModelDeploymentStatus(ownership=case.ownership)
    facts = DeletionFacts(
        status,
        3,
        "2026-01-01T00:00:00Z",
        OWNER,
        case.policy,
        "azureml",
        case.backend_enabled,
        case.spec,
        case.problem,
        case.svc,
        case.comp,
        case.others,
    )
    assert step_of(decide_deletion(facts)) == expected(case)


def test_the_status_says_what_is_being_removed() -> None:
    facts = DeletionFacts(
        GpuModelDeploymentStatus(ownership=Ownership(service_created=True)),
        3,
        "2026-01-01T00:00:00Z",
        OWNER,
        spec=spec(),
        service=service(),
        compute=compute(),
    )
    status = decide_deletion(facts).status
    assert status is not None
    ready = next(cond for cond in status.conditions if cond.type == c.READY)
    served = next(cond for cond in status.conditions if cond.type == c.SERVICE_READY)
    assert (ready.status, ready.reason, ready.message) == ("False", c.DELETING, "deleting service digits-svc")
    assert (served.status, served.reason) == ("False", c.DELETING)


# ---- a spec the CRD would refuse (an old CRD): deleting it -----------------------------------------------------

#: A local spec without spec.model.path: what the operator cannot serve, nor say which service to delete for.
INVALID_LOCAL: dict[str, Any] = {
    "backend": "local",
    "model": {},
    "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
    "service": {"name": "digits-svc"},
}


class SecretsKube(KubeClient):
    """Only the keys Secret's deletion, which a finished deletion does."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_owned_secret(self, namespace: str, name: str, resource_name: str) -> bool:
        self.deleted.append(name)
        return True


def delete_invalid(status: GpuModelDeploymentStatus) -> tuple[DeletionDecision, list[str]]:
    kube = SecretsKube()
    untouched: Any = SimpleNamespace(name="local")  # never called: the spec is refused before any backend call
    controller = Controller(Settings(backends=(BackendKind.LOCAL,)), {BackendKind.LOCAL: untouched}, kube)
    res = Resource("team-a", "digits", "uid-1", 1, INVALID_LOCAL, status.to_wire())
    return asyncio.run(controller.delete(res)), kube.deleted


def test_an_invalid_spec_that_never_got_anything_made_is_deleted_at_once() -> None:
    """InvalidSpec from the first pass: nothing exists that needs the spec's fields, so no finalizer is stuck; the
    keys Secret, if any, goes."""
    status = GpuModelDeploymentStatus(phase=Phase.FAILED, last_error="the spec is invalid: spec.model.path: ...")
    assert created_nothing(status)
    decision, deleted = delete_invalid(status)
    assert (decision.action, decision.message) == (
        DeleteAction.DONE,
        "nothing to delete: nothing was created for this resource (the spec is invalid: spec.model.path: Field "
        "required)",
    )
    assert deleted == ["digits-scoring-keys"]


@dataclass(frozen=True)
class MadeCase:
    status: GpuModelDeploymentStatus
    nothing: bool


MADE: dict[str, MadeCase] = {
    "a status that never observed anything": MadeCase(GpuModelDeploymentStatus(phase=Phase.FAILED), True),
    "a service observed": MadeCase(GpuModelDeploymentStatus(service_name="digits-svc"), False),
    "a service created": MadeCase(GpuModelDeploymentStatus(ownership=Ownership(service_created=True)), False),
    "a compute adopted": MadeCase(GpuModelDeploymentStatus(ownership=Ownership(compute_adopted=True)), False),
    "an operation in flight": MadeCase(
        GpuModelDeploymentStatus(operation=Operation(kind="deploy", target="digits-svc", started_at="2026-01-01")),
        False,
    ),
}


@pytest.mark.parametrize("name", MADE)
def test_what_holds_a_deletion(name: str) -> None:
    """Whatever stops a deletion lets the resource go only when its status shows nothing made or started."""
    case = MADE[name]
    assert created_nothing(case.status) == case.nothing
