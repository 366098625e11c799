"""Converging truthfully on the azureml backend, tried the way teams meet it: clusters shared by resources that are
deleted together, keys regenerated in Azure, replicas that need several GPUs on one node, scales AKS refuses,
names spelled in other letter cases, clusters of a size the operator does not know. The real operator process,
the real apiserver, the real azureml-core against the emulator; the cloud's state is read from the emulator."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from gpu_model_operator_dev.azureml_emulator.resources import ws_key
from tests.e2e.azure_harness import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, Azure, provision
from tests.polling import wait_for

WS = ws_key(SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)


def gone(azure: Azure, name: str) -> bool:
    return azure.cp.kubectl("get", "gmd", name, "-n", azure.ns, check=False).returncode != 0


def shared_pair(azure: Azure, compute: str) -> None:
    """Two resources, each a 1-replica service on one shared cluster, both Ready."""
    azure.apply("alpha", f"{compute}-alpha", provision(compute, agents=2))
    azure.apply("beta", f"{compute}-beta", provision(compute, agents=2))
    azure.wait_ready("alpha")
    azure.wait_ready("beta")


@dataclass(frozen=True)
class Interleaving:
    """How two users of one shared cluster are deleted."""

    #: The shared cluster, one per case.
    compute: str
    #: The second is deleted only once the first's service DELETE is sent (else both at once).
    staggered: bool = False
    #: A third resource names the cluster but never used it.
    bystander: bool = False


INTERLEAVINGS: dict[str, Interleaving] = {
    "together": Interleaving("gpu-sh1"),
    "second-while-first-deletes-its-service": Interleaving("gpu-sh2", staggered=True),
    "with-a-bystander": Interleaving("gpu-sh3", bystander=True),
}


@pytest.mark.parametrize("name", INTERLEAVINGS)
def test_the_last_user_out_deletes_a_shared_cluster(azure: Azure, name: str) -> None:
    case = INTERLEAVINGS[name]
    compute = case.compute
    shared_pair(azure, compute)
    if case.bystander:
        # A third resource names the cluster but never used it: its ConfigMap does not exist, so it never deployed.
        azure.apply(
            "bystander",
            f"{compute}-by",
            provision(compute, agents=2),
            annotations={"gpumodel.io/reconcile-policy": "skip"},
        )
        patch = json.dumps({"spec": {"source": {"configMapRef": {"name": "no-such-configmap"}}}})
        azure.cp.kubectl("patch", "gmd", "bystander", "-n", azure.ns, "--type=merge", "-p", patch)
        azure.cp.kubectl("annotate", "gmd", "bystander", "-n", azure.ns, "gpumodel.io/reconcile-policy-")
        azure.wait_reason("bystander", "SourceNotFound")
    if case.staggered:
        azure.cp.kubectl("delete", "gmd", "alpha", "-n", azure.ns, "--wait=false")
        wait_for("alpha's service DELETE", lambda: azure.calls(rf"/services/{compute}-alpha$", "DELETE"), 60)
        azure.cp.kubectl("delete", "gmd", "beta", "-n", azure.ns, "--wait=false")
    else:
        azure.cp.kubectl("delete", "gmd", "alpha", "beta", "-n", azure.ns, "--wait=false")
    wait_for("both resources gone", lambda: gone(azure, "alpha") and gone(azure, "beta"), 120)
    wait_for("the shared cluster deleted", lambda: compute not in azure.cloud()[0], 60)
    _, services = azure.cloud()
    assert f"{compute}-alpha" not in services and f"{compute}-beta" not in services
    assert len(azure.calls(rf"/computes/{compute}$", "DELETE")) >= 1
    if case.bystander:
        azure.delete("bystander")


def score(azure: Azure, uri: str, key: str) -> int:
    """A client's request with the key from the Secret, over TLS the emulator's CA vouches for."""
    request = urllib.request.Request(
        uri, data=b'{"data": [[0]]}', headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )
    context = ssl.create_default_context(cafile=str(azure.emu.ca_file))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_a_key_regenerated_in_azure_reaches_the_secret(azure: Azure) -> None:
    azure.apply("rotated", "rotated-svc", provision("gpu-rot", agents=1))
    azure.wait_ready("rotated")
    before = azure.keys("rotated")
    assert score(azure, before["scoringUri"], before["primaryKey"]) == 200
    # Someone regenerates the primary key with the Azure CLI, behind the operator's back.
    assert azure.emu.state is not None
    azure.emu.state.service_store.regenerate_key(WS, "rotated-svc", "Primary", None)
    assert score(azure, before["scoringUri"], before["primaryKey"]) == 401

    def refreshed() -> dict[str, str] | None:
        keys = azure.keys("rotated")
        return keys if keys["primaryKey"] != before["primaryKey"] else None

    after = wait_for("the Secret to carry the regenerated key", refreshed, 60)
    assert after["secondaryKey"] == before["secondaryKey"]
    assert score(azure, after["scoringUri"], after["primaryKey"]) == 200, "a client reading the Secret can score again"
    assert azure.events("rotated", "KeysPublished")
    azure.cp.kubectl("delete", "secret", "rotated-scoring-keys", "-n", azure.ns)  # and a deleted Secret comes back
    wait_for("the Secret published again", lambda: azure.cp.kubectl(
        "get", "secret", "rotated-scoring-keys", "-n", azure.ns, check=False).returncode == 0, 60)  # fmt: skip
    assert azure.keys("rotated")["primaryKey"] == after["primaryKey"]
    azure.delete("rotated")


def test_two_gpus_per_replica_never_land_on_one_gpu_nodes(azure: Azure) -> None:
    """An existing cluster of one-GPU nodes (3 GPUs in all): a replica of 2 GPUs fits on no node."""
    azure.emu.clear_calls()
    with pytest.raises(RuntimeError, match="gpuCores"):  # refused at kubectl apply for a known VM size
        azure.apply(
            "wide", "wide-svc", {"name": "gpu-t4x3", "provision": {"vmSize": "Standard_NC4as_T4_v3"}}, gpu_cores=2
        )
    # Attached, the same cluster has no provision block for the CRD to check: the operator reports it.
    aks = {"resource_group": "aks-rg", "name": "t4-aks", "vm_size": "Standard_NC4as_T4_v3", "agent_count": 3}
    azure.emu.seed(aks_clusters=[aks])
    attach = {"name": "gpu-t4att", "attach": {"resourceGroup": "aks-rg", "clusterName": "t4-aks"}}
    azure.apply("wide2", "wide2-svc", attach, gpu_cores=2)
    cond = azure.wait_reason("wide2", "InsufficientGPUs", 90)
    assert "each replica needs 2 GPUs on one node" in cond["message"]
    assert azure.calls(r"/services$", "POST") == [], "nothing is deployed that AKS could not schedule"
    azure.delete("wide2")


def test_replicas_are_capped_by_what_fits_node_by_node(azure: Azure) -> None:
    """Two 2-GPU nodes; another deployment's two 1-GPU replicas spread over both (AKS places each pod on the least
    allocated node), so 2 GPUs are free but one on each node: a 2-GPU replica fits nowhere, and the operator says
    so rather than deploying a service AKS cannot schedule."""
    a100 = {"vmSize": "Standard_NC48ads_A100_v4", "agentCount": 2, "clusterPurpose": "DevTest"}
    azure.apply("spread", "spread-svc", {"name": "gpu-a100x2", "provision": a100}, replicas=2)
    azure.wait_ready("spread")
    azure.emu.clear_calls()
    azure.apply("frag", "frag-svc", {"name": "gpu-a100x2", "provision": a100}, gpu_cores=2)
    cond = azure.wait_reason("frag", "InsufficientGPUs", 90)
    assert "replicas of 2 GPU(s), each on one node, allow 0" in cond["message"]
    assert azure.calls(r"/services$", "POST") == [], "nothing is deployed that AKS could not schedule"
    azure.delete("frag")
    azure.delete("spread")


def test_a_scale_aks_refuses_is_reported_not_repeated(azure: Azure) -> None:
    """AKS may refuse a scale the operator's estimate allowed (its listing is up to 30 s old; another team took
    the GPUs a moment ago): it keeps the old replicas and says why. The operator reports ScaleFailed and tries
    again at the resync (every 5 s in this module), not at every poll (every second)."""
    azure.apply("scaler", "scaler-svc", provision("gpu-scale", agents=2))
    azure.wait_ready("scaler")
    refusal = "Deployment Failed. InsufficientGPU: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    azure.emu.add_fault(action="operation_failed", target="service", name="scaler-svc", message=refusal, times=1000)
    azure.apply("scaler", "scaler-svc", provision("gpu-scale", agents=2), replicas=2)
    cond = azure.wait_reason("scaler", "ScaleFailed", 60)
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert azure.get("scaler")["status"]["phase"] == "Degraded"
    first = len(azure.calls(r"/services/scaler-svc$", "PATCH"))
    time.sleep(10)  # a window of ten polls, two resyncs: what is measured here is how often it scales
    assert len(azure.calls(r"/services/scaler-svc$", "PATCH")) - first <= 3, "a refused scale is not a hot loop"
    azure.emu.clear_faults()  # the GPUs are free again: the next resync scales
    obj = azure.wait_ready("scaler")
    assert obj["status"]["replicasSummary"] == "2/2" and obj["status"]["phase"] == "Ready"
    azure.delete("scaler")


def test_names_in_other_letter_cases_are_the_same_cluster(azure: Azure) -> None:
    """Azure names ignore case: two spellings of one cluster share its GPUs, and deleting one resource never
    deletes the cluster the other still runs on (its creator, deleted first, waits for the other spelling's user and
    deletes the cluster once that one is gone)."""
    azure.apply("lower", "lower-svc", provision("gpu-mixed", agents=3), replicas=2)
    azure.wait_ready("lower")
    azure.apply(
        "upper", "upper-svc", provision("GPU-Mixed", agents=3), replicas=2, resource_group=RESOURCE_GROUP.upper()
    )
    obj = azure.wait_ready("upper")
    assert obj["status"]["replicasSummary"] == "1/2", "3 GPUs in all, 2 held by the other spelling's replicas"
    assert obj["status"]["gpus"]["heldByOthers"] == 2
    azure.cp.kubectl("delete", "gmd", "lower", "-n", azure.ns, "--wait=false")
    waiting = wait_for(
        "lower waiting for the other spelling's user",
        lambda: (cond := azure.condition("lower")).get("message", "").startswith("waiting to delete compute") and cond,
        60,
    )
    assert f"still used by {azure.ns}/upper" in waiting["message"]
    computes, services = azure.cloud()
    assert "gpu-mixed" in {c.lower() for c in computes}, "the cluster the other resource runs on stays"
    assert "upper-svc" in services and "lower-svc" not in services
    azure.delete("upper")
    wait_for("lower gone", lambda: azure.cp.kubectl("get", "gmd", "lower", "-n", azure.ns, check=False).returncode, 90)
    computes, _ = azure.cloud()
    assert "gpu-mixed" not in {c.lower() for c in computes}


def test_a_cluster_of_unknown_size_can_still_be_deleted(azure: Azure) -> None:
    """An attached cluster of CPU nodes (a size with no GPU in the operator's table): deciding replicas is
    impossible, and said so; deleting the resource must still finish and detach it."""
    azure.emu.seed(
        aks_clusters=[{"resource_group": "aks-rg", "name": "cpu-aks", "vm_size": "Standard_D4s_v3", "agent_count": 3}]
    )
    azure.apply("cpu", "cpu-svc", {"name": "cpu-att", "attach": {"resourceGroup": "aks-rg", "clusterName": "cpu-aks"}})
    cond = azure.wait_reason("cpu", "InvalidVmSize", 90)
    assert "Standard_D4s_v3" in cond["message"]
    azure.delete("cpu")  # kubectl waits for the finalizer: it would time out if deletion needed the GPU count
    computes, _ = azure.cloud()
    assert "cpu-att" not in computes
    assert azure.events("cpu", "DetachedCompute")
