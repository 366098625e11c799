"""What the azureml-v2 backend's calls (``backends/azureml_v2/arm.py``) send, request by request, against the Azure ML
emulator with its trace recording: the plain ARM requests of the shared ARM client go to the paths, with the
api-versions and the bodies that azure-ai-ml 1.35's generated operations sent for the same calls (recorded from
them before they were replaced), and what azure-ai-ml's public operations send is unchanged.

The one departure is the code version, which azure-ai-ml makes only through a private member: it is made as the REST
reference describes it (a pending upload, the script put in its blob container, the version's PUT naming the
folder), without the SDK's own content-hash properties and lookup.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.azureml_v2 import bodies
from gpu_model_operator.backends.base import DeploymentInputs, TransientBackendError
from gpu_model_operator.models import AzureMLV2Spec, parse_spec
from gpu_model_operator_dev.azureml_emulator import Emulator, EmulatorConfig, start_emulator
from gpu_model_operator_dev.azureml_emulator.v2.reference import configure_fast
from tests import polling
from tests.e2e.azure_harness import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, SUBSCRIPTION, TENANT, WORKSPACE

pytestmark = pytest.mark.timeout(180)

WS_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices"
WS_ID += f"/workspaces/{WORKSPACE}"
OWNER = "ns/r/uid"
OURS = {"managed-by": "gpu-model-operator", "gpumodel-owner": OWNER}
KUBE = {
    "resource_group": RESOURCE_GROUP,
    "name": "aks-arm",
    "compute": "k8s-arm",
    "nodes": [{"name": "node-0", "gpus": 1}],
    "instance_types": {"gpu1": {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}},
}
ENDPOINT = {"location": "eastus", "tags": OURS, "kind": "Managed", "identity": {"type": "SystemAssigned"}}
ENDPOINT["properties"] = {"authMode": "Key", "traffic": {}}
ENV_ID, CODE_ID = f"{WS_ID}/environments/ep1-env/versions/e1", f"{WS_ID}/codes/ep1-code/versions/c1"
MODEL_ID = f"{WS_ID}/models/digits/versions/1"
DEPLOYMENT = {
    "location": "eastus",
    "tags": {"managed-by": "gpu-model-operator", "gpumodel-fingerprint": "fp"},
    "sku": {"name": "Default", "capacity": 1},
    "properties": {
        "endpointComputeType": "Managed",
        "instanceType": "Standard_NC4as_T4_v3",
        "model": MODEL_ID,
        "environmentId": ENV_ID,
        "codeConfiguration": {"codeId": CODE_ID, "scoringScript": "score.py"},
        "requestSettings": {"requestTimeout": "PT60S"},
    },
}
#: The endpoint as the emulator answers it at the api-version the backend reads it with (2022-02-01-preview has no
#: publicNetworkAccess), sent back whole with the new split (``bodies.endpoint_update``).
SHIFTED = {
    **ENDPOINT,
    "properties": {
        "authMode": "Key",
        "properties": {"azureml.onlineendpointid": f"{WS_ID}/onlineEndpoints/ep1"},
        "traffic": {"gmo-a": 100},
        "mirrorTraffic": {},
    },
}
SCRIPT = "def init():\n    pass\n\ndef run(raw):\n    return raw\n"
#: A pending upload's blob container is a fresh uuid each time.
CONTAINER = re.compile(r"(\.blob\.emulator\.test/)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # under the workspace ("onlineEndpoints/ep1"), or under the subscription ("/providers/...")
    api_version: str
    body: Any = None


@dataclass(frozen=True)
class Step:
    call: Callable[[Any, Any], Any]  # (arm module, workspace) -> result
    requests: tuple[Request, ...]
    result: Any
    #: What to wait for after the step, with a deadline (a create finishing), as (what, probe).
    until: Callable[[Any, Any], Any] | None = None


def endpoint_ready(arm: Any, ws: Any) -> bool:
    found = arm.get_endpoint(ws, "ep1")
    return bool(found) and found["properties"]["provisioningState"] == "Succeeded"


def deployment_ready(arm: Any, ws: Any) -> bool:
    return any(d["properties"]["provisioningState"] == "Succeeded" for d in arm.list_deployments(ws, "ep1"))


EP, DEP, COMPUTE, CODES = "2022-02-01-preview", "2023-04-01-preview", "2023-08-01-preview", "2023-04-01"
STEPS: dict[str, Step] = {
    "an endpoint not there reads as None": Step(
        lambda arm, ws: arm.get_endpoint(ws, "ep1"), (Request("GET", "onlineEndpoints/ep1", EP),), None
    ),
    "an endpoint is created": Step(
        lambda arm, ws: arm.put_endpoint(ws, "ep1", ENDPOINT),
        (Request("PUT", "onlineEndpoints/ep1", EP, ENDPOINT),),
        None,
        endpoint_ready,
    ),
    "an endpoint is read": Step(lambda arm, ws: arm.get_endpoint(ws, "ep1")["tags"], (
        Request("GET", "onlineEndpoints/ep1", EP),), OURS),
    "the workspace's endpoints are listed": Step(lambda arm, ws: [e["name"] for e in arm.list_endpoints(ws)], (
        Request("GET", "onlineEndpoints", EP),), ["ep1"]),
    "a model version's id": Step(lambda arm, ws: arm.model_id(ws, "digits", 1), (
        Request("GET", "models/digits/versions/1", "2023-08-01-preview"),), MODEL_ID),
    "a model version not there": Step(lambda arm, ws: arm.model_id(ws, "digits", 9), (
        Request("GET", "models/digits/versions/9", "2023-08-01-preview"),), None),
    "an environment version": Step(
        lambda arm, ws: arm.ensure_environment(ws, "ep1-env", "e1", "mcr.microsoft.com/azureml/base:1", "name: e\n"),
        (Request("PUT", "environments/ep1-env/versions/e1", "2023-04-01-preview", {"properties": {
            "condaFile": "name: e\n", "image": "mcr.microsoft.com/azureml/base:1", "isAnonymous": False,
            "isArchived": False}}),),
        ENV_ID,
    ),
    "a code version is uploaded": Step(
        lambda arm, ws: arm.ensure_code(ws, "ep1-code", "c1", "score.py", SCRIPT),
        (
            Request("GET", "codes/ep1-code/versions/c1", CODES),
            Request("POST", "codes/ep1-code/versions/c1/startPendingUpload", CODES, {
                "pendingUploadType": "TemporaryBlobReference"}),
            Request("PUT", "codes/ep1-code/versions/c1", CODES, {"properties": {
                "codeUri": "https://emuacct.blob.emulator.test/{uuid}/code", "isAnonymous": False}}),
        ),
        CODE_ID,
    ),
    "a code version there is not uploaded again": Step(
        lambda arm, ws: arm.ensure_code(ws, "ep1-code", "c1", "score.py", SCRIPT),
        (Request("GET", "codes/ep1-code/versions/c1", CODES),),
        CODE_ID,
    ),
    "a deployment is created, its operation's status URL returned": Step(
        lambda arm, ws: "/mfeOperationsStatus/" in str(arm.put_deployment(ws, "ep1", "gmo-a", DEPLOYMENT)),
        (Request("PUT", "onlineEndpoints/ep1/deployments/gmo-a", DEP, DEPLOYMENT),),
        True,
        deployment_ready,
    ),
    "an endpoint's deployments are listed": Step(lambda arm, ws: [d["name"] for d in arm.list_deployments(ws, "ep1")],
        (Request("GET", "onlineEndpoints/ep1/deployments", DEP),), ["gmo-a"]),
    "the deployments of an endpoint not there": Step(lambda arm, ws: arm.list_deployments(ws, "nope"),
        (Request("GET", "onlineEndpoints/nope/deployments", DEP),), []),
    "a deployment is scaled, its tags replaced": Step(lambda arm, ws: arm.scale_deployment(ws, "ep1", "gmo-a", 2, {
        "a": "b"}), (Request("PATCH", "onlineEndpoints/ep1/deployments/gmo-a", DEP, {"sku": {"capacity": 2},
        "tags": {"a": "b"}}),), None),
    "a deployment is scaled": Step(lambda arm, ws: arm.scale_deployment(ws, "ep1", "gmo-a", 1),
        (Request("PATCH", "onlineEndpoints/ep1/deployments/gmo-a", DEP, {"sku": {"capacity": 1}}),), None),
    "a deployment's tags alone are replaced (a canary's verdict, before its RollBack)": Step(
        lambda arm, ws: arm.tag_deployment(ws, "ep1", "gmo-a", {"gpumodel-verdict": "failed"}),
        (Request("PATCH", "onlineEndpoints/ep1/deployments/gmo-a", DEP, {"tags": {"gpumodel-verdict": "failed"}}),),
        None,
    ),
    "an endpoint's keys": Step(lambda arm, ws: [bool(k) for k in arm.list_keys(ws, "ep1")],
        (Request("POST", "onlineEndpoints/ep1/listKeys", EP),), [True, True]),
    "a deployment's logs": Step(lambda arm, ws: "Entry script: score.py" in arm.failure_logs(ws, "ep1", "gmo-a"),
        (Request("POST", "onlineEndpoints/ep1/deployments/gmo-a/getLogs", DEP, {"tail": 40}),), True),
    "an attached compute": Step(lambda arm, ws: arm.get_compute(ws, "k8s-arm")["properties"]["computeType"],
        (Request("GET", "computes/k8s-arm", COMPUTE),), "Kubernetes"),
    "a compute not there": Step(lambda arm, ws: arm.get_compute(ws, "nope"),
        (Request("GET", "computes/nope", COMPUTE),), None),
    "the region's VM sizes": Step(lambda arm, ws: arm.vm_families(ws)["standard_nc4as_t4_v3"],
        (Request("GET", "/providers/Microsoft.MachineLearningServices/locations/eastus/vmSizes", COMPUTE),),
        ("standardNCASv3_T4Family", 4)),
    "a family's usage": Step(lambda arm, ws: arm.family_usage(ws, "standardNCASv3_T4Family")[1],
        (Request("GET", "/providers/Microsoft.MachineLearningServices/locations/eastus/usages", COMPUTE),), 24),
    "the traffic is shifted, the endpoint sent back whole": Step(
        lambda arm, ws: arm.put_endpoint(ws, "ep1", bodies.endpoint_update(arm.get_endpoint(ws, "ep1"), OWNER,
                                                                         {"gmo-a": 100})),
        (Request("GET", "onlineEndpoints/ep1", EP), Request("PUT", "onlineEndpoints/ep1", EP, SHIFTED)),
        None,
        endpoint_ready,
    ),
    "a deployment not there is deleted": Step(lambda arm, ws: arm.delete_deployment(ws, "ep1", "gmo-zz"),
        (Request("DELETE", "onlineEndpoints/ep1/deployments/gmo-zz", DEP),), None),
    "an endpoint is deleted": Step(lambda arm, ws: arm.delete_endpoint(ws, "ep1"),
        (Request("DELETE", "onlineEndpoints/ep1", EP),), None,
        lambda arm, ws: arm.get_endpoint(ws, "ep1") is None),
    "an endpoint gone is deleted again": Step(lambda arm, ws: arm.delete_endpoint(ws, "ep1"),
        (Request("DELETE", "onlineEndpoints/ep1", EP),), None),
}  # fmt: skip


def recorded(emu: Emulator) -> tuple[Request, ...]:
    """The ARM requests of the trace (not the sign-in, the cloud metadata or the blob storage)."""
    found = []
    for entry in emu.v2.trace():
        if not entry["path"].startswith("/subscriptions/"):
            continue
        path = entry["path"].removeprefix(WS_ID + "/").removeprefix(f"/subscriptions/{SUBSCRIPTION}")
        body = json.loads(CONTAINER.sub(r"\1{uuid}", json.dumps(entry["body"])))
        found.append(Request(entry["method"], path, entry["query"].get("api-version", ""), body))
    return tuple(found)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    tmp = tmp_path_factory.mktemp("v2-arm")
    with start_emulator(tmp / "emulator", EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET})) as emu:
        configure_fast(emu, record_trace=True)
        emu.v2.seed(models=[{"name": "digits", "version": "1"}], kubernetes_computes=[KUBE])
        saved = dict(os.environ)
        os.environ.update({**emu.client_env_v2(), "HOME": str(tmp / "home")})
        try:
            yield emu
        finally:
            os.environ.clear()
            os.environ.update(saved)


def inputs() -> DeploymentInputs[AzureMLV2Spec]:
    spec = parse_spec(
        {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "name": WORKSPACE,
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": "ep1", "replicas": 1},
        }
    )
    assert isinstance(spec, AzureMLV2Spec)
    credentials = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    return DeploymentInputs("ns", "r", "uid", 1, spec, SCRIPT, "name: e\n", credentials, "fp")


def test_each_call_sends_what_the_sdk_sent(emulator: Emulator, tmp_path: Path) -> None:
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.session import Session

    session = Session(2)
    ws = asyncio.run(session.workspace(inputs()))
    sent: dict[str, tuple[Request, ...]] = {}
    results: dict[str, Any] = {}
    try:
        for name, step in STEPS.items():
            emulator.v2.clear_trace()
            results[name] = step.call(arm, ws)
            sent[name] = recorded(emulator)
            if step.until is not None:
                done = functools.partial(step.until, arm, ws)
                polling.wait_for(f"{name}: done at the emulator", done, timeout=30, every=0.1)
    finally:
        asyncio.run(session.close())
    assert sent == {name: step.requests for name, step in STEPS.items()}
    assert results == {name: step.result for name, step in STEPS.items()}


@dataclass(frozen=True)
class Refusal:
    fault: dict[str, Any]
    error: tuple[str, str, float | None]  # the error's class, its reason, its retry_after


REFUSALS: dict[str, Refusal] = {
    "throttled": Refusal({"status": 429, "retry_after": 7}, ("TransientBackendError", "BackendUnavailable", 7.0)),
    "unavailable": Refusal({"status": 503}, ("TransientBackendError", "BackendUnavailable", None)),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_a_refusal_is_sent_once_and_classified(emulator: Emulator, name: str) -> None:
    """No retry inside the pipeline (azure-core would sleep and send again, inside the pass): one request, and
    Azure's answer (its Retry-After) classified by the shared table; a 429 then pauses the principal's next call
    before anything is sent (a Retry-After past the ARM budget's longest wait is answered at once, not waited out)."""
    from gpu_model_operator.backends.azure.arm_budget import ArmBudget
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.session import Session

    refusal = REFUSALS[name]
    session = Session(2, ArmBudget(max_wait=1.0))

    async def twice() -> list[tuple[str, str, float | None]]:
        ws = await session.workspace(inputs())
        emulator.v2.clear_trace()
        emulator.add_fault(action="status", method="GET", path=f"/onlineEndpoints/{name}$", **refusal.fault)
        errors = []
        for _ in range(2):
            with pytest.raises(TransientBackendError) as raised:
                await session.call(inputs(), f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name))
            errors.append((type(raised.value).__name__, raised.value.reason, raised.value.retry_after))
        await session.close()
        return errors

    try:
        errors = asyncio.run(twice())
    finally:
        emulator.clear_faults()
    sent = [c for c in emulator.calls() if c["method"] == "GET" and c["path"].endswith(f"/onlineEndpoints/{name}")]
    if name == "throttled":  # the gate answers the second call itself, with the wait left
        assert (errors[0], errors[1][:2], len(sent)) == (refusal.error, refusal.error[:2], 1)
        assert errors[1][2] is not None and 0 < errors[1][2] <= 7.0
    else:
        assert (errors, len(sent)) == ([refusal.error, refusal.error], 2)


