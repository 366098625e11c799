"""Leader election on a ``coordination.k8s.io/v1`` Lease: of the operator's replicas, exactly one reconciles.

Why: a second replica lets the operator survive the loss of its node, but two processes reconciling the same
GpuModelDeployment would both create its GPU cluster, and both delete it. So only the holder of the Lease runs
kopf at all; the other replicas stand by (answering their probes and serving metrics) and take the lease over
when its holder stops renewing it.

The protocol is client-go's ``leaderelection``, the one every controller-runtime operator runs:

- A standby judges expiry by its own clock: a lease whose record has not changed for its
  ``leaseDurationSeconds`` since this process first saw that record is free. No clock of another machine is
  trusted, so clock skew between nodes cannot hand the lease over early.
- The holder renews every ``retry_period``. When no renewal has succeeded for ``renew_deadline``, counted from
  the moment the last successful attempt *started* (never later than the apiserver recorded it), the process
  exits at once. As ``renew_deadline < lease_duration``, it has stopped before any standby can see the lease
  expire: never two writers, whichever side of a network partition each one is on.
- Stopping is a hard exit: every thread ends with it, the Azure SDK's calls in flight included, where a
  cancellation would wait for them. A crashed process is a safe process; its Deployment restarts it, as a
  standby.
- A graceful stop (SIGTERM: a rolling update, a drained node) releases the lease after kopf has finished, so a
  standby takes over at its next attempt instead of waiting for the lease to expire.

kopf's own peering is not used: operators of equal priority (every replica of one Deployment) all pause
instead of electing one, and a partitioned operator is never told to stop (README, High availability).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from .settings import LeaderElectionSettings

log = logging.getLogger(__name__)


# ---- the pure rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease's spec says about who leads (the fields of client-go's LeaderElectionRecord)."""

    holder: str | None
    #: Seconds, as the holder declared them: a standby waits this long after the record last changed.
    lease_duration: int | None = None
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """The last record read, and when (this process's monotonic clock) it was first seen as it is."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord | None, now: float) -> Observation | None:
    """A changed record starts its clock now; an unchanged one keeps its clock. A lease that vanished keeps the
    last observation: deleting the Lease must not hand it over before its holder has had to stop."""
    if record is None:
        return previous
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def is_free(observed: Observation | None, identity: str, now: float, timing: LeaderElectionSettings) -> bool:
    """May ``identity`` write itself into the lease now? Yes if none was ever seen, it has no holder (released),
    it is ours, or its record has not changed for its lease duration by our clock."""
    if observed is None:
        return True
    record = observed.record
    if not record.holder or record.holder == identity:
        return True
    duration = record.lease_duration if record.lease_duration and record.lease_duration > 0 else timing.lease_duration
    return now >= observed.seen_at + duration


def claim(record: LeaseRecord | None, identity: str, now: datetime, timing: LeaderElectionSettings) -> LeaseRecord:
    """The record to write: a renewal keeps the acquire time and the transition count; taking the lease from
    anyone (or from no one, after a release) counts one transition more."""
    if record is not None and record.holder == identity:
        return replace(record, renew_time=now, lease_duration=timing.lease_duration)
    transitions = record.transitions + 1 if record is not None else 0
    return LeaseRecord(identity, timing.lease_duration, now, now, transitions)


def released(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """What a holder that stops gracefully writes (as client-go's ReleaseOnCancel): no holder, so a standby may
    take it at once."""
    return LeaseRecord(None, 1, now, now, record.transitions)


def must_give_up(last_renewal_started: float, now: float, timing: LeaderElectionSettings) -> bool:
    """The leader's rule: no successful renewal for the renew deadline, and it must stop acting now."""
    return now >= last_renewal_started + timing.renew_deadline


# ---- the lease at the apiserver --------------------------------------------------------------------------


class LeaseConflict(Exception):
    """Someone else created or changed the lease between our read and our write."""


class LeaseStore(Protocol):
    """Where the record lives; :class:`KubeLease` in a cluster, a fake with the same functions in unit tests."""

    namespace: str
    name: str

    def get(self) -> tuple[LeaseRecord, str] | None:
        """The record and its resourceVersion, or None when there is no lease."""

    def create(self, record: LeaseRecord) -> str:
        """Create the lease; its resourceVersion. :class:`LeaseConflict` when it exists."""

    def update(self, record: LeaseRecord, version: str) -> str:
        """Replace the record if the lease is still at ``version``; :class:`LeaseConflict` if not."""


def _micro_time(moment: datetime | None) -> str | None:
    """A MicroTime as the apiserver parses it (always six fractional digits, which isoformat() may omit)."""
    return None if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeLease:
    """The Lease through the official client's CoordinationV1Api: get, create and update, nothing else (what
    the operator's Role grants). Every call has a timeout and no retry of its own; the elector retries."""

    def __init__(self, api_client: Any, namespace: str, name: str, timeout: float) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self._timeout = namespace, name, timeout

    def _body(self, record: LeaseRecord, version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            meta["resourceVersion"] = version
        spec = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_duration,
            "acquireTime": _micro_time(record.acquire_time),
            "renewTime": _micro_time(record.renew_time),
            "leaseTransitions": record.transitions,
        }
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta}
        return {**body, "spec": {k: v for k, v in spec.items() if v is not None}}

    @staticmethod
    def _parse(lease: Any) -> tuple[LeaseRecord, str]:
        spec = lease.spec
        record = LeaseRecord(
            spec.holder_identity or None,
            spec.lease_duration_seconds,
            spec.acquire_time,
            spec.renew_time,
            int(spec.lease_transitions or 0),
        )
        return record, str(lease.metadata.resource_version)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(str(exc.reason)) from exc
            raise

    def get(self) -> tuple[LeaseRecord, str] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._parse(self._call(self._api.read_namespaced_lease, self.name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, record: LeaseRecord) -> str:
        return self._parse(self._call(self._api.create_namespaced_lease, self.namespace, self._body(record)))[1]

    def update(self, record: LeaseRecord, version: str) -> str:
        body = self._body(record, version)
        return self._parse(self._call(self._api.replace_namespaced_lease, self.name, self.namespace, body))[1]


# ---- the elector -----------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LeaderElector:
    """Acquire, renew and release one lease for one identity. :meth:`try_acquire_or_renew` is one step (what
    the tests drive); :meth:`acquire` repeats it until this process leads; :meth:`keep` renews in a thread and
    calls ``on_lost`` when the lease is lost, from a watchdog that fires at the deadline even while a renewal
    hangs on a dead connection."""

    def __init__(
        self,
        store: LeaseStore,
        identity: str,
        timing: LeaderElectionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
        on_change: Callable[[bool], None] = lambda leading: None,
    ) -> None:
        self.store, self.identity, self.timing = store, identity, timing
        self._clock, self._wall, self._on_change = clock, wall, on_change
        self.observed: Observation | None = None
        self.leading = False
        #: When the last successful acquisition or renewal started (monotonic); the deadline counts from it.
        self.last_renewal: float | None = None
        #: When the last attempt ended, successful or not: the standby's liveness.
        self.last_attempt: float | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._failing = False
        self._threads: list[threading.Thread] = []

    @property
    def holder(self) -> str | None:
        return self.observed.record.holder if self.observed else None

    def try_acquire_or_renew(self) -> bool:
        """One attempt: read the lease, and write ourselves into it if it is free or ours. False when someone
        else holds it, another writer won the race, or the apiserver did not answer."""
        started = self._clock()
        try:
            return self._attempt(started)
        except LeaseConflict:
            return False
        except Exception as exc:  # the apiserver unreachable, slow or refusing: try again at the next period
            if not self._failing:  # said once per outage, not every period
                log.warning("leader election: lease %s could not be read or written: %s", self._name(), exc)
            self._failing = True
            return False
        finally:
            self.last_attempt = self._clock()

    def _attempt(self, started: float) -> bool:
        current = self.store.get()
        if self._failing:
            log.info("leader election: lease %s is reachable again", self._name())
            self._failing = False
        record, version = current if current is not None else (None, None)
        before = self.holder
        self.observed = observe(self.observed, record, started)
        if self.holder != before and self.holder != self.identity:
            log.info("leader election: lease %s is held by %s; standing by", self._name(), self.holder or "no one")
        if not is_free(self.observed, self.identity, started, self.timing):
            return False
        new = claim(record, self.identity, self._wall(), self.timing)
        if version is None:
            self.store.create(new)
        else:
            self.store.update(new, version)
        self.observed = Observation(new, started)
        with self._cond:
            self.last_renewal = started
            self._cond.notify_all()
        if not self.leading:
            self.leading = True
            log.info(
                "leader election: acquired lease %s as %s (transitions: %d); this replica reconciles now",
                self._name(),
                self.identity,
                new.transitions,
            )
            self._on_change(True)
        return True

    def _name(self) -> str:
        return f"{self.store.namespace}/{self.store.name}"

    def acquire(self, stop: threading.Event) -> bool:
        """Stand by until this process holds the lease (True), or until ``stop`` is set (False)."""
        self._on_change(False)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                return True
            stop.wait(self.timing.retry_period * random.uniform(1.0, 1.2))  # jitter: standbys out of step
        return False

    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew every retry period in one thread; in another, call ``on_lost`` at the renew deadline, or at
        once when the lease shows another holder."""
        for target, name in ((self._renew, "lease-renewer"), (self._watchdog, "lease-watchdog")):
            thread = threading.Thread(target=target, args=(on_lost,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopped, seconds)
            return self._stopped

    def _renew(self, on_lost: Callable[[str], None]) -> None:
        while not self._wait(self.timing.retry_period):
            if not self.try_acquire_or_renew() and self.holder not in (None, self.identity):
                on_lost(f"the lease is held by {self.holder}")
                return

    def _watchdog(self, on_lost: Callable[[str], None]) -> None:
        with self._cond:
            while not self._stopped:
                assert self.last_renewal is not None, "keep() is called once the lease is held"
                now = self._clock()
                if must_give_up(self.last_renewal, now, self.timing):
                    break
                self._cond.wait(self.last_renewal + self.timing.renew_deadline - now)
            else:
                return
        on_lost(f"no renewal succeeded for {self.timing.renew_deadline:g}s (the renew deadline)")

    def release(self) -> None:
        """Stop renewing, then hand the lease over: the record says no holder, so a standby takes it at its
        next attempt. Called once kopf has stopped; nothing is lost if the apiserver cannot be reached (the
        lease then expires)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(self.timing.renew_deadline)
        if not self.leading:
            return
        self.leading = False
        self._on_change(False)
        try:
            current = self.store.get()
            if current is not None and current[0].holder == self.identity:
                self.store.update(released(current[0], self._wall()), current[1])
                log.info("leader election: released lease %s", self._name())
        except Exception as exc:
            log.warning("leader election: lease %s not released (it expires instead): %s", self._name(), exc)
