"""Azure's documented behaviours as the emulator answers them over ARM's REST surface: the api-version refusals, an
answer in the model of the version asked for, the quota reserve per SKU and usages by scope, a deleted endpoint's
name still held, failure reasons in the operation status only, a canceled operation as a transient state, the
instance limit, the name rules and retired sizes. Each behaviour's source is cited where the emulator models it
(``azureml_emulator/v2/rules.py``, ``quota.py``, ``skus.py``, ``contract/conformance.py``); these tests pin the
answers a backend must handle, in the shapes Azure documents. Every exchange is checked against the contract
schemas as well (the suite's conformance mode), so the bodies sent here are the specification's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from gpu_model_operator_dev.azureml_emulator import Emulator, start_emulator
from gpu_model_operator_dev.azureml_emulator.v2.reference import (
    CLIENT_ID,
    CLIENT_SECRET,
    CLUSTER,
    configure_fast,
    fast_config,
)
from tests.polling import wait_for

SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
WS_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
LOCATION_ID = f"/subscriptions/{SUB}/providers/Microsoft.MachineLearningServices/locations/eastus"
ENDPOINTS, DEPLOYMENTS = "2022-02-01-preview", "2023-04-01-preview"
COMPUTES = "2023-08-01-preview"
T4 = "standardNCASv3_T4Family"

pytestmark = pytest.mark.timeout(120)


class Arm:
    """ARM calls with a bearer token, and the wait for a long-running operation's status."""

    def __init__(self, emu: Emulator) -> None:
        self.emu, self.ca = emu, str(emu.ca_file)
        tenant = emu.state.config.tenant_id if emu.state else "adfs"
        token = requests.post(
            f"{emu.base_url}/{tenant}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                  "scope": "https://management.azure.com/.default"},
            verify=self.ca, timeout=10,
        ).json()["access_token"]  # fmt: skip
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, version: str | None, body: Any = None) -> requests.Response:
        params = {"api-version": version} if version else {}
        url = path if path.startswith("https://") else self.emu.base_url + path
        return requests.request(method, url, json=body, params=params, headers=self.auth, verify=self.ca, timeout=10)

    def operation(self, answer: requests.Response) -> dict[str, Any]:
        """The final ``Azure-AsyncOperation`` status of an accepted PUT or DELETE."""
        assert answer.status_code in (200, 201, 202), answer.text
        status_url = answer.headers["Azure-AsyncOperation"]

        def ended() -> dict[str, Any] | None:
            status: dict[str, Any] = self.call("GET", status_url, None).json()
            return status if status["status"] not in ("InProgress", "Running") else None

        return wait_for("the operation to end", ended, timeout=20, every=0.05)

    def endpoint(self, name: str, body: dict[str, Any] | None = None) -> requests.Response:
        body = body or {"location": "eastus", "properties": {"authMode": "Key"}}
        return self.call("PUT", f"{WS_ID}/onlineEndpoints/{name}", ENDPOINTS, body)

    def deployment(self, endpoint: str, name: str, instance_type: str, count: int = 1) -> requests.Response:
        body = {
            "location": "eastus",
            "sku": {"name": "Default", "capacity": count},
            "properties": {"endpointComputeType": "Managed", "instanceType": instance_type},
        }
        return self.call("PUT", f"{WS_ID}/onlineEndpoints/{endpoint}/deployments/{name}", DEPLOYMENTS, body)

    def usages(self, family: str) -> list[tuple[str, int, int]]:
        rows = self.call("GET", f"{LOCATION_ID}/usages", COMPUTES).json()["value"]
        return [
            (r["type"].rsplit("/", 2)[-2], r["currentValue"], r["limit"]) for r in rows if r["name"]["value"] == family
        ]


@pytest.fixture()
def arm(tmp_path: Path) -> Iterator[Arm]:
    with start_emulator(tmp_path / "emulator", fast_config()) as emu:
        configure_fast(emu)
        yield Arm(emu)


