"""The Argo CD resource actions (retry-now, take-over, detach-on-delete, promote, abort) run by Argo CD's own code
(hack/argocd-health: util/lua and util/settings of the Argo CD release pinned there), as Argo CD runs them:

- as built-in actions, as Argo CD's TestLuaResourceActionsScript runs resource_customizations/*/actions/ against
  their action_test.yaml (discovery with the standard libraries open, each action without them), so the folder
  can be contributed upstream as it is;
- as the API server runs them from argocd-cm, from each form an install takes them in: the actions it lists for a
  resource, and the JSON merge patch it sends for one; that patch is then applied to the real apiserver, as the API
  server applies it, and the resource carries the annotation the README's kubectl command would have set.

Then the engine is shown to fail where it must, so a green run means something.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.controlplane import ControlPlane, ensure_argocd_health

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
CUSTOMIZATIONS = ARGOCD / "resource_customizations" / "gpumodel.io" / "GpuModelDeployment"
ACTIONS = CUSTOMIZATIONS / "actions"
TESTS: dict[str, list[dict[str, Any]]] = yaml.safe_load((ACTIONS / "action_test.yaml").read_text())
DISCOVERY_IDS = [Path(t["inputPath"]).stem for t in TESTS["discoveryTests"]]
ACTION_IDS = [f"{t['action']}-{Path(t['inputPath']).stem}" for t in TESTS["actionTests"]]
#: The annotation each action sets, and the value the README's kubectl command gives it (retry-now: any new one).
ANNOTATIONS = {
    "retry-now": "gpumodel.io/retry-now",
    "take-over": "gpumodel.io/take-over",
    "detach-on-delete": "gpumodel.io/reconcile-policy",
    "promote": "gpumodel.io/promote",
    "abort": "gpumodel.io/abort",
}


def run(engine: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(engine), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def engine() -> Path:
    return ensure_argocd_health()


@pytest.fixture(scope="module")
def builtin_results(engine: Path) -> dict[tuple[str, str], dict[str, Any]]:
    result = run(engine, "actions", CUSTOMIZATIONS)
    assert result.returncode in (0, 1), result.stderr  # 1: some case differs, which its own test reports
    return {(r["kind"], r["inputPath"]): r for r in json.loads(result.stdout)}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", TESTS["discoveryTests"], ids=DISCOVERY_IDS)
def test_as_built_in_actions_discovery_lists_what_the_test_says(
    case: dict[str, Any], builtin_results: dict[tuple[str, str], dict[str, Any]]
) -> None:
    result = builtin_results[("discovery", case["inputPath"])]
    assert (result["got"], result.get("error")) == (sorted(case["result"], key=lambda a: a["name"]), None)
    assert result["pass"]


@pytest.mark.parametrize("case", TESTS["actionTests"], ids=ACTION_IDS)
def test_as_built_in_actions_each_action_gives_the_expected_resource(
    case: dict[str, Any], builtin_results: dict[tuple[str, str], dict[str, Any]]
) -> None:
    result = builtin_results[(case["action"], case["inputPath"])]
    assert (result.get("error"), result["pass"]) == (None, True), result.get("got")


def _from_helm_values(doc: dict[str, Any]) -> dict[str, str]:
    return doc["configs"]["cm"]  # type: ignore[no-any-return]


def _from_argocd_operator(doc: dict[str, Any]) -> dict[str, str]:
    """What the Argo CD operator writes into argocd-cm for spec.resourceHealthChecks and spec.resourceActions: the
    keys resource.customizations.health.<group>_<kind> and resource.customizations.actions.<group>_<kind>."""
    data = {}
    for check in doc["spec"]["resourceHealthChecks"]:
        data[f"resource.customizations.health.{check['group']}_{check['kind']}"] = check["check"]
    for action in doc["spec"]["resourceActions"]:
        data[f"resource.customizations.actions.{action['group']}_{action['kind']}"] = action["action"]
    return data


def _from_argocd_cm(doc: dict[str, Any]) -> dict[str, str]:
    return doc["data"]  # type: ignore[no-any-return]


FORMS: list[tuple[str, Callable[[dict[str, Any]], dict[str, str]]]] = [
    ("helm-values.yaml", _from_helm_values),
    ("argocd-operator.yaml", _from_argocd_operator),
    ("argocd-cm.yaml", _from_argocd_cm),
]


def argocd_cm(tmp_path: Path, data: dict[str, str]) -> Path:
    path = tmp_path / "argocd-cm.yaml"
    path.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}, "data": data})
    )
    return path


def server(engine: Path, cm: Path, resource: Path, *action: str) -> dict[str, Any]:
    result = run(engine, "cm-actions", cm, resource, *action)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the apiserver applies a merge patch (for the expected outputs' comparison)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@pytest.mark.parametrize(("name", "cm_data"), FORMS)
def test_the_api_server_offers_and_runs_the_actions_from_every_install_form(
    engine: Path, tmp_path: Path, name: str, cm_data: Callable[[dict[str, Any]], dict[str, str]]
) -> None:
    cm = argocd_cm(tmp_path, cm_data(load(ARGOCD / name)))
    for case in TESTS["discoveryTests"]:
        offered = server(engine, cm, ACTIONS / case["inputPath"])["actions"]
        assert offered == sorted(case["result"], key=lambda a: a["name"]), case["inputPath"]
    for case in TESTS["actionTests"]:
        before = load(ACTIONS / case["inputPath"])
        patch = server(engine, cm, ACTIONS / case["inputPath"], case["action"])["patch"]
        key = ANNOTATIONS[case["action"]]
        assert list(patch) == ["metadata"] and list(patch["metadata"]["annotations"]) == [key], patch
        assert merge_patch(before, patch) == load(ACTIONS / case["expectedOutputPath"])


def test_each_action_has_a_folder_a_test_and_a_place_in_discovery() -> None:
    folders = {p.parent.name for p in ACTIONS.glob("*/action.lua")}
    assert folders == set(ANNOTATIONS)
    assert {t["action"] for t in TESTS["actionTests"]} == folders
    for case in TESTS["discoveryTests"]:
        assert {a["name"] for a in case["result"]} == folders


# ---- on the real apiserver --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", TESTS["actionTests"], ids=ACTION_IDS)
def test_the_api_servers_patch_sets_the_annotation_on_a_live_resource(
    control_plane: ControlPlane, namespace: str, engine: Path, tmp_path: Path, case: dict[str, Any]
) -> None:
    """The fixture made live (its spec, annotations and status), the patch the API server computes from the live
    object (as `kubectl get -o json` returns it), applied as the API server applies it: a merge patch of the
    resource, which leaves the spec and status as they were and sets the annotation."""
    fixture = load(ACTIONS / case["inputPath"])
    name = f"actions-{uuid.uuid4().hex[:6]}"
    meta = {"name": name, "namespace": namespace, "annotations": fixture["metadata"].get("annotations", {})}
    live = {"apiVersion": fixture["apiVersion"], "kind": fixture["kind"], "metadata": meta, "spec": fixture["spec"]}
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(live))
    status = json.dumps({"status": fixture["status"]})
    control_plane.kubectl("patch", "gmd", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", status)
    before = json.loads(control_plane.kubectl("get", "gmd", name, "-n", namespace, "-o", "json").stdout)
    (tmp_path / "live.json").write_text(json.dumps(before))
    cm = argocd_cm(tmp_path, _from_argocd_cm(load(ARGOCD / "argocd-cm.yaml")))
    patch = server(engine, cm, tmp_path / "live.json", case["action"])["patch"]
    control_plane.kubectl("patch", "gmd", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    after = json.loads(control_plane.kubectl("get", "gmd", name, "-n", namespace, "-o", "json").stdout)
    key = ANNOTATIONS[case["action"]]
    want = load(ACTIONS / case["expectedOutputPath"])["metadata"]["annotations"][key]
    assert after["metadata"]["annotations"][key] == want
    assert (after["spec"], after["status"]) == (before["spec"], before["status"])


# ---- the engine fails where it must ----------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "GpuModelDeployment"
    shutil.copytree(CUSTOMIZATIONS, copy)
    return copy


def test_an_action_that_sets_the_wrong_value_fails_argo_cds_test(engine: Path, tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    script = copy / "actions" / "take-over" / "action.lua"
    script.write_text(script.read_text().replace('= "true"', '= "yes"'))
    result = run(engine, "actions", copy)
    assert result.returncode == 1
    failed = [(r["kind"], r["inputPath"]) for r in json.loads(result.stdout) if not r["pass"]]
    assert failed == [("take-over", "testdata/service_exists.yaml")]


def test_a_discovery_that_offers_too_much_fails_argo_cds_test(engine: Path, tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    script = copy / "actions" / "discovery.lua"
    script.write_text(script.read_text().replace('["disabled"] = deleting or not failed,', '["disabled"] = deleting,'))
    result = run(engine, "actions", copy)
    assert result.returncode == 1
    failed = {r["inputPath"] for r in json.loads(result.stdout) if not r["pass"]}
    assert failed == {
        f"testdata/{n}.yaml" for n in ("ready", "no_status", "capped", "compute_adopted", "skipped", "detached")
    }


def test_an_action_calling_a_closed_library_fails_as_the_api_server_runs_it(engine: Path, tmp_path: Path) -> None:
    """Why the actions call nothing beyond base and table: the API server runs them with the other libraries
    closed (built-in ones too), so a call to string.* is an error there."""
    copy = _copy(tmp_path)
    script = copy / "actions" / "take-over" / "action.lua"
    script.write_text('string.lower("x")\n' + script.read_text())
    result = run(engine, "actions", copy)
    assert result.returncode == 1
    errors = {r["kind"]: r.get("error", "") for r in json.loads(result.stdout) if not r["pass"]}
    assert list(errors) == ["take-over"] and "string" in errors["take-over"]
