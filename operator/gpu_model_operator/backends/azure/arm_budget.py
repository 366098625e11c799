"""One client-side budget of ARM calls per subscription and principal, shared by both Azure backends.

Why: Azure Resource Manager throttles each subscription and service principal with token buckets (reads 250
refilled at 25 a second, writes and deletes 200 at 10: "Understand how Azure Resource Manager throttles
requests", learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling). A burst past
the bucket comes back as 429s, and every refused call is a pass that failed, wrote its error to the API server and
comes back later to call again: at a thousand resources the calls an operator makes are its speed. So the operator
keeps ARM's buckets itself and sends a call only once its bucket has a token for it.

- **The same buckets as ARM's.** Taken when a call is sent, refilled at ARM's rate. ARM takes its token later, when
  the call arrives, and a bucket never holds more than its size: calls sent one by one over a second can arrive
  together at a full bucket, which refilled nothing meanwhile. So a call counts as in flight until its answer came
  back, and this bucket never holds more than the size less the calls in flight: while this process is the
  principal's only caller, what it may still send never exceeds what ARM's bucket holds. Another caller with the
  same principal (a person's script, another operator) spends ARM's tokens too: every answer's
  ``x-ms-ratelimit-remaining-subscription-{reads,writes}`` (the document's table) brings this bucket down to what
  ARM says is left (:meth:`ArmBudget.observe`), never up. Writes and deletes share one bucket here, the smaller of
  ARM's two (both 200 at 10): conservative, and the operator deletes rarely.
- **Priorities** (:class:`~..base.CallPriority`): a call waits in its bucket's queue, highest priority first, and
  each priority leaves part of the bucket to those above it (:data:`RESERVE`): a write that unblocks a resource may
  take the last token, a status read leaves a tenth of the bucket, a resync read 30%, a probe half. Under load the
  drift checks of converged resources wait; the resources still converging do not.
- **A 429 pauses the whole bucket** (:meth:`ArmBudget.pause`): ARM's Retry-After is the principal's, not one
  resource's, so every call of that subscription and principal waits it out in the queue, and the bucket counts as
  empty afterwards.
- **A wait has a bound** (``max_wait``): a call that would wait longer is refused as a transient error that says
  when to come back, so a pass never holds on for minutes.

The arithmetic is :class:`TokenBucket`, pure and clock-driven (unit-tested); :class:`ArmBudget` adds the queues on
the event loop. Header observations arrive from the pool's threads, hence the lock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..base import CallPriority, TransientBackendError
from .calls import CallKind

#: The share of a bucket each priority leaves to the priorities above it.
RESERVE: Mapping[CallPriority, float] = {
    CallPriority.UNBLOCK: 0.0,
    CallPriority.STATUS: 0.1,
    CallPriority.RESYNC: 0.3,
    CallPriority.PROBE: 0.5,
}
#: ARM's remaining-requests headers, and the client bucket each brings down.
REMAINING_HEADERS: Mapping[str, CallKind] = {
    "x-ms-ratelimit-remaining-subscription-reads": CallKind.READ,
    "x-ms-ratelimit-remaining-subscription-writes": CallKind.WRITE,
    "x-ms-ratelimit-remaining-subscription-deletes": CallKind.WRITE,
}
#: Seconds a call may wait for its token before its pass is sent away to come back later.
MAX_WAIT = 60.0


@dataclass(frozen=True)
class Limit:
    """A token bucket's size and its refill per second."""

    size: float
    refill_per_s: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``SIZE/REFILL`` (``250/25``), as ``--arm-limit`` gives it."""
        size, _, rate = text.partition("/")
        limit = cls(float(size), float(rate))
        if limit.size < 1 or limit.refill_per_s <= 0:
            raise ValueError(f"{text!r}: a bucket holds at least one token and refills at a positive rate")
        return limit


#: ARM's published subscription limits per principal (the document's table).
PUBLISHED: Mapping[CallKind, Limit] = {CallKind.READ: Limit(250, 25), CallKind.WRITE: Limit(200, 10)}


@dataclass
class TokenBucket:
    """ARM's token bucket, fractional tokens, on an injected clock (``now``: seconds, monotonic), less the calls
    in flight (sent, not yet answered: ARM may not have taken their tokens yet)."""

    limit: Limit
    tokens: float
    stamp: float
    in_flight: int = 0

    @classmethod
    def full(cls, limit: Limit, now: float) -> TokenBucket:
        return cls(limit, limit.size, now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            room = self.limit.size - self.in_flight
            self.tokens = min(max(room, self.tokens), self.tokens + (now - self.stamp) * self.limit.refill_per_s)
            self.stamp = now

    def answered(self, now: float) -> None:
        """A call taken earlier came back: ARM has taken its token, and the bucket may fill up to its size again."""
        self.refill(now)
        self.in_flight = max(0, self.in_flight - 1)

    def floor(self, priority: CallPriority) -> float:
        """The tokens a call of ``priority`` leaves in the bucket for those above it (a full bucket lets any go)."""
        return min(RESERVE[priority] * self.limit.size, self.limit.size - 1.0)

    def seconds_until(self, priority: CallPriority, now: float) -> float:
        """0 when a call of ``priority`` may take a token now; else the seconds until it may (at the refill rate,
        nothing else taken meanwhile)."""
        self.refill(now)
        missing = self.floor(priority) + 1.0 - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.limit.refill_per_s

    def take(self, now: float) -> None:
        self.refill(now)
        self.tokens -= 1.0
        self.in_flight += 1

    def observe(self, remaining: float, now: float) -> None:
        """ARM says ``remaining`` tokens are left: never believe more than that (another caller spent them)."""
        self.refill(now)
        self.tokens = min(self.tokens, max(0.0, remaining))

    def empty(self, now: float) -> None:
        """ARM refused a call: its bucket is empty, so is this one."""
        self.refill(now)
        self.tokens = min(self.tokens, 0.0)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    future: asyncio.Future[None] = field(compare=False)


@dataclass
class _Principal:
    """The buckets of one subscription and principal, their queues, and the pause a 429 set."""

    buckets: dict[CallKind, TokenBucket]
    queues: dict[CallKind, list[_Waiter]] = field(default_factory=lambda: {k: [] for k in CallKind})
    timers: dict[CallKind, asyncio.TimerHandle | None] = field(default_factory=lambda: dict.fromkeys(CallKind))
    paused_until: float = 0.0


class ArmBudget:
    """The buckets of every subscription and principal this process calls ARM as; ``enabled`` False keeps only the
    shared pause of a 429 (as Azure asked), no client-side bucket."""

    def __init__(
        self,
        limits: Mapping[CallKind, Limit] = PUBLISHED,
        *,
        enabled: bool = True,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits, self.enabled, self.max_wait, self._clock = dict(limits), enabled, max_wait, clock
        self._principals: dict[tuple[str, str], _Principal] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def _of(self, key: tuple[str, str]) -> _Principal:
        found = self._principals.get(key)
        if found is None:
            now = self._clock()
            found = _Principal({kind: TokenBucket.full(self.limits[kind], now) for kind in CallKind})
            self._principals[key] = found
        return found

    def tokens(self, key: tuple[str, str], kind: CallKind) -> float:
        """The tokens left now (for metrics and tests)."""
        with self._lock:
            bucket = self._of(key).buckets[kind]
            bucket.refill(self._clock())
            return bucket.tokens

    def paused_for(self, key: tuple[str, str]) -> float:
        """Seconds left of the pause a 429 set (0: none)."""
        with self._lock:
            return max(0.0, self._of(key).paused_until - self._clock())

    async def acquire(self, key: tuple[str, str], kind: CallKind, priority: CallPriority, action: str) -> None:
        """Wait for a token of ``kind`` in the bucket of ``key`` (subscription, principal), behind the calls of
        higher priority; raise a TransientBackendError instead when the wait would pass ``max_wait``."""
        with self._lock:
            principal, now = self._of(key), self._clock()
            wait = self._wait(principal, kind, priority, now)
            if wait <= 0 and not principal.queues[kind]:
                if self.enabled:
                    principal.buckets[kind].take(now)
                return
            if wait > self.max_wait:
                raise self._refusal(action, wait, principal, now)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(principal.queues[kind], _Waiter(int(priority), next(self._seq), future))
            self._schedule(principal, kind, now)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.max_wait)
        except asyncio.TimeoutError:
            if future.cancel():  # else it was served meanwhile: the token is this call's
                with self._lock:
                    now = self._clock()
                    raise self._refusal(action, self._wait(principal, kind, priority, now), principal, now) from None
        except asyncio.CancelledError:
            if not future.cancel():  # served, then the pass was cancelled: the token goes back as answered
                self.answered(key, kind)
            raise

    def _refusal(self, action: str, wait: float, principal: _Principal, now: float) -> TransientBackendError:
        why = "Azure asked to wait (Retry-After)" if principal.paused_until > now else "no ARM call left in the budget"
        wait = max(wait, 1.0)
        return TransientBackendError(f"{action}: {why}; {wait:.1f}s left", retry_after=wait)

    def _wait(self, principal: _Principal, kind: CallKind, priority: CallPriority, now: float) -> float:
        paused = max(0.0, principal.paused_until - now)
        if not self.enabled:
            return paused
        return max(paused, principal.buckets[kind].seconds_until(priority, now))

    def _schedule(self, principal: _Principal, kind: CallKind, now: float) -> None:
        """Serve what the queue's head allows now, then set the timer for when its next head may go."""
        queue = principal.queues[kind]
        while queue:
            head = queue[0]
            if head.future.done():
                heapq.heappop(queue)
                continue
            if self._wait(principal, kind, CallPriority(head.priority), now) > 0:
                break
            heapq.heappop(queue)
            if self.enabled:
                principal.buckets[kind].take(now)
            head.future.set_result(None)
        timer = principal.timers[kind]
        if timer is not None:
            timer.cancel()
        principal.timers[kind] = None
        if queue:
            delay = self._wait(principal, kind, CallPriority(queue[0].priority), now)
            loop = queue[0].future.get_loop()
            principal.timers[kind] = loop.call_later(delay, self._wake, principal, kind)

    def _wake(self, principal: _Principal, kind: CallKind) -> None:
        with self._lock:
            principal.timers[kind] = None
            self._schedule(principal, kind, self._clock())

    def answered(self, key: tuple[str, str], kind: CallKind) -> None:
        """A call that took a token of ``kind`` has its answer (or gave up waiting for it); on the event loop, so
        the calls it held back may go now."""
        with self._lock:
            if self.enabled:
                principal, now = self._of(key), self._clock()
                principal.buckets[kind].answered(now)
                if principal.queues[kind]:
                    self._schedule(principal, kind, now)

    def pause(self, key: tuple[str, str], seconds: float, *, empty: bool = True) -> None:
        """Azure answered with Retry-After ``seconds``: no call of this subscription and principal before then;
        after a 429 (``empty``) its buckets count as empty too."""
        with self._lock:
            principal, now = self._of(key), self._clock()
            principal.paused_until = max(principal.paused_until, now + seconds)
            for bucket in principal.buckets.values() if empty else ():
                bucket.empty(now)

    def observe(self, key: tuple[str, str], headers: Mapping[str, str]) -> None:
        """An ARM answer's remaining-requests headers (from a pool thread): the buckets never hold more."""
        with self._lock:
            principal, now = self._of(key), self._clock()
            for name, kind in REMAINING_HEADERS.items():
                value = headers.get(name)
                if value is None:
                    continue
                try:
                    remaining = float(value)
                except ValueError:
                    continue
                principal.buckets[kind].observe(remaining, now)
