"""The operator end to end on the local backend: a real apiserver, the operator as a real process, and the
real Azure ML inference server serving the example score.py. The machine is declared to have 2 GPUs
(the operator's testing setting), so the cap and the per-replica GPU pinning are exercised without one."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from digits_model import TrainedModel, train

from gpu_model_operator.backends import procs
from gpu_model_operator.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 240, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def operator(
    control_plane: Any, state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("logs") / "operator.log"
    args = ["--all-namespaces", "--poll-seconds", "1", "--resync-seconds", "5", "--declared-gpus", "2"]
    with OperatorProcess(control_plane.kubeconfig, [], state_dir, log, extra_args=args) as op:
        yield op


class Deployment:
    """One GpuModelDeployment in its own namespace, read and changed through kubectl."""

    def __init__(self, cp: Any, namespace: str, model: TrainedModel, operator: OperatorProcess) -> None:
        self.cp, self.ns, self.model, self.operator = cp, namespace, model, operator
        self.name = "digits"

    def apply(self, replicas: int = 1, score_py: str | None = None, annotations: dict[str, str] | None = None) -> None:
        docs = list(yaml.safe_load_all(self.cp.kubectl("kustomize", str(ROOT / "manifests/examples/local")).stdout))
        for doc in docs:
            if doc["kind"] == "ConfigMap" and score_py is not None:
                doc["data"]["score.py"] = score_py
            if doc["kind"] == "GpuModelDeployment":
                doc["metadata"]["annotations"] = annotations or {}
                doc["spec"]["model"]["path"] = str(self.model.model_dir)
                doc["spec"]["service"]["replicas"] = replicas
                doc["spec"]["local"]["allowCpuFallback"] = False  # the declared GPUs are used instead
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def get(self) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "gmd", self.name, "-n", self.ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.get().get("status", {}).get("conditions", []) if c["type"] == type_), None)

    def wait_ready(self, timeout: float = 300) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get()
            cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
            current = cond and cond["status"] == "True" and cond["observedGeneration"] == obj["metadata"]["generation"]
            return obj if current else None

        try:
            return wait_for("Ready", ready, timeout)
        except AssertionError:
            raise AssertionError(f"not Ready: {self.get().get('status')}\n{self.operator.log_tail()}") from None

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        out = self.cp.kubectl("get", "events", "-n", self.ns, "-o", "json").stdout
        items = [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == self.name]
        return [e for e in items if reason is None or e["reason"] == reason]

    def keys(self) -> dict[str, str]:
        name = self.get()["status"]["keysSecretName"]
        secret = json.loads(self.cp.kubectl("get", "secret", name, "-n", self.ns, "-o", "json").stdout)
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    def score(self, images: list[list[float]], key: str | None) -> tuple[int, Any]:
        uri = self.keys()["scoringUri"]
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(uri, data=json.dumps({"data": images}).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, None

    def service_state(self, state_dir: Path) -> dict[str, Any]:
        return json.loads((state_dir / "services" / f"{self.ns}.{self.name}" / "state.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def deployment(control_plane: Any, namespace: str, model: TrainedModel, operator: OperatorProcess) -> Deployment:
    return Deployment(control_plane, namespace, model, operator)


def replica_pids(state: dict[str, Any]) -> list[int]:
    return sorted(r["pid"] for r in state["replicas"])


def alive(pid: int) -> bool:
    """Running (a zombie left for its reaper does not count), whatever the program."""
    return procs.alive(pid)


def test_apply_ready_score_scale_cap_delete(deployment: Deployment, model: TrainedModel, state_dir: Path) -> None:
    deployment.apply(replicas=1)
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "1/1"
    assert obj["status"]["scoringUri"].startswith("http://127.0.0.1:")

    images = model.test_images[:20].tolist()
    key = deployment.keys()["primaryKey"]
    status, predictions = deployment.score(images, key)
    assert status == 200
    accuracy = sum(int(p == y) for p, y in zip(predictions, model.test_labels[:20], strict=True)) / 20
    assert accuracy >= 0.9
    assert deployment.score(images, None)[0] == 401
    assert deployment.score(images, "wrong-key")[0] == 401
    assert deployment.score(images, deployment.keys()["secondaryKey"])[0] == 200

    keys = deployment.keys()
    secrets = [keys["primaryKey"], keys["secondaryKey"]]
    exposed = {
        "status": json.dumps(deployment.get()),
        "events": json.dumps(deployment.events()),
        "operator log": deployment.operator.log_path.read_text(errors="replace"),
    }
    assert [where for where, text in exposed.items() if any(k in text for k in secrets)] == []

    deployment.apply(replicas=2)
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "2/2"
    state = deployment.service_state(state_dir)
    gpus = sorted(tuple(r["gpus"]) for r in state["replicas"])
    assert gpus == [(0,), (1,)], "each replica on its own GPU"
    for r in state["replicas"]:
        environ = Path(f"/proc/{r['pid']}/environ").read_bytes().split(b"\0")
        assert f"CUDA_VISIBLE_DEVICES={r['gpus'][0]}".encode() in environ

    deployment.apply(replicas=3)  # 2 GPUs: capped at 2, visibly
    wait_for("the cap event", lambda: deployment.events("ReplicasCapped"))
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "2/3"
    assert obj["status"]["phase"] == "Degraded"
    assert "capped" in (deployment.condition("Ready") or {})["message"]

    deployment.apply(replicas=1)
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "1/1"
    pids = replica_pids(deployment.service_state(state_dir))
    assert len(pids) == 1

    router_port = int(obj["status"]["scoringUri"].split(":")[2].split("/")[0])
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    assert not (state_dir / "services" / f"{deployment.ns}.{deployment.name}").exists()
    assert not any(alive(p) for p in pids)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{router_port}/", timeout=2)
    assert (
        deployment.cp.kubectl("get", "secret", "digits-scoring-keys", "-n", deployment.ns, check=False).returncode != 0
    )
    assert not list((state_dir / "envs").glob("*/*.lock"))


def test_bad_entry_script_fails_with_the_servers_error_without_a_hot_loop(deployment: Deployment) -> None:
    bad = "def init():\n    raise RuntimeError('weights file is corrupt')\n\ndef run(raw_data):\n    return raw_data\n"
    deployment.apply(score_py=bad)

    def failed() -> dict[str, Any] | None:
        cond = deployment.condition("Ready")
        return cond if cond and cond["reason"] == "ServiceFailed" else None

    cond = wait_for("the ServiceFailed condition", failed)
    assert "weights file is corrupt" in cond["message"]
    assert deployment.get()["status"]["phase"] == "Failed"
    warnings = deployment.events("ServiceFailed")
    assert warnings and warnings[0]["type"] == "Warning"
    # No hot loop: over several poll intervals the operator does not redeploy again and again.
    deploys = sum(e.get("count", 1) for e in deployment.events("DeployingService"))
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert sum(e.get("count", 1) for e in deployment.events("DeployingService")) == deploys
        time.sleep(0.5)

    # Fix the script in place (same ConfigMap name, so the spec does not change) and ask for a retry now.
    good = (ROOT / "manifests/examples/digits-source/score.py").read_text()
    configmap = deployment.get()["spec"]["source"]["configMapRef"]["name"]
    patch = json.dumps({"data": {"score.py": good}})
    deployment.cp.kubectl("patch", "configmap", configmap, "-n", deployment.ns, "--type=merge", "-p", patch)
    deployment.cp.kubectl("annotate", "gmd", deployment.name, "-n", deployment.ns, "gpumodel.io/retry-now=1")
    deployment.wait_ready()
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")


def test_restarted_operator_readopts_replicas(
    deployment: Deployment, operator: OperatorProcess, state_dir: Path
) -> None:
    deployment.apply(replicas=2)
    deployment.wait_ready()
    before = replica_pids(deployment.service_state(state_dir))
    operator.kill()
    operator.start()

    def reconciled_after_restart() -> bool:
        lines = [ln for ln in operator.metrics().splitlines() if ln.startswith("gpumodel_reconciles_total{")]
        return sum(float(ln.split()[-1]) for ln in lines) >= 1

    wait_for("a reconcile pass by the restarted operator", reconciled_after_restart, 60)
    deployment.wait_ready()
    after = replica_pids(deployment.service_state(state_dir))
    assert after == before, "the same processes, no duplicates"
    assert all(alive(p) for p in after)

    # Drift: a replica dies behind the operator's back; the periodic resync starts a new one.
    os.kill(after[0], signal.SIGKILL)

    def repaired() -> list[int] | None:
        pids = replica_pids(deployment.service_state(state_dir))
        return pids if after[0] not in pids and len(pids) == 2 and all(alive(p) for p in pids) else None

    replaced = wait_for("the dead replica to be replaced", repaired, 60)
    deployment.wait_ready()
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    assert not any(alive(p) for p in [*before, *replaced])


def test_reconcile_policy_skip_then_manage(deployment: Deployment, state_dir: Path) -> None:
    deployment.apply(annotations={"gpumodel.io/reconcile-policy": "skip"})
    cond = wait_for("the ReconcileSkipped condition", lambda: deployment.condition("Ready"), 60)
    assert (cond["status"], cond["reason"]) == ("Unknown", "ReconcileSkipped")
    assert not (state_dir / "services" / f"{deployment.ns}.{deployment.name}").exists()
    deployment.cp.kubectl("annotate", "gmd", deployment.name, "-n", deployment.ns, "gpumodel.io/reconcile-policy-")
    deployment.wait_ready()
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")


def test_detach_on_delete_leaves_the_service_running(deployment: Deployment, state_dir: Path) -> None:
    deployment.apply(annotations={"gpumodel.io/reconcile-policy": "detach-on-delete"})
    deployment.wait_ready()
    pids = replica_pids(deployment.service_state(state_dir))
    router = deployment.service_state(state_dir)["router"]["pid"]
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    try:
        assert all(alive(p) for p in [*pids, router]), "detached: still serving"
    finally:  # the test, not the operator, cleans up what it asked the operator to leave
        procs.terminate([*pids, router])
        shutil.rmtree(state_dir / "services" / f"{deployment.ns}.{deployment.name}", ignore_errors=True)
