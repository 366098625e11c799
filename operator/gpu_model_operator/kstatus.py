"""The two conditions status tools read, ``Reconciling`` and ``Stalled``, derived from the phase and ``Ready``.

kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, behind Flux's health checks, kpt and ``kubectl wait``-style tools)
reads a custom resource by these "abnormal-true" conditions before anything else: ``Reconciling`` True is
*InProgress*, ``Stalled`` True is *Failed*; with neither, it falls back to ``Ready`` (True *Current*, False or
Unknown *InProgress*). Without them a resource that failed for good (a missing model, a name someone else holds)
looks "in progress" until a tool's timeout. Derived here, in one pure function, from what the pass already
decided, so that the two can never disagree with the phase or with ``Ready``:

- phase ``Failed`` or ``Degraded``: Stalled (only a change by the user, or the slow resync retry, moves it on;
  a capped resource is Ready, since a client can score, and Stalled, since it will not reach the replicas asked);
- phase ``Ready`` with ``Ready`` True, or the ``skip`` policy: neither (nothing left to do, or nothing to be done);
- anything else, ``Deleting`` included: Reconciling (the operator is at work, or retrying on its own).

The same split as the Argo CD health check (Degraded, Healthy or Suspended, Progressing), which
``tests/unit/test_kstatus.py`` holds it to, reason by reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import conditions as c
from .models import Condition, Phase

#: The phases in which the operator cannot reach the spec on its own.
STALLED_PHASES = (Phase.FAILED, Phase.DEGRADED)
#: Ready reasons that only say what another condition waits for; the other condition has the cause.
_WAITING = (c.WAITING_FOR_SERVICE, c.WAITING_FOR_COMPUTE)


@dataclass(frozen=True)
class Derived:
    """One kstatus condition's value (always True or False: kstatus gives Unknown no meaning of its own)."""

    type: str
    status: bool
    reason: str
    message: str


def derive(phase: Phase, conditions: list[Condition]) -> tuple[Derived, Derived]:
    """``Reconciling`` and ``Stalled`` for a status of this phase and these conditions (``Ready`` among them)."""
    by_type = {cond.type: cond for cond in conditions}
    ready = by_type.get(c.READY)
    if ready is not None and ready.reason == c.RECONCILE_SKIPPED:
        return _neither(ready.reason)
    if phase in STALLED_PHASES:
        reason, message = _cause(by_type, phase)
        return Derived(c.RECONCILING, False, reason, ""), Derived(c.STALLED, True, reason, message)
    if phase == Phase.READY and ready is not None and ready.status == "True":
        return _neither(ready.reason)
    if phase == Phase.DELETING:
        said = ready.message if ready is not None and ready.reason == c.DELETING else ""
        reason, message = c.DELETING, said or "deleting what the operator made for this resource"
    elif ready is not None:
        reason, message = ready.reason, ready.message
    else:
        reason, message = phase.value, ""
    return Derived(c.RECONCILING, True, reason, message), Derived(c.STALLED, False, reason, "")


def _neither(reason: str) -> tuple[Derived, Derived]:
    return Derived(c.RECONCILING, False, reason, ""), Derived(c.STALLED, False, reason, "")


def _cause(by_type: dict[str, Condition], phase: Phase) -> tuple[str, str]:
    """What stalled the resource: Ready's reason, unless it only says what it waits for (a failed compute leaves
    Ready waiting for the service); then the compute's or the service's. A capped resource is Ready: its reason."""
    found = [by_type.get(type_) for type_ in (c.READY, c.COMPUTE_READY, c.SERVICE_READY)]
    present = [cond for cond in found if cond is not None]
    specific = [cond for cond in present if cond.status != "True" and cond.reason not in _WAITING]
    if not (specific or present):
        return phase.value, ""
    cause = (specific or present)[0]
    return cause.reason, cause.message
