"""The operator's alerts (charts/gpu-model-operator/alerts/) with the real promtool (hack/prometheus): the rules
file passes `promtool check rules`, and every alert fires, and stays quiet, where promtool's rule unit tests
(tests/integration/alerts_test.yaml) say, against input series that are the operator's own (every name and label
checked against what it exports). Each alert has its runbook line in the README; the chart's PrometheusRule carries
the file as it is. A rule made to fire too early fails the unit tests, so a green run means something.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gpu_model_operator import metrics
from gpu_model_operator_dev.tools import ensure_prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "gpu-model-operator" / "alerts" / "gpu-model-operator.rules.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")
README = ROOT / "README.md"
#: The labels a scrape adds (Prometheus Operator's relabelling of an endpoints target, and `up`'s).
TARGET_LABELS = {"job", "service", "endpoint", "container", "pod", "instance", "namespace"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_prometheus() / "promtool"


def alerts() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def unit_tests() -> list[dict[str, Any]]:
    return yaml.safe_load(UNIT_TESTS.read_text())["tests"]  # type: ignore[no-any-return]


def test_the_rules_file_passes_promtool_check(promtool: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"SUCCESS: {len(alerts())} rules found" in result.stdout, result.stderr


def test_every_alert_fires_and_stays_quiet_where_promtools_unit_tests_say(promtool: Path) -> None:
    result = subprocess.run([promtool, "test", "rules", UNIT_TESTS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_each_alert_is_tested_firing_and_quiet() -> None:
    checks = [check for test in unit_tests() for check in test["alert_rule_test"]]
    for alert in alerts():
        mine = [check for check in checks if check["alertname"] == alert["alert"]]
        assert any(check["exp_alerts"] for check in mine), f"{alert['alert']} never fires in a test"
        assert any(not check["exp_alerts"] for check in mine), f"{alert['alert']} is never shown quiet"


def exported() -> dict[str, set[str]]:
    """Every series the operator exports, with its label names: the process's collectors (counters with their
    _total) and the resource gauges."""
    out: dict[str, set[str]] = {}
    for name in dir(metrics):
        collector = getattr(metrics, name)
        if isinstance(collector, MetricWrapperBase) and collector._name.startswith("gpumodel_"):
            suffix = "_total" if collector._type == "counter" else ""
            out[collector._name + suffix] = set(collector._labelnames)
    collector = metrics.ResourceCollector()
    collector.record("ns/a", metrics.Seen("ns", "a", "azureml", "ws", "gpu", "Ready", "ProbeSucceeded", 1, 1, 1, 1))
    for family in collector.collect():
        for sample in family.samples:
            out[sample.name] = set(sample.labels)
    return out


def test_the_unit_tests_series_are_the_operators_own() -> None:
    ours = exported()
    for test in unit_tests():
        for series in test["input_series"]:
            name, labels = re.fullmatch(r"(\w+)\{(.*)\}", series["series"]).groups()  # type: ignore[union-attr]
            names = set(re.findall(r'(\w+)="', labels))
            if name == "up":
                continue  # Prometheus's own, for each target
            assert name in ours, name
            assert names - TARGET_LABELS == ours[name] - {"namespace"}, series["series"]
            assert TARGET_LABELS - {"namespace"} <= names, "as scraped: the target's labels"
    named = {name for alert in alerts() for name in re.findall(r"\bgpumodel_\w+", alert["expr"])}
    assert named <= set(ours), named - set(ours)


def test_each_alert_has_its_runbook_line_in_the_readme() -> None:
    section = README.read_text().split("#### Alerts", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert listed == [alert["alert"] for alert in alerts()]
    for alert in alerts():
        assert alert["annotations"]["runbook_url"].endswith("README.md#alerts")


def test_an_alert_made_to_fire_early_fails_the_unit_tests(promtool: Path, tmp_path: Path) -> None:
    rules = tmp_path / "charts" / "gpu-model-operator" / "alerts" / RULES.name
    rules.parent.mkdir(parents=True)
    rules.write_text(RULES.read_text().replace("for: 30m", "for: 20m", 1))
    tests = tmp_path / "tests" / "integration" / UNIT_TESTS.name
    tests.parent.mkdir(parents=True)
    shutil.copy(UNIT_TESTS, tests)
    result = subprocess.run([promtool, "test", "rules", tests], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "GpuModelDeploymentNotReady" in result.stdout + result.stderr
