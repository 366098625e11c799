"""The emulator's mirrored traffic and Azure Monitor metrics, over REST as any Azure client calls them: Azure's limits
on mirroring (one deployment, never one that takes live traffic, never on a Kubernetes endpoint), mirrored copies
answered and counted but never returned to the client, and ``RequestsPerMinute`` served at the Metrics List route
in the specification's shape (the suite's conformance mode checks every answer), ARM-authenticated, split and
filtered by its dimensions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gpu_model_operator_dev.azureml_emulator import Emulator, start_emulator
from gpu_model_operator_dev.azureml_emulator.v2.reference import CLIENT_ID, CLIENT_SECRET, configure_fast, fast_config

SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
BASE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
VERSION = {"api-version": "2023-04-01-preview"}
KUBE = {
    "resource_group": RG,
    "name": "aks-gpu",
    "compute": "k8s",
    "nodes": [{"name": "node-0", "gpus": 2}],
    "instance_types": {"gpu1": {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}},
}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with start_emulator(tmp_path / "emulator", fast_config()) as emu:
        configure_fast(emu)
        emu.v2.seed(kubernetes_computes=[KUBE])
        yield emu


Call = Callable[..., requests.Response]


@pytest.fixture()
def arm(emulator: Emulator) -> Call:
    """An ARM request under the workspace with the service principal's token; ``ok`` asserts a success."""
    tenant = emulator.state.config.tenant_id if emulator.state else "adfs"
    token = requests.post(
        f"{emulator.base_url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://management.azure.com/.default",
        },
        verify=str(emulator.ca_file),
        timeout=10,
    ).json()["access_token"]

    def call(method: str, path: str, body: Any = None, params: Any = VERSION, ok: bool = True) -> requests.Response:
        answer = requests.request(
            method, emulator.base_url + BASE + path, json=body, params=params,
            headers={"Authorization": f"Bearer {token}"}, verify=str(emulator.ca_file), timeout=10,
        )  # fmt: skip
        assert not ok or answer.status_code < 300, answer.text
        return answer

    return call


def settle(arm: Call, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (found := arm("GET", path).json())["properties"]["provisioningState"] != "Succeeded":
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return dict(found)


def endpoint_with(arm: Call, name: str, *deployments: str, compute: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"authMode": "Key"} | ({"compute": compute} if compute else {})
    arm("PUT", f"/onlineEndpoints/{name}", {"location": "eastus", "properties": props})
    settle(arm, f"/onlineEndpoints/{name}")
    kind, size = ("Kubernetes", "gpu1") if compute else ("Managed", "Standard_DS3_v2")
    for d in deployments:
        body = {"location": "eastus", "sku": {"name": "Default", "capacity": 1},
                "properties": {"endpointComputeType": kind, "instanceType": size}}  # fmt: skip
        arm("PUT", f"/onlineEndpoints/{name}/deployments/{d}", body)
        settle(arm, f"/onlineEndpoints/{name}/deployments/{d}")
    return settle(arm, f"/onlineEndpoints/{name}")


def with_traffic(endpoint: dict[str, Any], traffic: dict[str, int], mirror: dict[str, int]) -> dict[str, Any]:
    """The endpoint as read, sent back whole with a split and mirrored traffic (as a rollout tool does)."""
    body = {k: v for k, v in endpoint.items() if k not in ("id", "name", "type", "systemData")}
    props = {
        k: v for k, v in endpoint["properties"].items() if k not in ("provisioningState", "scoringUri", "swaggerUri")
    }
    body["properties"] = {**props, "traffic": traffic, "mirrorTraffic": mirror}
    body["identity"] = {"type": endpoint["identity"]["type"]}
    return body


REFUSED = {
    "a deployment taking live and mirrored traffic at once": ({"blue": 100}, {"blue": 10}, "live and mirror"),
    "mirrored traffic to two deployments": ({"blue": 100}, {"green": 10, "red": 10}, "one deployment"),
    "more than 50% mirrored": ({"blue": 100}, {"green": 60}, "50%"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_azure_s_limits_on_mirrored_traffic(name: str, arm: Call) -> None:
    traffic, mirror, says = REFUSED[name]
    found = endpoint_with(arm, "mirror-ep", "blue", "green", "red")
    refused = arm("PUT", "/onlineEndpoints/mirror-ep", with_traffic(found, traffic, mirror), ok=False)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "BadArgument")
    assert says in refused.json()["error"]["message"]


def test_a_kubernetes_endpoint_mirrors_nothing(emulator: Emulator, arm: Call) -> None:
    compute = f"{BASE}/computes/k8s"
    found = endpoint_with(arm, "kube-ep", "blue", "green", compute=compute)
    refused = arm("PUT", "/onlineEndpoints/kube-ep", with_traffic(found, {"blue": 100}, {"green": 10}), ok=False)
    assert refused.status_code == 400 and "Kubernetes" in refused.json()["error"]["message"]


def requests_per_minute(arm: Call, endpoint: str, filter_: str, **params: str) -> dict[str, Any]:
    now = time.time()
    span = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now - 300))}/"
    span += time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60))
    query = {"api-version": "2023-10-01", "metricnames": "RequestsPerMinute", "timespan": span, "interval": "PT1M",
             "aggregation": "Average", "$filter": filter_, "top": "50", **params}  # fmt: skip
    return dict(arm("GET", f"/onlineEndpoints/{endpoint}/providers/Microsoft.Insights/metrics", params=query).json())


