"""The operator's metrics as Prometheus stores them when it scrapes the chart's ServiceMonitor: the real Prometheus
(hack/prometheus) scrapes a real operator (after real passes against the Azure ML emulator) with the scrape job
Prometheus Operator generates from that ServiceMonitor, and the test reads the series back from Prometheus.

The job is Prometheus Operator's own output for a ServiceMonitor endpoint, relabelling and honor_labels included
(prometheus-operator/prometheus-operator, pkg/prometheus/promcfg.go, as its golden test TestSettingHonorLabels in
pkg/prometheus/promcfg_test.go at 24b2b5cb6f9fa2eba378c41e8493bbb7c6452e3b shows it). One thing differs: there is
no kubelet here, so no pod and no EndpointSlice for the kubernetes service discovery to find; the target is given
statically with the __meta_kubernetes_* labels that discovery gives an endpoint of the metrics Service backed by the
operator's pod, and the generated relabelling turns them into the target's labels. The scrape interval is a second,
not the chart's 30 s, so the test does not wait.

A second job, the same but without honorLabels, shows what the ServiceMonitor's honorLabels prevents: the resource's
namespace renamed exported_namespace, the operator's namespace in its place, and the dashboard's namespace filter
matching nothing.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.controlplane import ensure_helm
from gpu_model_operator_dev.operator_process import free_port
from gpu_model_operator_dev.tools import ensure_prometheus
from tests.e2e.azure_harness import Azure, provision
from tests.e2e.harness import wait_for
from tests.integration.test_helm_chart import CHART, Helm

pytestmark = pytest.mark.timeout(300)

DASHBOARD = CHART / "dashboards" / "gpu-model-operator.json"
#: Where the chart's Deployment runs (the operator's namespace), and its pod, as discovery would name them.
OPERATOR_NAMESPACE, POD = "gpu-model-operator", "gpu-model-operator-5d8f9c7b6-x2k4p"


def service_monitor(home: Path) -> dict[str, Any]:
    """The chart's ServiceMonitor, as `helm template` renders it with the metrics exposed."""
    helm = Helm(ensure_helm(), home)
    args = ["--set", "metrics.bindAddress=0.0.0.0", "--set", "metrics.serviceMonitor.enabled=true"]
    out = helm("template", "gpu-model-operator", CHART, "-n", OPERATOR_NAMESPACE, "--skip-tests", *args).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    return next(d for d in docs if d["kind"] == "ServiceMonitor")


def generated_job(monitor: dict[str, Any], index: int, endpoint: dict[str, Any], target: str) -> dict[str, Any]:
    """Prometheus Operator's scrape job for one endpoint of a ServiceMonitor (promcfg.go's generateServiceMonitor-
    Config, role endpoints), with the endpoint's address given statically instead of discovered."""
    meta = monitor["metadata"]
    port = endpoint["port"]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
        "honor_labels": endpoint.get("honorLabels", False),
        "scrape_interval": "1s",
        "metrics_path": endpoint["path"],
        "static_configs": [
            {
                "targets": [target],
                "labels": {
                    "__meta_kubernetes_namespace": meta["namespace"],
                    "__meta_kubernetes_service_name": "gpu-model-operator-metrics",
                    "__meta_kubernetes_endpoint_port_name": port,
                    "__meta_kubernetes_endpoint_address_target_kind": "Pod",
                    "__meta_kubernetes_endpoint_address_target_name": POD,
                    "__meta_kubernetes_pod_name": POD,
                    "__meta_kubernetes_pod_container_name": "operator",
                },
            }
        ],
        "relabel_configs": [
            {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": port},
            *(
                {
                    "source_labels": [
                        "__meta_kubernetes_endpoint_address_target_kind",
                        "__meta_kubernetes_endpoint_address_target_name",
                    ],
                    "separator": ";",
                    "regex": f"{kind};(.*)",
                    "replacement": "${1}",
                    "target_label": label,
                }
                for kind, label in (("Node", "node"), ("Pod", "pod"))
            ),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
            {"target_label": "endpoint", "replacement": port},
            # The shard relabelling, with the config reloader's $(SHARD) for a single shard: 0.
            {"source_labels": ["__address__"], "target_label": "__tmp_hash", "modulus": 1, "action": "hashmod"},
            {"source_labels": ["__tmp_hash"], "regex": "0", "action": "keep"},
        ],
    }


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]  # type: ignore[no-any-return]


@pytest.fixture
def prometheus(azure: Azure, tmp_path: Path) -> Iterator[Prometheus]:
    """The real Prometheus with the two jobs: the chart's ServiceMonitor as generated, and the same without
    honorLabels."""
    monitor = service_monitor(tmp_path / "helm-home")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    target = f"127.0.0.1:{azure.operator.metrics_port}"
    jobs = [
        generated_job(monitor, 0, endpoint, target),
        generated_job(monitor, 1, {**endpoint, "honorLabels": False}, target),
    ]
    jobs[1]["relabel_configs"].append({"target_label": "without_honor_labels", "replacement": "true"})
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))
    port = free_port()
    binary = ensure_prometheus() / "prometheus"
    args = [
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen([str(binary), *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield Prometheus(f"http://127.0.0.1:{port}")
        finally:
            proc.terminate()
            proc.wait(30)


def test_prometheus_keeps_each_resources_namespace_with_the_charts_service_monitor(
    azure: Azure, prometheus: Prometheus
) -> None:
    azure.apply("scraped", "scraped-svc", provision("gpu-scraped", agents=2), replicas=1)
    azure.wait_ready("scraped", timeout=120)

    def scraped() -> list[dict[str, Any]] | None:
        found = prometheus.query('gpumodel_replicas_requested{name="scraped"}')
        return found if len(found) == 2 else None

    series = {
        s["metric"].get("without_honor_labels", "false"): s["metric"]
        for s in wait_for("both jobs' series", scraped, 60)
    }
    honoured, renamed = series["false"], series["true"]
    assert (honoured["namespace"], honoured["job"], honoured["pod"]) == (azure.ns, "gpu-model-operator-metrics", POD)
    assert "exported_namespace" not in honoured
    # Without honorLabels, the collision the ServiceMonitor avoids:
    assert (renamed["namespace"], renamed["exported_namespace"]) == (OPERATOR_NAMESPACE, azure.ns)

    # The operator's own series carry no namespace of their own: the target's, the operator's, in both jobs.
    (leader,) = prometheus.query('gpumodel_leader{without_honor_labels=""}')
    assert leader["metric"]["namespace"] == OPERATOR_NAMESPACE and leader["value"][1] == "1"

    # The dashboard's replicas panel, its namespace variable set to the resource's: it finds the resource in the
    # chart's ServiceMonitor's series, and nothing in the other job's.
    panel = next(
        t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]
        if "gpumodel_replicas_requested" in t["expr"] and "$namespace" in t["expr"]
    )  # fmt: skip
    expr = panel.replace("$namespace", azure.ns)
    for job, found in (('without_honor_labels=""', [azure.ns]), ('without_honor_labels="true"', [])):
        scoped = expr.replace("gpumodel_replicas_requested{", f"gpumodel_replicas_requested{{{job},")
        assert [s["metric"]["namespace"] for s in prometheus.query(scoped) if s["metric"]["name"] == "scraped"] == found
