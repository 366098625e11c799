"""The GPU ledger: who holds which GPUs of a compute, from the three sources, and who still uses it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpu_model_operator.backends.base import ServiceOnCompute
from gpu_model_operator.inputs import Holding
from gpu_model_operator.ledger import GpuLedger, users

KEY, ME, SERVICE = "azureml/sub/rg/ws/gpu", "ns/me/uid-1", "my-svc"


def pods(holdings: list[Holding], listed: list[ServiceOnCompute], ledger: GpuLedger | None = None) -> list[int]:
    ledger = ledger or GpuLedger(listing_age=30)
    return sorted(ledger.other_pods(KEY, ME, SERVICE, holdings, listed))


@dataclass(frozen=True)
class Others:
    """The resources' statuses and the compute's listing, and the GPUs per pod that others hold, sorted."""

    holdings: list[Holding]
    listed: list[ServiceOnCompute]
    want: list[int]


OTHERS: dict[str, Others] = {
    "nobody": Others([], [], []),
    "a status alone": Others([Holding("ns/a", 2, 1)], [], [1, 1]),
    "someone else's service alone": Others([], [ServiceOnCompute("theirs", 1, 2)], [2]),
    "the listing shows more than the status: the most counts": Others(
        [Holding("ns/a", 1, 1)], [ServiceOnCompute("a-svc", 3, 1, owner="ns/a")], [1, 1, 1]
    ),
    "the status shows more than the listing: the most counts": Others(
        [Holding("ns/a", 3, 1)], [ServiceOnCompute("a-svc", 1, 1, owner="ns/a")], [1, 1, 1]
    ),
    "its own, tagged or untagged with its name, is not another's": Others(
        [Holding(ME, 4, 1)], [ServiceOnCompute(SERVICE, 4, 1, owner=ME), ServiceOnCompute(SERVICE, 2, 1)], []
    ),
    "its own, tagged before tags carried the uid, is not another's": Others(
        [], [ServiceOnCompute(SERVICE, 2, 1, owner=ME.rsplit("/", 1)[0])], []
    ),
    "an earlier resource of its name (another uid) is someone else": Others(
        [], [ServiceOnCompute("old-svc", 2, 1, owner="ns/me/uid-0")], [1, 1]
    ),
    "another's service tagged before uids counts under that resource, not twice": Others(
        [Holding("ns/b/uid-b", 2, 1)], [ServiceOnCompute("b-svc", 2, 1, owner="ns/b")], [1, 1]
    ),
    "blue and green of one owner both hold GPUs during a rollout": Others(
        [Holding("ns/b", 2, 1)],
        [ServiceOnCompute("b/blue", 2, 1, owner="ns/b"), ServiceOnCompute("b/green", 2, 1, owner="ns/b")],
        [1, 1, 1, 1],
    ),
    "untagged services are each their own holder": Others(
        [], [ServiceOnCompute("x", 1, 2), ServiceOnCompute("y", 1, 1)], [1, 2]
    ),
}


@pytest.mark.parametrize("name", OTHERS)
def test_the_gpus_others_hold(name: str) -> None:
    case = OTHERS[name]
    assert pods(case.holdings, case.listed) == case.want


def test_a_decision_counts_before_its_status_is_written_and_only_while_the_resource_exists() -> None:
    ledger = GpuLedger(listing_age=30)
    ledger.remember(KEY, Holding("ns/a", 2, 1))
    assert pods([Holding("ns/a", 0, 1)], [], ledger) == [1, 1], "decided moments ago, not yet in its status"
    assert pods([], [], ledger) == [], "the resource is gone from the cluster: nothing it decided holds GPUs"
    assert pods([Holding("ns/a", 0, 1)], [], ledger) == [], "and the forgotten decision does not come back"


def test_an_old_decision_gives_way_to_the_listing() -> None:
    ledger = GpuLedger(listing_age=-10)  # every decision is older than the listing's horizon
    ledger.remember(KEY, Holding("ns/a", 2, 1))
    assert pods([Holding("ns/a", 0, 1)], [], ledger) == []


@dataclass(frozen=True)
class Users:
    """The resources' statuses and the compute's listing, and who still uses the compute besides ``ME``."""

    holdings: list[Holding]
    listed: list[ServiceOnCompute]
    want: set[str]


USERS: dict[str, Users] = {
    "another resource with a service": Users([Holding("ns/a", 1, 1, uses=True)], [], {"ns/a"}),
    "one that only names the compute": Users([Holding("ns/a", 0, 1, uses=False)], [], set()),
    "one being deleted too": Users([Holding("ns/a", 1, 1, deleting=True, uses=True)], [], set()),
    "itself": Users([Holding(ME, 1, 1, uses=True)], [], set()),
    "someone else's service": Users([], [ServiceOnCompute("theirs", 1, 1)], {"service:theirs"}),
    "a service being deleted": Users([], [ServiceOnCompute("theirs", 1, 1, deleting=True)], set()),
    "an earlier one of its name": Users([], [ServiceOnCompute("old", 1, 1, owner="ns/me/uid-0")], {"ns/me/uid-0"}),
    "its own, tagged before uids": Users([], [ServiceOnCompute(SERVICE, 1, 1, owner="ns/me")], set()),
}


@pytest.mark.parametrize("name", USERS)
def test_who_still_uses_the_compute(name: str) -> None:
    case = USERS[name]
    assert users(ME, case.holdings, case.listed) == case.want
