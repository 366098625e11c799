"""The operator end to end on the azureml backend: a real apiserver, the operator as a real process, the real
azureml-core SDK inside it, and the Azure ML emulator (HTTPS, on a thread of this process) as the cloud.

Operations settle in about a second, as configured below; the operator polls every second and resyncs every
5 s. Each test uses its own compute and service names, so the workspace it shares with the others stays
readable in the emulator's state and call log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.azure_harness import CLIENT_SECRET, SECRET, Azure, provision
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(240)


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
    # Three nodes: an attach without a cluster purpose is a production cluster, which Azure ML requires to have 3.
    cluster = {"resource_group": "aks-rg", "name": "existing-aks", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 3}
    resource_id = azure.emu.seed(aks_clusters=[cluster])["aks_clusters"][0]
    attach = {"name": "attached", "attach": {"resourceGroup": "aks-rg", "clusterName": "existing-aks"}}
    azure.apply("digits", "digits-attached", attach)
    obj = azure.wait_ready("digits")
    assert obj["status"]["gpus"]["total"] == 3
    assert "attached cluster attached" in azure.condition("digits", "ComputeReady")["message"]

    azure.delete("digits")
    computes, services = azure.cloud()
    assert "attached" not in computes and "digits-attached" not in services
    deletes = azure.calls(r"/computes/attached$", "DELETE")
    assert [c["query"].get("underlyingResourceAction") for c in deletes] == ["detach"]
    assert azure.events("digits", "DetachedCompute")
    assert azure.emu.state is not None and resource_id.lower() in azure.emu.state.aks_clusters, "the cluster stays"


def test_shared_compute_is_deleted_with_its_last_user(azure: Azure) -> None:
    """Its creator, deleted first, waits for the other user (naming it) and deletes it when that one is gone."""
    azure.apply("first", "shared-first", provision("gpu-shared"))
    azure.wait_ready("first")  # first creates the cluster ...
    azure.apply("second", "shared-second", provision("gpu-shared"))
    obj = azure.wait_ready("second")  # ... second uses it, next to first's replica
    assert obj["status"]["gpus"] == {"total": 2, "heldByOthers": 1, "held": 1}

    # The creator goes first: it deletes its service and waits for the cluster's other user, saying who that is.
    azure.cp.kubectl("delete", "gmd", "first", "-n", azure.ns, "--wait=false")
    waiting = wait_for(
        "first waiting for the cluster's other user",
        lambda: (cond := azure.condition("first")).get("message", "").startswith("waiting to delete compute") and cond,
        60,
    )
    assert f"still used by {azure.ns}/second" in waiting["message"]
    computes, services = azure.cloud()
    assert "gpu-shared" in computes and services >= {"shared-second"} and "shared-first" not in services
    azure.wait_ready("second")

    # The last user out: the creator, still waiting, deletes the cluster once second is gone.
    azure.delete("second")
    wait_for("first gone", lambda: azure.cp.kubectl("get", "gmd", "first", "-n", azure.ns, check=False).returncode, 90)
    computes, services = azure.cloud()
    assert "gpu-shared" not in computes and "shared-second" not in services


def test_missing_model_fails_without_a_retry_storm(azure: Azure) -> None:
    azure.emu.seed(computes=[{"name": "gpu-seeded", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 1}])
    seeded = {"name": "gpu-seeded", "provision": {"vmSize": "Standard_NC4as_T4_v3"}}
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
    azure.emu.seed(computes=[{"name": "gpu-creds", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 1}])
    azure.apply("digits", "digits-creds", {"name": "gpu-creds", "provision": {"vmSize": "Standard_NC4as_T4_v3"}})
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
    azure.emu.seed(computes=[{"name": "gpu-flaky", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 1}])
    azure.emu.add_fault(action="reset", method="GET", path=r"/computes/gpu-flaky$", times=1)
    azure.emu.add_fault(
        action="status", status=429, retry_after=retry_after, method="GET", path=r"/services/digits-flaky$", times=1
    )
    azure.emu.add_fault(action="status", status=503, method="POST", path=r"/services$", times=2)
    azure.apply("digits", "digits-flaky", {"name": "gpu-flaky", "provision": {"vmSize": "Standard_NC4as_T4_v3"}})
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


def test_retain_policy_keeps_the_cluster(azure: Azure) -> None:
    azure.apply("kept", "kept-svc", {**provision("gpu-kept"), "deletionPolicy": "Retain"})
    assert azure.wait_ready("kept")["status"]["ownership"]["computeCreated"]
    azure.delete("kept")
    computes, services = azure.cloud()
    assert "gpu-kept" in computes and "kept-svc" not in services
    retained = azure.events("kept", "RetainedCompute")
    assert retained and "deletionPolicy: Retain" in retained[0]["message"]


def test_an_existing_compute_is_adopted_and_never_deleted(azure: Azure) -> None:
    azure.emu.seed(computes=[{"name": "gpu-theirs", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 1}])
    azure.apply("guest", "guest-svc", provision("gpu-theirs", agents=1))
    status = azure.wait_ready("guest")["status"]
    assert status["ownership"]["computeAdopted"] and not status["ownership"]["computeCreated"]
    assert azure.condition("guest", "ComputeReady")["reason"] == "ComputeAdopted"
    azure.delete("guest")
    computes, services = azure.cloud()
    assert "gpu-theirs" in computes, "the operator did not create it, so it does not delete it"
    assert "guest-svc" not in services


def test_a_settled_resource_costs_one_service_read_and_no_write_per_resync(azure: Azure) -> None:
    """The steady state against Azure: each resync of a Ready resource reads its service and its keys once and
    probes it; it reads no compute, lists nothing, writes nothing, and leaves the unchanged resource unpatched."""
    azure.apply("steady", "steady-svc", provision("gpu-steady", agents=1), replicas=1)
    version = azure.wait_ready("steady")["metadata"]["resourceVersion"]
    azure.emu.clear_calls()
    wait_for("three resyncs", lambda: len(azure.calls(r"/api/v1/service/steady-svc/$", "GET")) >= 3, 40)
    calls = azure.emu.calls()
    probes = [c for c in calls if c["path"].endswith("/api/v1/service/steady-svc/")]
    reads = [c for c in calls if c["method"] == "GET" and c["path"].endswith("/services/steady-svc")]
    keys = [c for c in calls if c["method"] == "POST" and c["path"].endswith("/services/steady-svc/listkeys")]
    writes = [
        (c["method"], c["path"])
        for c in calls
        if c["method"] in ("PUT", "PATCH", "DELETE")
        or (c["method"] == "POST" and "oauth2" not in c["path"] and not c["path"].endswith("/listkeys"))
    ]
    # One read per probe; a pass may be between its read and its probe when the calls are cleared or counted.
    assert abs(len(reads) - len(probes)) <= 1
    # The keys are read afresh once per resync (listkeys is a POST to the workspace's regional host, not ARM): AKS's
    # health route takes no key, so keys regenerated at Azure reach the Secret only this way, within one interval.
    assert abs(len(keys) - len(probes)) <= 1
    assert writes == []
    assert not [c for c in calls if "/computes/gpu-steady" in c["path"]], "a settled resync reads no compute"
    assert not [c for c in calls if c["path"].endswith("/services") and c["method"] == "GET"], "nor lists services"
    assert azure.get("steady")["metadata"]["resourceVersion"] == version, "an unchanged status is not patched"
    azure.delete("steady")


def test_deployments_applied_together_all_converge(azure: Azure) -> None:
    """Several resources at once deploy in parallel in the SDK's thread pool: each gets its own compute and
    service, none fails (the SDK's entry-script syntax check once failed valid scripts when run in parallel)."""
    names = [f"batch-{i}" for i in range(6)]
    for i, name in enumerate(names):
        azure.apply(name, f"batch-svc-{i}", provision(f"gpu-batch{i}", agents=1), replicas=1)
    for name in names:
        azure.wait_ready(name)
    assert [e["reason"] for name in names for e in azure.events(name) if e["type"] == "Warning"] == []
    computes, services = azure.cloud()
    assert {f"gpu-batch{i}" for i in range(6)} <= computes and {f"batch-svc-{i}" for i in range(6)} <= services
    for name in names:
        azure.cp.kubectl("delete", "gmd", name, "-n", azure.ns, "--wait=false")
    wait_for("every batch deployment deleted", lambda: not any(n.startswith("gpu-batch") for n in azure.cloud()[0]), 90)
    assert not any(s.startswith("batch-svc") for s in azure.cloud()[1])


def test_a_missing_credentials_secret_or_key_is_named_then_fixed(azure: Azure) -> None:
    azure.cp.kubectl("delete", "secret", SECRET, "-n", azure.ns)
    azure.apply("nosecret", "nosecret-svc", provision("gpu-nosecret", agents=1), replicas=1)
    cond = azure.wait_reason("nosecret", "CredentialsInvalid")
    assert f"Secret {SECRET} not found in namespace {azure.ns}" in cond["message"]
    assert azure.get("nosecret")["status"]["phase"] == "Failed"

    partial = {"tenantId": "adfs", "clientId": "gpu-operator"}  # no clientSecret
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": partial}
    azure.cp.kubectl("apply", "-n", azure.ns, "-f", "-", input=json.dumps(body))
    azure.cp.kubectl("annotate", "gmd", "nosecret", "-n", azure.ns, "gpumodel.io/retry-now=1")
    missing_key = f"Secret {SECRET} has no key clientSecret"
    wait_for("the missing key named", lambda: missing_key in azure.condition("nosecret").get("message", ""), 30)
    assert "gpu-nosecret" not in azure.cloud()[0], "nothing was created without credentials"

    azure.secret()
    azure.cp.kubectl("annotate", "gmd", "nosecret", "-n", azure.ns, "gpumodel.io/retry-now=2", "--overwrite")
    azure.wait_ready("nosecret")
    azure.delete("nosecret")


def test_a_service_name_owned_by_another_resource_is_a_conflict_left_untouched(azure: Azure) -> None:
    azure.apply("first", "shared-name", provision("gpu-first", agents=1), replicas=1)
    azure.wait_ready("first")
    azure.apply("second", "shared-name", provision("gpu-second", agents=1), replicas=1)
    cond = azure.wait_reason("second", "ServiceNameConflict")
    assert "first" in cond["message"]
    assert azure.events("second", "ServiceNameConflict")[0]["type"] == "Warning"
    assert azure.condition("first")["status"] == "True", "the owner's service is not touched"
    azure.delete("second")
    computes, services = azure.cloud()
    assert "shared-name" in services, "deleting the loser never deletes the owner's service"
    assert "gpu-second" not in computes, "nor leaves its own cluster billing"
    azure.delete("first")
    assert "shared-name" not in azure.cloud()[1]
