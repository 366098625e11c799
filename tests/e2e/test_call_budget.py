"""The per-resource call budget, end to end: an operator allowed 4 backend calls per resource per 10 s window
says so when a resource has spent them (a Warning, ``lastError``), keeps the conditions it had, and carries
on when the window allows, until the resource is Ready."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import Azure, provision, run_operator
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(240)
BUDGET, WINDOW = 4, 10


@pytest.fixture(scope="module")
def azure_operator(
    control_plane: Any, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """This module's operator: the harness's, with a small budget over a short resync window."""
    yield from run_operator(control_plane, emu, tmp_path_factory, resync=WINDOW, extra=("--call-budget", str(BUDGET)))


def test_a_resource_past_its_budget_waits_for_the_window_then_converges(azure: Azure) -> None:
    azure.apply("frugal", "frugal-svc", provision("gpu-frugal", agents=1), replicas=1)
    event = wait_for("the CallBudgetExhausted event", lambda: azure.events("frugal", "CallBudgetExhausted"), 60)
    assert event[0]["type"] == "Warning"
    assert f"{BUDGET} backend calls in the last {WINDOW}s" in event[0]["message"]
    assert "--call-budget" in event[0]["message"]

    azure.wait_ready("frugal", timeout=120)

    def settled() -> dict[str, Any] | None:
        """Ready with no error left: the pass that made it Ready may still have been one the budget held back."""
        status = azure.get("frugal")["status"]
        return status if status.get("phase") == "Ready" and status.get("lastError") is None else None

    wait_for("Ready with the budget's error cleared", settled, 60)
    azure.delete("frugal")  # deletion is never held back by the budget
    wait_for("the compute deleted", lambda: "gpu-frugal" not in azure.cloud()[0], 60)
