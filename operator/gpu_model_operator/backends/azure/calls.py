"""The one door every Azure call of either backend passes: a bounded thread pool, timeouts and the Retry-After gate.

Why a pool: the SDKs block, so every call runs in a ``ThreadPoolExecutor`` while the event loop only awaits it.
A call waits on the loop for a free thread (a semaphore with one slot per thread), so its timeout counts from when
it runs: with a thousand resources polling, calls queued inside the executor timed out before they started, ran
anyway afterwards (a thread cannot be cancelled), and the queue grew.

Why a gate: the SDKs' own retries are off (they would sleep inside a pass, whatever Retry-After says); the
operator's backoff honours Retry-After instead, and a 429 closes the workspace to every call of the backend until
it has passed, so a periodic resync cannot call Azure early either.

Each call says where it goes and as whom (:class:`Scope`: the subscription, the workspace, the principal) and what
kind of call it is (:class:`CallKind`: ARM counts reads apart from writes and deletes). A client-side budget per
subscription and principal (ARM's token buckets) belongs in :meth:`Calls.call`, where every call passes with both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from ..base import BackendError, TransientBackendError

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
    """The pool, its slots and the Retry-After gate of one backend."""

    def __init__(self, workers: int, thread_name_prefix: str) -> None:
        self._pool = DrainablePool(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._slots = asyncio.Semaphore(workers)
        #: Per workspace: no Azure call before this monotonic time (a 429's Retry-After).
        self._not_before: dict[tuple[str, str, str], float] = {}

    async def call(
        self,
        scope: Scope,
        kind: CallKind,
        action: str,
        fn: Callable[[], T],
        explain: Callable[[BaseException], BackendError],
        timeout: float | None = None,
    ) -> T:
        """Run one blocking Azure call (``action``, e.g. "reading compute gpu1") in the pool; its failure comes back
        as the Transient/PermanentBackendError ``explain`` makes of it. ``timeout`` defaults to the kind's."""
        timeout = kind.timeout if timeout is None else timeout
        wait = self._not_before.get(scope.workspace_key, 0.0) - time.monotonic()
        if wait > 0:
            raise TransientBackendError(
                f"{action}: Azure asked to wait (HTTP 429, Retry-After); {wait:.1f}s left", retry_after=wait
            )
        try:
            return await self.run(fn, timeout)
        except asyncio.TimeoutError:
            raise TransientBackendError(f"{action} failed: no answer from Azure in {timeout:.0f}s") from None
        except Exception as exc:
            error = explain(exc)
            if isinstance(error, TransientBackendError) and error.retry_after:
                self._not_before[scope.workspace_key] = time.monotonic() + error.retry_after
            if error is exc:
                raise
            raise error from exc

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """A blocking call in the pool, nothing classified (a scoring request is no call to Azure's management)."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), timeout)

    async def drain(self, timeout: float) -> bool:
        """Stop taking calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a write sent keeps running after its pass was cancelled. True when none is left."""
        return await self._pool.drain(timeout)
