"""Reconciling and Stalled (kstatus.py) as named cases: for every phase and every reason the core writes, the status
a pass leaves and the two conditions it must carry, compared whole. Then the README's table of what status tools
see, row by row, and every decision of the reconcile core's own cases: the two conditions agree with its phase and
Ready whatever the pass decided. tests/integration/test_kstatus_tool.py asks kstatus itself, kubectl wait and
Argo CD."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import ObservedService, ServiceState
from gpu_model_operator.deletion import DeletionFacts, decide_deletion
from gpu_model_operator.kstatus import Derived, derive
from gpu_model_operator.models import Condition, GpuModelDeploymentStatus, Ownership, Phase
from gpu_model_operator.reconcile import decide
from tests.unit.test_reconcile import CASES as RECONCILE_CASES
from tests.unit.test_reconcile import spec as azureml_spec

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = "2026-01-01T00:00:00Z"


def cond(type_: str, status: str, reason: str, message: str = "") -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=NOW)


def ready(status: str, reason: str, message: str = "") -> Condition:
    return cond(c.READY, status, reason, message)


def reconciling(reason: str, message: str = "") -> tuple[Derived, Derived]:
    return Derived(c.RECONCILING, True, reason, message), Derived(c.STALLED, False, reason, "")


def stalled(reason: str, message: str = "") -> tuple[Derived, Derived]:
    return Derived(c.RECONCILING, False, reason, ""), Derived(c.STALLED, True, reason, message)


def neither(reason: str) -> tuple[Derived, Derived]:
    return Derived(c.RECONCILING, False, reason, ""), Derived(c.STALLED, False, reason, "")


@dataclass(frozen=True)
class Case:
    phase: Phase
    conditions: tuple[Condition, ...]
    want: tuple[Derived, Derived]


#: The reasons a pass that cannot go on without the user writes on Ready, with phase Failed (reconcile._failure and
#: service_rules): each is Stalled, with Ready's reason and message.
FAILED_REASONS = (
    c.INVALID_SPEC,
    c.SOURCE_NOT_FOUND,
    c.CREDENTIALS_INVALID,
    c.IDENTITY_NOT_ALLOWED,
    c.MODEL_NOT_FOUND,
    c.QUOTA_EXCEEDED,
    c.INVALID_VM_SIZE,
    c.SERVICE_FAILED,
    c.SERVICE_CONFLICT,
    c.SERVICE_EXISTS,
    c.SECRET_CONFLICT,
    c.BACKEND_NOT_ENABLED,
    c.ENVIRONMENT_FAILED,
    c.BACKEND_FAILED,
)

CASES: dict[str, Case] = {
    "a-new-resource-is-reconciling": Case(Phase.PENDING, (), reconciling("Pending")),
    "creating-the-compute-is-reconciling": Case(
        Phase.PROVISIONING,
        (
            cond(c.COMPUTE_READY, "False", c.PROVISIONING, "creating compute gpu"),
            ready("False", c.WAITING_FOR_SERVICE, "creating compute gpu"),
        ),
        reconciling(c.WAITING_FOR_SERVICE, "creating compute gpu"),
    ),
    "deploying-is-reconciling": Case(
        Phase.DEPLOYING,
        (ready("False", c.WAITING_FOR_SERVICE, "deploying svc"),),
        reconciling(c.WAITING_FOR_SERVICE, "deploying svc"),
    ),
    "a-pending-probe-is-reconciling": Case(
        Phase.DEPLOYING, (ready("False", c.PROBE_PENDING, "probe"),), reconciling(c.PROBE_PENDING, "probe")
    ),
    "a-failing-probe-is-retried-so-reconciling": Case(
        Phase.DEPLOYING, (ready("False", c.PROBE_FAILED, "503"),), reconciling(c.PROBE_FAILED, "503")
    ),
    "a-missing-configmap-is-retried-so-reconciling": Case(
        Phase.PENDING, (ready("False", c.SOURCE_NOT_FOUND, "no cm"),), reconciling(c.SOURCE_NOT_FOUND, "no cm")
    ),
    "an-outage-is-retried-so-reconciling": Case(
        Phase.DEPLOYING,
        (ready("False", c.BACKEND_UNAVAILABLE, "429"),),
        reconciling(c.BACKEND_UNAVAILABLE, "429"),
    ),
    "an-outage-after-ready-is-reconciling-in-phase-ready": Case(
        Phase.READY,
        (ready("False", c.BACKEND_UNAVAILABLE, "429"),),
        reconciling(c.BACKEND_UNAVAILABLE, "429"),
    ),
    "ready-is-neither": Case(Phase.READY, (ready("True", c.PROBE_SUCCEEDED, "ok"),), neither(c.PROBE_SUCCEEDED)),
    "capped-serves-but-is-stalled": Case(
        Phase.DEGRADED,
        (cond(c.SERVICE_READY, "True", c.REPLICAS_CAPPED, "capped"), ready("True", c.REPLICAS_CAPPED, "capped")),
        stalled(c.REPLICAS_CAPPED, "capped"),
    ),
    "no-room-for-one-replica-is-stalled": Case(
        Phase.DEGRADED,
        (ready("False", c.INSUFFICIENT_GPUS, "0 fit"),),
        stalled(c.INSUFFICIENT_GPUS, "0 fit"),
    ),
    "a-canary-step-held-is-reconciling": Case(
        Phase.DEPLOYING,
        (ready("False", c.CANARY_IN_PROGRESS, "step 1 of 2"),),
        reconciling(c.CANARY_IN_PROGRESS, "step 1 of 2"),
    ),
    "a-canary-rolled-back-is-stalled": Case(
        Phase.DEGRADED, (ready("False", c.CANARY_FAILED, "step 2 failed"),), stalled(c.CANARY_FAILED, "step 2 failed")
    ),
    "a-refused-scale-is-stalled": Case(
        Phase.DEGRADED, (ready("False", c.SCALE_FAILED, "no node"),), stalled(c.SCALE_FAILED, "no node")
    ),
    "a-failed-compute-stalls-with-the-computes-reason-not-readys-wait": Case(
        Phase.FAILED,
        (
            cond(c.COMPUTE_READY, "False", c.COMPUTE_FAILED, "compute gpu failed: quota"),
            cond(c.SERVICE_READY, "False", c.WAITING_FOR_COMPUTE, "waiting for compute gpu"),
            ready("False", c.WAITING_FOR_SERVICE, "compute gpu failed: quota"),
        ),
        stalled(c.COMPUTE_FAILED, "compute gpu failed: quota"),
    ),
    "failed-without-conditions-is-stalled-by-its-phase": Case(Phase.FAILED, (), stalled("Failed")),
    "an-outage-of-a-failed-resource-stays-stalled": Case(
        Phase.FAILED, (ready("False", c.BACKEND_UNAVAILABLE, "429"),), stalled(c.BACKEND_UNAVAILABLE, "429")
    ),
    "skipped-is-neither": Case(
        Phase.READY,
        (ready("Unknown", c.RECONCILE_SKIPPED, "skip"),),
        neither(c.RECONCILE_SKIPPED),
    ),
    "skipped-after-a-failure-is-neither": Case(
        Phase.FAILED,
        (ready("Unknown", c.RECONCILE_SKIPPED, "skip"),),
        neither(c.RECONCILE_SKIPPED),
    ),
    "deleting-a-ready-resource-is-reconciling": Case(
        Phase.DELETING,
        (ready("True", c.PROBE_SUCCEEDED, "ok"),),
        reconciling(c.DELETING, "deleting what the operator made for this resource"),
    ),
    "deleting-a-failed-resource-is-reconciling": Case(
        Phase.DELETING,
        (ready("False", c.SERVICE_FAILED, "init() raised"),),
        reconciling(c.DELETING, "deleting what the operator made for this resource"),
    ),
    **{
        f"{reason}-is-stalled": Case(
            Phase.FAILED, (ready("False", reason, f"{reason}!"),), stalled(reason, f"{reason}!")
        )
        for reason in FAILED_REASONS
    },
}


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    case = CASES[name]
    assert derive(case.phase, list(case.conditions)) == case.want


def test_the_cases_cover_every_phase_and_every_ready_reason() -> None:
    phases = {case.phase for case in CASES.values()}
    assert phases == set(Phase)
    reasons = {cond.reason for case in CASES.values() for cond in case.conditions if cond.type == c.READY}
    # Every reason the README's table gives Ready (the compute's own reasons are on ComputeReady).
    assert {row.reason for row in readme_rows() if row.reason not in ("none", c.DELETING, c.COMPUTE_FAILED)} <= reasons


def test_never_both_true() -> None:
    for case in CASES.values():
        assert not (case.want[0].status and case.want[1].status)


@dataclass(frozen=True)
class Row:
    """One row of the README's table "What kubectl wait, kstatus and Argo CD see", for one reason."""

    reason: str
    phase: str
    ready: str
    reconciling: str
    stalled: str
    wait: str
    kstatus: str
    argocd: str


