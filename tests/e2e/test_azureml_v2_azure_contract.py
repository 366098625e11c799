"""The azureml-v2 backend against Azure as Azure documents it (issue 21): each test is one place where the operator
would break on real Azure while every other test passed, because the emulator and the backend shared a belief.
The emulator now answers as Azure's documentation, REST specification and issue threads say (``azureml_emulator/v2``,
each rule citing its source); these tests say what the operator must then do.

- A size of the managed SKU list's "Skip 20% Reservation" families fits its quota exactly.
- A name Azure still holds after a deletion (managed: 404 NotFound/InferencingClientCallFailed; Kubernetes: 400
  "already exists in cluster") is waited for, with a condition that says so, and never failed for good.
- The CRD refuses what Azure refuses: retired sizes and sizes not on the managed SKU list, more than 50 managed
  instances, names Azure's rules do not allow.
- A failed deployment's reason is Azure's, from the operation's status: the logs of a container that never started
  say only "try again later".
- A canceled operation ("waiting for lock confirmation") is retried, not reported as a failure.
- Another region's endpoint of the same name is answered with ARM's 400 validation problem: a name conflict.
- Quota is read at the scope that binds: a workspace's limit below the subscription's.

Every resource is deleted whatever the test's outcome: an endpoint left behind holds quota every later test needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE
from tests.e2e.azure_v2_harness import AzureV2, arm_token, kubernetes, managed, run_v2_operator
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(300)

T4_FAMILY, A100_FAMILY = "standardNCASv3_T4Family", "standardNCADSA100v4Family"


@pytest.fixture(scope="module")
def v2_operator(
    control_plane: Any, v2_emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from run_v2_operator(control_plane, v2_emu, tmp_path_factory)


def _wait(v2: AzureV2, name: str, what: str, probe: Any, timeout: float) -> dict[str, Any]:
    """``wait_for`` that names, at its deadline, the Ready condition the resource had instead."""
    try:
        found: dict[str, Any] = wait_for(what, probe, timeout)
    except AssertionError:
        warnings = [f"{e['reason']}: {e['message']}" for e in v2.events(name) if e["type"] == "Warning"]
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; Ready was {v2.condition(name)}; warnings: {warnings}"
        ) from None
    return found


def _gone(v2: AzureV2, name: str, endpoint: str) -> None:
    """Delete the resource and wait for its endpoint to go (nothing of it may hold quota for the next test)."""
    v2.cp.kubectl("delete", "gmd", name, "-n", v2.ns, "--ignore-not-found", "--timeout=120s")
    v2.wait_endpoint_gone(endpoint, 60)


def test_a_size_that_skips_the_reserve_fits_its_quota_exactly(v2: AzureV2) -> None:
    """Two NC24ads_A100_v4 hold 2 x 24 = 48 vCPUs: Azure's managed SKU list marks NC A100 v4 "Skip 20%
    Reservation", so a limit of 48 holds both (with the reserve they would need 72)."""
    v2.emu.v2.configure(family_limits={A100_FAMILY: 48})
    v2.apply("a100", "a100-ep", managed("Standard_NC24ads_A100_v4"), replicas=2)
    try:
        obj = v2.wait_ready("a100")
        assert obj["status"]["replicasSummary"] == "2/2", obj["status"]
        assert v2.condition("a100")["reason"] != "ReplicasCapped"
    finally:
        _gone(v2, "a100", "a100-ep")


def _no_failure_while_held(v2: AzureV2, name: str, endpoint: str, compute: dict[str, Any], gpu_cores: int = 1) -> None:
    """Create, delete, and create again at once under the same name: Azure holds the name for a while (here 20 s,
    the emulator's ``endpoint_name_hold_s``; Azure does not say how long). The operator waits and says why, then
    the endpoint is made and Ready; it never reports the refusal as a failure."""
    v2.emu.v2.configure(endpoint_name_hold_s=20)
    try:
        v2.apply(name, endpoint, compute, gpu_cores=gpu_cores)
        v2.wait_ready(name)
        _gone(v2, name, endpoint)
        v2.apply(name, endpoint, compute, gpu_cores=gpu_cores)

        def says_so() -> dict[str, Any] | None:
            cond = v2.condition(name)
            held = cond.get("status") == "False" and re.search(r"held|deleted", cond.get("message", ""), re.I)
            return cond if held else None

        waiting = _wait(v2, name, "a condition that says the name is held", says_so, 30)
        assert endpoint in waiting["message"]
        v2.wait_ready(name, 90)
        assert v2.events(name, "ServiceFailed") == [], "a held name is not a failure"
    finally:
        v2.emu.v2.configure(endpoint_name_hold_s=0)
        _gone(v2, name, endpoint)


def test_a_managed_name_held_after_deletion_is_waited_for(v2: AzureV2) -> None:
    _no_failure_while_held(v2, "again", "again-ep", managed())


def test_a_kubernetes_name_held_in_its_cluster_is_waited_for(v2: AzureV2) -> None:
    _no_failure_while_held(v2, "kagain", "kagain-ep", kubernetes(), gpu_cores=2)


