"""Issue 23's promises on azureml-v2, end to end (the operator process, the real azure-ai-ml SDK, the emulator's v2
surface, a real apiserver):

- authMode AMLToken: a client scores with the token from the Secret (an endpoint key is refused), the operator
  replaces the token before Azure's refresh time, an expired one is refused, and no token reaches the operator's log;
- probes for big models (manifests/examples/azureml-v2-big-model): a model that loads for ten minutes fails Azure's
  default probes (ResourceNotReady, the live deployment untouched) and becomes Ready with longer ones;
- what it costs: `kubectl get gmd -o wide` shows the estimate, at the installation's price table, and an edited table
  reprices a resource that is Ready.

The emulator's containers run on a clock 100 times faster than the wall's (a ten-minute load takes six seconds),
and its tokens live 20 s (refresh after 10 s), so that each promise is seen within a test's time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import RESOURCE_GROUP, SECRET, SUBSCRIPTION, WORKSPACE
from tests.e2e.azure_v2_harness import AzureV2, run_v2_operator
from tests.e2e.harness import ROOT, wait_for

pytestmark = pytest.mark.timeout(240)

TOKEN_LIFETIME_S, CONTAINER_CLOCK = 20, 100
#: The installation's price table the operator starts with (GMO_PRICE_TABLE), as a mounted ConfigMap holds it.
PRICES = "currency: USD\nsource: test prices\nregion: eastus\nasOf: '2026-12'\nprices:\n  {size}: {price}\n"
T4, A100 = "Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4"


@pytest.fixture(scope="module")
def price_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prices") / "prices.yaml"
    path.write_text(PRICES.format(size=T4, price=0.526))
    return path


@pytest.fixture(scope="module")
def v2_operator(
    control_plane: Any, v2_emu: Emulator, price_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    v2_emu.v2.configure(aml_token_lifetime_s=TOKEN_LIFETIME_S, container_clock=CONTAINER_CLOCK)
    v2_emu.v2.seed(models=[{"name": "big-model", "version": "1", "load_seconds": 600}])
    yield from run_v2_operator(control_plane, v2_emu, tmp_path_factory, env={"GMO_PRICE_TABLE": str(price_file)})


def big_model(v2: AzureV2, name: str, endpoint: str, **changes: Any) -> None:
    """The big-model example (kustomize), pointed at the emulator, with ``changes`` to its spec (None removes)."""
    docs = list(
        yaml.safe_load_all(v2.cp.kubectl("kustomize", str(ROOT / "manifests/examples/azureml-v2-big-model")).stdout)
    )
    for doc in docs:
        if doc["kind"] == "GpuModelDeployment":
            doc["metadata"]["name"] = name
            spec = doc["spec"]
            spec["workspace"] = {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "name": WORKSPACE,
                "credentialsSecretRef": {"name": SECRET},
            }
            spec["service"]["name"] = endpoint
            spec.pop("rollout", None)  # the emulator echoes: any request body answers
            for key, value in changes.items():
                if value is None:
                    spec.pop(key, None)
                else:
                    spec[key] = {**spec.get(key, {}), **value}
    v2.cp.kubectl("apply", "-n", v2.ns, "-f", "-", input=yaml.safe_dump_all(docs))


def score(v2: AzureV2, uri: str, bearer: str) -> int:
    """A client's request to the scoring URI with ``bearer``, through the emulator's proxy as from the internet."""
    answer = requests.post(
        uri,
        json={"data": [[0.0, 1.0]]},
        headers={"Authorization": f"Bearer {bearer}"},
        proxies={"https": v2.emu.proxy_url},
        verify=str(v2.emu.ca_file),
        timeout=30,
    )
    return answer.status_code


def test_aml_token_scoring_with_the_secret_s_contents(v2: AzureV2) -> None:
    big_model(v2, "tokens", "tokens-ep", model={"name": "digits"}, deployment=None)
    try:
        v2.wait_ready("tokens")
        first = v2.keys("tokens")
        assert sorted(first) == ["accessToken", "expiresAt", "refreshAfter", "scoringUri"]
        assert score(v2, first["scoringUri"], first["accessToken"]) == 200
        assert v2.emu.state is not None
        endpoint = v2.emu.state.v2.endpoint(v2.emu.state.v2.workspaces()[0], "tokens-ep")
        assert endpoint is not None and score(v2, first["scoringUri"], endpoint.primary_key) == 401

        # Azure's refresh time is 10 s after the token was issued: the operator publishes a new one by then.
        second = wait_for(
            "a new token in the Secret",
            lambda: found if (found := v2.keys("tokens"))["accessToken"] != first["accessToken"] else None,
            TOKEN_LIFETIME_S,
        )
        assert (
            second["expiresAt"] > first["expiresAt"] and score(v2, second["scoringUri"], second["accessToken"]) == 200
        )
        assert any("refreshed" in e["message"] for e in v2.events("tokens", "KeysPublished"))
        # The first token stops working at its expiry; the Secret's keeps working.
        wait_for("the first token expired", lambda: score(v2, first["scoringUri"], first["accessToken"]) == 401, 30)
        assert score(v2, v2.keys("tokens")["scoringUri"], v2.keys("tokens")["accessToken"]) == 200

        log = v2.operator.log_path.read_text()
        assert first["accessToken"] not in log and second["accessToken"] not in log
    finally:
        v2.delete("tokens")


def test_a_slow_model_fails_the_default_probes_and_becomes_ready_with_longer_ones(v2: AzureV2) -> None:
    big_model(v2, "big", "big-model-ep", service={"authMode": "Key"}, deployment=None)
    try:
        failed = v2.wait_reason("big", "ServiceFailed", 60)
        assert "ResourceNotReady" in failed["message"] and "liveness probe failed 30 times" in failed["message"]

        big_model(v2, "big", "big-model-ep", service={"authMode": "Key"})  # the example's probes: ten minutes
        ready = v2.wait_ready("big", 90)
        assert ready["status"]["phase"] == "Ready"
        keys = v2.keys("big")
        assert score(v2, keys["scoringUri"], keys["primaryKey"]) == 200
        deployments = v2.endpoint("big-model-ep")["deployments"]  # type: ignore[index]
        live = [d for d in deployments.values() if d["state"] == "Succeeded"]
        assert len(live) == 1, deployments
    finally:
        v2.delete("big")


def _wide_cost(v2: AzureV2, name: str) -> str:
    """The $/H column of `kubectl get -o wide` ("" when empty: kubectl aligns the columns, an empty one is blanks)."""
    lines = v2.cp.kubectl("get", "gmd", name, "-n", v2.ns, "-o", "wide").stdout.splitlines()
    start = lines[0].index("$/H")
    end = lines[0].index("AGE", start)
    return lines[1][start:end].strip()


def test_get_wide_shows_what_it_costs_at_the_installation_s_prices(v2: AzureV2, price_file: Path) -> None:
    v2.apply("priced", "priced-ep", replicas=2)
    try:
        obj = v2.wait_ready("priced")
        cost = obj["status"]["cost"]
        assert (cost["perHour"], cost["currency"], cost["prices"]) == (
            1.052,
            "USD",
            "test prices, eastus, as of 2026-12",
        )
        assert [(i["size"], i["count"], i["unitPrice"]) for i in cost["items"]] == [(T4, 2, 0.526)]
        assert obj["status"]["gpus"]["held"] == 2
        assert _wide_cost(v2, "priced") == "1.052"

        # The mounted ConfigMap edited: the next resync prices the same instances anew, without a rollout.
        price_file.write_text(PRICES.format(size=T4, price=0.6))
        wait_for("the new price in the wide view", lambda: _wide_cost(v2, "priced") == "1.2", 30)
        assert re.fullmatch(r"gmo-[0-9a-f]{10}", next(iter(v2.endpoint("priced-ep")["deployments"])))  # type: ignore[index]
    finally:
        price_file.write_text(PRICES.format(size=T4, price=0.526))
        v2.delete("priced")


def test_a_size_without_a_price_shows_no_cost_and_says_why(v2: AzureV2) -> None:
    v2.apply("unpriced", "unpriced-ep", compute={"managed": {"instanceType": A100}})
    try:
        cost = v2.wait_ready("unpriced")["status"]["cost"]
        assert "perHour" not in cost and A100 in cost["message"]
        assert _wide_cost(v2, "unpriced") == ""
    finally:
        v2.delete("unpriced")