def by_dimensions(answer: dict[str, Any]) -> dict[tuple[str, ...], int]:
    """Each series' dimension values -> its requests over the minutes."""
    (metric,) = answer["value"]
    return {
        tuple(m["value"] for m in s["metadatavalues"]): round(sum(p.get("average", 0) for p in s["data"]))
        for s in metric["timeseries"]
    }


def test_mirrored_copies_are_answered_and_counted_but_never_returned(emulator: Emulator, arm: Call) -> None:
    found = endpoint_with(arm, "shadow-ep", "blue", "green")
    arm("PUT", "/onlineEndpoints/shadow-ep", with_traffic(found, {"blue": 100}, {"green": 50}))
    settle(arm, "/onlineEndpoints/shadow-ep")
    emulator.v2.fail_model("shadow-ep", "green")  # the mirrored deployment's model fails every request
    key = arm("POST", "/onlineEndpoints/shadow-ep/listKeys").json()["primaryKey"]
    answers = [
        requests.post(
            "https://shadow-ep.eastus.inference.ml.azure.com/score", json={"data": [1]},
            headers={"Authorization": f"Bearer {key}"}, proxies={"https": emulator.proxy_url},
            verify=str(emulator.ca_file), timeout=10,
        )
        for _ in range(40)
    ]  # fmt: skip
    assert {(a.status_code, a.headers["azureml-model-deployment"]) for a in answers} == {(200, "blue")}

    split = "deployment eq '*' and statusCode eq '*'"
    deadline = time.monotonic() + 10
    while (counted := by_dimensions(requests_per_minute(arm, "shadow-ep", split))).get(("blue", "200")) != 40:
        assert time.monotonic() < deadline, counted
        time.sleep(0.1)
    mirrored = counted.get(("green", "424"), 0)
    assert 0 < mirrored < 40 and set(counted) == {("blue", "200"), ("green", "424")}, counted

    # One deployment, split by status code class: the filter's value picks it, the '*' splits.
    green = by_dimensions(requests_per_minute(arm, "shadow-ep", "deployment eq 'green' and statusCodeClass eq '*'"))
    assert green == {("green", "4xx"): mirrored}
    answer = requests_per_minute(arm, "shadow-ep", "deployment eq 'green' and statusCodeClass eq '*'")
    (metric,) = answer["value"]
    assert (answer["namespace"], answer["interval"], metric["name"]["value"], metric["unit"]) == (
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "PT1M",
        "RequestsPerMinute",
        "Count",
    )


def test_the_metrics_are_arm_s_and_refuse_what_they_do_not_serve(emulator: Emulator, arm: Call) -> None:
    endpoint_with(arm, "quiet-ep", "blue")
    path = f"{BASE}/onlineEndpoints/quiet-ep/providers/Microsoft.Insights/metrics"
    anonymous = requests.get(emulator.base_url + path, params={"api-version": "2023-10-01"},
                             verify=str(emulator.ca_file), timeout=10)  # fmt: skip
    assert anonymous.status_code == 401
    metrics = "/onlineEndpoints/quiet-ep/providers/Microsoft.Insights/metrics"
    missing = arm("GET", metrics, params={}, ok=False)
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "MissingApiVersionParameter")
    other = arm(
        "GET", metrics, params={"api-version": "2023-10-01", "metricnames": "CpuUtilizationPercentage"}, ok=False
    )
    assert other.status_code == 400 and "RequestsPerMinute" in other.json()["error"]["message"]
    nothing = requests_per_minute(arm, "quiet-ep", "deployment eq '*'")
    assert nothing["value"][0]["timeseries"] == []
    gone = arm("GET", "/onlineEndpoints/nowhere-ep/providers/Microsoft.Insights/metrics",
               params={"api-version": "2023-10-01"}, ok=False)  # fmt: skip
    assert gone.status_code == 404
