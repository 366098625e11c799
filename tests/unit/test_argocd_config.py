"""The Argo CD health check's and resource actions' files, without running them (tests/integration/
test_argo_health.py and test_argo_actions.py run them in Argo CD's own engine): their fixtures are resources the
operator could have written (the kstatus conditions included) and cover every health status and phase; the check
names only the operator's own reasons; every form an Argo CD install takes them in (Helm values, the operator's
ArgoCD resource, an argocd-cm patch) carries health.lua and each action's scripts byte for byte and is what
hack/argocd_health_values.py generates from them; the sample Application syncs an example that exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator import conditions
from gpu_model_operator.kstatus import derive
from gpu_model_operator.models import GpuModelDeploymentStatus, Phase, parse_spec

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
#: Argo CD's resource_customizations/<group>/<kind>/ layout, as it would be contributed upstream.
HEALTH_DIR = ARGOCD / "resource_customizations" / "gpumodel.io" / "GpuModelDeployment"
HEALTH_LUA = HEALTH_DIR / "health.lua"
ACTIONS = HEALTH_DIR / "actions"
CM_KEY = "resource.customizations.health.gpumodel.io_GpuModelDeployment"
ACTIONS_KEY = "resource.customizations.actions.gpumodel.io_GpuModelDeployment"
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


def test_action_fixtures_are_real_resources_with_their_kstatus_conditions() -> None:
    """The actions' fixtures too, written as a pass writes them now: Reconciling and Stalled as kstatus.py
    derives them from the phase and Ready. Each is an input or an expected output of action_test.yaml."""
    tests = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())
    used = {t["inputPath"] for t in tests["discoveryTests"] + tests["actionTests"]}
    used |= {t["expectedOutputPath"] for t in tests["actionTests"]}
    assert used == {f"testdata/{p.name}" for p in (ACTIONS / "testdata").iterdir()}
    for path in sorted(used):
        obj = yaml.safe_load((ACTIONS / path).read_text())
        parse_spec(obj["spec"])
        status = GpuModelDeploymentStatus.model_validate(obj.get("status", {}))
        if "status" not in obj:
            continue
        written = {(c.type, c.status == "True", c.reason, c.message) for c in status.conditions}
        derived = {(d.type, d.status, d.reason, d.message) for d in derive(status.phase, status.conditions)}
        assert derived <= written, path


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


def _helm_values(doc: dict[str, Any]) -> tuple[str, str]:
    cm = doc["configs"]["cm"]
    return cm[CM_KEY], cm[ACTIONS_KEY]


def _argocd_operator(doc: dict[str, Any]) -> tuple[str, str]:
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1beta1", "ArgoCD")
    (check,) = doc["spec"]["resourceHealthChecks"]
    assert (check["group"], check["kind"]) == ("gpumodel.io", "GpuModelDeployment")
    (action,) = doc["spec"]["resourceActions"]
    assert (action["group"], action["kind"]) == ("gpumodel.io", "GpuModelDeployment")
    return check["check"], action["action"]


def _argocd_cm(doc: dict[str, Any]) -> tuple[str, str]:
    assert (doc["kind"], doc["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    return doc["data"][CM_KEY], doc["data"][ACTIONS_KEY]


@dataclass(frozen=True)
class InstallForm:
    """One form an Argo CD install takes the scripts in, named by its file under manifests/argocd: where the
    health script and the actions key sit in it."""

    scripts_of: Callable[[Any], tuple[str, str]]


INSTALL_FORMS: dict[str, InstallForm] = {
    "helm-values.yaml": InstallForm(_helm_values),
    "argocd-operator.yaml": InstallForm(_argocd_operator),
    "argocd-cm.yaml": InstallForm(_argocd_cm),
}


@pytest.mark.parametrize("name", INSTALL_FORMS)
def test_every_install_form_carries_the_scripts_byte_for_byte(name: str) -> None:
    """health.lua as the health key; the actions key as Argo CD's ResourceActions: discovery.lua, and one definition
    per action folder with its action.lua."""
    case = INSTALL_FORMS[name]
    health, actions = case.scripts_of(yaml.safe_load((ARGOCD / name).read_text()))
    want = {
        "discovery.lua": (ACTIONS / "discovery.lua").read_text(),
        "definitions": [
            {"name": p.parent.name, "action.lua": p.read_text()} for p in sorted(ACTIONS.glob("*/action.lua"))
        ],
    }
    assert (health, yaml.safe_load(actions)) == (HEALTH_LUA.read_text(), want)


def test_the_generated_files_are_up_to_date() -> None:
    check = [sys.executable, str(ROOT / "hack" / "argocd_health_values.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_argocd_application_syncs_the_azureml_example() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert app["spec"]["source"]["path"] == "manifests/examples/azureml"
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
