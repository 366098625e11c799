"""The azureml end-to-end harness: the emulator, the operator pointed at it, and deployments driven by kubectl.

Shared by the azureml end-to-end modules; each module gets its own emulator and operator (module scope).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, Latencies, start_emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.harness import ROOT, wait_for

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "RESOURCE_GROUP",
    "ROOT",
    "SECRET",
    "SUBSCRIPTION",
    "TENANT",
    "WORKSPACE",
    "Azure",
    "azure",
    "azure_operator",
    "clean_up",
    "emu",
    "no_faults",
    "provision",
    "run_operator",
]

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


def run_operator(
    control_plane: Any,
    emu: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    resync: float = 5,
    extra: tuple[str, ...] = (),
) -> Iterator[OperatorProcess]:
    """The operator pointed at the emulator, polling every second; a module fixture yields from it."""
    logs = tmp_path_factory.mktemp("logs")
    env = {**emu.client_env(), "HOME": str(tmp_path_factory.mktemp("home"))}
    args = ["--all-namespaces", "--poll-seconds", "1", "--resync-seconds", str(resync), *extra]
    with OperatorProcess(
        control_plane.kubeconfig, [], logs / "state", logs / "operator.log", extra_args=args, env=env
    ) as op:
        yield op
        clean_up(control_plane)


@pytest.fixture(scope="module")
def azure_operator(
    control_plane: Any, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_operator(control_plane, emu, tmp_path_factory)


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


@pytest.fixture
def no_faults(emu: Emulator) -> Iterator[None]:
    emu.clear_faults()
    yield
    emu.clear_faults()


class Azure:
    """GpuModelDeployments of one namespace, driven through kubectl, and the emulated cloud beside them."""

    def __init__(self, cp: ControlPlane, ns: str, emu: Emulator, operator: OperatorProcess) -> None:
        self.cp, self.ns, self.emu, self.operator = cp, ns, emu, operator

    def secret(self, client_secret: str = CLIENT_SECRET) -> None:
        data = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": client_secret}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": data}
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(body))

    def apply(
        self,
        name: str,
        service: str,
        compute: dict[str, Any],
        replicas: int = 1,
        model: str = "digits",
        annotations: dict[str, str] | None = None,
        gpu_cores: int = 1,
        resource_group: str = RESOURCE_GROUP,
    ) -> None:
        """The azureml example (kustomize: the digits-source ConfigMap and the resource), pointed at the emulator."""
        docs = list(yaml.safe_load_all(self.cp.kubectl("kustomize", str(ROOT / "manifests/examples/azureml")).stdout))
        for doc in docs:
            if doc["kind"] == "GpuModelDeployment":
                doc["metadata"]["name"] = name
                doc["metadata"]["annotations"] = annotations or {}
                spec = doc["spec"]
                spec["workspace"].update(subscriptionId=SUBSCRIPTION, resourceGroup=resource_group, name=WORKSPACE)
                spec["workspace"]["credentialsSecretRef"]["name"] = SECRET
                spec["compute"] = compute
                spec["model"] = {"name": model, "version": 1}
                spec["service"].update(name=service, replicas=replicas, gpuCores=gpu_cores)
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def get(self, name: str) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "gmd", name, "-n", self.ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any]:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_ready(self, name: str, timeout: float = 90) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            obj = self.get(name)
            cond: dict[str, Any] = next(
                (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
            )
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
def azure(control_plane: Any, namespace: str, emu: Emulator, azure_operator: OperatorProcess, no_faults: None) -> Azure:
    deployments = Azure(control_plane, namespace, emu, azure_operator)
    deployments.secret()
    return deployments


def provision(name: str, agents: int = 2) -> dict[str, Any]:
    """A cluster of ``agents`` one-GPU nodes; DevTest, as FastProd needs 12 vCPUs (3 of these nodes)."""
    size = {"vmSize": "Standard_NC4as_T4_v3", "agentCount": agents, "clusterPurpose": "DevTest"}
    return {"name": name, "provision": size, "deletionPolicy": "Delete"}
