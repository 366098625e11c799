"""The installation's price table (README, What it costs), as the chart's values and the kustomize component
components/price-table install it: a ConfigMap mounted into the operator's pods and GMO_PRICE_TABLE pointing at it,
the same Deployment either way, a table the operator accepts, and the component's starting table the operator's own
default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from gpu_model_operator.cli import main as cli_main
from gpu_model_operator.prices import DEFAULT, parse_price_table
from gpu_model_operator_dev.controlplane import ControlPlane
from tests.integration.test_helm_chart import CHART, ROOT, Helm, drift, helm, key, without_helm_conventions
from tests.integration.test_rbac import render

__all__ = ["helm"]  # the module fixture, imported for this module's tests

COMPONENT = ROOT / "manifests" / "components" / "price-table"
MOUNTED = "/etc/gpu-model-operator/prices/prices.yaml"


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment")


def _table_wiring(docs: list[dict[str, Any]]) -> tuple[str | None, str | None, str | None]:
    """GMO_PRICE_TABLE, where the prices volume is mounted, and which ConfigMap it is."""
    pod = _deployment(docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next((m["mountPath"] for m in container["volumeMounts"] if m["name"] == "prices"), None)
    volume = next((v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "prices"), None)
    return env.get("GMO_PRICE_TABLE"), mount, volume


def test_without_a_table_the_operator_uses_its_own(helm: Helm) -> None:
    docs = helm.template()
    assert _table_wiring(docs) == (None, None, None)
    assert not any(d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prices") for d in docs)


def test_a_table_in_the_values_is_a_configmap_the_operator_reads(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "prices.yaml"
    table = {"currency": "EUR", "source": "ours", "region": "westeurope", "prices": {"Standard_NC4as_T4_v3": 0.41}}
    values.write_text(yaml.safe_dump({"prices": {"table": table}}))
    docs = helm.template("-f", values)
    assert _table_wiring(docs) == (MOUNTED, "/etc/gpu-model-operator/prices", "gpu-model-operator-prices")
    made = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gpu-model-operator-prices")
    assert parse_price_table(made["data"]["prices.yaml"]).price("standard_nc4as_t4_v3") == 0.41
    mounted = tmp_path / "mounted.yaml"
    mounted.write_text(made["data"]["prices.yaml"])
    run = cli_main.commands["run"]
    assert run.make_context("run", ["--price-table", str(mounted)]).params["price_table"] == mounted


def test_an_existing_configmap_is_mounted_and_none_is_made(helm: Helm) -> None:
    docs = helm.template("--set", "prices.configMap=team-prices", "--set", "prices.table.currency=EUR")
    assert _table_wiring(docs) == (MOUNTED, "/etc/gpu-model-operator/prices", "team-prices")
    assert not any(d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prices") for d in docs)


def test_the_component_installs_what_the_chart_values_install(
    control_plane: ControlPlane, helm: Helm, tmp_path: Path
) -> None:
    """An overlay with the component renders the chart's Deployment with a table, and a ConfigMap of the same name
    whose table the operator reads as the chart's."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "manifests/overlays/cluster-wide", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        )
    )
    rendered = render(control_plane, overlay)
    table = yaml.safe_load((COMPONENT / "prices.yaml").read_text())
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"prices": {"table": table}}))
    charted = helm.template("-f", CHART / "ci" / "cluster-wide-values.yaml", "-f", values)
    kustomize = {key(d): d for d in rendered if d["kind"] == "Deployment"}
    chart = {key(d): without_helm_conventions(d) for d in charted if d["kind"] == "Deployment"}
    assert (differences := drift(kustomize, chart)) == [], "\n\n".join(differences)
    name = ("ConfigMap", "gpu-model-operator", "gpu-model-operator-prices")
    made = {key(d): d for d in rendered}[name], {key(d): d for d in charted}[name]
    assert parse_price_table(made[0]["data"]["prices.yaml"]) == parse_price_table(made[1]["data"]["prices.yaml"])


def test_the_component_starts_from_the_operator_s_default_prices() -> None:
    """Its table is the shipped default's prices, for an installer to edit."""
    assert parse_price_table((COMPONENT / "prices.yaml").read_text()).prices == DEFAULT.prices
