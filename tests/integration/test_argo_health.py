"""The Argo CD health check run by Argo CD's own code (hack/argocd-health: util/lua, util/settings and
gitops-engine's GetResourceHealth, from the Argo CD release pinned there), in the two ways Argo CD runs it:

- as a built-in check, exactly as Argo CD's TestLuaHealthScript runs resource_customizations/*/health.lua
  against its health_test.yaml, so the folder can be contributed upstream as it is;
- as the application controller runs a customization from argocd-cm, with the standard libraries closed,
  once for each form an install takes it in (argo-cd Helm chart values, the Argo CD operator's ArgoCD
  resource, an argocd-cm patch), each parsed by Argo CD's settings manager.

Then the engine is shown to fail where it must, so a green run means something.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.controlplane import ensure_argocd_health

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
HEALTH_DIR = ARGOCD / "resource_customizations" / "gpumodel.io" / "GpuModelDeployment"
TESTS: list[dict[str, Any]] = yaml.safe_load((HEALTH_DIR / "health_test.yaml").read_text())["tests"]
CASE_IDS = [Path(t["inputPath"]).stem for t in TESTS]
#: gitops-engine's GetResourceHealth answers this for any resource with a deletionTimestamp (and no hook
#: finalizer) before it looks for a script: what Argo CD shows while the operator deletes.
PENDING_DELETION = {"status": "Progressing", "message": "Pending deletion"}


def run(engine: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(engine), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def engine() -> Path:
    return ensure_argocd_health()


@pytest.fixture(scope="module")
def builtin_results(engine: Path) -> dict[str, dict[str, Any]]:
    result = run(engine, "test", HEALTH_DIR)
    assert result.returncode in (0, 1), result.stderr  # 1: some case differs, which its own test reports
    return {r["inputPath"]: r for r in json.loads(result.stdout)}


def test_the_engine_is_the_pinned_argo_cd(engine: Path) -> None:
    go_mod = (ROOT / "hack" / "argocd-health" / "go.mod").read_text().splitlines()
    pinned = next(ln.split()[-1] for ln in go_mod if ln.strip().startswith("github.com/argoproj/argo-cd/v3 v"))
    assert json.loads(run(engine, "version").stdout)["github.com/argoproj/argo-cd/v3"] == pinned


@pytest.mark.parametrize("case", TESTS, ids=CASE_IDS)
def test_as_a_built_in_check_every_case_passes_argo_cds_own_test(
    case: dict[str, Any], builtin_results: dict[str, dict[str, Any]]
) -> None:
    result = builtin_results[case["inputPath"]]
    assert (result["got"], result.get("error")) == (case["healthStatus"], None)
    assert result["pass"]


def _from_helm_values(doc: dict[str, Any]) -> dict[str, str]:
    """The argo-cd chart renders configs.cm as argocd-cm's data."""
    return doc["configs"]["cm"]  # type: ignore[no-any-return]


def _from_argocd_operator(doc: dict[str, Any]) -> dict[str, str]:
    """What the Argo CD operator writes into argocd-cm for spec.resourceHealthChecks (its
    getResourceHealthChecks: the key is resource.customizations.health.<group>_<kind>, or <kind> alone)."""
    data = {}
    for check in doc["spec"]["resourceHealthChecks"]:
        group = f"{check['group']}_" if check.get("group") else ""
        data[f"resource.customizations.health.{group}{check['kind']}"] = check["check"]
    return data


def _from_argocd_cm(doc: dict[str, Any]) -> dict[str, str]:
    return doc["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "cm_data"),
    [
        ("helm-values.yaml", _from_helm_values),
        ("argocd-operator.yaml", _from_argocd_operator),
        ("argocd-cm.yaml", _from_argocd_cm),
    ],
)
def test_the_controller_gives_every_case_its_health_from_every_install_form(
    engine: Path, tmp_path: Path, name: str, cm_data: Callable[[dict[str, Any]], dict[str, str]]
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm"},
        "data": cm_data(yaml.safe_load((ARGOCD / name).read_text())),
    }
    (tmp_path / "argocd-cm.yaml").write_text(yaml.safe_dump(config_map))
    inputs = [HEALTH_DIR / case["inputPath"] for case in TESTS]
    result = run(engine, "cm", tmp_path / "argocd-cm.yaml", *inputs)
    assert result.returncode == 0, result.stderr
    want = [
        PENDING_DELETION
        if yaml.safe_load(path.read_text())["metadata"].get("deletionTimestamp")
        else case["healthStatus"]
        for path, case in zip(inputs, TESTS, strict=True)
    ]
    assert dict(zip(CASE_IDS, json.loads(result.stdout), strict=True)) == dict(zip(CASE_IDS, want, strict=True))


# ---- the engine fails where it must ----------------------------------------------------------------------


def _copy_with_script(tmp_path: Path, script: str) -> Path:
    copy = tmp_path / "GpuModelDeployment"
    shutil.copytree(HEALTH_DIR, copy)
    (copy / "health.lua").write_text(script)
    return copy


def test_a_case_the_script_gets_wrong_fails_argo_cds_test(engine: Path, tmp_path: Path) -> None:
    script = (HEALTH_DIR / "health.lua").read_text()
    wrong = script.replace('hs.status = "Suspended"', 'hs.status = "Healthy"')
    assert wrong != script
    result = run(engine, "test", _copy_with_script(tmp_path, wrong))
    assert result.returncode == 1
    failed = [r["inputPath"] for r in json.loads(result.stdout) if not r["pass"]]
    assert failed == ["testdata/suspended_reconcile_skipped.yaml"]


def test_the_string_library_passes_as_a_built_in_but_fails_from_argocd_cm(engine: Path, tmp_path: Path) -> None:
    """Why health.lua calls nothing beyond base and table: Argo CD opens the standard libraries for its
    built-in checks only; from argocd-cm a call to string.* is an error, and the resource's health Unknown."""
    script = (HEALTH_DIR / "health.lua").read_text().replace("local hs = {}", "local hs = {}\nstring.lower('x')", 1)
    folder = _copy_with_script(tmp_path, script)
    assert run(engine, "test", folder).returncode == 0
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm"},
        "data": {"resource.customizations.health.gpumodel.io_GpuModelDeployment": script},
    }
    (tmp_path / "argocd-cm.yaml").write_text(yaml.safe_dump(config_map))
    result = run(engine, "cm", tmp_path / "argocd-cm.yaml", HEALTH_DIR / TESTS[0]["inputPath"])
    assert result.returncode != 0
    assert "string" in result.stderr, result.stderr
