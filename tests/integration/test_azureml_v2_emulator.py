"""The Azure ML emulator's v2 surface against the real azure-ai-ml 1.35 and azure-identity 1.27: the managed and
Kubernetes online endpoint workflow, the calls of the reference trace, quota, instance types, a failing
deployment, traffic rules and split, key regeneration at scoring, workload identity federation, and fault
injection on v2 paths.

The SDK runs in subprocesses (``azureml_emulator/sdk_v2_guide.py``) because its cloud choice is process state;
the emulator runs on a thread of the test process.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gpu_model_operator_dev import azureml_emulator as emulator_package
from gpu_model_operator_dev.azureml_emulator import Emulator, start_emulator
from gpu_model_operator_dev.azureml_emulator.v2.reference import (
    configure_fast,
    fast_config,
    run_guide,
    trace_lines,
    workflow_emulator,
)

REFERENCE = Path(emulator_package.__file__).parent / "reference" / "azure-ai-ml-1.35-online-endpoint-requests.jsonl"
SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The managed and the Kubernetes workflow once, with the trace recorded."""
    workdir = tmp_path_factory.mktemp("v2-workflow")
    with workflow_emulator(workdir / "emulator") as (emu, cluster_id):
        result = run_guide(emu, "workflow", workdir, "--cluster-id", cluster_id)
        yield result, trace_lines(emu)


@pytest.fixture()
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with start_emulator(tmp_path / "emulator", fast_config()) as emu:
        configure_fast(emu)
        emu.v2.seed(models=[{"name": "digits"}])
        yield emu


