"""The client-side ARM budget (``backends/azure/arm_budget.py``): ARM's token bucket arithmetic, what each priority
leaves to those above it, the remaining-calls headers that bring a bucket down and never up, a 429's pause; and
the queue: calls served highest priority first, a wait past its bound refused with the time to come back, one
budget per subscription and principal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from gpu_model_operator.backends.azure.arm_budget import PUBLISHED, ArmBudget, Limit, TokenBucket
from gpu_model_operator.backends.azure.calls import CallKind
from gpu_model_operator.backends.base import CallPriority, TransientBackendError

P = CallPriority


@dataclass(frozen=True)
class Case:
    limit: Limit
    #: What happens to a full bucket at t=0, in order: ("take", t), ("answered", t) (a call taken came back),
    #: ("observe", remaining, t), ("empty", t).
    steps: tuple[tuple[object, ...], ...]
    #: When the steps are done (seconds).
    at: float
    tokens: float
    #: Seconds until a call of each priority may go, at ``at``.
    waits: dict[CallPriority, float] = field(default_factory=dict)


R10 = Limit(10, 2)  # 10 tokens, 2 a second: floors 0, 1, 3, 5
CASES: dict[str, Case] = {
    "a full bucket lets every priority go": Case(
        R10, (), 0.0, 10.0, {P.UNBLOCK: 0.0, P.STATUS: 0.0, P.RESYNC: 0.0, P.PROBE: 0.0}
    ),
    "each priority leaves its share to those above": Case(
        R10, (("take", 0.0),) * 6, 0.0, 4.0, {P.UNBLOCK: 0.0, P.STATUS: 0.0, P.RESYNC: 0.0, P.PROBE: 1.0}
    ),
    "the refill rate says when": Case(
        R10, (("take", 0.0),) * 9, 0.0, 1.0, {P.UNBLOCK: 0.0, P.STATUS: 0.5, P.RESYNC: 1.5, P.PROBE: 2.5}
    ),
    "a bucket refills up to its size and no further": Case(
        R10, (("take", 0.0),) * 3 + (("answered", 0.0),) * 3, 100.0, 10.0, {P.PROBE: 0.0}
    ),
    "calls in flight keep it below its size (ARM may not have taken their tokens yet)": Case(
        R10, (("take", 0.0),) * 3 + (("answered", 0.0),), 100.0, 8.0, {P.PROBE: 0.0}
    ),
    "ARM's remaining count brings it down": Case(
        R10, (("observe", 2, 0.0),), 0.0, 2.0, {P.UNBLOCK: 0.0, P.STATUS: 0.0, P.RESYNC: 1.0}
    ),
    "and never up": Case(R10, (("take", 0.0),) * 8 + (("observe", 9, 0.0),), 0.0, 2.0),
    "a 429 empties it": Case(R10, (("empty", 1.0),), 1.0, 0.0, {P.UNBLOCK: 0.5, P.PROBE: 3.0}),
    "ARM's published reads: 250, refilled at 25 a second": Case(
        PUBLISHED[CallKind.READ], (("take", 0.0),) * 250, 0.0, 0.0, {P.UNBLOCK: 0.04, P.STATUS: 1.04, P.PROBE: 5.04}
    ),
    "and writes: 200 at 10": Case(
        PUBLISHED[CallKind.WRITE], (("take", 0.0), ("answered", 0.0)) * 200, 2.0, 20.0, {P.PROBE: 8.1}
    ),
}


@pytest.mark.parametrize("name", CASES, ids=list(CASES))
def test_the_bucket(name: str) -> None:
    case = CASES[name]
    bucket = TokenBucket.full(case.limit, 0.0)
    for step in case.steps:
        if step[0] == "take":
            bucket.take(float(step[1]))  # type: ignore[arg-type]
        elif step[0] == "answered":
            bucket.answered(float(step[1]))  # type: ignore[arg-type]
        elif step[0] == "observe":
            bucket.observe(float(step[1]), float(step[2]))  # type: ignore[arg-type]
        else:
            bucket.empty(float(step[1]))  # type: ignore[arg-type]
    waits = {p: round(bucket.seconds_until(p, case.at), 6) for p in case.waits}
    bucket.refill(case.at)
    assert (round(bucket.tokens, 6), waits) == (case.tokens, case.waits)


@pytest.mark.parametrize("text", ["0/1", "10/0", "ten/1", "10"])
def test_a_limit_needs_a_token_and_a_refill(text: str) -> None:
    with pytest.raises(ValueError):
        Limit.parse(text)


def test_a_limit_reads_size_and_refill() -> None:
    assert Limit.parse("250/25") == PUBLISHED[CallKind.READ]


KEY, OTHER = ("sub", "t/app"), ("sub", "t/other")


def test_calls_waiting_for_tokens_go_highest_priority_first() -> None:
    """An empty bucket, then a probe, a resync read and a status read queue in that order: the refill serves the
    status read first and the probe last."""

    async def queue() -> list[CallPriority]:
        budget = ArmBudget({CallKind.READ: Limit(10, 40), CallKind.WRITE: Limit(10, 40)})
        for _ in range(9):
            await budget.acquire(KEY, CallKind.READ, P.STATUS, "reading")
            budget.answered(KEY, CallKind.READ)
        served: list[CallPriority] = []

        async def one(priority: CallPriority) -> None:
            await budget.acquire(KEY, CallKind.READ, priority, "reading")
            served.append(priority)

        await asyncio.gather(one(P.PROBE), one(P.RESYNC), one(P.STATUS))
        return served

    assert asyncio.run(queue()) == [P.STATUS, P.RESYNC, P.PROBE]


def test_a_wait_past_the_bound_is_refused_with_when_to_come_back() -> None:
    async def refused() -> tuple[str, float, float]:
        budget = ArmBudget({CallKind.READ: Limit(1, 0.1), CallKind.WRITE: Limit(1, 0.1)}, max_wait=0.5)
        await budget.acquire(KEY, CallKind.READ, P.STATUS, "reading a")
        with pytest.raises(TransientBackendError) as raised:
            await budget.acquire(KEY, CallKind.READ, P.STATUS, "reading b")
        await budget.acquire(OTHER, CallKind.READ, P.STATUS, "another principal's")  # its own bucket: no wait
        return raised.value.message.split(";")[0], raised.value.retry_after or 0.0, budget.tokens(OTHER, CallKind.READ)

    message, retry_after, other = asyncio.run(refused())
    assert message == "reading b: no ARM call left in the budget"
    assert (9.0 < retry_after <= 10.0, other < 0.1) == (True, True)


def test_a_429_pauses_the_principal_and_a_short_pause_is_waited_out() -> None:
    async def paused() -> tuple[bool, float]:
        budget = ArmBudget(max_wait=5.0)
        budget.pause(KEY, 0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await budget.acquire(KEY, CallKind.WRITE, P.UNBLOCK, "writing")
        return budget.paused_for(OTHER) == 0.0, loop.time() - started

    other_free, waited = asyncio.run(paused())
    assert other_free and 0.15 < waited < 2.0


def test_off_it_keeps_no_bucket_but_keeps_the_pause() -> None:
    async def off() -> tuple[float, str]:
        budget = ArmBudget({CallKind.READ: Limit(1, 0.01), CallKind.WRITE: Limit(1, 0.01)}, enabled=False, max_wait=1)
        for _ in range(5):
            await budget.acquire(KEY, CallKind.READ, P.PROBE, "reading")
        budget.pause(KEY, 30)
        with pytest.raises(TransientBackendError) as raised:
            await budget.acquire(KEY, CallKind.READ, P.STATUS, "reading")
        return round(budget.tokens(KEY, CallKind.WRITE), 2), raised.value.message.split(";")[0]

    assert asyncio.run(off()) == (0.0, "reading: Azure asked to wait (Retry-After)")


def test_remaining_headers_feed_the_buckets() -> None:
    budget = ArmBudget()
    budget.observe(
        KEY,
        {
            "x-ms-ratelimit-remaining-subscription-reads": "17",
            "x-ms-ratelimit-remaining-subscription-writes": "not a number",
            "x-ms-ratelimit-remaining-subscription-global-reads": "3",
        },
    )
    assert (round(budget.tokens(KEY, CallKind.READ)), round(budget.tokens(KEY, CallKind.WRITE))) == (17, 200)


def test_a_pass_cancelled_while_it_waits_takes_no_token() -> None:
    """A waiting call whose pass is cancelled leaves the queue: the token it waited for goes to the next call."""

    async def cancelled() -> tuple[bool, float]:
        budget = ArmBudget({CallKind.READ: Limit(1, 20), CallKind.WRITE: Limit(1, 20)})
        await budget.acquire(KEY, CallKind.READ, P.STATUS, "first")
        budget.answered(KEY, CallKind.READ)
        waiting = asyncio.ensure_future(budget.acquire(KEY, CallKind.READ, P.STATUS, "cancelled"))
        await asyncio.sleep(0)  # one turn of the loop: it is queued
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await budget.acquire(KEY, CallKind.READ, P.STATUS, "next")
        return waiting.cancelled(), budget.tokens(KEY, CallKind.READ)

    was_cancelled, left = asyncio.run(cancelled())
    assert was_cancelled and left < 1.0
