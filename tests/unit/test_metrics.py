"""The resource collector: what it exports from the last decision for each resource, computed at scrape time."""

from __future__ import annotations

from dataclasses import replace

from gpu_model_operator.metrics import ResourceCollector, Seen

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