def test_managed_workflow_runs_on_the_real_sdk(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    managed = workflow[0]["managed"]
    assert managed["endpoint"] == {
        "name": "digits-ep",
        "state": "Succeeded",
        "scoring_uri": "https://digits-ep.eastus.inference.ml.azure.com/score",
        "type": "ManagedOnlineEndpoint",
    }
    assert managed["blue"] == {"state": "Succeeded", "instance_type": "Standard_NC4as_T4_v3", "count": 1}
    assert managed["score_blue"] == {"status": 200, "json": {"data": [[0.0, 1.0, 2.0, 3.0]]}, "deployment": "blue"}
    assert managed["invoke"] == {"data": [[0.0, 1.0, 2.0, 3.0]]}
    assert managed["green_direct"] == {"status": 200, "deployment": "green"}
    assert managed["traffic_before_shift"] == {"blue": 100, "green": 0}
    assert managed["traffic_after_shift"] == {"blue": 0, "green": 100}
    assert managed["score_after_shift"] == {"status": 200, "deployment": "green"}
    assert managed["deployments_after_delete"] == ["green"]
    assert managed["scaled"] == {"state": "Succeeded", "count": 2}
    assert "instances: 2" in managed["logs"]
    assert managed["regenerated"] == {
        "primary_changed": True,
        "secondary_kept": True,
        "old_key": 401,
        "new_key": 200,
        "secondary": 200,
    }
    # Two NC4as_T4_v3 instances hold ceil(2 x 1.2) x 4 vCPUs of the T4 family.
    assert managed["usage"]["standardNCASv3_T4Family"] == [12, 24]
    assert managed["size"] == [4, 1]
    assert managed["listed"] == ["digits-ep"]
    assert managed["endpoint_gone"]["type"] == "ResourceNotFoundError"


def test_kubernetes_workflow_schedules_per_node(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    kube = workflow[0]["kubernetes"]
    assert kube["compute"] == {
        "type": "KubernetesCompute",
        "state": "Succeeded",
        "instance_types": ["gpu1"],
        "attached": "KubernetesCompute",
    }
    assert kube["endpoint"]["type"] == "KubernetesOnlineEndpoint"
    assert kube["endpoint"]["scoring_uri"].endswith("/api/v1/endpoint/digits-k8s/score")
    assert kube["score"] == {"status": 200, "deployment": "blue"}
    assert kube["scaled"] == 2
    # Two one-GPU nodes: a third one-GPU instance cannot be scheduled; the old two keep serving.
    failure = kube["scale_beyond_gpus"]
    assert failure["type"] == "HttpResponseError"
    assert "0/2 nodes are available: 2 Insufficient nvidia.com/gpu" in failure["message"]
    assert kube["after_failed_scale"] == {"state": "Failed", "count": 2, "score": 200}
    assert kube["compute_gone"]["type"] == "ResourceNotFoundError"


_TEMPLATES = [
    (r"^/[0-9a-f-]{36}/(src|LocalUpload)/.*$", "/{container}/{blob}"),
    (r"^/azureml-blobstore-[^/]+/.*$", "/{datastore}/{blob}"),
    (r"/subscriptions/[^/]+", "/subscriptions/{sub}"),
    (r"/resourceGroups/[^/]+", "/resourceGroups/{rg}"),
    (r"/workspaces/[^/]+", "/workspaces/{ws}"),
    (
        r"/(onlineEndpoints|deployments|computes|locations|models|environments|codes|versions|datastores)/[^/]+",
        r"/\1/{id}",
    ),
    (r"/(mfeOperationsStatus|mfeOperationResults|computeOperationsStatus)/[^/]+", r"/\1/{op}"),
    (r"/api/v1/endpoint/[^/]+", "/api/v1/endpoint/{e}"),
    (r"^/[0-9a-f-]{36}/", "/{tenant}/"),
]


def call_key(call: dict[str, Any]) -> tuple[str, str, str]:
    """(method, host kind, path template) of a request: what must match the reference trace."""
    host = str(call["host"]).split(":")[0]
    if call["method"] == "CONNECT":
        kind = "proxy"
    elif ".blob." in host:
        kind = "blob"
    elif host.endswith(".inference.ml.azure.com"):
        kind = "scoring"
    elif host == "login.microsoftonline.com":
        kind = "login"
    else:
        kind = "azure"
    path = str(call["path"])
    for pattern, replacement in _TEMPLATES:
        path = re.sub(pattern, replacement, path)
    return str(call["method"]), kind, path


def test_every_call_of_the_reference_trace_is_served(workflow: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, calls = workflow
    served: dict[tuple[str, str, str], set[int]] = {}
    for call in calls:
        served.setdefault(call_key(call), set()).add(int(call["status"]))
    reference = [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]
    expected = {call_key(r): int(r["status"]) for r in reference}
    assert len(expected) >= 35
    missing = sorted(k for k, status in expected.items() if status not in served.get(k, ()))
    assert not missing, f"reference calls not answered with the reference status: {missing}"
    # Every request body of the trace is JSON with its secrets redacted.
    assert all(isinstance(r["body"], dict | list | type(None)) for r in reference)
    assert not any("not-a-secret" in json.dumps(r) for r in reference)
    regenerate = next(r for r in reference if r["path"].endswith("/regenerateKeys"))
    assert regenerate["body"] == {"keyType": "Primary", "keyValue": "<redacted>"}


def test_quota_refuses_what_the_family_limit_cannot_hold(emulator: Emulator, tmp_path: Path) -> None:
    # One NC4as_T4_v3 needs ceil(1.2) x 4 = 8 vCPUs; three need ceil(3.6) x 4 = 16.
    emulator.v2.configure(family_limits={"standardNCASv3_T4Family": 8})
    result = run_guide(emulator, "quota", tmp_path)
    assert result["created"] == "Succeeded"
    error = result["scale"]
    assert (error["type"], error["status"]) == ("HttpResponseError", 400)
    assert "InferencingClientCreateDeploymentFailed" in error["message"]
    assert "Not enough quota available for Standard_NC4as_T4_v3" in error["message"]
    assert "Current usage/limit: 0/8. Additional needed: 16" in error["message"]
    assert result["after"] == 1


def test_retired_and_unknown_instance_types_are_refused(emulator: Emulator, tmp_path: Path) -> None:
    result = run_guide(emulator, "instance-type", tmp_path)
    retired, unknown = result["Standard_NC6s_v3"], result["Standard_NC5_nope"]
    assert (retired["status"], unknown["status"]) == (400, 400)
    assert "Standard_NC6s_v3 was retired on 2025-09-30" in retired["message"]
    assert "Standard_NC5_nope is not supported for managed online endpoints" in unknown["message"]


def test_a_deployment_that_fails_to_start(emulator: Emulator, tmp_path: Path) -> None:
    emulator.v2.fail_start(deployment="^blue$", times=1)
    result = run_guide(emulator, "failing", tmp_path)
    assert result["token"] is True
    assert result["error"]["type"] == "HttpResponseError"
    assert "(ResourceNotReady) User container has crashed or terminated" in result["error"]["message"]
    assert result["state"] == "Failed"
    # The container's console (its crash), never the operation's error: the reason is in the operation status only.
    assert "init() failed" in result["logs"] and "ResourceNotReady" not in result["logs"]


def test_traffic_rules_and_a_50_50_split(emulator: Emulator, tmp_path: Path) -> None:
    result = run_guide(emulator, "traffic", tmp_path, "--requests", "200")
    for case, text in (("sum_90", "must be 0 or 100; it is 90"), ("unknown", "Deployment 'red' in traffic does not")):
        assert (result[case]["type"], result[case]["status"]) == ("HttpResponseError", 400), case
        assert text in result[case]["message"], case
    assert result["delete_with_traffic"]["status"] == 400
    assert "has 50% of endpoint 'digits-ep' traffic" in result["delete_with_traffic"]["message"]
    split = result["split"]
    assert set(split) == {"200:blue", "200:green"}, split
    # Binomial(200, 0.5): 60..140 is more than 5 standard deviations either side.
    assert 60 <= split["200:blue"] <= 140, split


def _service_account_token(key: rsa.RSAPrivateKey, issuer: str, subject: str, audience: str) -> str:
    """A projected service-account token as a kube-apiserver signs it (RS256 with a key id)."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + 3600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "sa-key-1"})


def test_workload_identity_federation(emulator: Emulator, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**jwk, "alg": "RS256", "use": "sig", "kid": "sa-key-1"}]}
    issuer, subject = "https://kubernetes.default.svc.cluster.local", "system:serviceaccount:gpu:gpu-model-operator"
    emulator.v2.configure(
        federated_credentials=[{"client_id": "workload-app", "issuer": issuer, "subject": subject, "jwks": jwks}]
    )
    outcomes = {}
    for case, audience in (("right", "api://AzureADTokenExchange"), ("wrong_audience", "api://other")):
        token_file = tmp_path / f"{case}.jwt"
        token_file.write_text(_service_account_token(key, issuer, subject, audience))
        workdir = tmp_path / case
        workdir.mkdir()
        outcomes[case] = run_guide(
            emulator, "identity", workdir, "--client-id", "workload-app", "--federated-token-file", str(token_file)
        )
    assert outcomes["right"]["error"] is None and outcomes["right"]["listed"] == []
    refused = outcomes["wrong_audience"]["error"]
    assert refused["type"] == "ClientAuthenticationError"
    assert "AADSTS70021" in refused["message"] and "api://other" in refused["message"]
    # Neither the assertion nor a token is in the call log (it holds no bodies or headers).
    log = json.dumps(emulator.calls())
    assert token_file.read_text() not in log and "client_assertion" not in log


def test_injected_429_and_503_are_retried_on_v2_paths(emulator: Emulator, tmp_path: Path) -> None:
    emulator.add_fault(action="status", status=429, retry_after=1, method="GET", path=r"/onlineEndpoints$", times=1)
    emulator.add_fault(action="status", status=503, method="GET", path=r"/onlineEndpoints$", times=1)
    result = run_guide(emulator, "identity", tmp_path)
    assert result["error"] is None
    listed = [c for c in emulator.calls() if c["method"] == "GET" and c["path"].endswith("/onlineEndpoints")]
    assert [(c["status"], c.get("fault")) for c in listed] == [(429, "status"), (503, "status"), (200, None)]


def test_aml_token_endpoint_over_rest(emulator: Emulator) -> None:
    """``auth_mode: aml_token``: ``POST .../token`` gives a bearer token that scoring accepts; keys do not."""
    ca = str(emulator.ca_file)
    token = requests.post(
        f"{emulator.base_url}/{emulator.state.config.tenant_id if emulator.state else 'adfs'}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "gpu-operator",
            "client_secret": "not-a-secret",
            "scope": "https://management.azure.com/.default",
        },
        verify=ca,
        timeout=10,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    base = (
        f"{emulator.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/"
        f"workspaces/{WS}/onlineEndpoints/tok-ep"
    )
    version = {"api-version": "2023-04-01-preview"}
    created = requests.put(
        base, json={"location": "eastus", "properties": {"authMode": "AMLToken"}}, params=version, headers=auth,
        verify=ca, timeout=10,
    )  # fmt: skip
    assert created.status_code == 201 and "Azure-AsyncOperation" in created.headers
    # Names are case-insensitive, and unique per region across workspaces (they are the scoring host name).
    upper = requests.get(base.replace("tok-ep", "TOK-EP"), params=version, headers=auth, verify=ca, timeout=10)
    assert upper.json()["name"] == "tok-ep"
    emulator.seed(workspaces=[{"resource_group": "rg2", "name": "ws2"}])
    other_ws = base.replace(f"/resourceGroups/{RG}/", "/resourceGroups/rg2/").replace(f"/{WS}/", "/ws2/")
    elsewhere = requests.put(
        other_ws,
        json={"location": "eastus", "properties": {"authMode": "Key"}}, params=version, headers=auth, verify=ca,
        timeout=10,
    )  # fmt: skip
    # Azure's 400 validation problem (Azure/azureml-examples#1930), not a 409.
    error = elsewhere.json()["error"]
    assert (elsewhere.status_code, error["code"], error["details"][0]["code"]) == (
        400,
        "BadRequest",
        "InferencingClientCallFailed",
    )
    assert "Endpoint name needs to be unique within a region" in error["details"][0]["message"]
    status = requests.get(created.headers["Azure-AsyncOperation"], headers=auth, verify=ca, timeout=10).json()
    assert status["status"] == "Succeeded"
    deployment: dict[str, Any] = {
        "location": "eastus",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2"},
    }
    assert (
        requests.put(
            f"{base}/deployments/dep1", json=deployment, params=version, headers=auth, verify=ca, timeout=10
        ).status_code
        == 201
    )
    requests.get(f"{base}/deployments/dep1", params=version, headers=auth, verify=ca, timeout=10).raise_for_status()
    keys = requests.post(f"{base}/listKeys", params=version, headers=auth, verify=ca, timeout=10)
    assert keys.status_code == 400
    aml = requests.post(f"{base}/token", params=version, headers=auth, verify=ca, timeout=10).json()
    assert aml["tokenType"] == "Bearer" and aml["expiryTimeUtc"] > time.time()
    proxies = {"https": emulator.proxy_url}
    uri = "https://tok-ep.eastus.inference.ml.azure.com/score"
    scored = requests.post(
        uri, json=[1], headers={"Authorization": f"Bearer {aml['accessToken']}", "azureml-model-deployment": "dep1"},
        proxies=proxies, verify=ca, timeout=10,
    )  # fmt: skip
    assert (scored.status_code, scored.json(), scored.headers["azureml-model-deployment"]) == (200, [1], "dep1")
    refused = requests.post(uri, json=[1], headers=auth, proxies=proxies, verify=ca, timeout=10)
    assert refused.status_code == 401  # an ARM token is not an endpoint token
    no_weight = requests.post(
        uri, json=[1], headers={"Authorization": f"Bearer {aml['accessToken']}"}, proxies=proxies, verify=ca,
        timeout=10,
    )  # fmt: skip
    assert no_weight.status_code == 404  # no deployment has traffic and no header names one


def test_put_replaces_an_endpoint_and_patch_changes_what_it_names(emulator: Emulator) -> None:
    """ARM's PUT is a full replace: a property the body leaves out goes back to its default, as at Azure (a client
    that sends a reduced body turns a private endpoint public). What the server owns stays (state, scoring URI,
    keys, the system-assigned principal); a PATCH changes only what it names."""
    ca = str(emulator.ca_file)
    token = requests.post(
        f"{emulator.base_url}/{emulator.state.config.tenant_id if emulator.state else 'adfs'}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "gpu-operator",
            "client_secret": "not-a-secret",
            "scope": "https://management.azure.com/.default",
        },
        verify=ca,
        timeout=10,
    ).json()["access_token"]
    base = (
        f"{emulator.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/"
        f"workspaces/{WS}/onlineEndpoints/private-ep"
    )

    def call(method: str, body: Any = None) -> requests.Response:
        answer = requests.request(
            method, base, json=body, params={"api-version": "2023-04-01-preview"},
            headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=10,
        )  # fmt: skip
        assert answer.status_code < 300, answer.text
        return answer

    def settled() -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (found := call("GET").json())["properties"]["provisioningState"] != "Succeeded":
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        return dict(found)

    private = {
        "location": "eastus",
        "tags": {"team": "fraud"},
        "properties": {"authMode": "Key", "description": "d", "publicNetworkAccess": "Disabled"},
    }
    call("PUT", private)
    before = settled()
    keys = requests.post(
        f"{base}/listKeys", params={"api-version": "2023-04-01-preview"},
        headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=10,
    ).json()  # fmt: skip

    call("PATCH", {"tags": {"team": "fraud", "cost-center": "42"}})
    patched = settled()
    assert patched["properties"]["publicNetworkAccess"] == "Disabled" and patched["properties"]["description"] == "d"
    assert patched["tags"] == {"team": "fraud", "cost-center": "42"}

    # Sent back whole, less what the specification marks read-only (as the SDK's entities send it), it stays as it was.
    whole = {k: v for k, v in patched.items() if k not in ("id", "name", "type", "systemData")}
    whole["properties"] = {
        k: v for k, v in patched["properties"].items() if k not in ("provisioningState", "scoringUri", "swaggerUri")
    }
    whole["identity"] = {"type": patched["identity"]["type"]}
    call("PUT", whole)
    again = settled()
    assert again["properties"]["publicNetworkAccess"] == "Disabled" and again["tags"] == patched["tags"]

    # A reduced body replaces the rest with Azure's defaults.
    call("PUT", {"location": "eastus", "properties": {"authMode": "Key"}})
    reduced = settled()
    assert reduced["properties"]["publicNetworkAccess"] == "Enabled"
    assert reduced["properties"]["description"] is None and reduced["tags"] == {}
    assert reduced["properties"]["scoringUri"] == before["properties"]["scoringUri"]
    assert reduced["identity"]["principalId"] == before["identity"]["principalId"]
    assert reduced["properties"]["authMode"] == "Key"
    kept = requests.post(
        f"{base}/listKeys", params={"api-version": "2023-04-01-preview"},
        headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=10,
    ).json()  # fmt: skip
    assert kept == keys


def test_reset_replaces_the_v2_resources_that_the_arm_routes_serve(emulator: Emulator) -> None:
    """The admin API's reset gives the v2 surface a new store; the ARM routes answer from it (they kept serving the
    store of the emulator's start, so resources seeded after a reset were not found and old ones lived on)."""
    ca = str(emulator.ca_file)
    tenant = emulator.state.config.tenant_id if emulator.state else "adfs"
    token = requests.post(
        f"{emulator.base_url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "gpu-operator",
            "client_secret": "not-a-secret",
            "scope": "https://management.azure.com/.default",
        },
        verify=ca,
        timeout=10,
    ).json()["access_token"]
    auth, version = {"Authorization": f"Bearer {token}"}, {"api-version": "2023-04-01-preview"}
    ws = f"{emulator.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"  # noqa: E501

    def status(path: str) -> int:
        # Each resource type at an api-version Azure registers for it (models: the SDK's 2023-08-01-preview).
        at = {"api-version": "2023-08-01-preview"} if path.startswith("/models/") else version
        return requests.get(ws + path, params=at, headers=auth, verify=ca, timeout=10).status_code

    body: dict[str, Any] = {"location": "eastus", "properties": {"authMode": "Key"}}
    put = requests.put(f"{ws}/onlineEndpoints/reset-ep", json=body, params=version, headers=auth, verify=ca, timeout=10)
    assert put.status_code == 201
    assert (status("/onlineEndpoints/reset-ep"), status("/models/digits/versions/1")) == (200, 200)
    emulator.reset()
    emulator.v2.seed(models=[{"name": "digits", "version": "2"}])
    assert status("/onlineEndpoints/reset-ep") == 404
    assert (status("/models/digits/versions/1"), status("/models/digits/versions/2")) == (404, 200)
