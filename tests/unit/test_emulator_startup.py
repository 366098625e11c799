"""The emulator's model of a container whose model takes time to load (its v2/startup.py), held to Azure's
ProbeSettings: tries from the initial delay every period, failureThreshold failures in a row give up (liveness:
restart; readiness: Unready, either way ResourceNotReady), successThreshold successes pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator.v2.startup import Startup, startup

LATE = {"initialDelay": "PT600S"}
HINT = (
    "Adjust the probe settings to allow a longer time to initialize the container. Please see troubleshooting "
    "guide, available here: https://aka.ms/oe-tsg#error-resourcenotready"
)


def gave_up(probe: str, failures: int, delay: int, period: int, last: int, load: int, outcome: str) -> Startup:
    return Startup(
        last,
        f"The {probe} probe failed {failures} times in a row (initial delay {delay}s, period {period}s; the last try "
        f"{last}s after the container started) while the model was still loading ({load}s): {outcome}. {HINT}",
    )


RESTARTED = "the container was restarted while the model was loading"
UNREADY = "the container was marked Unready"


@dataclass(frozen=True)
class Case:
    load: float
    props: dict[str, Any]
    want: Startup


CASES: dict[str, Case] = {
    "ready-at-the-first-try-after-the-load": Case(25, {}, Startup(30)),
    "a-load-within-the-default-probes": Case(295, {}, Startup(300)),
    "ten-minutes-fail-the-default-liveness-probe-first": Case(
        600, {}, gave_up("liveness", 30, 10, 10, 300, 600, RESTARTED)
    ),
    "a-later-readiness-probe-alone-still-restarts-it": Case(
        600, {"readinessProbe": LATE}, gave_up("liveness", 30, 10, 10, 300, 600, RESTARTED)
    ),
    "a-later-liveness-probe-alone-leaves-it-unready": Case(
        600, {"livenessProbe": LATE}, gave_up("readiness", 30, 10, 10, 300, 600, UNREADY)
    ),
    "both-later-make-it-ready": Case(600, {"livenessProbe": LATE, "readinessProbe": LATE}, Startup(600)),
    "more-tries-make-it-ready": Case(
        600,
        {"livenessProbe": {"failureThreshold": 60}, "readinessProbe": {"failureThreshold": 60}},
        Startup(600),
    ),
    "success-threshold-tries-in-a-row": Case(
        595,
        {"livenessProbe": LATE, "readinessProbe": {**LATE, "successThreshold": 3, "period": "PT5S"}},
        Startup(610),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_startup(name: str) -> None:
    case = CASES[name]
    assert startup(case.load, case.props) == case.want