def test_a_failed_deployment_s_reason_is_in_the_status_of_the_operation_its_put_started(emulator: Emulator) -> None:
    """Azure reports why a deployment failed (ImageBuildFailure, OutOfQuota, ...) in the status of the operation its
    PUT answered with (``Azure-AsyncOperation``), never in the deployment's own document."""
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.session import Session

    session = Session(2)
    ws = asyncio.run(session.workspace(inputs()))
    try:
        if arm.get_endpoint(ws, "ep1") is None:
            arm.put_endpoint(ws, "ep1", ENDPOINT)
            polling.wait_for("the endpoint", functools.partial(endpoint_ready, arm, ws), timeout=30, every=0.1)
        emulator.v2.fail_start(endpoint="^ep1$", deployment="^gmo-broken$", code="ImageBuildFailure", times=1)
        url = arm.put_deployment(ws, "ep1", "gmo-broken", DEPLOYMENT)
        assert url is not None and "mfeOperationsStatus" in url

        def failed() -> bool:
            found = [d for d in arm.list_deployments(ws, "ep1") if d["name"] == "gmo-broken"]
            return bool(found) and found[0]["properties"]["provisioningState"] == "Failed"

        polling.wait_for("the deployment failed", failed, timeout=30, every=0.1)
        why = arm.operation_error(ws, url)
        assert why is not None and why.startswith("ImageBuildFailure"), why
        arm.delete_deployment(ws, "ep1", "gmo-broken")
    finally:
        asyncio.run(session.close())