def _error(answer: requests.Response) -> tuple[int, str, str]:
    """(status, code, the first detail's code or "") of an ARM error answer."""
    error = answer.json()["error"]
    return answer.status_code, error["code"], (error.get("details") or [{}])[0].get("code", "")


def _detail(answer: requests.Response) -> str:
    return str(answer.json()["error"]["details"][0]["message"])


def test_a_missing_or_unregistered_api_version_is_refused_as_arm_refuses_it(arm: Arm) -> None:
    missing = arm.call("GET", f"{WS_ID}/onlineEndpoints", None)
    assert missing.status_code == 400
    assert missing.json() == {"error": {
        "code": "MissingApiVersionParameter",
        "message": "The api-version query parameter (?api-version=) is required for all requests.",
    }}  # fmt: skip
    unknown = arm.call("GET", f"{WS_ID}/onlineEndpoints", "2099-01-01")
    assert _error(unknown) == (400, "NoRegisteredProviderFound", "")
    message = unknown.json()["error"]["message"]
    assert message.startswith(
        "No registered resource provider found for location 'eastus' and API version '2099-01-01' for type "
        "'workspaces/onlineEndpoints'. The supported api-versions are '"
    ), message
    assert "2022-02-01-preview" in message and "2023-04-01-preview" in message


def test_an_answer_is_in_the_model_of_the_version_asked_for(arm: Arm) -> None:
    """``publicNetworkAccess`` is not in 2022-02-01-preview's OnlineEndpoint: a GET at that version leaves it out,
    and a PUT at that version (which cannot say it) leaves it as it was."""
    private = {"location": "eastus", "properties": {"authMode": "Key", "publicNetworkAccess": "Disabled"}}
    arm.operation(arm.call("PUT", f"{WS_ID}/onlineEndpoints/private-ep", DEPLOYMENTS, private))
    old = arm.call("GET", f"{WS_ID}/onlineEndpoints/private-ep", ENDPOINTS).json()
    new = arm.call("GET", f"{WS_ID}/onlineEndpoints/private-ep", DEPLOYMENTS).json()
    assert "publicNetworkAccess" not in old["properties"] and new["properties"]["publicNetworkAccess"] == "Disabled"
    arm.operation(arm.endpoint("private-ep", {"location": "eastus", "properties": {"authMode": "Key"}}))
    again = arm.call("GET", f"{WS_ID}/onlineEndpoints/private-ep", DEPLOYMENTS).json()
    assert again["properties"]["publicNetworkAccess"] == "Disabled"


@dataclass(frozen=True)
class Reserve:
    instance_type: str
    count: int
    family: str
    held: int


RESERVES: dict[str, Reserve] = {
    # ceil(2 x 1.2) x 4 vCPUs
    "T4 keeps the 20% reserve": Reserve("Standard_NC4as_T4_v3", 2, T4, 12),
    # "Skip 20% Reservation" on the SKU list: 2 x 24, where the reserve would need 72 of the family's 48
    "NC A100 v4 skips it": Reserve("Standard_NC24ads_A100_v4", 2, "standardNCADSA100v4Family", 48),
    "one DS3_v2 holds two": Reserve("Standard_DS3_v2", 1, "standardDSv2Family", 8),
}


@pytest.mark.parametrize("case", RESERVES)
def test_the_quota_reserve_is_charged_per_sku(arm: Arm, case: str) -> None:
    c = RESERVES[case]
    arm.operation(arm.endpoint("quota-ep"))
    assert arm.operation(arm.deployment("quota-ep", "blue", c.instance_type, c.count))["status"] == "Succeeded"
    assert arm.usages(c.family)[0][:2] == ("vmFamily", c.held)


