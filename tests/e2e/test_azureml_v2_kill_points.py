"""Kill points of azureml-v2: the operator is killed (SIGKILL, as when its node dies) at each step of create, scale,
blue/green rollout and delete, then restarted. Each time it must converge with one create per object (one
endpoint, one deployment per set of inputs), leave no deployment behind the rollout, and nothing after deletion.

The emulator's operations are slowed so that each step is a window seen from the emulated cloud; the kill comes
when the step is seen, not after a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_v2_harness import LATENCIES, AzureV2, managed, run_v2_operator
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(300)

SLOW = {
    "endpoint_create_s": 1.0,
    "endpoint_update_s": 1.0,
    "endpoint_delete_s": 1.0,
    "deployment_create_s": 1.5,
    "deployment_update_s": 1.0,
    "deployment_delete_s": 1.0,
}
ENDPOINT = r"/onlineEndpoints/{e}$"
DEPLOYMENT = r"/onlineEndpoints/{e}/deployments/[^/]+$"


@pytest.fixture(scope="module")
def v2_operator(
    control_plane: Any, v2_emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    v2_emu.v2.configure(latencies=SLOW)
    yield from run_v2_operator(control_plane, v2_emu, tmp_path_factory)
    v2_emu.v2.configure(latencies=LATENCIES)


@dataclass(frozen=True)
class Point:
    stage: str  # "create" | "scale" | "rollout" | "delete"
    reached: Callable[[AzureV2, str], bool]


def _sent(method: str, path: str, times: int = 1) -> Callable[[AzureV2, str], bool]:
    return lambda v2, e: v2.writes(path.format(e=e), method) >= times


def _deployment_state(state: str) -> Callable[[AzureV2, str], bool]:
    return lambda v2, e: any(d["state"] == state for d in ((v2.endpoint(e) or {}).get("deployments") or {}).values())


POINTS: dict[str, Point] = {
    "create: endpoint PUT sent": Point("create", _sent("PUT", ENDPOINT)),
    "create: deployment Creating": Point("create", _deployment_state("Creating")),
    "create: traffic PUT sent": Point("create", _sent("PUT", ENDPOINT, 2)),
    "scale: PATCH sent": Point("scale", _sent("PATCH", DEPLOYMENT)),
    "rollout: new deployment Creating": Point("rollout", _deployment_state("Creating")),
    "rollout: traffic moved": Point("rollout", _sent("PUT", ENDPOINT)),
    "rollout: old deployment DELETE sent": Point("rollout", _sent("DELETE", DEPLOYMENT)),
    "delete: endpoint DELETE sent": Point("delete", _sent("DELETE", ENDPOINT)),
}


@pytest.mark.parametrize("name", POINTS)
def test_killed_operator_resumes_with_one_create_per_object(v2: AzureV2, name: str) -> None:
    point, index = POINTS[name], list(POINTS).index(name)
    gmd, endpoint = "kp", f"kp-ep-{index}"

    def kill_when_reached() -> None:
        wait_for(f"kill point '{name}'", lambda: point.reached(v2, endpoint), 60, 0.1)
        v2.operator.kill()
        v2.operator.start()

    v2.emu.clear_calls()
    v2.apply(gmd, endpoint, managed(), replicas=1)
    if point.stage == "create":
        kill_when_reached()
    else:
        v2.wait_ready(gmd)
        v2.emu.clear_calls()
        if point.stage == "scale":
            v2.apply(gmd, endpoint, managed(), replicas=2)
        elif point.stage == "rollout":
            v2.apply(gmd, endpoint, managed(), replicas=1, version=2)
        else:
            v2.cp.kubectl("delete", "gmd", gmd, "-n", v2.ns, "--wait=false")
        kill_when_reached()

    if point.stage != "delete":
        obj = v2.wait_ready(gmd, timeout=120)
        assert obj["status"]["replicasSummary"] == ("2/2" if point.stage == "scale" else "1/1")
        found = v2.endpoint(endpoint)
        assert found is not None and len(found["deployments"]) == 1, "nothing left beside the live deployment"
        created = v2.writes(DEPLOYMENT.format(e=endpoint), "PUT", 201)
        assert created == (0 if point.stage == "scale" else 1), "one deployment created per set of inputs"
        if point.stage == "create":
            assert v2.writes(ENDPOINT.format(e=endpoint), "PUT", 201) == 1, "one endpoint created"
        v2.cp.kubectl("delete", "gmd", gmd, "-n", v2.ns, "--timeout=120s")
    else:
        gone = lambda: v2.cp.kubectl("get", "gmd", gmd, "-n", v2.ns, check=False).returncode != 0  # noqa: E731
        wait_for("the resource to be gone", gone, 120)
    v2.wait_endpoint_gone(endpoint)
    assert v2.cp.kubectl("get", "secret", f"{gmd}-scoring-keys", "-n", v2.ns, check=False).returncode != 0
