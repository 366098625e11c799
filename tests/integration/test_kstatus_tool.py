"""What status tools make of each status the operator writes, asked of the tools themselves: for every row of the
README's table "What kubectl wait, kstatus and Argo CD see", a resource on the real apiserver with that phase, that
Ready condition and the Reconciling and Stalled conditions kstatus.py derives from them (a deleted one with the
operator's finalizer for phase Deleting), then

- ``kubectl wait --for=condition=Ready`` (the real kubectl, checking once),
- kstatus's ``status.Compute`` (hack/kstatus, on the pinned sigs.k8s.io/cli-utils: what Flux and kpt compute),
- Argo CD's health, as the application controller computes it from argocd-cm (hack/argocd-health),

each on the object as the apiserver returns it, and their answers compared with the table's, row by row.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.kstatus import derive
from gpu_model_operator.models import Condition, Phase
from gpu_model_operator_dev.controlplane import ControlPlane, ensure_argocd_health
from gpu_model_operator_dev.tools import ensure_kstatus
from tests.integration.test_crd import base
from tests.unit.test_kstatus import Row, readme_rows

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
FINALIZER = "gpumodel.io/finalizer"
NOW = "2026-01-01T00:00:00Z"
ROWS = readme_rows()


def status_of(row: Row, generation: int) -> dict[str, Any]:
    """The status a pass leaves for this row: its phase, Ready, and the two kstatus conditions derived from them."""
    ready = Condition(
        type=c.READY,
        status=row.ready,
        reason=c.PROBE_SUCCEEDED if row.reason == c.DELETING else row.reason,
        message=f"why: {row.reason}",
        last_transition_time=NOW,
        observed_generation=generation,
    )
    derived = [
        Condition(
            type=d.type,
            status=str(d.status),
            reason=d.reason,
            message=d.message,
            last_transition_time=NOW,
            observed_generation=generation,
        )
        for d in derive(Phase(row.phase), [ready])
    ]
    conditions = [cond.to_wire() for cond in (ready, *derived)]
    return {"phase": row.phase, "observedGeneration": generation, "conditions": conditions}


@pytest.fixture(scope="module")
def live(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Each row's resource made live, and the object as the apiserver returns it, written to a file."""
    namespace = f"kst-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", namespace)
    folder = tmp_path_factory.mktemp("kstatus")
    paths = []
    for i, row in enumerate(ROWS):
        name = f"row-{i}"
        obj = base()
        obj["metadata"] = {"name": name, "namespace": namespace, "finalizers": [FINALIZER]}
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(obj))
        if row.phase == Phase.DELETING.value:
            control_plane.kubectl("delete", "gmd", name, "-n", namespace, "--wait=false")
        if row.phase != "none":
            generation = json.loads(control_plane.kubectl("get", "gmd", name, "-n", namespace, "-o", "json").stdout)
            status = json.dumps({"status": status_of(row, generation["metadata"]["generation"])})
            control_plane.kubectl(
                "patch", "gmd", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", status
            )
        path = folder / f"{name}.json"
        path.write_text(control_plane.kubectl("get", "gmd", name, "-n", namespace, "-o", "json").stdout)
        paths.append(path)
    yield paths
    for i in range(len(ROWS)):
        remove = json.dumps({"metadata": {"finalizers": None}})
        control_plane.kubectl("patch", "gmd", f"row-{i}", "-n", namespace, "--type=merge", "-p", remove, check=False)
    control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def name_of(path: Path) -> tuple[str, str]:
    meta = json.loads(path.read_text())["metadata"]
    return meta["namespace"], meta["name"]


def row_ids() -> list[str]:
    return [f"{row.reason}-{row.phase}" for row in ROWS]


def test_every_row_is_a_resource_the_apiserver_keeps_as_written(live: list[Path]) -> None:
    for row, path in zip(ROWS, live, strict=True):
        obj = json.loads(path.read_text())
        assert obj.get("status", {}).get("phase", "none") == row.phase
        assert ("deletionTimestamp" in obj["metadata"]) == (row.phase == Phase.DELETING.value)


def test_kubectl_wait_for_ready_agrees_with_the_readme(control_plane: ControlPlane, live: list[Path]) -> None:
    said = {}
    for row, path in zip(ROWS, live, strict=True):
        namespace, name = name_of(path)
        wait = ["wait", f"gmd/{name}", "-n", namespace, "--for=condition=Ready", "--timeout=0s"]
        result = control_plane.kubectl(*wait, check=False)
        said[f"{row.reason}-{row.phase}"] = "returns" if result.returncode == 0 else "waits"
    assert said == {f"{row.reason}-{row.phase}": row.wait for row in ROWS}


def test_kstatus_agrees_with_the_readme(live: list[Path]) -> None:
    result = subprocess.run([str(ensure_kstatus()), *map(str, live)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    said = {rid: r["status"] for rid, r in zip(row_ids(), json.loads(result.stdout), strict=True)}
    assert said == {rid: row.kstatus for rid, row in zip(row_ids(), ROWS, strict=True)}


def test_argo_cd_agrees_with_the_readme(live: list[Path]) -> None:
    engine = ensure_argocd_health()
    result = subprocess.run([str(engine), "cm", str(ARGOCD_CM), *map(str, live)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    said = {rid: h["status"] for rid, h in zip(row_ids(), json.loads(result.stdout), strict=True)}
    assert said == {rid: row.argocd for rid, row in zip(row_ids(), ROWS, strict=True)}


def test_kstatus_reads_stalled_before_ready(tmp_path: Path, live: list[Path]) -> None:
    """Why the operator writes Stalled at all: without it, kstatus calls a resource that failed for good
    InProgress (its Ready is False), as if it might still get there."""
    failed = next(p for row, p in zip(ROWS, live, strict=True) if row.reason == c.MODEL_NOT_FOUND)
    obj = json.loads(failed.read_text())
    obj["status"]["conditions"] = [cond for cond in obj["status"]["conditions"] if cond["type"] == c.READY]
    (tmp_path / "without.json").write_text(json.dumps(obj))
    tool = ensure_kstatus()
    result = subprocess.run([str(tool), str(failed), str(tmp_path / "without.json")], capture_output=True, text=True)
    assert [r["status"] for r in json.loads(result.stdout)] == ["Failed", "InProgress"]
