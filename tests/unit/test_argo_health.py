"""The Argo CD health check, run for real: manifests/argocd/health.lua in a Lua 5.1 interpreter (Argo CD's
gopher-lua is Lua 5.1) with only the libraries Argo CD opens (base, table, package), against the fixtures in
tests/unit/argo_health/, laid out as Argo CD's own resource_customizations tests are (health_test.yaml lists
each input object and the status and message it must get). The argocd-cm snippet must embed the same script.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from gpu_model_operator import conditions
from gpu_model_operator.models import GpuModelDeploymentSpec, GpuModelDeploymentStatus, Phase

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "manifests" / "argocd" / "health.lua"
ARGOCD_CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
FIXTURES = Path(__file__).parent / "argo_health"
CM_KEY = "resource.customizations.health.gpumodel.io_GpuModelDeployment"
#: Argo CD's health codes a script may return (anything else becomes Unknown).
HEALTH_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing"}

#: Argo CD runs health scripts with SkipOpenLibs and then opens only package, base, table and a safe os;
#: so no string, math, io, debug or coroutine library, and no string methods.
SANDBOX = """
string, math, io, debug, coroutine, os = nil, nil, nil, nil, nil, nil
dofile, loadfile, load, loadstring = nil, nil, nil, nil
getmetatable("").__index = nil
"""

TESTS = yaml.safe_load((FIXTURES / "health_test.yaml").read_text())["tests"]


def health(obj: dict[str, Any]) -> dict[str, Any]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.execute(SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return dict(result.items())


@pytest.mark.parametrize("case", TESTS, ids=[Path(t["inputPath"]).stem for t in TESTS])
def test_health(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((FIXTURES / case["inputPath"]).read_text())
    assert health(obj) == case["healthStatus"]


def test_fixtures_are_real_resources() -> None:
    """Every fixture is a GpuModelDeployment the operator could have written: spec and status parse."""
    for case in TESTS:
        obj = yaml.safe_load((FIXTURES / case["inputPath"]).read_text())
        assert (obj["apiVersion"], obj["kind"]) == ("gpumodel.io/v1alpha1", "GpuModelDeployment")
        GpuModelDeploymentSpec.model_validate(obj["spec"])
        GpuModelDeploymentStatus.model_validate(obj.get("status", {}))


def test_fixtures_cover_every_health_status_and_phase() -> None:
    assert len(TESTS) >= 8
    assert {t["healthStatus"]["status"] for t in TESTS} == HEALTH_CODES - {"Missing"}
    phases = {yaml.safe_load((FIXTURES / t["inputPath"]).read_text()).get("status", {}).get("phase") for t in TESTS}
    assert {p.value for p in Phase} <= phases


def test_permanent_reasons_are_the_operators_reasons() -> None:
    block = re.search(r"local permanentReasons = \{(.*?)\n\}", HEALTH_LUA.read_text(), re.S)
    assert block
    named = set(re.findall(r"(\w+) = true", block[1]))
    reasons = {v for k, v in vars(conditions).items() if k.isupper() and isinstance(v, str)}
    assert named and named <= reasons, named - reasons


def test_argocd_cm_embeds_exactly_health_lua() -> None:
    config_map = yaml.safe_load(ARGOCD_CM.read_text())
    assert (config_map["kind"], config_map["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert config_map["data"][CM_KEY] == HEALTH_LUA.read_text()


def test_the_argocd_application_syncs_the_local_example() -> None:
    app = yaml.safe_load((ROOT / "manifests" / "argocd" / "application.yaml").read_text())
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    assert app["spec"]["source"]["path"] == "manifests/examples/local"
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()