def test_usages_by_scope_and_a_workspace_quota_below_the_subscriptions(arm: Arm) -> None:
    workspace = f"{SUB}/{RG}/{WS}"
    arm.emu.v2.configure(
        workspace_limits={workspace: {T4: 8}},
        compute_usages=[{"workspace": workspace, "compute": "cpu-cluster", "family": T4, "vcpus": 4}],
    )
    assert arm.usages(T4) == [("vmFamily", 4, 24), ("workspaces", 4, 8), ("computes", 4, 8)]
    arm.operation(arm.endpoint("quota-ep"))
    refused = arm.deployment("quota-ep", "blue", "Standard_NC4as_T4_v3")
    assert _error(refused) == (400, "BadRequest", "InferencingClientCreateDeploymentFailed")
    assert f"Not enough quota available for Standard_NC4as_T4_v3 in workspace {WS}" in _detail(refused)
    assert "Current usage/limit: 4/8. Additional needed: 8" in _detail(refused)


def test_a_deleted_managed_endpoints_name_is_held_for_a_while(arm: Arm) -> None:
    arm.emu.v2.configure(endpoint_name_hold_s=1.0)
    arm.operation(arm.endpoint("held-ep"))
    arm.operation(arm.call("DELETE", f"{WS_ID}/onlineEndpoints/held-ep", ENDPOINTS))
    held = arm.endpoint("held-ep")
    assert _error(held) == (404, "NotFound", "InferencingClientCallFailed")
    assert _detail(held) == '{"title":"Not Found"}'

    def taken() -> requests.Response | None:
        answer = arm.endpoint("held-ep")
        return answer if answer.status_code != 404 else None

    assert arm.operation(wait_for("the name to be free again", taken, timeout=10, every=0.1))["status"] == "Succeeded"


def test_a_deleted_kubernetes_endpoints_name_stays_in_its_cluster(arm: Arm) -> None:
    arm.emu.v2.configure(endpoint_name_hold_s=60.0)
    arm.emu.v2.seed(kubernetes_clusters=[CLUSTER], kubernetes_computes=[{**CLUSTER, "compute": "k8s-gpu"}])
    body = {"location": "eastus", "properties": {"authMode": "Key", "compute": f"{WS_ID}/computes/k8s-gpu"}}
    arm.operation(arm.endpoint("kube-ep", body))
    arm.operation(arm.call("DELETE", f"{WS_ID}/onlineEndpoints/kube-ep", ENDPOINTS))
    held = arm.endpoint("kube-ep", body)
    assert _error(held) == (400, "BadRequest", "InferencingClientCallFailed")
    expected = f"OnlineEndpoint kube-ep already exists in cluster, in workspace {WS} of resource group {RG}"
    assert expected in _detail(held)


@dataclass(frozen=True)
class Reason:
    status: str
    logs: str


NOT_STARTED = "is not running yet; logs are not available. Try again later."
REASONS: dict[str, Reason] = {
    "ImageBuildFailure": Reason("Failed", NOT_STARTED),
    "OutOfQuota": Reason("Failed", NOT_STARTED),
    "OutOfCapacity": Reason("Failed", NOT_STARTED),
    "ResourceNotReady": Reason("Failed", "RuntimeError: init() failed"),
    "OperationCanceled": Reason("Canceled", NOT_STARTED),
}


@pytest.mark.parametrize("code", REASONS)
def test_a_failure_reason_is_in_the_operation_status_only(arm: Arm, code: str) -> None:
    expected = REASONS[code]
    arm.emu.v2.fail_start(deployment="^blue$", code=code, times=1)
    arm.operation(arm.endpoint("fail-ep"))
    status = arm.operation(arm.deployment("fail-ep", "blue", "Standard_DS3_v2"))
    assert (status["status"], status["error"]["code"]) == (expected.status, code)
    deployment = arm.call("GET", f"{WS_ID}/onlineEndpoints/fail-ep/deployments/blue", DEPLOYMENTS).json()
    assert deployment["properties"]["provisioningState"] == expected.status
    assert code not in str(deployment)
    logs = arm.call(
        "POST", f"{WS_ID}/onlineEndpoints/fail-ep/deployments/blue/getLogs", DEPLOYMENTS,
        {"containerType": "InferenceServer", "tail": 20},
    ).json()["content"]  # fmt: skip
    assert expected.logs in logs and code not in logs


