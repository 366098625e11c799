"""Canary steps and mirrored traffic end to end: the operator process with the real azure-ai-ml SDK against the
emulator, whose Azure Monitor metrics count what its deployments answered. A three-step canary completes through
each of its shares; one whose second step answers errors rolls back with production untouched and says why;
promote and abort by annotation; mirrored requests reach the new deployment (its metrics count them) while clients
get answers from the live one only. Holds are a few seconds, as the emulator's operations take seconds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_v2_harness import AzureV2, managed, requests_counted, run_v2_operator
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def v2_operator(
    control_plane: Any, v2_emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_v2_operator(control_plane, v2_emu, tmp_path_factory)


def canary(*shares: int, hold: int = 3, **more: Any) -> dict[str, Any]:
    """spec.rollout: a step per share held ``hold`` seconds; judged once 5 requests were counted, at most 10% errors."""
    steps = [{"trafficPercent": p, "holdSeconds": hold} for p in shares]
    return {"steps": steps, "minRequests": 5, "maxErrorPercent": 10, **more}


def live(azure: AzureV2, endpoint: str) -> dict[str, int]:
    found = azure.endpoint(endpoint)
    return {k: v for k, v in (found or {}).get("traffic", {}).items() if v}


class Clients:
    """A client scoring in a loop with the Secret's key, as production traffic would; what answered is counted."""

    def __init__(self, azure: AzureV2, name: str) -> None:
        self.azure, self.name = azure, name
        self.seen: Counter[tuple[int, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            answer = self.azure.score(self.name)
            self.seen[(answer.status_code, answer.headers.get("azureml-model-deployment", ""))] += 1

    def __enter__(self) -> Clients:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(30)


def rollout_of(azure: AzureV2, name: str) -> dict[str, Any]:
    return dict(azure.get(name).get("status", {}).get("rollout") or {})


def annotated(azure: AzureV2, name: str) -> dict[str, str]:
    return dict(azure.get(name)["metadata"].get("annotations") or {})


def test_a_three_step_canary_completes(v2: AzureV2) -> None:
    v2.apply("steps", "steps-ep", managed())
    try:
        v2.wait_ready("steps")
        (old,) = live(v2, "steps-ep")
        splits: list[dict[str, int]] = []

        def converged() -> bool:
            split = live(v2, "steps-ep")
            if split and (not splits or splits[-1] != split):
                splits.append(split)
            return old not in split

        with Clients(v2, "steps") as clients:
            v2.apply("steps", "steps-ep", managed(), version=2, rollout=canary(10, 50, 80))
            wait_for("all the traffic on the new deployment", converged, 120, every=0.2)
            obj = v2.wait_ready("steps")
        (new,) = live(v2, "steps-ep")
        assert splits == [
            {old: 100},
            {old: 90, new: 10},
            {old: 50, new: 50},
            {old: 20, new: 80},
            {new: 100},
        ]
        assert set(clients.seen) == {(200, old), (200, new)}, clients.seen
        shifts = [e["message"] for e in v2.events("steps", "ShiftTraffic")]
        assert [m for m in shifts if "passed its check" in m and "canary step" in m], shifts
        assert "rollout" not in obj["status"]  # the endpoint serves as the spec says
        assert requests_counted(v2.emu, "steps-ep", new).get("200", 0) > 0
    finally:
        v2.delete("steps")
        v2.wait_endpoint_gone("steps-ep")


def test_a_second_step_that_answers_errors_rolls_back_with_production_untouched(v2: AzureV2) -> None:
    v2.apply("sour", "sour-ep", managed(), replicas=2)
    try:
        v2.wait_ready("sour")
        (old,) = live(v2, "sour-ep")
        with Clients(v2, "sour"):
            v2.apply("sour", "sour-ep", managed(), replicas=2, version=2, rollout=canary(20, 50, hold=60))
            second = wait_for("the second step", lambda: [d for d, p in live(v2, "sour-ep").items() if p == 50], 120)
            new = next(d for d in second if d != old)
            v2.emu.v2.fail_model("sour-ep", new)  # its model now fails every request: Azure answers 424
            cond = v2.wait_reason("sour", "ServiceFailed", 120)
        found = v2.endpoint("sour-ep")
        assert found is not None
        assert live(v2, "sour-ep") == {old: 100} and set(found["deployments"]) == {old}
        assert found["deployments"][old]["instance_count"] == 2  # production as it was before the rollout
        rollout = rollout_of(v2, "sour")
        assert rollout["canary"]["verdict"] == "Failed" and rollout["canary"]["step"] == 2
        assert rollout["abandoned"].startswith("canary step 2 of 2 (50% of requests) failed its check: ")
        assert (
            "were errors (5xx, 408, 424)" in rollout["abandoned"] and "over maxErrorPercent 10%" in rollout["abandoned"]
        )
        assert "canary step 2 of 2" in cond["message"] and "retried only when asked" in cond["message"]
        (rolled_back,) = v2.events("sour", "RollBack")
        assert (
            rolled_back["type"] == "Warning" and "canary step 2 of 2 (50% of requests) failed" in rolled_back["message"]
        )
        counted = requests_counted(v2.emu, "sour-ep", new)
        assert counted.get("424", 0) >= 5, counted
        answer = v2.score("sour")
        assert (answer.status_code, answer.headers["azureml-model-deployment"]) == (200, old)
    finally:
        v2.delete("sour")
        v2.wait_endpoint_gone("sour-ep")


def test_promote_and_abort_by_annotation(v2: AzureV2) -> None:
    v2.apply("pa", "pa-ep", managed())
    try:
        v2.wait_ready("pa")
        (first,) = live(v2, "pa-ep")
        # Promote: a ten-minute first step is skipped once the annotation is set.
        v2.apply("pa", "pa-ep", managed(), version=2, rollout=canary(10, 50, hold=600))
        held = wait_for("the first step held", lambda: rollout_of(v2, "pa").get("step") == "Hold", 120)
        assert held and live(v2, "pa-ep")[first] == 90
        v2.cp.kubectl("annotate", "gmd", "pa", "-n", v2.ns, "gpumodel.io/promote=true")
        v2.wait_ready("pa", 120)
        (second,) = live(v2, "pa-ep")
        assert second != first
        wait_for("the promote annotation removed", lambda: "gpumodel.io/promote" not in annotated(v2, "pa"), 30)
        assert any("promoted by gpumodel.io/promote" in e["message"] for e in v2.events("pa", "ShiftTraffic"))

        # Abort: the next version's first step is given up at once, all traffic back to the live deployment.
        v2.apply("pa", "pa-ep", managed(), version=1, rollout=canary(10, 50, hold=600))
        wait_for("the next rollout's first step held", lambda: live(v2, "pa-ep").get(second) == 90, 120)
        v2.cp.kubectl("annotate", "gmd", "pa", "-n", v2.ns, "gpumodel.io/abort=true")
        cond = v2.wait_reason("pa", "ServiceFailed", 120)
        assert live(v2, "pa-ep") == {second: 100} and set(v2.endpoint("pa-ep")["deployments"]) == {second}  # type: ignore[index]
        assert "aborted by gpumodel.io/abort (canary step 1 of 2 (10% of requests))" in cond["message"]
        assert rollout_of(v2, "pa")["canary"]["verdict"] == "Aborted"
        assert "gpumodel.io/abort" not in annotated(v2, "pa")
    finally:
        v2.delete("pa")
        v2.wait_endpoint_gone("pa-ep")


def test_mirrored_requests_reach_the_new_deployment_while_clients_get_the_live_one(v2: AzureV2) -> None:
    v2.apply("mirror", "mirror-ep", managed())
    try:
        v2.wait_ready("mirror")
        (old,) = live(v2, "mirror-ep")
        v2.apply("mirror", "mirror-ep", managed(), version=2, rollout=canary(mirrorPercent=50, mirrorSeconds=600))
        mirrored = wait_for(
            "the new deployment mirrored", lambda: (v2.endpoint("mirror-ep") or {}).get("mirror_traffic"), 120
        )
        ((new, share),) = mirrored.items()
        assert share == 50 and live(v2, "mirror-ep") == {old: 100}
        before = sum(requests_counted(v2.emu, "mirror-ep", new).values())
        answers = [v2.score("mirror") for _ in range(40)]
        assert {(a.status_code, a.headers["azureml-model-deployment"]) for a in answers} == {(200, old)}
        # About half the 40 were copied to it (and the probe, about one a second, adds a few): its metrics say so.
        wait_for(
            "the mirrored copies counted",
            lambda: sum(requests_counted(v2.emu, "mirror-ep", new).values()) - before >= 10,
            30,
        )
        rollout = rollout_of(v2, "mirror")
        assert (rollout["step"], rollout["canary"]["step"], rollout["canary"]["mirrorPercent"]) == ("Hold", 0, 50)
    finally:
        v2.delete("mirror")
        v2.wait_endpoint_gone("mirror-ep")
