"""The operator's ARM budget against the Azure ML emulator with ARM's throttling on: many resources' passes at once
through the azureml-v2 backend's session (its real ARM client, azure-core's pipeline, over HTTPS) never draw a 429
when the budget is on, and do when it is off (the same load; what shows the emulator would refuse them).

Small buckets keep it short: reads 15 refilled at 10 a second on both sides, the operator's the same as the
emulator's (``--arm-limit``), as ARM's published 250 at 25 would be at a larger N.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.azure.arm_budget import ArmBudget, Limit
from gpu_model_operator.backends.azure.calls import CallKind
from gpu_model_operator.backends.base import BackendError, CallPriority, DeploymentInputs
from gpu_model_operator.models import AzureMLV2Spec, parse_spec
from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, start_emulator
from gpu_model_operator_dev.azureml_emulator.v2.reference import configure_fast
from tests.e2e.azure_harness import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, SUBSCRIPTION, TENANT, WORKSPACE

pytestmark = pytest.mark.timeout(120)

#: The emulator's buckets and the operator's: reads 15 at 10 a second, writes 10 at 5.
READS, WRITES = Limit(15, 10), Limit(10, 5)
EMULATOR = {"reads": READS, "writes": WRITES, "deletes": WRITES}
#: Resources polling at once, and the reads each pass makes (an endpoint and its deployments, twice over).
RESOURCES, READS_PER_PASS = 20, 4


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    tmp = tmp_path_factory.mktemp("arm-budget")
    with start_emulator(tmp / "emulator", EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET})) as emu:
        configure_fast(emu)
        saved = dict(os.environ)
        os.environ.update({**emu.client_env_v2(), "HOME": str(tmp / "home")})
        try:
            yield emu
        finally:
            os.environ.clear()
            os.environ.update(saved)


def inputs(name: str) -> DeploymentInputs[AzureMLV2Spec]:
    spec = parse_spec(
        {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "name": WORKSPACE,
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": name, "replicas": 1},
        }
    )
    assert isinstance(spec, AzureMLV2Spec)
    credentials = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    return DeploymentInputs("ns", name, f"uid-{name}", 1, spec, "", "", credentials, "fp")


def passes(emulator: Emulator, budget: ArmBudget) -> tuple[int, list[str], int]:
    """Every resource's pass at once, half of them resyncs; the ARM reads the emulator refused, the errors the
    passes met, and the ARM reads it answered."""
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.session import Session

    session = Session(8, budget)

    async def one(name: str, priority: CallPriority) -> None:
        ws = await session.workspace(inputs(name))
        for _ in range(READS_PER_PASS // 2):
            await session.call(inputs(name), f"reading {name}", "endpoint", lambda: arm.get_endpoint(ws, name))
            await session.call(
                inputs(name), f"listing {name}", "endpoint", lambda: arm.list_deployments(ws, name), priority=priority
            )

    async def every() -> list[str]:
        await session.workspace(inputs("ep-0"))  # the sign-in, before the clock starts
        emulator.clear_throttling_calls()
        emulator.configure_throttling(enabled=True, limits=limits())
        priorities = [CallPriority.STATUS, CallPriority.RESYNC]
        tasks = [one(f"ep-{i}", priorities[i % 2]) for i in range(RESOURCES)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        return [r.message for r in results if isinstance(r, BackendError)]

    errors = asyncio.run(every())
    rows = [r for r in emulator.throttling()["calls"] if r["surface"] == "arm" and r["kind"] == "read"]
    emulator.configure_throttling(enabled=False, limits="published")
    return sum(r["throttled"] for r in rows), errors, sum(r["calls"] - r["throttled"] for r in rows)


def limits() -> dict[str, Any]:
    """The emulator's settings of the same buckets."""
    return {kind: {"size": limit.size, "refill_per_s": limit.refill_per_s} for kind, limit in EMULATOR.items()}


def test_with_the_budget_no_call_is_throttled(emulator: Emulator) -> None:
    budget = ArmBudget({CallKind.READ: READS, CallKind.WRITE: WRITES})
    throttled, errors, answered = passes(emulator, budget)
    assert (throttled, errors, answered) == (0, [], RESOURCES * READS_PER_PASS)


def test_without_it_the_same_load_is_throttled(emulator: Emulator) -> None:
    """The control: the same passes with the budget off burst past the emulator's bucket and meet 429s."""
    budget = ArmBudget({CallKind.READ: READS, CallKind.WRITE: WRITES}, enabled=False)
    throttled, errors, _ = passes(emulator, budget)
    assert throttled > 0 and any("throttled by Azure" in e for e in errors)


def test_a_short_retry_after_is_waited_out_by_every_call_of_the_principal(emulator: Emulator, tmp_path: Path) -> None:
    """A 429 with Retry-After 1 pauses the principal's calls: the next call of another resource waits it out and
    is sent once, after it, instead of drawing a 429 of its own."""
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.session import Session

    session = Session(2, ArmBudget())

    async def two() -> tuple[str, float, object]:
        ws = await session.workspace(inputs("ep-a"))
        emulator.add_fault(action="status", method="GET", path="/onlineEndpoints/ep-a$", status=429, retry_after=1)
        loop, first = asyncio.get_running_loop(), ""
        try:
            await session.call(inputs("ep-a"), "reading ep-a", "endpoint", lambda: arm.get_endpoint(ws, "ep-a"))
        except BackendError as exc:
            first = exc.message
        started = loop.time()
        found = await session.call(inputs("ep-b"), "reading ep-b", "endpoint", lambda: arm.get_endpoint(ws, "ep-b"))
        waited = loop.time() - started
        await session.close()
        return first, waited, found

    try:
        first, waited, found = asyncio.run(two())
    finally:
        emulator.clear_faults()
    assert "throttled by Azure" in first and found is None and 0.8 < waited < 10