def test_the_crd_refuses_what_azure_refuses(v2: AzureV2) -> None:
    """Each of these is accepted by a CRD that does not follow Azure's rules, and then fails at Azure."""
    cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "NVv3, retired on 2026-09-30": (managed("Standard_NV12s_v3"), {}),
        "ND H200 v5, not on the managed SKU list": (managed("Standard_ND96isr_H200_v5"), {}),
        "NCv3, retired on 2025-09-30": (managed("Standard_NC6s_v3"), {}),
        "51 managed instances": (managed(), {"replicas": 51}),
        "a compute name ending in a dash and digits": (
            {"kubernetes": {**kubernetes()["kubernetes"], "computeName": "k8s-1"}},
            {},
        ),
    }
    accepted = []
    try:
        for i, (case, (compute, extra)) in enumerate(cases.items()):
            try:
                v2.apply(f"refused-{i}", f"refused-{i}-ep", compute, **extra)
            except RuntimeError:
                continue
            accepted.append(case)
        try:
            v2.apply("dashes", "digits--ep", managed())
        except RuntimeError:
            pass
        else:
            accepted.append("an endpoint name with two dashes in a row")
        assert accepted == [], f"the CRD accepted what Azure refuses: {accepted}"
    finally:
        names = [f"refused-{i}" for i in range(len(cases))] + ["dashes"]
        v2.cp.kubectl("delete", "gmd", *names, "-n", v2.ns, "--ignore-not-found", "--timeout=120s")


def test_a_failed_deployment_says_azures_reason(v2: AzureV2) -> None:
    """The new deployment's image build fails: Azure says ImageBuildFailure in the operation's status; the
    container never ran, so its logs say only to try again later. The rollback still runs."""
    v2.apply("why", "why-ep", managed())
    try:
        v2.wait_ready("why")
        old = next(iter(k for k, w in (v2.endpoint("why-ep") or {}).get("traffic", {}).items() if w))
        v2.emu.v2.fail_start(endpoint="^why-ep$", deployment=f"^(?!{old}$)", code="ImageBuildFailure", times=1)
        v2.apply("why", "why-ep", managed(), version=2)
        cond = v2.wait_reason("why", "ServiceFailed")
        assert "ImageBuildFailure" in cond["message"], cond["message"]
        assert f"{old} keeps serving 100%" in cond["message"]
        assert v2.score("why").status_code == 200
    finally:
        _gone(v2, "why", "why-ep")


def test_a_canceled_operation_is_retried_not_failed(v2: AzureV2) -> None:
    """Azure cancels an operation "waiting for lock confirmation" and says a retry after up to a minute may
    succeed: the first deployment's operation ends Canceled once; the operator tries again and is Ready."""
    v2.emu.v2.fail_start(endpoint="^cancel-ep$", code="OperationCanceled", times=1)
    v2.apply("cancel", "cancel-ep", managed())
    try:
        v2.wait_ready("cancel", 120)
        assert v2.events("cancel", "ServiceFailed") == [], "a canceled operation is not a failure"
    finally:
        _gone(v2, "cancel", "cancel-ep")


def _arm_elsewhere(emu: Emulator, method: str, endpoint: str, body: Any = None) -> requests.Response:
    """An endpoint of another workspace of the same region (a name there is taken region-wide)."""
    url = (
        f"{emu.base_url}/subscriptions/{SUBSCRIPTION}/resourceGroups/other-rg/providers/"
        f"Microsoft.MachineLearningServices/workspaces/other-ws/onlineEndpoints/{endpoint}"
    )
    return requests.request(
        method, url, json=body, params={"api-version": "2023-04-01-preview"},
        headers={"Authorization": f"Bearer {arm_token(emu)}"}, verify=str(emu.ca_file), timeout=10,
    )  # fmt: skip


def test_a_region_wide_name_clash_is_a_conflict(v2: AzureV2) -> None:
    """Azure answers a name another workspace's endpoint has in the region with a 400 validation problem ("Endpoint
    name needs to be unique within a region"), not a 409: the operator reports a name conflict, not a failure."""
    v2.emu.seed(workspaces=[{"resource_group": "other-rg", "name": "other-ws"}])
    made = _arm_elsewhere(v2.emu, "PUT", "taken-ep", {"location": "eastus", "properties": {"authMode": "Key"}})
    assert made.status_code == 201, made.text
    v2.apply("clash", "taken-ep", managed())
    try:

        def conflict() -> dict[str, Any] | None:
            cond = v2.condition("clash")
            return cond if cond.get("reason") == "ServiceNameConflict" else None

        cond = _wait(v2, "clash", "the Ready condition's reason ServiceNameConflict", conflict, 60)
        assert "taken-ep" in cond["message"]
        assert v2.events("clash", "ServiceFailed") == []
    finally:
        v2.cp.kubectl("delete", "gmd", "clash", "-n", v2.ns, "--ignore-not-found", "--timeout=120s")
        _arm_elsewhere(v2.emu, "DELETE", "taken-ep")


def test_quota_is_read_at_the_workspaces_scope(v2: AzureV2) -> None:
    """The subscription allows 24 T4 vCPUs, the workspace 8 (one instance with its reserve): Azure lists a row per
    scope under the same family name, the subscription's first; the workspace's binds, so the operator deploys one
    instance of two and says it is capped."""
    workspace = f"{SUBSCRIPTION}/{RESOURCE_GROUP}/{WORKSPACE}"
    v2.emu.v2.configure(workspace_limits={workspace: {T4_FAMILY: 8}})
    v2.apply("scoped", "scoped-ep", managed(), replicas=2)
    try:
        obj = v2.wait_ready("scoped")
        assert obj["status"]["replicasSummary"] == "1/2", obj["status"]
        assert v2.condition("scoped")["reason"] == "ReplicasCapped"
    finally:
        v2.emu.v2.configure(workspace_limits={})
        _gone(v2, "scoped", "scoped-ep")
