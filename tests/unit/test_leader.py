"""The elector's rules, as plain functions and as state transitions on a fake lease (the same functions as the
apiserver's Lease: get, create, update with optimistic concurrency) and a fake clock: who may take a lease and
when, what a renewal writes, and when a leader must give up, which is always before a standby may take over."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from gpu_model_operator.leader import (
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
    Observation,
    claim,
    is_free,
    must_give_up,
    observe,
    released,
)
from gpu_model_operator.settings import LeaderElectionSettings

TIMING = LeaderElectionSettings(enabled=True, lease_duration=15, renew_deadline=10, retry_period=2)
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
HELD = LeaseRecord("a_1", 15, T0, T0, 3)


@dataclass
class FakeLease:
    """The Lease at an apiserver: a record and its resourceVersion; ``down`` makes every call fail as a cut
    connection does."""

    namespace: str = "ops"
    name: str = "gpu-model-operator"
    record: LeaseRecord | None = None
    version: int = 0
    down: bool = False
    writes: list[LeaseRecord] = field(default_factory=list)

    def _reachable(self) -> None:
        if self.down:
            raise OSError("connection refused")

    def get(self) -> tuple[LeaseRecord, str] | None:
        self._reachable()
        return None if self.record is None else (self.record, str(self.version))

    def create(self, record: LeaseRecord) -> str:
        self._reachable()
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._write(record)

    def update(self, record: LeaseRecord, version: str) -> str:
        self._reachable()
        if self.record is None or version != str(self.version):
            raise LeaseConflict("changed")
        return self._write(record)

    def _write(self, record: LeaseRecord) -> str:
        self.record, self.version = record, self.version + 1
        self.writes.append(record)
        return str(self.version)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.now - 1000.0)


def elector(store: FakeLease, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(store, identity, TIMING, clock=clock, wall=clock.wall)


# ---- the rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Take:
    observed: Observation | None
    now: float
    free: bool


TAKES: dict[str, Take] = {
    "absent": Take(None, 0.0, True),  # no lease seen yet: create it
    "released": Take(Observation(LeaseRecord(None, 1, T0, T0, 3), 100.0), 100.0, True),
    "ours": Take(Observation(LeaseRecord("me_1", 15, T0, T0, 3), 100.0), 100.0, True),  # renew
    "held": Take(Observation(HELD, 100.0), 114.9, False),  # changed 14.9 s ago by our clock
    "expired": Take(Observation(HELD, 100.0), 115.0, True),  # unchanged for its duration
    "holder-duration": Take(Observation(LeaseRecord("a_1", 40, T0, T0, 3), 100.0), 130.0, False),  # the holder's counts
    "no-duration": Take(Observation(LeaseRecord("a_1", None, T0, T0, 3), 100.0), 115.0, True),  # none declared: ours
}


@pytest.mark.parametrize("name", TAKES)
def test_who_may_take_the_lease(name: str) -> None:
    case = TAKES[name]
    assert is_free(case.observed, "me_1", case.now, TIMING) is case.free


def test_expiry_is_judged_by_our_clock_from_when_we_saw_the_record_never_by_its_renew_time() -> None:
    """A renewTime written by a machine whose clock runs an hour behind does not make the lease look expired."""
    stale_looking = LeaseRecord("a_1", 15, T0 - timedelta(hours=1), T0 - timedelta(hours=1), 0)
    seen = observe(None, stale_looking, now=500.0)
    assert not is_free(seen, "me_1", 500.0, TIMING)
    assert observe(seen, stale_looking, now=510.0) == seen, "the same record keeps its clock"
    renewed = LeaseRecord("a_1", 15, stale_looking.acquire_time, T0, 0)
    assert observe(seen, renewed, now=514.0) == Observation(renewed, 514.0), "a renewal restarts it"
    assert observe(seen, None, now=600.0) == seen, "a deleted lease keeps the last observation"


@dataclass(frozen=True)
class Claim:
    before: LeaseRecord | None
    after: LeaseRecord


CLAIMS: dict[str, Claim] = {
    "create": Claim(None, LeaseRecord("me_1", 15, T0, T0, 0)),
    # renewed: acquired when it was
    "renew": Claim(
        LeaseRecord("me_1", 15, T0 - timedelta(minutes=5), T0 - timedelta(seconds=2), 4),
        LeaseRecord("me_1", 15, T0 - timedelta(minutes=5), T0, 4),
    ),
    "take-over": Claim(HELD, LeaseRecord("me_1", 15, T0, T0, 4)),  # one transition more
    "after-release": Claim(LeaseRecord(None, 1, T0, T0, 4), LeaseRecord("me_1", 15, T0, T0, 5)),
}


@pytest.mark.parametrize("name", CLAIMS)
def test_what_a_claim_writes(name: str) -> None:
    case = CLAIMS[name]
    assert claim(case.before, "me_1", T0, TIMING) == case.after


def test_a_release_leaves_no_holder_and_keeps_the_count() -> None:
    assert released(HELD, T0) == LeaseRecord(None, 1, T0, T0, 3)


@dataclass(frozen=True)
class GiveUp:
    #: Seconds since the last renewal.
    since: float
    give_up: bool


GIVE_UPS: dict[str, GiveUp] = {
    "just renewed": GiveUp(0.0, False),
    "just before the renew deadline": GiveUp(9.99, False),
    "at the renew deadline": GiveUp(10.0, True),
    "long after": GiveUp(60.0, True),
}


@pytest.mark.parametrize("name", GIVE_UPS)
def test_when_the_leader_must_give_up(name: str) -> None:
    case = GIVE_UPS[name]
    assert must_give_up(100.0, 100.0 + case.since, TIMING) is case.give_up


SHORTER_THAN_THE_LEASE = "a leader that cannot renew must stop before a standby may take over"
POSITIVE = "the lease duration, renew deadline and retry period must be positive"


@dataclass(frozen=True)
class Timing:
    duration: int
    deadline: float
    retry: float
    refusal: str


TIMINGS: dict[str, Timing] = {
    "a renew deadline equal to the lease duration": Timing(
        15, 15, 2, f"the renew deadline (15s) must be shorter than the lease duration (15s): {SHORTER_THAN_THE_LEASE}"
    ),
    "a renew deadline above the lease duration": Timing(
        15, 20, 2, f"the renew deadline (20s) must be shorter than the lease duration (15s): {SHORTER_THAN_THE_LEASE}"
    ),
    "a retry period equal to the renew deadline": Timing(
        15,
        10,
        10,
        "the retry period (10s) must be shorter than the renew deadline (10s): the leader must get more than one try "
        "to renew",
    ),
    "no lease duration": Timing(0, 10, 2, POSITIVE),
    "no retry period": Timing(15, 10, 0, POSITIVE),
}


@pytest.mark.parametrize("name", TIMINGS)
def test_timings_that_would_allow_two_leaders_are_refused(name: str) -> None:
    case = TIMINGS[name]
    with pytest.raises(ValueError) as raised:
        LeaderElectionSettings(
            enabled=True, lease_duration=case.duration, renew_deadline=case.deadline, retry_period=case.retry
        )
    assert str(raised.value) == case.refusal


# ---- two electors on one lease ---------------------------------------------------------------------------


def test_one_leads_the_other_stands_by_and_the_leader_gives_up_before_the_standby_may_take_over() -> None:
    store, clock = FakeLease(), Clock()
    a, b = elector(store, clock, "a_1"), elector(store, clock, "b_1")
    assert a.try_acquire_or_renew() and a.leading
    assert not b.try_acquire_or_renew() and not b.leading and b.holder == "a_1"
    clock.now += 2
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew(), "a renews at 1002 s; b sees it at once"
    a_cut_off = FakeLease(store.namespace, store.name, down=True)  # a's side of a partition; b still reaches it
    a.store = a_cut_off
    gave_up = took = None
    while took is None:
        clock.now += 2
        if gave_up is None and not a.try_acquire_or_renew():
            assert a.last_renewal is not None
            if must_give_up(a.last_renewal, clock.now, TIMING):
                gave_up = a.last_renewal + TIMING.renew_deadline
        if b.try_acquire_or_renew():
            took = clock.now
    assert gave_up == 1012.0 and took == 1018.0, "a stops 10 s after its last renewal; b takes 15 s after seeing it"
    assert b.leading and store.record == LeaseRecord("b_1", 15, clock.wall(), clock.wall(), 1)


def test_of_two_candidates_racing_for_a_free_lease_only_one_wins() -> None:
    """b reads no lease, a creates it, b's create is refused: the apiserver's optimistic concurrency decides."""
    store, clock = FakeLease(), Clock()
    a, b = elector(store, clock, "a_1"), elector(store, clock, "b_1")
    real_get = store.get

    def a_writes_between_bs_read_and_write() -> tuple[LeaseRecord, str] | None:
        store.get = real_get  # type: ignore[method-assign]
        assert a.try_acquire_or_renew()
        return None

    store.get = a_writes_between_bs_read_and_write  # type: ignore[method-assign]
    assert not b.try_acquire_or_renew() and not b.leading
    assert a.leading and store.writes == [LeaseRecord("a_1", 15, T0, T0, 0)]


def test_a_lease_taken_by_another_is_lost_at_once() -> None:
    """If an administrator hands the lease to another (kubectl edit), the leader stops at its next renewal."""
    store, clock = FakeLease(), Clock()
    a = elector(store, clock, "a_1")
    assert a.try_acquire_or_renew()
    assert store.record is not None
    store.record = LeaseRecord("x_1", 15, T0, T0, store.record.transitions + 1)
    store.version += 1
    clock.now += 2
    assert not a.try_acquire_or_renew() and a.holder == "x_1"


def test_a_released_lease_is_taken_at_the_next_attempt_with_one_more_transition() -> None:
    store, clock = FakeLease(), Clock()
    a, b = elector(store, clock, "a_1"), elector(store, clock, "b_1")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    a.release()
    assert store.record == LeaseRecord(None, 1, clock.wall(), clock.wall(), 0) and not a.leading
    clock.now += 2
    assert b.try_acquire_or_renew()
    assert store.record is not None and (store.record.holder, store.record.transitions) == ("b_1", 1)


def test_release_writes_nothing_when_the_lease_is_no_longer_ours() -> None:
    store, clock = FakeLease(), Clock()
    a = elector(store, clock, "a_1")
    assert a.try_acquire_or_renew()
    taken = LeaseRecord("x_1", 15, T0, T0, 1)
    store.record = taken
    writes = len(store.writes)
    a.release()
    assert store.record == taken and len(store.writes) == writes


# ---- the watchdog, in real time --------------------------------------------------------------------------


def test_the_watchdog_fires_at_the_renew_deadline_even_while_renewals_hang() -> None:
    """Renewals that never return (a black-holed connection) cannot hold the leader past its deadline."""
    timing = LeaderElectionSettings(enabled=True, lease_duration=2, renew_deadline=0.6, retry_period=0.1)
    store, hang = FakeLease(), threading.Event()
    a = LeaderElector(store, "a_1", timing)
    assert a.try_acquire_or_renew()
    assert a.last_renewal is not None

    def hung() -> None:
        hang.wait(30)

    store.get = hung  # type: ignore[method-assign]
    lost: list[tuple[str, float]] = []
    fired = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append((reason, time.monotonic()))
        fired.set()

    a.keep(on_lost)
    assert fired.wait(5), "the watchdog never fired"
    reason, at = lost[0]
    assert "renew deadline" in reason
    assert a.last_renewal + 0.6 <= at < a.last_renewal + 0.6 + 0.3, "at the deadline, not a renewal later"
    hang.set()
    a.release()


def test_renewals_that_succeed_keep_the_watchdog_quiet() -> None:
    timing = LeaderElectionSettings(enabled=True, lease_duration=2, renew_deadline=0.5, retry_period=0.1)
    store = FakeLease()
    a = LeaderElector(store, "a_1", timing)
    assert a.try_acquire_or_renew()
    lost: list[str] = []
    a.keep(lost.append)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not lost:
        time.sleep(0.05)
    a.release()
    assert lost == [] and len(store.writes) >= 10
    assert store.record is not None and store.record.holder is None, "released at the end"
