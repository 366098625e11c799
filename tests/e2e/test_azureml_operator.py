"""The operator end to end on the azureml backend: a real apiserver, the operator as a real process, the real
azureml-core SDK inside it, and the Azure ML emulator (HTTPS, on a thread of this process) as the cloud.

Operations settle in about a second, as configured below; the operator polls every second and resyncs every
5 s. Each test uses its own compute and service names, so the workspace it shares with the others stays
readable in the emulator's state and call log.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gpu_model_operator.operator_process import OperatorProcess
from tests.azureml_emulator import Emulator, EmulatorConfig, Latencies, start_emulator
from tests.e2e.harness import ROOT, wait_for

pytestmark = pytest.mark.timeout(240)

TENANT, CLIENT_ID, CLIENT_SECRET = "72f988bf-86f1-41af-91ab-2d7cd011db47", "gpu-operator", "right-secret-value"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
SECRET = "azureml-service-principal"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    latencies = Latencies(
        compute_create_s=1.5,
        compute_update_s=1,
        compute_delete_s=1,
        service_create_s=1,
        service_update_s=1,
        service_delete_s=0.5,
    )
    config = EmulatorConfig(latencies=latencies, credentials={CLIENT_ID: CLIENT_SECRET})
    with start_emulator(tmp_path_factory.mktemp("emulator"), config) as emulator:
        emulator.seed(models=[{"name": "digits"}])
        yield emulator


@pytest.fixture(scope="module")
def azure_operator(
    control_plane: Any, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    logs = tmp_path_factory.mktemp("logs")
    env = {**emu.client_env(), "HOME": str(tmp_path_factory.mktemp("home"))}
    args = ["--all-namespaces", "--poll-seconds", "1", "--resync-seconds", "5"]
    with OperatorProcess(
        control_plane.kubeconfig, [], logs / "state", logs / "operator.log", extra_args=args, env=env
    ) as op:
        yield op
        clean_up(control_plane)


def clean_up(cp: Any) -> None:
    """A safety net for a failed test: no azureml resource may outlive this module's operator and emulator
    (the next module's operator would find it). Deleted through the operator; finalizers dropped if stuck."""

    def left() -> list[tuple[str, str]]:
        items = json.loads(cp.kubectl("get", "gmd", "-A", "-o", "json").stdout)["items"]
        return [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items if i["spec"]["backend"] == "azureml"]

    for ns, name in left():
        cp.kubectl("delete", "gmd", name, "-n", ns, "--wait=false", check=False)
    deadline = time.monotonic() + 30
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    for ns, name in left():
        patch = json.dumps({"metadata": {"finalizers": None}})
        cp.kubectl("patch", "gmd", name, "-n", ns, "--type=merge", "-p", patch, check=False)


@pytest.fixture(autouse=True)
def no_faults(emu: Emulator) -> Iterator[None]:
    emu.clear_faults()
    yield
    emu.clear_faults()


class Azure:
    """GpuModelDeployments of one namespace, driven through kubectl, and the emulated cloud beside them."""

    def __init__(self, cp: Any, ns: str, emu: Emulator, operator: OperatorProcess) -> None:
        self.cp, self.ns, self.emu, self.operator = cp, ns, emu, operator

    def secret(self, client_secret: str = CLIENT_SECRET) -> None:
        data = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": client_secret}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": data}
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(body))

    def apply(self, name: str, service: str, compute: dict[str, Any], replicas: int = 1, model: str = "digits") -> None:
        """The azureml example (kustomize: the digits-source ConfigMap and the resource), pointed at the emulator."""
        docs = list(yaml.safe_load_all(self.cp.kubectl("kustomize", str(ROOT / "manifests/examples/azureml")).stdout))
        for doc in docs:
            if doc["kind"] == "GpuModelDeployment":
                doc["metadata"]["name"] = name
                spec = doc["spec"]
                spec["workspace"].update(subscriptionId=SUBSCRIPTION, resourceGroup=RESOURCE_GROUP, name=WORKSPACE)
                spec["workspace"]["credentialsSecretRef"]["name"] = SECRET
                spec["compute"] = compute
                spec["model"] = {"name": model, "version": 1}
                spec["service"].update(name=service, replicas=replicas)
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def get(self, name: str) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "gmd", name, "-n", self.ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any]:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_ready(self, name: str, timeout: float = 90) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get(name)
            cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})
            current = cond.get("status") == "True" and cond.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if current else None

        try:
            return wait_for(f"{name} Ready", ready, timeout)
        except AssertionError:
            raise AssertionError(f"not Ready: {self.get(name).get('status')}\n{self.operator.log_tail()}") from None

    def wait_reason(self, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            cond = self.condition(name)
            return cond if cond.get("reason") == reason else None

        return wait_for(f"the Ready condition's reason {reason}", reached, timeout)

    def events(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        items = json.loads(self.cp.kubectl("get", "events", "-n", self.ns, "-o", "json").stdout)["items"]
        return [e for e in items if e["involvedObject"]["name"] == name and reason in (None, e["reason"])]

    def keys(self, name: str) -> dict[str, str]:
        out = self.cp.kubectl("get", "secret", f"{name}-scoring-keys", "-n", self.ns, "-o", "json").stdout
        return {k: base64.b64decode(v).decode() for k, v in json.loads(out)["data"].items()}

    def delete(self, name: str) -> None:
        self.cp.kubectl("delete", "gmd", name, "-n", self.ns, "--timeout=120s")

    def cloud(self) -> tuple[set[str], set[str]]:
        """Names of the computes and services the emulated workspace holds."""
        state = self.emu.summary()
        return {c["name"] for c in state["computes"]}, {s["name"] for s in state["services"]}

    def calls(self, path: str, method: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.emu.calls() if re.search(path, c["path"]) and method in (None, c["method"])]


@pytest.fixture
def azure(control_plane: Any, namespace: str, emu: Emulator, azure_operator: OperatorProcess) -> Azure:
    deployments = Azure(control_plane, namespace, emu, azure_operator)
    deployments.secret()
    return deployments


def provision(name: str, agents: int = 2) -> dict[str, Any]:
    return {"name": name, "provision": {"vmSize": "Standard_NC6", "agentCount": agents}, "deletionPolicy": "Delete"}


def score(uri: str, key: str | None, ca: Path) -> requests.Response:
    session = requests.Session()
    session.trust_env = False  # straight to the emulator, whatever proxy this machine has
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return session.post(uri, json={"data": [[0.0] * 64]}, headers=headers, verify=str(ca), timeout=10)


def test_provision_deploy_score_scale_cap_delete(azure: Azure) -> None:
    azure.apply("digits", "digits-main", provision("gpu-main"), replicas=2)
    obj = azure.wait_ready("digits")
    status = obj["status"]
    assert (status["replicasSummary"], status["gpus"]["total"], status["phase"]) == ("2/2", 2, "Ready")
    assert status["ownership"]["computeCreated"] and not status["ownership"]["computeAdopted"]
    assert "the scoring probe answered" in azure.condition("digits")["message"]
    assert azure.calls(r"/api/v1/service/digits-main/$", "GET"), "the probe went to the service's health route"

    keys = azure.keys("digits")
    assert keys["scoringUri"] == status["scoringUri"] and keys["scoringUri"].endswith("/digits-main/score")
    scored = score(keys["scoringUri"], keys["primaryKey"], azure.emu.ca_file)
    assert (scored.status_code, scored.json()) == (200, {"data": [[0.0] * 64]})
    assert score(keys["scoringUri"], None, azure.emu.ca_file).status_code == 401
    assert score(keys["scoringUri"], keys["secondaryKey"], azure.emu.ca_file).status_code == 200
    exposed = json.dumps(azure.get("digits")) + json.dumps(azure.events("digits")) + azure.operator.log_tail(10000)
    assert keys["primaryKey"] not in exposed and keys["secondaryKey"] not in exposed

    creates = len(azure.calls(r"/services$", "POST"))
    azure.apply("digits", "digits-main", provision("gpu-main"), replicas=1)
    assert azure.wait_ready("digits")["status"]["replicasSummary"] == "1/1"
    assert azure.calls(r"/services/digits-main$", "PATCH"), "scaled with a PATCH"
    assert len(azure.calls(r"/services$", "POST")) == creates, "not redeployed"
    assert [s["replicas"] for s in azure.emu.summary()["services"] if s["name"] == "digits-main"] == [1]

    azure.apply("digits", "digits-main", provision("gpu-main"), replicas=3)  # 2 x NC6: 2 GPUs
    capped = wait_for("the ReplicasCapped event", lambda: azure.events("digits", "ReplicasCapped"), 60)
    assert capped[0]["type"] == "Warning" and "capped at 2" in capped[0]["message"]
    obj = azure.wait_ready("digits")
    assert (obj["status"]["replicasSummary"], obj["status"]["phase"]) == ("2/3", "Degraded")

    azure.delete("digits")
    computes, services = azure.cloud()
    assert "gpu-main" not in computes and "digits-main" not in services
    deletes = azure.calls(r"/computes/gpu-main$", "DELETE")
    assert [c["query"].get("underlyingResourceAction") for c in deletes] == ["delete"]
    refused = [c["host"] for c in azure.emu.calls() if c["method"] == "CONNECT" and c["status"] != 200]
    assert refused == [], "the SDK tried to reach a host outside the emulator"


def test_attached_cluster_is_detached_not_deleted(azure: Azure) -> None:
    cluster = {"resource_group": "aks-rg", "name": "existing-aks", "vm_size": "Standard_NC6", "agent_count": 2}
    resource_id = azure.emu.seed(aks_clusters=[cluster])["aks_clusters"][0]
    attach = {"name": "attached", "attach": {"resourceGroup": "aks-rg", "clusterName": "existing-aks"}}
    azure.apply("digits", "digits-attached", attach)
    obj = azure.wait_ready("digits")
    assert obj["status"]["gpus"]["total"] == 2
    assert "attached cluster attached" in azure.condition("digits", "ComputeReady")["message"]

    azure.delete("digits")
    computes, services = azure.cloud()
    assert "attached" not in computes and "digits-attached" not in services
    deletes = azure.calls(r"/computes/attached$", "DELETE")
    assert [c["query"].get("underlyingResourceAction") for c in deletes] == ["detach"]
    assert azure.events("digits", "DetachedCompute")
    assert azure.emu.state is not None and resource_id.lower() in azure.emu.state.aks_clusters, "the cluster stays"


def test_shared_compute_is_deleted_with_its_last_user(azure: Azure) -> None:
    azure.apply("first", "shared-first", provision("gpu-shared"))
    azure.wait_ready("first")  # first creates the cluster ...
    azure.apply("second", "shared-second", provision("gpu-shared"))
    obj = azure.wait_ready("second")  # ... second uses it, next to first's replica
    assert obj["status"]["gpus"] == {"total": 2, "heldByOthers": 1, "held": 1}

    azure.delete("first")
    computes, services = azure.cloud()
    assert "gpu-shared" in computes and services >= {"shared-second"} and "shared-first" not in services
    assert "still use it" in azure.events("first", "RetainedCompute")[0]["message"]
    azure.wait_ready("second")

    azure.delete("second")
    computes, services = azure.cloud()
    assert "gpu-shared" not in computes and "shared-second" not in services


def test_missing_model_fails_without_a_retry_storm(azure: Azure) -> None:
    azure.emu.seed(computes=[{"name": "gpu-seeded", "vm_size": "Standard_NC6", "agent_count": 1}])
    seeded = {"name": "gpu-seeded", "provision": {"vmSize": "Standard_NC6"}}
    azure.apply("digits", "digits-nomodel", seeded, model="no-such-model")
    cond = azure.wait_reason("digits", "ModelNotFound")
    assert cond["status"] == "False" and "no-such-model:1" in cond["message"]
    assert azure.get("digits")["status"]["phase"] == "Failed"
    warnings = azure.events("digits", "ModelNotFound")
    assert warnings and warnings[0]["type"] == "Warning"

    before = len(azure.calls(r"/models/no-such-model"))
    time.sleep(6)  # six poll intervals: a retry loop would look the model up six times or more
    assert len(azure.calls(r"/models/no-such-model")) - before <= 2, "at most the periodic resync"
    assert "digits-nomodel" not in azure.cloud()[1]

    azure.delete("digits")
    assert "gpu-seeded" in azure.cloud()[0], "an adopted compute is left in place"
    assert azure.events("digits", "RetainedCompute")


def test_wrong_client_secret_is_credentials_invalid_until_fixed(azure: Azure) -> None:
    wrong = "wrong-secret-value"
    azure.secret(client_secret=wrong)
    azure.emu.seed(computes=[{"name": "gpu-creds", "vm_size": "Standard_NC6", "agent_count": 1}])
    azure.apply("digits", "digits-creds", {"name": "gpu-creds", "provision": {"vmSize": "Standard_NC6"}})
    cond = azure.wait_reason("digits", "CredentialsInvalid")
    assert f"Secret {SECRET} (keys tenantId, clientId, clientSecret)" in cond["message"]
    assert "clientSecret is wrong" in cond["message"]
    assert azure.events("digits", "CredentialsInvalid")[0]["type"] == "Warning"
    exposed = json.dumps(azure.get("digits")) + json.dumps(azure.events("digits")) + azure.operator.log_tail(10000)
    assert wrong not in exposed and CLIENT_SECRET not in exposed

    azure.secret()  # fixed; the retry-now annotation asks for a pass at once
    azure.cp.kubectl("annotate", "gmd", "digits", "-n", azure.ns, "gpumodel.io/retry-now=1")
    azure.wait_ready("digits")
    azure.delete("digits")
    assert "digits-creds" not in azure.cloud()[1]


def test_throttling_and_outages_converge_honouring_retry_after(azure: Azure) -> None:
    retry_after = 3
    azure.emu.seed(computes=[{"name": "gpu-flaky", "vm_size": "Standard_NC6", "agent_count": 1}])
    azure.emu.add_fault(action="reset", method="GET", path=r"/computes/gpu-flaky$", times=1)
    azure.emu.add_fault(
        action="status", status=429, retry_after=retry_after, method="GET", path=r"/services/digits-flaky$", times=1
    )
    azure.emu.add_fault(action="status", status=503, method="POST", path=r"/services$", times=2)
    azure.apply("digits", "digits-flaky", {"name": "gpu-flaky", "provision": {"vmSize": "Standard_NC6"}})
    azure.wait_ready("digits")

    reads = azure.calls(r"/services/digits-flaky$", "GET")
    throttled = next(i for i, c in enumerate(reads) if c["status"] == 429)
    waited = reads[throttled + 1]["t"] - reads[throttled]["t"]
    assert waited >= retry_after, f"retried {waited:.2f}s after a 429 with Retry-After: {retry_after}"
    quiet = [c for c in azure.emu.calls() if reads[throttled]["t"] < c["t"] < reads[throttled]["t"] + retry_after]
    assert [c for c in quiet if c["method"] != "CONNECT" and "/api/v1/service/" not in c["path"]] == []
    assert [c["status"] for c in azure.calls(r"/services$", "POST")][-3:] == [503, 503, 202]
    assert azure.calls(r"/computes/gpu-flaky$", "GET")[0]["status"] == 0  # the reset connection
    azure.delete("digits")
    assert "digits-flaky" not in azure.cloud()[1]
