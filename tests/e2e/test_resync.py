"""Drift found at the resync is repaired at the pace of an operation in flight (every poll), not one resync
interval later. This module's operator resyncs every 20 s and polls every second, so the two paces are apart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.azureml_emulator.resources import ws_key
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, Azure, provision, run_operator
from tests.polling import wait_for

RESYNC = 20.0


@pytest.fixture(scope="module")
def azure_operator(
    control_plane: Any, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(control_plane, emu, tmp_path_factory, resync=RESYNC)


def test_drift_found_at_the_resync_converges_without_waiting_another_interval(azure: Azure) -> None:
    azure.apply("drifty", "drifty-svc", provision("gpu-drift", agents=1))
    azure.wait_ready("drifty")
    # The service is deleted behind the operator's back (someone ran `az ml service delete`).
    assert azure.emu.state is not None
    with azure.emu.state.lock:
        azure.emu.state.services[ws_key(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)].pop("drifty-svc")
    azure.emu.clear_calls()

    def redeployed() -> list[dict[str, Any]]:
        return azure.calls(r"/services$", "POST")

    wait_for("the resync to find the service gone and deploy it again", redeployed, RESYNC + 30)
    found = time.monotonic()
    azure.wait_ready("drifty", timeout=RESYNC + 30)
    took = time.monotonic() - found
    # The service settles in about 1 s in the emulator; polled every second it is Ready in a few seconds. Left to
    # the next resync it would take the whole interval.
    assert took < RESYNC / 2, f"Ready {took:.1f}s after the redeploy started: it waited for another resync"
    azure.delete("drifty")
