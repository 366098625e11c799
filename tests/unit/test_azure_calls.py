"""The door every Azure call of both backends passes (``backends/azure/calls.py``), the sign-ins kept per workspace
and credential (``connections.py``), and the scoring keys (``scoring.py``): a 429 pauses the calls of its
subscription and principal, whatever the workspace, and no one else's, until Retry-After has passed, a call past
its time is given up, a failure is what the backend's table makes of it; a changed Secret signs in again and a
failed sign-in keeps nothing; a refused probe drops the keys."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from gpu_model_operator.backends.azure.arm_budget import ArmBudget
from gpu_model_operator.backends.azure.calls import CallKind, Calls, Scope
from gpu_model_operator.backends.azure.connections import Connections
from gpu_model_operator.backends.azure.scoring import ScoringKeys
from gpu_model_operator.backends.azure.shared_reads import SharedReads
from gpu_model_operator.backends.base import BackendError, PermanentBackendError, TransientBackendError

CREDS = {"tenantId": "T", "clientId": "App", "clientSecret": "s1"}
WS1, WS2 = Scope.of("Sub", "RG", "ws1", CREDS), Scope.of("sub", "rg", "ws2", CREDS)
OTHER_SUB = Scope.of("sub2", "rg", "ws1", CREDS)
OTHER_PRINCIPAL = Scope.of("sub", "rg", "ws1", {**CREDS, "clientId": "Other"})


def explain(exc: BaseException) -> BackendError:
    """A table that reads a 429 with Retry-After 30 from "429", and anything else as permanent."""
    if "429" in str(exc):
        return TransientBackendError("throttled", retry_after=30)
    return PermanentBackendError(f"refused: {exc}")


def test_a_scope_names_the_principal_and_hides_the_credential() -> None:
    assert tuple(WS1) == ("sub", "rg", "ws1", "t/app", WS1.credential)
    assert (
        "s1" not in WS1.credential
        and WS1.credential != Scope.of("sub", "rg", "ws1", {**CREDS, "clientSecret": "s2"}).credential
    )
    assert (WS1.workspace_key, CallKind.READ.timeout, CallKind.WRITE.timeout) == (("sub", "rg", "ws1"), 60.0, 300.0)
    assert (CallKind.given(60.0), CallKind.given(300.0)) == (CallKind.READ, CallKind.WRITE)


@dataclass(frozen=True)
class Case:
    first: str  # what the first call raises ("" for nothing)
    second_scope: Scope
    #: What the second call comes to: "ran", or the message of the error it raises.
    second: str


PAUSED = "reading: Azure asked to wait (Retry-After); 30.0s left"
CASES: dict[str, Case] = {
    "a 429 pauses its principal": Case("429", WS1, PAUSED),
    "in every workspace": Case("429", WS2, PAUSED),
    "not another subscription": Case("429", OTHER_SUB, "ran"),
    "nor another principal": Case("429", OTHER_PRINCIPAL, "ran"),
    "another refusal pauses nothing": Case("400", WS1, "ran"),
}


@pytest.mark.parametrize("name", CASES)
def test_the_retry_after_gate(name: str) -> None:
    case = CASES[name]

    async def two_calls() -> tuple[str, str]:
        calls = Calls(2, "test", ArmBudget(max_wait=1.0))  # a pause past a second is refused, not waited out

        def first() -> None:
            raise RuntimeError(case.first)

        with pytest.raises(BackendError) as raised:
            await calls.call(WS1, CallKind.READ, "reading", first, explain)
        try:
            second = await calls.call(case.second_scope, CallKind.READ, "reading", lambda: "ran", explain)
        except TransientBackendError as refused:
            second = refused.message.replace(f"{refused.retry_after:.1f}s", "30.0s")
        await calls.drain(0)
        return raised.value.message, second

    first, second = asyncio.run(two_calls())
    assert (first, second) == (explain(RuntimeError(case.first)).message, case.second)


def test_a_call_past_its_time_is_given_up_and_its_thread_drained() -> None:
    release = threading.Event()

    async def slow() -> tuple[str, bool, bool]:
        calls = Calls(1, "test")
        with pytest.raises(TransientBackendError) as raised:
            await calls.call(WS1, CallKind.WRITE, "writing", lambda: release.wait(30), explain, timeout=0.2)
        running = not await calls.drain(0)
        release.set()
        return raised.value.message, running, await calls.drain(30)

    assert asyncio.run(slow()) == ("writing failed: no answer from Azure in 0s", True, True)


def test_a_changed_secret_signs_in_again_and_a_failed_sign_in_keeps_nothing() -> None:
    closed: list[str] = []
    made: list[str] = []

    async def sign_ins() -> list[str]:
        connections: Connections[str] = Connections(closed.append, keep=1)

        def connect(name: str, fail: bool = False) -> Callable[[], Awaitable[str]]:
            async def sign_in() -> str:
                if fail:
                    raise PermanentBackendError("refused")
                made.append(name)
                return name

            return sign_in

        secrets = [Scope.of("sub", "rg", "ws1", {**CREDS, "clientSecret": s}) for s in ("a", "b", "c")]
        got = [await connections.get(secrets[0], connect("a")), await connections.get(secrets[0], connect("again"))]
        with pytest.raises(PermanentBackendError):
            await connections.get(secrets[1], connect("b", fail=True))
        got += [await connections.get(secrets[1], connect("b")), await connections.get(secrets[2], connect("c"))]
        connections.close()
        return got

    assert asyncio.run(sign_ins()) == ["a", "a", "b", "c"]
    assert (made, closed) == (["a", "b", "c"], ["a", "b", "c"])


def test_keys_are_read_once_and_again_when_refused_or_fresh_past_the_refresh_interval() -> None:
    reads: list[int] = []
    now = [0.0]

    async def read() -> tuple[str, str]:
        reads.append(1)
        return (f"k{len(reads)}", "s")

    async def probes() -> list[str]:
        keys = ScoringKeys(refresh_seconds=100, clock=lambda: now[0])
        seen = [(await keys.get("svc", read))[0], (await keys.get("svc", read))[0]]
        keys.answered("svc", 200)
        seen.append((await keys.get("svc", read))[0])
        keys.answered("svc", 401)
        seen.append((await keys.get("svc", read))[0])
        now[0] = 99.0  # a resync within the interval keeps them
        seen.append((await keys.get("svc", read, fresh=True))[0])
        now[0] = 100.0  # past it, a resync reads them again
        seen.append((await keys.get("svc", read, fresh=True))[0])
        seen.append((await keys.get("svc", read))[0])
        return seen

    assert asyncio.run(probes()) == ["k1", "k1", "k1", "k2", "k2", "k3", "k3"]


def test_a_read_in_flight_is_shared_and_nothing_is_kept() -> None:
    """Three passes ask for the same usage while one read is under way: one read answers them; a pass after it
    reads afresh; a failure reaches every pass that shared it; another key reads on its own."""
    reads: list[str] = []
    release = asyncio.Event()

    async def passes() -> tuple[list[object], int]:
        shared: SharedReads[str] = SharedReads()

        async def read(key: str) -> str:
            reads.append(key)
            number = len(reads)
            await release.wait()
            if key == "broken":
                raise PermanentBackendError("refused")
            return f"{key}-{number}"

        async def ask(key: str) -> object:
            try:
                return await shared.read(key, lambda: read(key))
            except PermanentBackendError as exc:
                return exc.message

        asked = [asyncio.ensure_future(ask(k)) for k in ("usage", "usage", "usage", "other", "broken", "broken")]
        await asyncio.sleep(0)  # one turn of the loop: each ask reaches its read or its shared wait, no time passes
        release.set()
        answers = list(await asyncio.gather(*asked))
        answers.append(await ask("usage"))
        return answers, shared.shared

    answers, shared = asyncio.run(passes())
    assert answers == ["usage-1", "usage-1", "usage-1", "other-2", "refused", "refused", "usage-4"]
    assert (reads, shared) == (["usage", "other", "broken", "usage"], 3)
