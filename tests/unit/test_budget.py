"""The per-resource call budget: a sliding window per resource, counted by the metering wrapper."""

from __future__ import annotations

import asyncio
from typing import Any

from gpu_model_operator import metrics
from gpu_model_operator.backends.base import DeploymentInputs, ObservedService, ServiceState
from gpu_model_operator.budget import CallBudget
from gpu_model_operator.instrumented import InstrumentedBackend
from tests.unit.test_reconcile import spec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_calls_within_the_budget_do_not_wait() -> None:
    budget = CallBudget(3, 60, Clock())
    for _ in range(2):
        budget.spend("a/x")
    assert budget.wait_seconds("a/x") == 0


def test_a_spent_budget_waits_until_the_oldest_call_leaves_the_window() -> None:
    clock = Clock()
    budget = CallBudget(3, 60, clock)
    for step in (0, 10, 20):
        clock.now = 1000 + step
        budget.spend("a/x")
    clock.now = 1030
    assert budget.wait_seconds("a/x") == 30  # the call at t=0 leaves the window at t=60
    assert budget.wait_seconds("b/y") == 0  # every resource has its own budget
    clock.now = 1060
    assert budget.wait_seconds("a/x") == 0 and budget.spent("a/x") == 2


def test_no_limit_counts_nothing() -> None:
    budget = CallBudget(0, 60, Clock())
    for _ in range(1000):
        budget.spend("a/x")
    assert budget.wait_seconds("a/x") == 0 and budget.spent("a/x") == 0


class Recorder:
    """A backend that records nothing but what it was asked: only ``observe_service`` is called here."""

    name = "recorder"

    async def observe_service(self, inputs: DeploymentInputs[Any]) -> ObservedService:
        return ObservedService(inputs.owner, ServiceState.ABSENT)


def test_the_wrapper_charges_the_resource_each_call_is_for_and_times_it() -> None:
    budget = CallBudget(10, 60, Clock())
    backend: InstrumentedBackend[Any] = InstrumentedBackend(Recorder(), budget)  # type: ignore[arg-type]
    inputs = DeploymentInputs("team-a", "digits", "uid", 1, spec(), "", "")
    before = metrics.BACKEND_CALLS.labels(backend="recorder", operation="observe_service")._sum.get()
    for _ in range(3):
        assert asyncio.run(backend.observe_service(inputs)).name == "team-a/digits/uid"
    assert budget.spent("team-a/digits/uid") == 3 and budget.spent("team-b/other") == 0
    assert metrics.BACKEND_CALLS.labels(backend="recorder", operation="observe_service")._sum.get() > before
