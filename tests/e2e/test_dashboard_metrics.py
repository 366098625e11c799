"""The metrics a dashboard and the alerts are built on, read from the operator's /metrics after real passes against
the Azure ML emulator: the resource gauges say what kubectl says, errors are counted by reason, passes are timed,
deletions counted, a deleted resource leaves no series behind, and every series the chart's Grafana dashboard
queries exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.azure_harness import Azure, provision
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(300)

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/gpu-model-operator/dashboards/gpu-model-operator.json"


def samples(azure: Azure) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample on /metrics, by sample name (a histogram's _bucket, _count and _sum apart)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(azure.operator.metrics()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(azure: Azure, series: str, **labels: str) -> float | None:
    """The sum of the series' samples with these labels; None when there is none."""
    matching = [v for have, v in samples(azure).get(series, []) if labels.items() <= have.items()]
    return sum(matching) if matching else None


def queried_series() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    exprs += [v["definition"] for v in variables if v.get("definition")]
    return {name for expr in exprs for name in re.findall(r"\bgpumodel_[a-z_]+\b", expr)}


def test_the_resource_gauges_follow_the_resources_and_every_dashboard_series_exists(azure: Azure) -> None:
    azure.apply("seen", "seen-svc", provision("gpu-seen", agents=2), replicas=3)  # two GPUs: capped at 2
    azure.wait_reason("seen", "ReplicasCapped", timeout=120)
    azure.emu.add_fault(action="compute_quota", name="gpu-quota", sync=True)
    azure.apply("quota", "quota-svc", provision("gpu-quota"))
    azure.wait_reason("quota", "QuotaExceeded")

    ns = azure.ns
    assert value(azure, "gpumodel_replicas_requested", namespace=ns, name="seen", backend="azureml") == 3
    assert value(azure, "gpumodel_replicas_effective", namespace=ns, name="seen") == 2
    assert value(azure, "gpumodel_compute_gpus_held", compute="gpu-seen") == 2
    assert value(azure, "gpumodel_compute_gpus_total", compute="gpu-seen") == 2
    assert value(azure, "gpumodel_deployments", phase="Degraded") == 1
    assert value(azure, "gpumodel_deployments", phase="Failed") == 1
    assert value(azure, "gpumodel_deployments", phase="Deleting") == 0, "every phase is a series, zeros too"
    assert value(azure, "gpumodel_deployments_by_reason", reason="ReplicasCapped") == 1
    assert value(azure, "gpumodel_deployments_by_reason", reason="QuotaExceeded") == 1
    assert (value(azure, "gpumodel_reconcile_errors_total", reason="QuotaExceeded") or 0) >= 1
    assert (value(azure, "gpumodel_backend_errors_total", backend="azureml", kind="permanent") or 0) >= 1
    assert value(azure, "gpumodel_leader") == 1
    # What the alerts read: each resource's Ready and Stalled (a capped resource serves, and is stalled), and how
    # long passes take.
    condition = "gpumodel_deployment_condition"
    assert value(azure, condition, namespace=ns, name="seen", type="Ready", status="True") == 1
    assert value(azure, condition, namespace=ns, name="seen", type="Stalled", status="True") == 1
    assert value(azure, condition, namespace=ns, name="quota", type="Ready", status="False") == 1
    assert value(azure, condition, namespace=ns, name="quota", type="Stalled", status="True") == 1
    assert value(azure, condition, namespace=ns, name="quota", type="Stalled", status="False") == 0
    assert (value(azure, "gpumodel_reconcile_duration_seconds_count", handler="reconcile") or 0) >= 2

    present = {name for name, found in samples(azure).items() if found}
    assert queried_series() - present == set(), "a dashboard panel queries a series the operator does not export"
    assert len(queried_series()) >= 9

    azure.delete("quota")
    azure.delete("seen")
    wait_for(
        "the deleted resources' series to go",
        lambda: (
            value(azure, "gpumodel_replicas_requested", namespace=ns) is None
            and value(azure, "gpumodel_compute_gpus_held", compute="gpu-seen") is None
        ),
        30,
    )
    assert value(azure, "gpumodel_deployments", phase="Degraded") == 0
    assert value(azure, "gpumodel_deletions_total", result="deleted") == 2, "neither left anything behind"
    assert (value(azure, "gpumodel_reconcile_duration_seconds_count", handler="delete") or 0) >= 2
