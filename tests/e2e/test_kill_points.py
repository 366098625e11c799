"""Kill points: the operator is killed (SIGKILL, as when its node dies) at each step of create, update and
delete, then restarted. Each time it must converge, create no second compute or service, leave no cluster
billing after deletion, and tell the truth in status.

The emulator's operations are slowed to a few seconds so that each step is a window the test can observe
(from the apiserver and the emulated cloud) and kill in; the kill comes when the step is seen, not after a
fixed sleep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from tests.e2e.azure_harness import Azure, provision
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(300)

SLOW = {
    "compute_create_s": 4,
    "compute_delete_s": 3,
    "service_create_s": 4,
    "service_update_s": 3,
    "service_delete_s": 3,
}


@pytest.fixture(scope="module", autouse=True)
def slow_operations(emu: Emulator) -> Iterator[None]:
    emu.configure(latencies=SLOW)
    yield
    emu.configure(latencies={name: 1 for name in SLOW})


@dataclass(frozen=True)
class Point:
    stage: str  # "create" | "scale" | "redeploy" | "delete"
    reached: Callable[[Azure, str, str, str], bool]


def _compute_state(azure: Azure, compute: str) -> str | None:
    return next((c["state"] for c in azure.emu.summary()["computes"] if c["name"] == compute), None)


def _service_state(azure: Azure, service: str) -> str | None:
    return next((s["state"] for s in azure.emu.summary()["services"] if s["name"] == service), None)


def _called(azure: Azure, method: str, path: str) -> bool:
    return any(c["method"] == method and re.search(path, c["path"]) for c in azure.emu.calls())


def _phase(azure: Azure, name: str) -> str | None:
    items = json.loads(azure.cp.kubectl("get", "gmd", "-n", azure.ns, "-o", "json").stdout)["items"]
    return next(((i.get("status") or {}).get("phase") for i in items if i["metadata"]["name"] == name), None)


POINTS: dict[str, Point] = {
    "create: before the first pass": Point("create", lambda a, n, c, s: True),
    "create: compute PUT sent": Point("create", lambda a, n, c, s: _called(a, "PUT", rf"/computes/{c}$")),
    "create: compute Creating": Point("create", lambda a, n, c, s: _compute_state(a, c) == "Creating"),
    "create: service deploying": Point("create", lambda a, n, c, s: _service_state(a, s) == "Transitioning"),
    "create: Ready": Point("create", lambda a, n, c, s: _phase(a, n) == "Ready"),
    "scale: PATCH sent": Point("scale", lambda a, n, c, s: _called(a, "PATCH", rf"/services/{s}$")),
    "redeploy: update in flight": Point("redeploy", lambda a, n, c, s: _service_state(a, s) == "Transitioning"),
    "delete: requested": Point("delete", lambda a, n, c, s: True),
    "delete: service deleting": Point("delete", lambda a, n, c, s: _called(a, "DELETE", rf"/services/{s}$")),
    "delete: compute deleting": Point("delete", lambda a, n, c, s: _called(a, "DELETE", rf"/computes/{c}$")),
    "delete: while the compute is still Creating": Point("delete-early", lambda a, n, c, s: True),
}


def _creates(azure: Azure, compute: str) -> tuple[int, int]:
    """PUTs of this compute and POSTs of new services since the test began."""
    calls = azure.emu.calls()
    puts = sum(1 for c in calls if c["method"] == "PUT" and re.search(rf"/computes/{compute}$", c["path"]))
    posts = sum(1 for c in calls if c["method"] == "POST" and re.search(r"/services$", c["path"]) and c["status"] < 300)
    return puts, posts


def _gone(azure: Azure, name: str) -> bool:
    return azure.cp.kubectl("get", "gmd", name, "-n", azure.ns, check=False).returncode != 0


@pytest.mark.parametrize("name", POINTS)
def test_killed_operator_resumes_without_duplicates_or_orphans(azure: Azure, name: str) -> None:
    point, index = POINTS[name], list(POINTS).index(name)
    gmd, compute, service = "kp", f"kp-gpu{index}", f"kp-svc-{index}"
    azure.emu.clear_calls()

    def kill_when_reached() -> None:
        wait_for(f"kill point '{name}'", lambda: point.reached(azure, gmd, compute, service), 60, 0.1)
        azure.operator.kill()
        azure.operator.start()

    azure.apply(gmd, service, provision(compute), replicas=1)
    if point.stage == "delete-early":
        wait_for("the compute to be Creating", lambda: _compute_state(azure, compute) == "Creating", 60, 0.1)
        azure.cp.kubectl("delete", "gmd", gmd, "-n", azure.ns, "--wait=false")
        kill_when_reached()
    elif point.stage == "create":
        kill_when_reached()
    else:
        azure.wait_ready(gmd)
        if point.stage == "scale":
            azure.apply(gmd, service, provision(compute), replicas=2)
        elif point.stage == "redeploy":
            patch = json.dumps({"spec": {"service": {"memoryGb": 3}}})  # resources change: a redeploy
            azure.cp.kubectl("patch", "gmd", gmd, "-n", azure.ns, "--type=merge", "-p", patch)
        else:
            azure.cp.kubectl("delete", "gmd", gmd, "-n", azure.ns, "--wait=false")
        kill_when_reached()

    if point.stage in ("create", "scale", "redeploy"):
        obj = azure.wait_ready(gmd, timeout=120)
        assert obj["status"]["replicasSummary"] == ("2/2" if point.stage == "scale" else "1/1")
        assert obj["status"]["ownership"]["computeCreated"] and obj["status"]["ownership"]["serviceCreated"]
        assert _creates(azure, compute) == (1, 1), "one compute PUT and one service POST, whatever the kill"
        azure.cp.kubectl("delete", "gmd", gmd, "-n", azure.ns, "--timeout=120s")
    else:
        wait_for("the resource to be gone", lambda: _gone(azure, gmd), 120)

    computes, services = azure.cloud()
    assert compute not in computes, "no cluster left billing"
    assert service not in services
    assert azure.cp.kubectl("get", "secret", f"{gmd}-scoring-keys", "-n", azure.ns, check=False).returncode != 0
