"""The azureml-v2 end-to-end harness: the emulator's v2 surface, the operator pointed at it with
``--backend azureml-v2``, and GpuModelDeployments driven by kubectl (the :class:`Azure` helpers of the v1 harness
with a v2 ``apply``), plus what the tests do as Azure users would: score through the proxy, call ARM with a token.

Each module gets its own emulator and operator (module scope), as in the v1 harness.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, start_emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, SECRET, SUBSCRIPTION, WORKSPACE, Azure
from tests.e2e.harness import ROOT, wait_for

T4 = "Standard_NC4as_T4_v3"
#: Fast enough for a short module, slow enough that each operation is seen in flight (Creating, Updating).
LATENCIES = {
    "endpoint_create_s": 0.5,
    "endpoint_update_s": 0.3,
    "endpoint_delete_s": 0.3,
    "deployment_create_s": 1.0,
    "deployment_update_s": 0.5,
    "deployment_delete_s": 0.3,
    "keys_regenerate_s": 0.2,
}
#: A cluster attached as Kubernetes compute "k8s": a node with two GPUs and one with one, a two-GPU instance type.
GPU2 = {
    "nodeSelector": None,
    "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": 2}, "limits": {"cpu": "2", "nvidia.com/gpu": 2}},
}
KUBE_COMPUTE = {
    "resource_group": RESOURCE_GROUP,
    "name": "aks-gpu",
    "compute": "k8s",
    "nodes": [{"name": "node-0", "gpus": 2}, {"name": "node-1", "gpus": 1}],
    "instance_types": {"gpu2": GPU2},
}
ARM_PATH = r"/subscriptions/.*/(onlineEndpoints|computes|usages|vmSizes|models|environments|codes)"


def start_v2_emulator(state_dir: Path) -> Any:
    """An emulator with the v2 models, latencies and an attached Kubernetes compute, as a context manager."""
    return start_emulator(state_dir, EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET}))


def prepare(emu: Emulator) -> None:
    emu.v2.configure(latencies=LATENCIES, retry_after_s=1)
    emu.v2.seed(models=[{"name": "digits", "version": "1"}, {"name": "digits", "version": "2"}])
    emu.v2.seed(kubernetes_computes=[KUBE_COMPUTE])


@pytest.fixture(scope="module")
def v2_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with start_v2_emulator(tmp_path_factory.mktemp("emulator")) as emulator:
        prepare(emulator)
        yield emulator


def run_v2_operator(
    control_plane: Any,
    emu: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    resync: float = 5,
    env: dict[str, str] | None = None,
) -> Iterator[OperatorProcess]:
    """The operator with only the azureml-v2 backend, polling every second; a module fixture yields from it."""
    logs = tmp_path_factory.mktemp("logs")
    environ = {**emu.client_env_v2(), "HOME": str(tmp_path_factory.mktemp("home")), **(env or {})}
    args = ["--backend", "azureml-v2", "--all-namespaces", "--poll-seconds", "1", "--resync-seconds", str(resync)]
    with OperatorProcess(
        control_plane.kubeconfig, [], logs / "state", logs / "operator.log", extra_args=args, env=environ
    ) as op:
        yield op
        clean_up(control_plane)


def clean_up(cp: Any) -> None:
    """A safety net for a failed test: no azureml-v2 resource of the emulated workspace outlives its module's
    operator (deleted through it, finalizers dropped if stuck). Resources naming other workspaces (the CRD tests'
    examples) cannot be deleted by any operator here, and are not this harness's."""

    def ours(item: dict[str, Any]) -> bool:
        ws = item["spec"].get("workspace") or {}
        return item["spec"]["backend"] == "azureml-v2" and ws.get("subscriptionId") == SUBSCRIPTION

    def left() -> list[tuple[str, str]]:
        items = json.loads(cp.kubectl("get", "gmd", "-A", "-o", "json").stdout)["items"]
        return [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items if ours(i)]

    for ns, name in left():
        cp.kubectl("delete", "gmd", name, "-n", ns, "--wait=false", check=False)
    deadline = time.monotonic() + 30
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    for ns, name in left():
        patch = json.dumps({"metadata": {"finalizers": None}})
        cp.kubectl("patch", "gmd", name, "-n", ns, "--type=merge", "-p", patch, check=False)


def managed(instance_type: str = T4) -> dict[str, Any]:
    return {"managed": {"instanceType": instance_type}}


def kubernetes(instance_type: str = "gpu2", node_gpus: tuple[int, ...] = (2, 1)) -> dict[str, Any]:
    return {"kubernetes": {"computeName": "k8s", "instanceType": instance_type, "nodeGpus": list(node_gpus)}}


