"""The resource collector: what it exports from the last decision for each resource, computed at scrape time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import pytest
from prometheus_client import REGISTRY

from gpu_model_operator import conditions as c
from gpu_model_operator.decision import DeleteAction, Event, normal
from gpu_model_operator.deletion import DeletionDecision
from gpu_model_operator.metrics import ResourceCollector, Seen, deletion_result, timed

A = Seen("ns", "a", "azureml", "ws1", "GPU-1", "Ready", "ProbeSucceeded", 2, 2, 2, 4)


def exported(collector: ResourceCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples
    }


def test_resources_on_one_compute_add_up_whatever_the_spelling_of_its_name() -> None:
    collector = ResourceCollector()
    collector.record("ns/a", A)
    collector.record("ns/b", replace(A, name="b", compute="gpu-1", gpus_held=1, phase="Degraded"))
    got = exported(collector)
    where = (("backend", "azureml"), ("compute", "gpu-1"), ("workspace", "ws1"))
    assert got[("gpumodel_compute_gpus_held", where)] == 3
    assert got[("gpumodel_compute_gpus_total", where)] == 4
    assert got[("gpumodel_deployments", (("phase", "Ready"),))] == 1
    assert got[("gpumodel_deployments", (("phase", "Degraded"),))] == 1
    assert got[("gpumodel_deployments", (("phase", "Failed"),))] == 0
    assert got[("gpumodel_deployments_by_reason", (("reason", "ProbeSucceeded"),))] == 2


def test_a_forgotten_resource_leaves_no_series_and_a_recorded_one_replaces_its_last() -> None:
    collector = ResourceCollector()
    collector.record("ns/a", A)
    collector.record("ns/a", replace(A, phase="Deploying", ready_reason="Deploying"))
    got = exported(collector)
    assert got[("gpumodel_deployments", (("phase", "Ready"),))] == 0
    assert got[("gpumodel_deployments_by_reason", (("reason", "Deploying"),))] == 1
    collector.forget("ns/a")
    names = {name for name, _ in exported(collector)}
    assert names == {"gpumodel_deployments"}, "only the per-phase zeros are left"


def test_each_resource_has_a_series_per_condition_status_one_of_them_set() -> None:
    collector = ResourceCollector()
    collector.record("ns/a", replace(A, ready="False", stalled="True"))
    got = {
        (labels["type"], labels["status"]): v
        for (name, pairs), v in exported(collector).items()
        if name == "gpumodel_deployment_condition"
        for labels in [dict(pairs)]
        if (labels["namespace"], labels["name"], labels["backend"]) == ("ns", "a", "azureml")
    }
    assert got == {
        ("Ready", "True"): 0,
        ("Ready", "False"): 1,
        ("Ready", "Unknown"): 0,
        ("Stalled", "True"): 1,
        ("Stalled", "False"): 0,
        ("Stalled", "Unknown"): 0,
    }


@dataclass(frozen=True)
class DeletionCase:
    events: tuple[Event, ...]
    result: str


DELETIONS: dict[str, DeletionCase] = {
    "everything-deleted": DeletionCase((normal(c.DELETED_SERVICE, "x"), normal(c.DELETED_COMPUTE, "y")), "deleted"),
    "nothing-was-made": DeletionCase((), "deleted"),
    "a-compute-kept-by-policy": DeletionCase(
        (normal(c.DELETED_SERVICE, "x"), normal(c.RETAINED_COMPUTE, "y")), "retained"
    ),
    "an-adopted-service-kept": DeletionCase((normal(c.RETAINED_SERVICE, "x"),), "retained"),
    "detached-by-the-policy": DeletionCase((normal(c.DETACHED, "x"),), "detached"),
}


@pytest.mark.parametrize("name", DELETIONS)
def test_a_finished_deletion_is_counted_by_what_it_left(name: str) -> None:
    case = DELETIONS[name]
    assert deletion_result(DeletionDecision(DeleteAction.DONE, "done", case.events)) == case.result


def test_a_timed_handler_is_observed_however_it_ends() -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("gpumodel_reconcile_duration_seconds_count", {"handler": "test"}) or 0.0

    @timed("test")
    async def fails(**_: object) -> None:
        raise RuntimeError("kopf retries by exception")

    @timed("test")
    async def passes(**_: object) -> None:
        return None

    before = count()
    asyncio.run(passes(body={}))
    with pytest.raises(RuntimeError):
        asyncio.run(fails(body={}))
    assert count() == before + 2
    slowest = REGISTRY.get_sample_value(
        "gpumodel_reconcile_duration_seconds_bucket", {"handler": "test", "le": "1800.0"}
    )
    assert slowest == before + 2, "the buckets reach Azure's minutes"


def test_each_resource_with_an_estimate_has_its_cost_per_hour() -> None:
    """Only where status.cost has a total: a resource of a size without a price exports none, rather than a 0."""
    collector = ResourceCollector()
    collector.record("ns/a", replace(A, cost_per_hour=1.578, currency="USD"))
    collector.record("ns/b", replace(A, name="b", cost_per_hour=None, currency="USD"))
    got = {pairs: v for (name, pairs), v in exported(collector).items() if name == "gpumodel_estimated_cost_per_hour"}
    assert got == {(("backend", "azureml"), ("currency", "USD"), ("name", "a"), ("namespace", "ns")): 1.578}
