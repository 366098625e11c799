"""The azureml demo: the same flow as `make demo`, on the azureml backend, against the Azure ML emulator.

Starts a real control plane, the Azure ML emulator (the HTTPS REST API azureml-core 1.61 talks to, on a
thread of this process) and the operator, whose real SDK is pointed at the emulator through its own
configuration (cloud metadata URL, CA bundle, proxy). Applies the azureml example (an AKS cluster of 3 x
Standard_NC4as_T4_v3, the digits service), waits for Ready, scores a random test image with the key from the Secret
(the emulated scoring front end checks the key and forwards to the example score.py, run here on the trained
model), scales, then deletes and shows that neither the service nor the cluster is left in the workspace.
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import os
import random
import shutil
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
import yaml
from demo import NAMESPACE, say, wait_ready

from gpu_model_operator_dev.azureml_emulator import EmulatorConfig, Latencies, start_emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.digits_model import train
from gpu_model_operator_dev.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]

WORK = ROOT / ".demo" / "azureml"
EXAMPLE = ROOT / "manifests" / "examples" / "azureml"
CLIENT_ID, CLIENT_SECRET = "gpu-model-operator-demo", "demo-client-secret"
WORKSPACE = {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg1", "name": "ws1"}


def load_entry_script(model_dir: Path) -> ModuleType:
    """The example score.py with its init() run, as the inference server in an AKS replica would."""
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    spec = importlib.util.spec_from_file_location("score", ROOT / "manifests/examples/digits-source/score.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    return module


def serve_entry_script(module: ModuleType) -> http.server.ThreadingHTTPServer:
    """POST /score → run(body): the replica behind the emulated scoring front end."""

    class Replica(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = json.dumps(module.run(body.decode())).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Replica)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    say("starting a Kubernetes control plane (kube-apiserver + etcd; the first run builds them)")
    with ControlPlane(WORK / "cluster") as cp:
        print(f"    kubeconfig: {cp.kubeconfig}   (try: kubectl --kubeconfig {cp.kubeconfig} get gmd -A)")
        cp.install_crds(ROOT / "crds")
        cp.kubectl("create", "namespace", NAMESPACE)

        say("training the example model and loading score.py on it (the AKS replica of this demo)")
        model = train(WORK / "model")
        replica = serve_entry_script(load_entry_script(model.model_dir))

        say("starting the Azure ML emulator (workspace ws1, model digits:1 registered)")
        latencies = Latencies(compute_create_s=4, compute_delete_s=2, service_create_s=3, service_update_s=2)
        config = EmulatorConfig(latencies=latencies, credentials={CLIENT_ID: CLIENT_SECRET})
        with start_emulator(WORK / "emulator", config) as emu:
            emu.seed(models=[{"name": "digits"}])
            emu.configure(default_scoring_backend=f"http://127.0.0.1:{replica.server_address[1]}/score")
            print(f"    {emu.base_url} (ARM, Azure AD, Model Management, blob storage, scoring)")

            say("starting the operator (its azureml-core SDK talks to the emulator)")
            env = {**emu.client_env(), "HOME": str(WORK / "home")}
            with OperatorProcess(
                cp.kubeconfig, [NAMESPACE], WORK / "state", WORK / "operator.log",
                extra_args=["--poll-seconds", "1"], env=env,
            ) as operator:  # fmt: skip
                say("creating the service principal's Secret and applying manifests/examples/azureml")
                secret = {"tenantId": "adfs", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
                body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "azureml-service-principal"}}
                cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({**body, "stringData": secret}))
                docs = list(yaml.safe_load_all(cp.kubectl("kustomize", str(EXAMPLE)).stdout))
                for doc in docs:
                    if doc["kind"] == "GpuModelDeployment":
                        doc["spec"]["workspace"].update(WORKSPACE)
                        name = doc["metadata"]["name"]
                cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(docs))

                say("waiting for Ready (cluster provisioned, service deployed, scoring probe answered)")
                obj = wait_ready(cp, name, 180, operator)
                print(cp.kubectl("get", "gmd", "-n", NAMESPACE).stdout)

                say("scoring a random test image with the key from the Secret")
                raw = cp.kubectl("get", "secret", obj["status"]["keysSecretName"], "-n", NAMESPACE, "-o", "json")
                keys = {k: base64.b64decode(v).decode() for k, v in json.loads(raw.stdout)["data"].items()}
                i = random.randrange(len(model.test_labels))
                answer = requests.post(
                    keys["scoringUri"],
                    json={"data": [model.test_images[i].tolist()]},
                    headers={"Authorization": f"Bearer {keys['primaryKey']}"},
                    verify=str(emu.ca_file),
                    timeout=30,
                )
                print(f"    POST {keys['scoringUri']}\n    label {model.test_labels[i]}, prediction {answer.json()[0]}")

                say("scaling to 1 replica in place: kubectl patch gmd (one PATCH of the service, no redeploy)")
                patch = json.dumps({"spec": {"service": {"replicas": 1}}})
                cp.kubectl("patch", "gmd", name, "-n", NAMESPACE, "--type=merge", "-p", patch)
                wait_ready(cp, name, 120, operator)

                say(f"deleting: kubectl delete gmd {name}")
                cp.kubectl("delete", "gmd", name, "-n", NAMESPACE, "--timeout=120s")
                state = emu.summary()
                listed = cp.kubectl("get", "gmd,secret", "-n", NAMESPACE, "-o", "name").stdout.split()
                left = [r for r in listed if r != "secret/azureml-service-principal"]  # the user's own
                print(f"    resources left besides the credentials Secret: {', '.join(left) or 'none'}")
                computes = [c["name"] for c in state["computes"]]
                services = [s["name"] for s in state["services"]]
                print(f"    left in the workspace: computes {computes or 'none'}, services {services or 'none'}")
        replica.shutdown()
    say("done: the control plane, emulator and operator are stopped")


if __name__ == "__main__":
    main()
