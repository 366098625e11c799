"""The azureml-v2 demo: the digits model on a managed online endpoint (Azure ML SDK v2), against the emulator.

Starts a real control plane, the Azure ML emulator (its v2 surface: online endpoints, quota, Entra ID with
workload identity federation) and the operator with ``--backend azureml-v2``, whose real azure-ai-ml SDK signs in
with a ServiceAccount token of the control plane (workload identity: the token file the Azure Workload Identity
webhook would project, an Entra application federated with that ServiceAccount). Applies
``manifests/examples/azureml-v2`` (one Standard_NC4as_T4_v3 instance per replica), waits for Ready, scores a random
test image with the key from the Secret (the emulated endpoint forwards to the example score.py, run here on the
trained model), rolls out model version 2 blue/green while a client scores in a loop and counts the answers, then
deletes the resource and shows that no endpoint is left.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import yaml
from demo import NAMESPACE, say, wait_ready
from demo_azureml import load_entry_script, serve_entry_script

from gpu_model_operator_dev.azureml_emulator import start_emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.digits_model import train
from gpu_model_operator_dev.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo" / "azureml-v2"
EXAMPLE = ROOT / "manifests" / "examples" / "azureml-v2"
WORKSPACE = {"subscriptionId": "00000000-0000-0000-0000-000000000001", "resourceGroup": "rg1", "name": "ws1"}
APP, TENANT = "gpu-model-operator-demo-app", "00000000-0000-0000-0000-0000000000aa"
OPERATOR_NS, OPERATOR_SA = "gpu-model-operator", "gpu-model-operator"


def federate(cp: ControlPlane, emu: Any) -> Path:
    """The operator's ServiceAccount token (audience api://AzureADTokenExchange) in a file, and the Entra
    application's federated credential trusting the control plane's issuer for that ServiceAccount."""
    cp.kubectl("create", "namespace", OPERATOR_NS)
    cp.kubectl("create", "serviceaccount", OPERATOR_SA, "-n", OPERATOR_NS)
    token = cp.kubectl(
        "create",
        "token",
        OPERATOR_SA,
        "-n",
        OPERATOR_NS,
        "--audience",
        "api://AzureADTokenExchange",
        "--duration",
        "1h",
    ).stdout.strip()
    token_file = WORK / "azure-identity-token"
    token_file.write_text(token)
    jwks = json.loads(cp.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
    subject = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
    emu.v2.configure(federated_credentials=[{"client_id": APP, "issuer": cp.server, "subject": subject, "jwks": jwks}])
    return token_file


def keys_of(cp: ControlPlane, obj: dict[str, Any]) -> dict[str, str]:
    raw = cp.kubectl("get", "secret", obj["status"]["keysSecretName"], "-n", NAMESPACE, "-o", "json")
    return {k: base64.b64decode(v).decode() for k, v in json.loads(raw.stdout)["data"].items()}


def scoring_loop(keys: dict[str, str], image: list[float], emu: Any, stop: threading.Event, seen: Counter[str]) -> None:
    """A client scoring as fast as it can, counting answers by status and by the deployment that answered."""
    with requests.Session() as session:
        while not stop.is_set():
            answer = session.post(
                keys["scoringUri"],
                json={"data": [image]},
                headers={"Authorization": f"Bearer {keys['primaryKey']}"},
                proxies={"https": emu.proxy_url},
                verify=str(emu.ca_file),
                timeout=30,
            )
            seen[f"HTTP {answer.status_code} from {answer.headers.get('azureml-model-deployment')}"] += 1


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    say("starting a Kubernetes control plane (kube-apiserver + etcd; the first run builds them)")
    with ControlPlane(WORK / "cluster") as cp:
        print(f"    kubeconfig: {cp.kubeconfig}   (try: kubectl --kubeconfig {cp.kubeconfig} get gmd -A)")
        cp.install_crds(ROOT / "crds")
        cp.kubectl("create", "namespace", NAMESPACE)

        say("training the example model and loading score.py on it (the endpoint's instances in this demo)")
        model = train(WORK / "model")
        replica = serve_entry_script(load_entry_script(model.model_dir))

        say("starting the Azure ML emulator (workspace ws1, models digits:1 and digits:2 registered)")
        with start_emulator(WORK / "emulator") as emu:
            emu.v2.seed(models=[{"name": "digits", "version": "1"}, {"name": "digits", "version": "2"}])
            emu.v2.configure(latencies={"endpoint_create_s": 2, "deployment_create_s": 4, "deployment_delete_s": 2})
            emu.configure(default_scoring_backend=f"http://127.0.0.1:{replica.server_address[1]}/score")
            print(f"    {emu.base_url} (ARM, Entra ID, online endpoints, scoring)")

            say("federating the operator's ServiceAccount with an Entra application (workload identity)")
            token_file = federate(cp, emu)

            say("starting the operator with --backend azureml-v2 (its azure-ai-ml SDK talks to the emulator)")
            env = {**emu.client_env_v2(), "HOME": str(WORK / "home"), "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
            # The demo's namespace may sign in as the federated application, and no other namespace may.
            args = ["--backend", "azureml-v2", "--poll-seconds", "1", "--workload-identity", f"{NAMESPACE}={APP}"]
            with OperatorProcess(
                cp.kubeconfig, [NAMESPACE], WORK / "state", WORK / "operator.log", extra_args=args, env=env,
            ) as operator:  # fmt: skip
                say("applying manifests/examples/azureml-v2 (workload identity: no Secret with a password)")
                docs = list(yaml.safe_load_all(cp.kubectl("kustomize", str(EXAMPLE)).stdout))
                for doc in docs:
                    if doc["kind"] == "GpuModelDeployment":
                        identity = {"workloadIdentity": {"clientId": APP, "tenantId": TENANT}}
                        doc["spec"]["workspace"] = {**WORKSPACE, **identity}
                        name = doc["metadata"]["name"]
                cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(docs))

                say("waiting for Ready (endpoint created, deployment up and probed, all traffic on it)")
                obj = wait_ready(cp, name, 180, operator)
                print(cp.kubectl("get", "gmd", "-n", NAMESPACE).stdout)

                say("scoring a random test image with the key from the Secret")
                keys = keys_of(cp, obj)
                i = random.randrange(len(model.test_labels))
                image = model.test_images[i].tolist()
                answer = requests.post(
                    keys["scoringUri"],
                    json={"data": [image]},
                    headers={"Authorization": f"Bearer {keys['primaryKey']}"},
                    proxies={"https": emu.proxy_url},
                    verify=str(emu.ca_file),
                    timeout=30,
                )
                print(f"    POST {keys['scoringUri']}\n    label {model.test_labels[i]}, prediction {answer.json()[0]}")

                say("rolling out model version 2 blue/green while a client scores in a loop")
                seen: Counter[str] = Counter()
                stop = threading.Event()
                client = threading.Thread(target=scoring_loop, args=(keys, image, emu, stop, seen))
                client.start()
                patch = json.dumps({"spec": {"model": {"version": 2}}})
                cp.kubectl("patch", "gmd", name, "-n", NAMESPACE, "--type=merge", "-p", patch)
                try:
                    wait_ready(cp, name, 180, operator)
                finally:
                    stop.set()
                    client.join(30)
                for outcome, count in sorted(seen.items()):
                    print(f"    {count:5d} x {outcome}")

                say(f"deleting: kubectl delete gmd {name}")
                cp.kubectl("delete", "gmd", name, "-n", NAMESPACE, "--timeout=120s")
                listed = cp.kubectl("get", "gmd,secret", "-n", NAMESPACE, "-o", "name").stdout.split()
                print(f"    resources left in {NAMESPACE}: {', '.join(listed) or 'none'}")
                endpoints = [e["name"] for e in emu.v2.summary()["endpoints"]]
                print(f"    online endpoints left in the workspace: {', '.join(endpoints) or 'none'}")
        replica.shutdown()
    say("done: the control plane, emulator and operator are stopped")


if __name__ == "__main__":
    main()
