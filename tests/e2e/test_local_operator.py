"""The operator end to end on the local backend: a real apiserver, the operator as a real process, and the
real Azure ML inference server serving the example score.py. The machine is declared to have 2 GPUs
(the operator's testing setting), so the cap and the per-replica GPU pinning are exercised without one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.local.backend import stop_all
from gpu_model_operator_dev.digits_model import TrainedModel
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.harness import ROOT, Deployment, alive, replica_pids, wait_for


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

    kubectl = deployment.cp.kubectl
    kubectl("scale", "gmd", deployment.name, "-n", deployment.ns, "--replicas=2")  # the scale subresource
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "2/2"
    assert scale(deployment) == (2, 2)
    state = deployment.service_state(state_dir)
    gpus = sorted(tuple(r["gpus"]) for r in state["replicas"])
    assert gpus == [(0,), (1,)], "each replica on its own GPU"
    for r in state["replicas"]:
        environ = Path(f"/proc/{r['pid']}/environ").read_bytes().split(b"\0")
        assert f"CUDA_VISIBLE_DEVICES={r['gpus'][0]}".encode() in environ

    refused = kubectl("scale", "gmd", deployment.name, "-n", deployment.ns, "--replicas=0", check=False)
    assert refused.returncode != 0 and "spec.service.replicas" in refused.stderr, "the schema's minimum holds"
    kubectl("scale", "gmd", deployment.name, "-n", deployment.ns, "--replicas=3")  # 2 GPUs: capped at 2, visibly
    wait_for("the cap event", lambda: deployment.events("ReplicasCapped"))
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "2/3"
    assert scale(deployment) == (3, 2), "the scale's status is what runs, not what was asked"
    assert obj["status"]["phase"] == "Degraded"
    assert "capped" in (deployment.condition("Ready") or {})["message"]

    deployment.apply(replicas=1)
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == "1/1"
    pids = replica_pids(deployment.service_state(state_dir))
    assert len(pids) == 1

    port = int(obj["status"]["scoringUri"].split(":")[2].split("/")[0])
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    assert not (state_dir / "services" / f"{deployment.ns}.{deployment.name}").exists()
    assert not any(alive(p) for p in pids)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
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
    state = deployment.service_state(state_dir)
    service_dir = state_dir / "services" / f"{deployment.ns}.{deployment.name}"
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    try:
        assert all(alive(p) for p in replica_pids(state)), "detached: still serving"
        health = urllib.request.Request(
            f"http://127.0.0.1:{state['port']}/api/v1/service/{state['service']}/",
            headers={"Authorization": f"Bearer {state['keys']['primary']}"},
        )
        with urllib.request.urlopen(health, timeout=10) as resp:
            assert resp.status == 200, "and still answering at its scoring URI"
    finally:  # the test, not the operator, cleans up what it asked the operator to leave
        stop_all(service_dir)
        shutil.rmtree(service_dir, ignore_errors=True)


def scale(deployment: Deployment) -> tuple[int, int]:
    """The scale subresource as an autoscaler reads it: requested and running replicas."""
    out = deployment.cp.kubectl(
        "get", "gmd", deployment.name, "-n", deployment.ns, "--subresource=scale", "-o", "json"
    ).stdout
    found = json.loads(out)
    assert found["kind"] == "Scale"
    return found["spec"]["replicas"], found["status"]["replicas"]


def _secret(deployment: Deployment, name: str) -> dict[str, Any] | None:
    result = deployment.cp.kubectl("get", "secret", name, "-n", deployment.ns, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_a_secret_of_the_same_name_owned_by_someone_else_is_never_touched(
    deployment: Deployment, state_dir: Path
) -> None:
    name = f"{deployment.name}-scoring-keys"
    deployment.cp.kubectl(
        "create", "secret", "generic", name, "-n", deployment.ns, "--from-literal=password=team-database-password"
    )
    theirs = _secret(deployment, name)
    assert theirs is not None
    deployment.apply()

    def conflict() -> dict[str, Any] | None:
        cond = deployment.condition("Ready")
        return cond if cond and cond["reason"] == "SecretConflict" else None

    cond = wait_for("the SecretConflict condition", conflict, 300)
    assert cond["status"] == "False" and "was not created by the operator" in cond["message"]
    assert deployment.get()["status"]["phase"] == "Failed"
    assert [e["type"] for e in deployment.events("SecretConflict")][:1] == ["Warning"]
    assert _secret(deployment, name) == theirs  # not one field changed, not even resourceVersion
    # The service itself runs: the keys are simply not handed out through someone else's Secret.
    assert (state_dir / "services" / f"{deployment.ns}.{deployment.name}" / "state.json").exists()

    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
    assert _secret(deployment, name) == theirs, "deleting the resource must leave the other Secret"
    assert not (state_dir / "services" / f"{deployment.ns}.{deployment.name}").exists()


def test_the_keys_secret_is_replaced_not_merged_when_auth_is_switched_off(deployment: Deployment) -> None:
    deployment.apply()
    deployment.wait_ready()
    assert set(deployment.keys()) == {"scoringUri", "primaryKey", "secondaryKey"}
    docs = deployment.get()
    patch = json.dumps({"spec": {"service": {"authEnabled": False}}})
    deployment.cp.kubectl("patch", "gmd", deployment.name, "-n", deployment.ns, "--type=merge", "-p", patch)
    wait_for(
        "the new generation Ready", lambda: deployment.get()["metadata"]["generation"] > docs["metadata"]["generation"]
    )
    deployment.wait_ready()
    assert set(deployment.keys()) == {"scoringUri"}, "keys the service no longer takes must not linger"
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")


def test_a_stripped_finalizer_leaves_no_gpu_record_behind(deployment: Deployment, state_dir: Path) -> None:
    """Someone removes the finalizer by hand and cleans up the service themselves: the GPUs it held must not cap its
    neighbour, without restarting the operator (who holds what is read from the cluster, not remembered)."""
    deployment.apply(replicas=2)  # both declared GPUs
    deployment.wait_ready()
    service_dir = state_dir / "services" / f"{deployment.ns}.{deployment.name}"
    operator = deployment.operator
    assert operator.proc is not None
    os.kill(operator.proc.pid, signal.SIGSTOP)  # the operator sees none of it happen (it runs on, not restarted)
    try:
        patch = json.dumps({"metadata": {"finalizers": None}})
        deployment.cp.kubectl("patch", "gmd", deployment.name, "-n", deployment.ns, "--type=merge", "-p", patch)
        deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=30s")
        stop_all(service_dir)
        shutil.rmtree(service_dir)
    finally:
        os.kill(operator.proc.pid, signal.SIGCONT)

    deployment.apply(replicas=2, name="neighbour")
    neighbour = Deployment(deployment.cp, deployment.ns, deployment.model, deployment.operator)
    neighbour.name = "neighbour"
    obj = neighbour.wait_ready()
    assert obj["status"]["replicasSummary"] == "2/2", obj["status"]
    assert obj["status"]["gpus"]["heldByOthers"] == 0
    deployment.cp.kubectl("delete", "gmd", "neighbour", "-n", deployment.ns, "--timeout=120s")


def _wheel(path: Path) -> None:
    """A minimal wheel of an empty package, as a team's private index would serve it."""
    dist = "teamtools-1.0.dist-info"
    files = {
        "teamtools/__init__.py": "",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: teamtools\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def test_a_failed_environment_build_fixed_outside_the_spec_is_retried(deployment: Deployment, tmp_path: Path) -> None:
    """The conda file needs a package from a team index that is down: the build fails. The index comes back (the
    wheel appears), nothing in the spec changes: retry-now rebuilds and serves, and status says how it went."""
    wheel = tmp_path / "teamtools-1.0-py3-none-any.whl"
    conda = (ROOT / "manifests/examples/digits-source/myenv.yml").read_text() + f"      - {wheel}\n"
    deployment.apply(conda=conda)

    def failed() -> dict[str, Any] | None:
        cond = deployment.condition("Ready")
        return cond if cond and cond["reason"] == "ServiceFailed" else None

    try:
        cond = wait_for("the failed environment build", failed, 300)
    except AssertionError as exc:  # say where it stood instead
        raise AssertionError(f"{exc}; Ready is {deployment.condition('Ready')}") from None
    assert "retried automatically at" in cond["message"] and "gpumodel.io/retry-now" in cond["message"]
    generation = deployment.get()["metadata"]["generation"]
    _wheel(wheel)  # the index is back
    deployment.cp.kubectl("annotate", "gmd", deployment.name, "-n", deployment.ns, "gpumodel.io/retry-now=1")
    obj = deployment.wait_ready(timeout=300)
    assert obj["metadata"]["generation"] == generation, "the spec never changed"
    assert obj["status"]["retry"]["handledToken"] == "1"
    assert deployment.events("Retrying"), "the retry is said in an event"
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")