def readme_rows() -> list[Row]:
    """The table's rows, one per reason (a cell may list several, each in backticks)."""
    text = README.read_text().split("### What kubectl wait, kstatus and Argo CD see", 1)[1]
    lines = [ln for ln in text.split("\n\n", 3)[2].splitlines() if ln.startswith("| ")][2:]
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        word = [re.sub(r"[`*]", "", cell).split()[0] for cell in cells]
        for reason in re.findall(r"`(\w+)`", cells[0]) or [word[0]]:
            rows.append(Row(reason, *word[1:]))
    return rows


def test_the_readme_table_is_what_derive_gives() -> None:
    rows = readme_rows()
    assert len(rows) > 20
    for row in rows:
        if row.phase == "none":
            assert (row.ready, row.reconciling, row.stalled) == ("none", "none", "none")
            continue
        conditions = (
            [ready(row.ready, row.reason)] if row.reason != c.DELETING else [ready(row.ready, "ProbeSucceeded")]
        )
        got = derive(Phase(row.phase), conditions)
        assert (str(got[0].status), str(got[1].status)) == (row.reconciling, row.stalled), row


def test_every_decision_of_the_core_carries_conditions_that_agree_with_its_phase() -> None:
    """Over the reconcile core's own cases (every check a pass can end at), the status it writes says Stalled in
    phase Failed or Degraded, Reconciling in the phases of work, and neither once Ready or skipped."""
    for name, case in RECONCILE_CASES.items():
        status = decide(case.facts).status
        by_type = {cond.type: cond.status for cond in status.conditions}
        skipped = any(cond.reason == c.RECONCILE_SKIPPED for cond in status.conditions if cond.type == c.READY)
        want_stalled = status.phase in (Phase.FAILED, Phase.DEGRADED) and not skipped
        want_reconciling = (
            not want_stalled and not skipped and not (status.phase == Phase.READY and by_type.get(c.READY) == "True")
        )
        assert (by_type[c.RECONCILING], by_type[c.STALLED]) == (str(want_reconciling), str(want_stalled)), name


def test_a_deletion_step_is_reconciling_and_says_what_it_removes() -> None:
    previous = GpuModelDeploymentStatus(
        phase=Phase.READY,
        conditions=[ready("True", c.PROBE_SUCCEEDED, "ok")],
        ownership=Ownership(service_created=True),
    )
    facts = DeletionFacts(
        previous,
        4,
        "2026-01-01T00:05:00Z",
        "team-a/digits/uid-1",
        spec=azureml_spec(),
        service=ObservedService("digits-svc", ServiceState.HEALTHY, owner="team-a/digits/uid-1"),
    )
    status = decide_deletion(facts).status
    assert status is not None
    by_type = {cond.type: (cond.status, cond.reason, cond.message) for cond in status.conditions}
    assert by_type[c.READY] == ("False", c.DELETING, "deleting service digits-svc")
    assert by_type[c.RECONCILING] == ("True", c.DELETING, "deleting service digits-svc")
    assert by_type[c.STALLED] == ("False", c.DELETING, "")
