"""The demo: a GpuModelDeployment from `kubectl apply` to a scored request and back to nothing.

Starts a real control plane (kube-apiserver + etcd), installs the CRD, runs the operator, trains the
example digits model, applies the example (kustomize: score.py and myenv.yml as a ConfigMap), waits for
Ready, scores a random test image with the key from the Secret, then deletes everything and shows it gone.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.digits_model import train
from gpu_model_operator_dev.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
NAMESPACE = "demo"
EXAMPLE = ROOT / "manifests" / "examples" / "local"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def wait_ready(cp: ControlPlane, name: str, timeout: float, operator: OperatorProcess) -> dict[str, Any]:
    """Poll the resource's status, printing each new phase and message, until Ready or a failure."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        obj: dict[str, Any] = json.loads(cp.kubectl("get", "gmd", name, "-n", NAMESPACE, "-o", "json").stdout)
        status = obj.get("status", {})
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        line = f"{status.get('phase', 'Pending')}: {ready['message'] if ready else 'waiting for the operator'}"
        if line != last:
            print(f"    {line}", flush=True)
            last = line
        if ready and ready["status"] == "True" and ready.get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        if status.get("phase") == "Failed":
            raise SystemExit(f"the deployment failed: {status.get('lastError')}\noperator log:\n{operator.log_tail()}")
        time.sleep(1)
    raise SystemExit(f"not Ready after {timeout:.0f}s\noperator log:\n{operator.log_tail()}")


def score(uri: str, key: str, image: list[float]) -> Any:
    request = urllib.request.Request(
        uri,
        data=json.dumps({"data": [image]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    say("starting a Kubernetes control plane (kube-apiserver + etcd; the first run builds them)")
    with ControlPlane(WORK / "cluster") as cp:
        print(f"    kubeconfig: {cp.kubeconfig}   (try: kubectl --kubeconfig {cp.kubeconfig} get gmd -A)")
        say("installing the GpuModelDeployment CRD")
        cp.install_crds(ROOT / "crds")
        cp.kubectl("create", "namespace", NAMESPACE)

        say("training the example model (a neural network on scikit-learn's handwritten digits)")
        model = train(WORK / "model")
        print(f"    test accuracy {model.accuracy:.3f}; saved to {model.model_dir}")

        say("starting the operator (local backend: this machine's GPUs, or CPU where it has none)")
        state = WORK / "state"
        with OperatorProcess(
            cp.kubeconfig,
            [NAMESPACE],
            state,
            WORK / "operator.log",
            extra_args=["--backend", "local", "--poll-seconds", "1"],
        ) as operator:
            say("applying the example: kubectl apply -k manifests/examples/local")
            docs = list(yaml.safe_load_all(cp.kubectl("kustomize", str(EXAMPLE)).stdout))
            for doc in docs:
                if doc["kind"] == "GpuModelDeployment":
                    doc["spec"]["model"]["path"] = str(model.model_dir)
                    name = doc["metadata"]["name"]
            cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(docs))

            say("waiting for Ready (the first run builds the serving environment)")
            obj = wait_ready(cp, name, 600, operator)
            print(cp.kubectl("get", "gmd", "-n", NAMESPACE).stdout)

            say("scoring a random test image with the key from the Secret")
            secret = json.loads(
                cp.kubectl("get", "secret", obj["status"]["keysSecretName"], "-n", NAMESPACE, "-o", "json").stdout
            )
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            i = random.randrange(len(model.test_labels))
            predicted = score(data["scoringUri"], data["primaryKey"], model.test_images[i].tolist())
            print(f"    POST {data['scoringUri']}\n    label {model.test_labels[i]}, prediction {predicted[0]}")

            say(f"deleting: kubectl delete gmd {name}")
            cp.kubectl("delete", "gmd", name, "-n", NAMESPACE, "--timeout=120s")
            left = cp.kubectl("get", "gmd,secret", "-n", NAMESPACE, "-o", "name").stdout.split()
            services = list((state / "services").glob("*")) if (state / "services").exists() else []
            print(f"    resources left: {left or 'none'}; services left on this machine: {len(services)}")
    say("done: the control plane and operator are stopped")


if __name__ == "__main__":
    main()
