"""The Argo CD health check's files, without running it (tests/integration/test_argo_health.py runs it in
Argo CD's own engine): its fixtures are resources the operator could have written and cover every health
status and phase; it names only the operator's own reasons; every form an Argo CD install takes it in (Helm
values, the operator's ArgoCD resource, an argocd-cm patch) carries health.lua byte for byte and is what
hack/argocd_health_values.py generates from it; the sample Application syncs an example that exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator import conditions
from gpu_model_operator.models import GpuModelDeploymentStatus, Phase, parse_spec

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
#: Argo CD's resource_customizations/<group>/<kind>/ layout, as it would be contributed upstream.
HEALTH_DIR = ARGOCD / "resource_customizations" / "gpumodel.io" / "GpuModelDeployment"
HEALTH_LUA = HEALTH_DIR / "health.lua"
CM_KEY = "resource.customizations.health.gpumodel.io_GpuModelDeployment"
#: Argo CD's health codes a script may return (anything else becomes Unknown).
HEALTH_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing"}
TESTS: list[dict[str, Any]] = yaml.safe_load((HEALTH_DIR / "health_test.yaml").read_text())["tests"]


def fixture(case: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((HEALTH_DIR / case["inputPath"]).read_text())  # type: ignore[no-any-return]


def test_every_testdata_file_is_a_case() -> None:
    listed = {case["inputPath"] for case in TESTS}
    on_disk = {f"testdata/{p.name}" for p in (HEALTH_DIR / "testdata").iterdir()}
    assert listed == on_disk


def test_fixtures_are_real_resources() -> None:
    """Every fixture is a GpuModelDeployment the operator could have written: spec and status parse."""
    for case in TESTS:
        obj = fixture(case)
        assert (obj["apiVersion"], obj["kind"]) == ("gpumodel.io/v1alpha1", "GpuModelDeployment")
        parse_spec(obj["spec"])
        GpuModelDeploymentStatus.model_validate(obj.get("status", {}))


def test_fixtures_cover_every_health_status_and_phase() -> None:
    assert len(TESTS) >= 8
    assert {t["healthStatus"]["status"] for t in TESTS} == HEALTH_CODES - {"Missing"}
    phases = {fixture(t).get("status", {}).get("phase") for t in TESTS}
    assert {p.value for p in Phase} <= phases


def test_permanent_reasons_are_the_operators_reasons() -> None:
    block = re.search(r"local permanentReasons = \{(.*?)\n\}", HEALTH_LUA.read_text(), re.S)
    assert block
    named = set(re.findall(r"(\w+) = true", block[1]))
    reasons = {v for k, v in vars(conditions).items() if k.isupper() and isinstance(v, str)}
    assert named and named <= reasons, named - reasons


def _helm_values(doc: dict[str, Any]) -> str:
    return doc["configs"]["cm"][CM_KEY]  # type: ignore[no-any-return]


def _argocd_operator(doc: dict[str, Any]) -> str:
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1beta1", "ArgoCD")
    (check,) = doc["spec"]["resourceHealthChecks"]
    assert (check["group"], check["kind"]) == ("gpumodel.io", "GpuModelDeployment")
    return check["check"]  # type: ignore[no-any-return]


def _argocd_cm(doc: dict[str, Any]) -> str:
    assert (doc["kind"], doc["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    return doc["data"][CM_KEY]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "script_of"),
    [("helm-values.yaml", _helm_values), ("argocd-operator.yaml", _argocd_operator), ("argocd-cm.yaml", _argocd_cm)],
)
def test_every_install_form_carries_health_lua_byte_for_byte(name: str, script_of: Callable[[Any], str]) -> None:
    assert script_of(yaml.safe_load((ARGOCD / name).read_text())) == HEALTH_LUA.read_text()


def test_the_generated_files_are_up_to_date() -> None:
    check = [sys.executable, str(ROOT / "hack" / "argocd_health_values.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_argocd_application_syncs_the_azureml_example() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert app["spec"]["source"]["path"] == "manifests/examples/azureml"
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