def test_a_canceled_operation_is_transient_and_a_retry_succeeds(arm: Arm) -> None:
    arm.emu.v2.fail_start(deployment="^blue$", code="OperationCanceled", times=1)
    arm.operation(arm.endpoint("cancel-ep"))
    first = arm.operation(arm.deployment("cancel-ep", "blue", "Standard_DS3_v2"))
    assert first["status"] == "Canceled"
    assert "waiting for lock confirmation" in first["error"]["message"]
    assert arm.operation(arm.deployment("cancel-ep", "blue", "Standard_DS3_v2"))["status"] == "Succeeded"


def test_a_managed_deployment_takes_at_most_50_instances(arm: Arm) -> None:
    arm.emu.v2.configure(family_limits={"standardDSv2Family": 10_000})
    arm.operation(arm.endpoint("big-ep"))
    refused = arm.deployment("big-ep", "blue", "Standard_DS3_v2", 51)
    assert _error(refused) == (400, "BadRequest", "InferencingClientCreateDeploymentFailed")
    assert "exceeds the limit of 50 instances per deployment" in _detail(refused)
    assert arm.operation(arm.deployment("big-ep", "blue", "Standard_DS3_v2", 50))["status"] == "Succeeded"


@dataclass(frozen=True)
class Name:
    kind: str
    name: str
    accepted: bool


NAMES: dict[str, Name] = {
    "endpoint of two characters": Name("endpoint", "ab", False),
    "endpoint with a double dash": Name("endpoint", "my--ep", False),
    "endpoint ending in a dash": Name("endpoint", "my-ep-", False),
    "endpoint of 33 characters": Name("endpoint", "e" * 33, False),
    "endpoint of 32 characters": Name("endpoint", "e" * 32, True),
    "deployment of two characters": Name("deployment", "d1", False),
    "deployment with single dashes": Name("deployment", "blue-1-a", True),
    "compute of two characters": Name("compute", "ab", False),
    "compute ending in dash-digits": Name("compute", "gpu-1", False),
    "compute of 25 characters": Name("compute", "c" * 25, False),
    "compute with a letter after its dash": Name("compute", "gpu-1a", True),
}


def _put_named(arm: Arm, case: Name) -> requests.Response:
    if case.kind == "endpoint":
        return arm.endpoint(case.name)
    if case.kind == "deployment":
        arm.operation(arm.endpoint("names-ep"))
        return arm.deployment("names-ep", case.name, "Standard_DS3_v2")
    cluster = arm.emu.v2.seed(kubernetes_clusters=[CLUSTER])["kubernetes_clusters"][0]
    body = {"location": "eastus", "properties": {"computeType": "Kubernetes", "resourceId": cluster,
                                                  "properties": {"namespace": "azureml"}}}  # fmt: skip
    return arm.call("PUT", f"{WS_ID}/computes/{case.name}", COMPUTES, body)


@pytest.mark.parametrize("case", NAMES)
def test_name_rules(arm: Arm, case: str) -> None:
    c = NAMES[case]
    answer = _put_named(arm, c)
    if c.accepted:
        assert arm.operation(answer)["status"] == "Succeeded"
    else:
        assert answer.status_code == 400, answer.text


@pytest.mark.parametrize(
    ("instance_type", "why"),
    [
        ("Standard_NC6s_v3", "was retired on 2025-09-30"),
        ("Standard_NV12s_v3", "not supported for managed online endpoints"),
        ("Standard_ND96isr_H200_v5", "not supported for managed online endpoints"),
    ],
)
def test_retired_and_unlisted_sizes_are_refused(arm: Arm, instance_type: str, why: str) -> None:
    arm.operation(arm.endpoint("size-ep"))
    refused = arm.deployment("size-ep", "blue", instance_type)
    assert _error(refused) == (400, "BadRequest", "InferencingClientCreateDeploymentFailed")
    assert why in _detail(refused)
