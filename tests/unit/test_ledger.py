"""The GPU ledger: who holds which GPUs of a compute, from the three sources, and who still uses it."""

from __future__ import annotations

import pytest

from gpu_model_operator.backends.base import ServiceOnCompute
from gpu_model_operator.inputs import Holding
from gpu_model_operator.ledger import GpuLedger, users

KEY, ME, SERVICE = "azureml/sub/rg/ws/gpu", "ns/me/uid-1", "my-svc"


def pods(holdings: list[Holding], listed: list[ServiceOnCompute], ledger: GpuLedger | None = None) -> list[int]:
    ledger = ledger or GpuLedger(listing_age=30)
    return sorted(ledger.other_pods(KEY, ME, SERVICE, holdings, listed))


@pytest.mark.parametrize(
    ("holdings", "listed", "expected"),
    [
        pytest.param([], [], [], id="nobody"),
        pytest.param([Holding("ns/a", 2, 1)], [], [1, 1], id="a status alone"),
        pytest.param([], [ServiceOnCompute("theirs", 1, 2)], [2], id="someone else's service alone"),
        pytest.param(
            [Holding("ns/a", 1, 1)],
            [ServiceOnCompute("a-svc", 3, 1, owner="ns/a")],
            [1, 1, 1],
            id="the listing shows more than the status: the most counts",
        ),
        pytest.param(
            [Holding("ns/a", 3, 1)],
            [ServiceOnCompute("a-svc", 1, 1, owner="ns/a")],
            [1, 1, 1],
            id="the status shows more than the listing: the most counts",
        ),
        pytest.param(
            [Holding(ME, 4, 1)],
            [ServiceOnCompute(SERVICE, 4, 1, owner=ME), ServiceOnCompute(SERVICE, 2, 1)],
            [],
            id="its own, tagged or untagged with its name, is not another's",
        ),
        pytest.param(
            [],
            [ServiceOnCompute(SERVICE, 2, 1, owner=ME.rsplit("/", 1)[0])],
            [],
            id="its own, tagged before tags carried the uid, is not another's",
        ),
        pytest.param(
            [],
            [ServiceOnCompute("old-svc", 2, 1, owner="ns/me/uid-0")],
            [1, 1],
            id="an earlier resource of its name (another uid) is someone else",
        ),
        pytest.param(
            [Holding("ns/b/uid-b", 2, 1)],
            [ServiceOnCompute("b-svc", 2, 1, owner="ns/b")],
            [1, 1],
            id="another's service tagged before uids counts under that resource, not twice",
        ),
        pytest.param(
            [Holding("ns/b", 2, 1)],
            [ServiceOnCompute("b/blue", 2, 1, owner="ns/b"), ServiceOnCompute("b/green", 2, 1, owner="ns/b")],
            [1, 1, 1, 1],
            id="blue and green of one owner both hold GPUs during a rollout",
        ),
        pytest.param(
            [],
            [ServiceOnCompute("x", 1, 2), ServiceOnCompute("y", 1, 1)],
            [1, 2],
            id="untagged services are each their own holder",
        ),
    ],
)
def test_the_gpus_others_hold(holdings: list[Holding], listed: list[ServiceOnCompute], expected: list[int]) -> None:
    assert pods(holdings, listed) == expected


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


@pytest.mark.parametrize(
    ("holdings", "listed", "expected"),
    [
        pytest.param([Holding("ns/a", 1, 1, uses=True)], [], {"ns/a"}, id="another resource with a service"),
        pytest.param([Holding("ns/a", 0, 1, uses=False)], [], set(), id="one that only names the compute"),
        pytest.param([Holding("ns/a", 1, 1, deleting=True, uses=True)], [], set(), id="one being deleted too"),
        pytest.param([Holding(ME, 1, 1, uses=True)], [], set(), id="itself"),
        pytest.param([], [ServiceOnCompute("theirs", 1, 1)], {"service:theirs"}, id="someone else's service"),
        pytest.param([], [ServiceOnCompute("theirs", 1, 1, deleting=True)], set(), id="a service being deleted"),
        pytest.param(
            [], [ServiceOnCompute("old", 1, 1, owner="ns/me/uid-0")], {"ns/me/uid-0"}, id="an earlier one of its name"
        ),
        pytest.param([], [ServiceOnCompute(SERVICE, 1, 1, owner="ns/me")], set(), id="its own, tagged before uids"),
    ],
)
def test_who_still_uses_the_compute(
    holdings: list[Holding], listed: list[ServiceOnCompute], expected: set[str]
) -> None:
    assert users(ME, holdings, listed) == expected
