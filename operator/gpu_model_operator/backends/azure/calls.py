"""The one door every Azure call of either backend passes: a bounded thread pool, timeouts and the Retry-After gate.

Why a pool: the SDKs block, so every call runs in a ``ThreadPoolExecutor`` while the event loop only awaits it.
A call waits on the loop for a free thread (a semaphore with one slot per thread), so its timeout counts from when
it runs: with a thousand resources polling, calls queued inside the executor timed out before they started, ran
anyway afterwards (a thread cannot be cancelled), and the queue grew.

Why a gate: the SDKs' own retries are off (they would sleep inside a pass, whatever Retry-After says); the
operator's backoff honours Retry-After instead.

Each call says where it goes and as whom (:class:`Scope`: the subscription, the workspace, the principal), what
kind of call it is (:class:`CallKind`: ARM counts reads apart from writes and deletes), whether ARM sees it (v1's
calls to the workspace's regional host do not) and how soon it should go (:class:`~..base.CallPriority`). An ARM
call waits for its token in the budget of its subscription and principal (:mod:`.arm_budget`), one budget shared
by both Azure backends; a 429 pauses that whole budget until its Retry-After has passed, so no other resource of
either backend calls ARM early either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..base import BackendError, CallPriority, TransientBackendError, pass_priority

if TYPE_CHECKING:
    from .arm_budget import ArmBudget

T = TypeVar("T")
#: Seconds one call may take before the pass gives up on it (its thread finishes in the background).
READ_TIMEOUT, WRITE_TIMEOUT = 60.0, 300.0


class CallKind(str, enum.Enum):
    """What ARM counts a call as: reads apart from writes and deletes (which share one bucket)."""

    READ = "read"
    WRITE = "write"

    @property
    def timeout(self) -> float:
        return READ_TIMEOUT if self is CallKind.READ else WRITE_TIMEOUT

    @classmethod
    def given(cls, timeout: float) -> CallKind:
        """The kind of a call given ``timeout``: a backend gives its writes and deletes more than a read's time."""
        return cls.WRITE if timeout > READ_TIMEOUT else cls.READ


class Scope(NamedTuple):
    """Where a call goes and as whom, in lower case; a credential appears only as a digest."""

    subscription: str
    resource_group: str
    workspace: str
    #: The application signed in as (tenant/client id): what ARM throttles by, with the subscription.
    principal: str
    #: A digest of the whole credential: a changed Secret signs in again.
    credential: str

    @property
    def workspace_key(self) -> tuple[str, str, str]:
        return self.subscription, self.resource_group, self.workspace

    @property
    def principal_key(self) -> tuple[str, str]:
        """What ARM throttles by: the subscription and the principal."""
        return self.subscription, self.principal

    @classmethod
    def of(cls, subscription: str, resource_group: str, workspace: str, credentials: Mapping[str, str]) -> Scope:
        principal = f"{credentials.get('tenantId', '')}/{credentials.get('clientId', '')}".lower()
        digest = hashlib.sha256("\0".join(f"{k}={credentials[k]}" for k in sorted(credentials)).encode()).hexdigest()
        return cls(subscription.lower(), resource_group.lower(), workspace.lower(), principal, digest)


class DrainablePool(concurrent.futures.ThreadPoolExecutor):
    """The thread pool the blocking SDK calls run in, which knows the calls still running: a graceful stop waits for
    them (:meth:`drain`) before the lease is handed to another replica."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self._running: set[concurrent.futures.Future[Any]] = set()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self._running.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._running.discard(future)

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls, drop the queued ones, and wait up to ``timeout`` seconds for the running ones to
        end; True when none is left."""
        self.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = [future for future in self._running if not future.done()]
        if running and timeout > 0:
            await asyncio.wait([asyncio.wrap_future(future) for future in running], timeout=timeout)
        return all(future.done() for future in running)


class Calls:
    """The pool and its slots of one backend, and the ARM budget both backends share."""

    def __init__(self, workers: int, thread_name_prefix: str, budget: ArmBudget | None = None) -> None:
        from .arm_budget import ArmBudget

        self._pool = DrainablePool(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._slots = asyncio.Semaphore(workers)
        #: One per process, given by whoever builds the backends; a backend built alone has its own.
        self.budget = budget if budget is not None else ArmBudget()

    async def call(
        self,
        scope: Scope,
        kind: CallKind,
        action: str,
        fn: Callable[[], T],
        explain: Callable[[BaseException], BackendError],
        timeout: float | None = None,
        *,
        arm: bool = True,
        priority: CallPriority | None = None,
    ) -> T:
        """Run one blocking Azure call (``action``, e.g. "reading compute gpu1") in the pool; its failure comes back
        as the Transient/PermanentBackendError ``explain`` makes of it. ``timeout`` defaults to the kind's. An
        ``arm`` call first waits for its token (by default at the pass's priority, a write of a pass in progress
        as UNBLOCK); any call waits out a 429's pause of its principal."""
        timeout = kind.timeout if timeout is None else timeout
        if priority is None:  # a write moves a resource on, unless it is a resync's (its keys read again)
            priority = pass_priority.get()
            priority = CallPriority.UNBLOCK if kind is CallKind.WRITE and priority is CallPriority.STATUS else priority
        if arm:
            await self.budget.acquire(scope.principal_key, kind, priority, action)
        else:
            paused = self.budget.paused_for(scope.principal_key)
            if paused > 0:
                raise TransientBackendError(
                    f"{action}: Azure asked to wait (HTTP 429, Retry-After); {paused:.1f}s left", retry_after=paused
                )
        try:
            return await self.run(fn, timeout)
        except asyncio.TimeoutError:
            raise TransientBackendError(f"{action} failed: no answer from Azure in {timeout:.0f}s") from None
        except Exception as exc:
            error = explain(exc)
            if isinstance(error, TransientBackendError) and error.retry_after:
                self.budget.pause(scope.principal_key, error.retry_after, empty=_throttled(exc))
            if error is exc:
                raise
            raise error from exc
        finally:
            if arm:
                self.budget.answered(scope.principal_key, kind)

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """A blocking call in the pool, nothing classified (a scoring request is no call to Azure's management)."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), timeout)

    async def drain(self, timeout: float) -> bool:
        """Stop taking calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a write sent keeps running after its pass was cancelled. True when none is left."""
        return await self._pool.drain(timeout)


def _throttled(exc: BaseException) -> bool:
    """Azure's 429 (azure-core's error carries the status; the SDK v1's text names it): ARM's bucket is empty.
    Any Retry-After pauses the principal's calls, as Azure asked; only a 429 says its bucket is empty."""
    status = getattr(exc, "status_code", None)
    return status == 429 if status is not None else "429" in str(exc)
