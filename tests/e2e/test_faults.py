"""Faults on the azureml backend: the emulated cloud throttles, fails, drops and slows a fraction of calls,
or refuses for good. Transient faults converge with a bounded number of calls; permanent ones end in a
condition and a Warning event that say what to fix, with no retries beyond the resync."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from tests.e2e.azure_harness import Azure, provision

pytestmark = pytest.mark.timeout(240)

#: Management calls only: the token endpoint and the scoring route are not where Azure throttles.
MANAGEMENT = r"/(subscriptions|rp|modelmanagement|discovery|artifact)/"


def writes(azure: Azure, path: str, method: str) -> int:
    return sum(1 for c in azure.emu.calls() if c["method"] == method and re.search(path, c["path"]))


def test_a_fraction_of_calls_failing_in_every_way_still_converges_with_bounded_calls(azure: Azure) -> None:
    azure.emu.clear_calls()
    faults: list[tuple[str, dict[str, float]]] = [
        ("status", {"status": 429, "retry_after": 1}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("reset", {}),
        ("delay", {"delay_s": 1.5}),
    ]
    for action, extra in faults:
        # Each kind hits 30% of management calls until it has struck twice: every kind is injected (a pass
        # makes far more calls than needed for that), and the total stays fixed whatever the call count.
        azure.emu.add_fault(action=action, path=MANAGEMENT, probability=0.3, times=2, **extra)
    azure.apply("noisy", "noisy-svc", provision("gpu-noisy"), replicas=2)
    obj = azure.wait_ready("noisy", timeout=180)
    assert obj["status"]["replicasSummary"] == "2/2"
    injected = Counter(c.get("fault") for c in azure.emu.calls() if c.get("fault"))
    assert sum(injected.values()) == 10 and len(injected) >= 3, f"every fault was injected twice: {injected}"
    assert len(azure.emu.calls()) < 400, "no hot loop"
    assert writes(azure, r"/computes/gpu-noisy$", "PUT") <= 2  # a reset PUT may be sent again, never more
    azure.emu.clear_faults()
    azure.delete("noisy")
    computes, services = azure.cloud()
    assert "gpu-noisy" not in computes and "noisy-svc" not in services


def test_quota_exceeded_is_permanent_and_not_retried(azure: Azure) -> None:
    azure.emu.clear_calls()
    azure.emu.add_fault(action="compute_quota", name="gpu-quota", sync=True)
    azure.apply("quota", "quota-svc", provision("gpu-quota"))
    cond = azure.wait_reason("quota", "QuotaExceeded")
    assert cond["status"] == "False" and "quota" in cond["message"].lower()
    assert azure.events("quota", "QuotaExceeded")[0]["type"] == "Warning"
    assert azure.get("quota")["status"]["phase"] == "Failed"
    # No hot loop: over three poll intervals at most the resync (every 5 s here) may try once more.
    puts = writes(azure, r"/computes/gpu-quota$", "PUT")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert writes(azure, r"/computes/gpu-quota$", "PUT") <= puts + 1
        time.sleep(0.5)
    azure.delete("quota")


def test_vm_size_without_a_gpu_is_refused_before_anything_is_created(azure: Azure) -> None:
    azure.emu.clear_calls()
    compute = {"name": "cpu-only", "provision": {"vmSize": "Standard_D4s_v3", "agentCount": 3}}
    azure.apply("cpu", "cpu-svc", compute)
    cond = azure.wait_reason("cpu", "InvalidVmSize")
    assert "Standard_D4s_v3" in cond["message"]
    assert azure.events("cpu", "InvalidVmSize")[0]["type"] == "Warning"
    assert writes(azure, r"/computes/cpu-only$", "PUT") == 0, "no cluster was created"
    azure.delete("cpu")
