"""The Azure ML emulator against the real azureml-core 1.61: the GPU guide end to end, GPU capacity, missing
models, and fault injection, with the calls the SDK made checked against a trace of the real SDK's requests.

The SDK runs in subprocesses (``azureml_emulator/sdk_guide.py`` of the dev package) because it reads its cloud
configuration when azureml is imported; the emulator runs on a thread of the test process.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gpu_model_operator_dev import azureml_emulator as emulator_package
from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, Latencies, start_emulator
from tests.polling import wait_for

HERE = Path(__file__).resolve()
EMULATOR_DIR = Path(emulator_package.__file__).parent
GUIDE = EMULATOR_DIR / "sdk_guide.py"
REFERENCE = EMULATOR_DIR / "reference" / "azureml-core-1.61-gpu-workflow-requests.jsonl"
SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
CLIENT_ID, CLIENT_SECRET = "gpu-operator", "not-a-secret"

pytestmark = pytest.mark.timeout(180)


def fast_config(**latencies: float) -> EmulatorConfig:
    """Operations settle at the first poll unless a test asks otherwise (the SDK polls every 5 s)."""
    zero = dict.fromkeys(
        (
            "compute_create_s",
            "compute_update_s",
            "compute_delete_s",
            "service_create_s",
            "service_update_s",
            "service_delete_s",
        ),
        0.0,
    )
    zero.update(latencies)
    return EmulatorConfig(latencies=Latencies(**zero), credentials={CLIENT_ID: CLIENT_SECRET})


def run_guide(emu: Emulator, scenario: str, workdir: Path, *args: str, **env: str) -> dict[str, Any]:
    """Run a scenario of the guide with the real SDK in a fresh process pointed at ``emu``, with the SDK's own retry
    defaults: a test that imported the operator's azureml backend in this process switched them off in its
    environment (the backend's ``sdk.SDK_SETTINGS``), which a child would otherwise inherit."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AZUREML_DEFAULT_")}
    environ = emu.client_env(inherited)
    environ.update(HOME=str(workdir), AZUREML_LOG_DEPRECATION_WARNING_ENABLED="False", **env)
    proc = subprocess.run(
        [sys.executable, str(GUIDE), scenario, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *args],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, f"{scenario} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


_TEMPLATE_RULES = [
    (r"^/azureml/ExperimentRun/.+$", "/azureml/ExperimentRun/{blob}"),
    (r"/batch/metadata/.+$", "/batch/metadata/{origin}/{container}"),
    (r"/subscriptions/[^/]+", "/subscriptions/{sub}"),
    (r"/resourceGroups/[^/]+", "/resourceGroups/{rg}"),
    (r"/workspaces/(?!subscriptions/)[^/]+", "/workspaces/{ws}"),
    (r"/(computes|locations|computeOperationsStatus|models|operations)/[^/]+", r"/\1/{id}"),
    (r"/services/validate/name/[^/]+", "/services/validate/name/{id}"),
    (r"/services/(?!validate)[^/]+", "/services/{id}"),
]


def call_key(call: dict[str, Any]) -> tuple[str, str, str]:
    """(method, host kind, path template) of a recorded call: what must match the reference trace."""
    host = str(call["host"])
    kind = "proxy" if call["method"] == "CONNECT" else ("blob" if ".blob." in host else "azure")
    path = str(call["path"])
    for pattern, replacement in _TEMPLATE_RULES:
        path = re.sub(pattern, replacement, path)
    return str(call["method"]), kind, path


@pytest.fixture()
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with start_emulator(tmp_path / "emulator", fast_config()) as emu:
        yield emu


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The guide once, with compute creation and deployment taking a poll each, and one throttled list call."""
    workdir = tmp_path_factory.mktemp("workflow")
    with start_emulator(workdir / "emulator", fast_config(compute_create_s=1, service_create_s=1)) as emu:
        attach_id = emu.seed(
            aks_clusters=[
                {"resource_group": RG, "name": "existing-aks", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 3}
            ]
        )["aks_clusters"][0]
        emu.add_fault(action="status", status=429, retry_after=7, method="GET", path=r"/services$", times=1)
        # The SDK ignores Retry-After and backs off AZUREML_DEFAULT_BACKOFF seconds (32 by default) on 429.
        result = run_guide(emu, "workflow", workdir, "--attach-resource-id", attach_id, AZUREML_DEFAULT_BACKOFF="0")
        yield result, emu.calls()


def test_guide_workflow_runs_on_the_real_sdk(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    result, _ = workflow
    assert result["workspace"] == {"name": WS, "location": "eastus"}
    assert result["compute_state_after_create"] == "Creating"
    assert result["compute"] == {
        "state": "Succeeded",
        "vm_size": "Standard_NC4as_T4_v3",
        "agents": 2,
        "type": "AksCompute",
    }
    assert result["attached"] == {"state": "Succeeded", "is_attached": True}
    assert result["model"] == {"id": "tf-dnn-mnist:1", "version": 1, "latest": "tf-dnn-mnist:1"}
    assert result["state_after_deploy_call"] == "Transitioning"
    deployed = result["deployed"]
    assert (deployed["state"], deployed["replicas"], deployed["gpu"]) == ("Healthy", 1, 1)
    assert deployed["scoring_uri"].endswith("/api/v1/service/aks-dnn-mnist/score")
    assert result["scoring"] == {
        "status": 200,
        "json": {"data": [[0.0] * 4]},
        "without_key": 401,
        "health": 200,
        "keys_differ": True,
    }
    assert result["run"] == {"data": [[0.0] * 4]}
    assert result["updated"] == {"state": "Healthy", "replicas": 2}
    assert result["listed"] == ["aks-dnn-mnist"]
    assert "WebserviceNotFound" in result["service_gone"]["message"]
    assert "ComputeTargetNotFound" in result["compute_gone"]["message"]


def test_every_call_of_the_reference_trace_is_served(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, calls = workflow
    served: dict[tuple[str, str, str], set[int]] = {}
    for call in calls:
        served.setdefault(call_key(call), set()).add(int(call["status"]))
    reference = [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]
    expected = {call_key(r) for r in reference if 200 <= int(r["status"]) < 300}
    assert len(expected) >= 25
    missing = sorted(k for k in expected if not any(200 <= s < 300 for s in served.get(k, ())))
    assert not missing, f"reference calls not answered 2xx by the emulator: {missing}"
    # Where the real SDK met a 404 (lookups before create and after delete), the emulator answers 404 too.
    not_found = {call_key(r) for r in reference if int(r["status"]) == 404}
    assert not_found and all(404 in served.get(k, ()) for k in not_found), not_found
    # Nothing tried to leave for a real host through the proxy.
    assert all(c["status"] == 200 for c in calls if c["method"] == "CONNECT")


def test_sdk_retries_a_throttled_call(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, calls = workflow
    listed = [c["status"] for c in calls if c["method"] == "GET" and c["path"].endswith("/services")]
    assert listed == [429, 200]


def test_gpu_capacity_is_enforced(emulator: Emulator, tmp_path: Path) -> None:
    emulator.seed(
        computes=[{"name": "gpu2", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 2}], models=[{"name": "digits"}]
    )
    result = run_guide(emulator, "capacity", tmp_path, "--compute", "gpu2", "--model", "digits")
    assert result["cluster"] == {"vm_size": "Standard_NC4as_T4_v3", "agents": 2}
    for case in ("three_replicas", "scale_to_three", "neighbour"):
        error = result[case]
        assert error is not None and error["type"] == "WebserviceException", case
        assert "Insufficient nvidia.com/gpu" in error["message"], case
    assert "1 of 3 replica(s) x 1 GPU could not be placed on one node each" in result["three_replicas"]["message"]
    assert "2 held by other pods" in result["neighbour"]["message"]
    assert result["three_replicas_state"] == "Failed"
    assert result["two_replicas_state"] == "Healthy"
    assert result["after_failed_scale"] == {"state": "Healthy", "replicas": 2}


def test_gpus_are_scheduled_node_by_node_and_rollouts_need_room(emulator: Emulator, tmp_path: Path) -> None:
    """AKS places each replica on one node with its GPUs free (least allocated first), and a rolling update of
    fewer than 4 replicas starts its new one beside the old ones (Kubernetes' RollingUpdate defaults)."""
    emulator.seed(
        computes=[{"name": "a100x2", "vm_size": "Standard_NC48ads_A100_v4", "agent_count": 2}],
        models=[{"name": "digits"}],
    )
    result = run_guide(emulator, "per-node", tmp_path, "--compute", "a100x2", "--model", "digits")
    assert result["fragmented"] is not None, "a 2-GPU replica must not fit on two half-full 2-GPU nodes"
    assert "0/2 nodes are available: 2 Insufficient nvidia.com/gpu" in result["fragmented"]["message"]
    assert result["rollout_on_full_cluster"] is not None
    assert "the rolling update's new replica(s)" in result["rollout_on_full_cluster"]["message"]
    assert result["after_failed_rollout"] == "Healthy", "a failed update leaves the old replicas serving"
    assert result["rollout_with_room"] is None


def test_missing_model_raises_the_sdk_not_found_error(emulator: Emulator, tmp_path: Path) -> None:
    # A GUID tenant, as in a real secret: MSAL's instance discovery is answered by the emulator via the proxy.
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    result = run_guide(emulator, "missing-model", tmp_path, "--tenant", tenant)
    for case in ("by_name", "by_id"):
        assert result[case]["type"] == result["not_found_type"] == "WebserviceException"
        assert "Message: ModelNotFound: Model with" in result[case]["message"]
    assert "id missing:1" in result["by_id"]["message"]
    calls = emulator.calls()
    statuses = {c["path"].rsplit("/", 1)[-1]: c["status"] for c in calls if "/models" in c["path"]}
    assert statuses == {"models": 200, "missing:1": 404}
    assert ("CONNECT", "login.microsoftonline.com:443", 200) in {(c["method"], c["host"], c["status"]) for c in calls}
    assert any(c["path"] == f"/{tenant}/oauth2/v2.0/token" and c["status"] == 200 for c in calls)


def token(emu: Emulator) -> dict[str, str]:
    resp = requests.post(
        f"{emu.base_url}/adfs/oauth2/token",
        verify=str(emu.ca_file),
        timeout=10,
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://management.azure.com//.default",
        },
    )
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def ws_url(emu: Emulator, suffix: str = "") -> str:
    """An ARM address of the workspace (or below it) with the api-version azureml-core sends for it: ARM refuses a
    request without one (MissingApiVersionParameter)."""
    version = "2020-02-02" if suffix.startswith("/computes") else "2022-05-01"
    return (
        f"{emu.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WS}{suffix}?api-version={version}"
    )


def test_injected_429_carries_retry_after(emulator: Emulator) -> None:
    emulator.add_fault(action="status", status=429, retry_after=3, method="GET", path=rf"/workspaces/{WS}$", times=1)
    first = requests.get(ws_url(emulator), verify=str(emulator.ca_file), timeout=10)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "3"
    assert first.json()["error"]["code"] == "TooManyRequests"
    second = requests.get(ws_url(emulator), verify=str(emulator.ca_file), timeout=10, headers=token(emulator))
    assert second.status_code == 200
    assert [c["status"] for c in emulator.calls() if c["path"].endswith(f"/workspaces/{WS}")] == [429, 200]


def test_other_faults_and_bad_credentials(emulator: Emulator) -> None:
    auth = token(emulator)
    ca = str(emulator.ca_file)
    emulator.add_fault(action="reset", path="/computes", times=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(ws_url(emulator, "/computes"), verify=ca, headers=auth, timeout=10)
    resets = [c for c in emulator.calls() if c.get("fault") == "reset"]
    assert [(c["path"].rsplit("/", 1)[-1], c["status"]) for c in resets] == [("computes", 0)]
    emulator.add_fault(action="delay", delay_s=0.5, path="/computes", times=1)
    started = time.monotonic()
    assert requests.get(ws_url(emulator, "/computes"), verify=ca, headers=auth, timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.5

    body: dict[str, Any] = {
        "location": "eastus",
        "properties": {
            "computeType": "AKS",
            "properties": {"agentCount": 1, "agentVmSize": "Standard_NC4as_T4_v3", "clusterPurpose": "DevTest"},
        },
    }
    emulator.add_fault(action="compute_quota", name="^quota$", sync=True)
    quota = requests.put(ws_url(emulator, "/computes/quota"), json=body, verify=ca, headers=auth, timeout=10)
    assert quota.status_code == 400 and quota.json()["error"]["code"] == "QuotaExceeded"
    emulator.add_fault(action="compute_stuck", name="^stuck$")
    stuck = requests.put(ws_url(emulator, "/computes/stuck"), json=body, verify=ca, headers=auth, timeout=10)
    assert stuck.status_code == 201
    status = requests.get(stuck.headers["Azure-AsyncOperation"], verify=ca, headers=auth, timeout=10).json()
    assert status["status"] == "InProgress"
    got = requests.get(
        f"{emulator.base_url}/rp/workspaces"
        + ws_url(emulator, "/computes/stuck")[len(emulator.base_url) :].split("?")[0],
        verify=ca,
        headers=auth,
        params={"api-version": "2020-02-02"},
        timeout=10,
    )
    assert got.json()["properties"]["provisioningState"] == "Creating"

    bad = requests.post(
        f"{emulator.base_url}/adfs/oauth2/token",
        verify=ca,
        timeout=10,
        data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "nope"},
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    forged = requests.get(ws_url(emulator), verify=ca, headers={"Authorization": "Bearer a.b.c"}, timeout=10)
    assert forged.status_code == 401


@dataclass(frozen=True)
class AksCase:
    """A create (``cluster`` None) or an attach of a seeded cluster, and Azure ML's answer: the PUT's status, then
    the operation's status or the refusal's text."""

    purpose: str | None
    vm_size: str
    nodes: int
    put_status: int
    outcome: str
    kubernetes_version: str | None = None


AKS_CASES: dict[str, AksCase] = {
    # Production clusters need 3 nodes whatever their size (azureml_emulator/aks.py has the sources).
    "create: one A100 node is too small for FastProd": AksCase("FastProd", "Standard_NC24ads_A100_v4", 1, 400,
                                                               "must have at least 3 nodes; it has 1"),
    "create: one T4 node is a DevTest cluster": AksCase("DevTest", "Standard_NC4as_T4_v3", 1, 201, "Succeeded"),
    "attach: two nodes without a purpose are a production cluster, too small": AksCase(
        None, "Standard_NC4as_T4_v3", 2, 400, "'FastProd' must have at least 3 nodes"
    ),
    "attach: two nodes for DevTest": AksCase("DevTest", "Standard_NC4as_T4_v3", 2, 201, "Succeeded"),
    "attach: a Kubernetes version AKS no longer supports": AksCase(
        "DevTest", "Standard_NC4as_T4_v3", 2, 201, "UnsupportedKubernetesVersion", kubernetes_version="1.29.9"
    ),
    "attach: a supported Kubernetes version": AksCase(
        None, "Standard_NC4as_T4_v3", 3, 201, "Succeeded", kubernetes_version="1.35.1"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", AKS_CASES)
def test_aks_create_and_attach_follow_the_legacy_rules(emulator: Emulator, case: str) -> None:
    c = AKS_CASES[case]
    auth, ca = token(emulator), str(emulator.ca_file)
    emulator.configure(aks_supported_versions=["1.33", "1.34", "1.35"])
    inner: dict[str, Any] = {"clusterPurpose": c.purpose} if c.purpose else {}
    if case.startswith("attach"):
        cluster = {"resource_group": RG, "name": "their-aks", "vm_size": c.vm_size, "agent_count": c.nodes,
                   "kubernetes_version": c.kubernetes_version}  # fmt: skip
        properties: dict[str, Any] = {"resourceId": emulator.seed(aks_clusters=[cluster])["aks_clusters"][0]}
    else:
        properties, inner = {}, {**inner, "agentCount": c.nodes, "agentVmSize": c.vm_size}
    body: dict[str, Any] = {
        "location": "eastus",
        "properties": {"computeType": "AKS", **properties, "properties": inner},
    }
    answer = requests.put(ws_url(emulator, "/computes/aks-1a"), json=body, verify=ca, headers=auth, timeout=10)
    assert answer.status_code == c.put_status, answer.text
    if c.put_status == 400:
        assert c.outcome in answer.json()["error"]["message"]
        return
    url = answer.headers["Azure-AsyncOperation"]

    def ended() -> dict[str, Any] | None:
        found: dict[str, Any] = requests.get(url, verify=ca, headers=auth, timeout=10).json()
        return found if found["status"] != "InProgress" else None

    status = wait_for("the compute operation to end", ended, timeout=10, every=0.05)
    assert (status.get("error") or {}).get("code", status["status"]) == c.outcome
    if c.outcome == "UnsupportedKubernetesVersion":
        assert "Supported versions: 1.35, 1.34, 1.33" in status["error"]["message"]


def deploy_over_http(emu: Emulator, auth: dict[str, str], name: str) -> requests.Response:
    """A minimal AKS service create, as MMS receives it, on a seeded 1-GPU compute and model."""
    emu.seed(computes=[{"name": "gpu1", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 1}], models=[{"name": "m"}])
    body: dict[str, Any] = {
        "name": name,
        "computeType": "AKS",
        "computeName": "gpu1",
        "numReplicas": 1,
        "containerResourceRequirements": {"cpu": 1, "memoryInGB": 1, "gpu": 1},
        "environmentImageRequest": {"modelIds": ["m:1"]},
    }
    return requests.post(
        ws_url(emu, "/services").split("?")[0].replace("/subscriptions/", "/modelmanagement/v1.0/subscriptions/"),
        json=body,
        headers=auth,
        verify=str(emu.ca_file),
        timeout=10,
    )


def test_injected_operation_outcome_and_scoring_hooks(emulator: Emulator) -> None:
    auth = token(emulator)
    ca = str(emulator.ca_file)
    emulator.add_fault(
        action="operation_failed",
        target="service",
        name="^doomed$",
        op_state="TimedOut",
        code="DeploymentTimedOut",
        message="Deployment timed out",
        times=1,  # the create times out; the delete after it succeeds
    )
    created = deploy_over_http(emulator, auth, "doomed")
    assert created.status_code == 202
    operation = requests.get(created.headers["Operation-Location"], headers=auth, verify=ca, timeout=10).json()
    assert (operation["state"], operation["error"]["code"]) == ("TimedOut", "DeploymentTimedOut")

    deleting = requests.delete(
        created.headers["Operation-Location"].split("/operations/")[0] + "/services/doomed",
        headers=auth,
        verify=ca,
        timeout=10,
    )
    assert deleting.status_code == 202
    # Its pods hold the only GPU until the delete operation ends, as on AKS.
    wait_for(
        "the delete of doomed to finish",
        lambda: (
            requests.get(deleting.headers["Operation-Location"], headers=auth, verify=ca, timeout=10).json()["state"]
            == "Succeeded"
        ),
        timeout=60,
        every=0.1,
    )
    created = deploy_over_http(emulator, auth, "echo")
    service = requests.get(
        created.headers["Operation-Location"].split("/operations/")[0] + "/services/echo",
        headers=auth,
        verify=ca,
        timeout=10,
    ).json()
    assert service["state"] == "Healthy"
    keys = requests.post(
        created.headers["Operation-Location"].split("/operations/")[0] + "/services/echo/listkeys",
        headers=auth,
        verify=ca,
        timeout=10,
    ).json()
    score = {"Authorization": f"Bearer {keys['secondaryKey']}"}
    assert requests.post(service["scoringUri"], json=[1], headers=score, verify=ca, timeout=10).json() == [1]
    emulator.set_scoring("echo", response={"label": 7})
    assert requests.post(service["scoringUri"], json=[1], headers=score, verify=ca, timeout=10).json() == {"label": 7}

    class Backend(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.dumps({"forwarded": json.loads(body), "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        emulator.set_scoring("echo", backend_url=f"http://127.0.0.1:{backend.server_address[1]}/score")
        forwarded = requests.post(service["scoringUri"], json=[2], headers=score, verify=ca, timeout=10)
        assert forwarded.json() == {"forwarded": [2], "path": "/score"}
    finally:
        backend.shutdown()
        backend.server_close()


def test_proxy_refuses_hosts_outside_the_emulator(emulator: Emulator) -> None:
    host, port = emulator.proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"CONNECT management.azure.com:443 HTTP/1.1\r\nHost: management.azure.com\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 403")
    assert emulator.calls()[-1] == {
        **emulator.calls()[-1],
        "method": "CONNECT",
        "host": "management.azure.com:443",
        "status": 403,
    }


def test_standalone_emulator_prints_its_environment(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_model_operator_dev.azureml_emulator", "--port", "0", "--state-dir", str(tmp_path)],
        cwd=HERE.parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = info["env"]
        for name in (
            "ARM_CLOUD_METADATA_URL",
            "AZUREML_CURRENT_CLOUD",
            "AZURE_CONFIG_DIR",
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "HTTPS_PROXY",
            "NO_PROXY",
        ):
            assert env[name], name
        clouds = requests.get(env["ARM_CLOUD_METADATA_URL"], verify=info["ca_bundle"], timeout=10).json()
        assert clouds[0]["resourceManager"] == info["base_url"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