class AzureV2(Azure):
    """GpuModelDeployments of backend azureml-v2 in one namespace, and the emulated cloud beside them."""

    def apply(  # type: ignore[override]
        self,
        name: str,
        endpoint: str,
        compute: dict[str, Any] | None = None,
        replicas: int = 1,
        version: int = 1,
        annotations: dict[str, str] | None = None,
        workspace: dict[str, Any] | None = None,
        gpu_cores: int = 1,
        deletion_policy: str = "Delete",
        rollout: dict[str, Any] | None = None,
    ) -> None:
        """The azureml-v2 example (kustomize: the digits-source ConfigMap and the resource), pointed at the emulator;
        ``rollout``: spec.rollout (canary steps, mirroring), without the example's probe request."""
        docs = list(
            yaml.safe_load_all(self.cp.kubectl("kustomize", str(ROOT / "manifests/examples/azureml-v2")).stdout)
        )
        for doc in docs:
            if doc["kind"] == "GpuModelDeployment":
                doc["metadata"]["name"] = name
                doc["metadata"]["annotations"] = annotations or {}
                spec = doc["spec"]
                spec["workspace"] = workspace or {
                    "subscriptionId": SUBSCRIPTION,
                    "resourceGroup": RESOURCE_GROUP,
                    "name": WORKSPACE,
                    "credentialsSecretRef": {"name": SECRET},
                }
                spec["compute"] = {**(compute or managed()), "deletionPolicy": deletion_policy}
                spec["model"] = {"name": "digits", "version": version}
                spec["service"].update(name=endpoint, replicas=replicas, gpuCores=gpu_cores)
                spec.pop("rollout", None)  # the emulator echoes: any request body answers
                if rollout is not None:
                    spec["rollout"] = rollout
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def endpoint(self, name: str) -> dict[str, Any] | None:
        """The endpoint as the emulated cloud holds it, with its deployments."""
        state = self.emu.v2.summary()
        found = next((e for e in state["endpoints"] if e["name"] == name), None)
        if found is not None:
            found["deployments"] = {d["name"]: d for d in state["deployments"] if d["endpoint"] == name}
        return found

    def wait_endpoint_gone(self, name: str, timeout: float = 30) -> None:
        wait_for(f"endpoint {name} deleted", lambda: self.endpoint(name) is None, timeout)

    def score(self, name: str, deployment: str | None = None, key: str | None = None) -> requests.Response:
        """A client's request with the URI and key from the Secret (through the emulator's proxy for managed
        scoring hosts, as a client on the internet reaches Azure)."""
        keys = self.keys(name)
        headers = {"Authorization": f"Bearer {key or keys['primaryKey']}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return requests.post(
            keys["scoringUri"],
            json={"data": [[0.0, 1.0]]},
            headers=headers,
            proxies={"https": self.emu.proxy_url},
            verify=str(self.emu.ca_file),
            timeout=30,
        )

    def writes(self, path: str, method: str, status: int | None = None) -> int:
        """Requests of ``method`` to a path matching ``path`` (answered ``status``, if given) since the calls log
        was last cleared."""
        return sum(
            1
            for c in self.emu.calls()
            if c["method"] == method and re.search(path, c["path"]) and status in (None, c["status"])
        )


@pytest.fixture
def v2(control_plane: Any, namespace: str, v2_emu: Emulator, v2_operator: OperatorProcess) -> AzureV2:
    """GpuModelDeployments of one namespace on the module's operator (each module defines ``v2_operator``)."""
    v2_emu.clear_faults()
    v2_emu.v2.clear_faults()
    deployments = AzureV2(control_plane, namespace, v2_emu, v2_operator)
    deployments.secret()
    return deployments


def arm_token(emu: Emulator) -> str:
    """A management token for the service principal, as ``az`` would get one (for calls made "in Azure")."""
    tenant = emu.state.config.tenant_id if emu.state else "adfs"
    answer = requests.post(
        f"{emu.base_url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://management.azure.com/.default",
        },
        verify=str(emu.ca_file),
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def arm_call(emu: Emulator, method: str, path: str, body: Any = None) -> requests.Response:
    """One ARM request to the workspace (``path`` below it), as another tool or a person in the portal makes it."""
    base = (
        f"{emu.base_url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
    )
    return requests.request(
        method,
        base + path,
        json=body,
        params={"api-version": "2023-04-01-preview"},
        headers={"Authorization": f"Bearer {arm_token(emu)}"},
        verify=str(emu.ca_file),
        timeout=10,
    )


def requests_counted(emu: Emulator, endpoint: str, deployment: str) -> dict[str, int]:
    """What Azure Monitor counted of the deployment's requests in the last ten minutes, by status code, as a person
    reads it with ``az monitor metrics list`` (the Metrics List route, with a management token)."""
    path = (
        f"{emu.base_url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}/onlineEndpoints/{endpoint}/providers/"
        "Microsoft.Insights/metrics"
    )
    now = time.time()
    span = "/".join(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (now - 600, now + 60))
    query = {
        "api-version": "2023-10-01",
        "metricnames": "RequestsPerMinute",
        "timespan": span,
        "aggregation": "Average",
        "$filter": f"deployment eq '{deployment}' and statusCode eq '*'",
    }
    answer = requests.get(
        path, params=query, headers={"Authorization": f"Bearer {arm_token(emu)}"}, verify=str(emu.ca_file), timeout=10
    )
    answer.raise_for_status()
    (metric,) = answer.json()["value"]
    counted: dict[str, int] = {}
    for series in metric["timeseries"]:
        code = next(m["value"] for m in series["metadatavalues"] if m["name"]["value"].lower() == "statuscode")
        counted[code] = round(sum(p.get("average", 0) for p in series["data"]))
    return counted
