"""Trust, tried the way a sceptical platform engineer would: the operator changes or deletes only what it created,
refuses changes that would leave a cluster billing, survives routine clean-up commands, and serves no backend its
installation did not enable. The real operator process, the real apiserver, the real azureml-core SDK against the
emulator; what happened in the cloud is read from the emulator's own call log and state."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.e2e.azure_harness import RESOURCE_GROUP, ROOT, Azure, provision
from tests.polling import wait_for

SEEDED_SERVICE = {
    "name": "prod-scoring",
    "numReplicas": 2,
    "containerResourceRequirements": {"cpu": 1, "memoryInGB": 4, "gpu": 1},
    "kvTags": {"team": "payments"},
}


def seeded_production(azure: Azure, service: str, compute: str) -> dict[str, Any]:
    """A production service deployed by someone else, on their own cluster; returns its state in the cloud."""
    azure.emu.seed(
        computes=[{"name": compute, "vm_size": "Standard_NC4as_T4_v3", "agent_count": 3}],
        services=[{**SEEDED_SERVICE, "name": service, "computeName": compute}],
    )
    return cloud_service(azure, service)


def cloud_service(azure: Azure, name: str) -> dict[str, Any]:
    return next((s for s in azure.emu.summary()["services"] if s["name"] == name), {})


def writes_to(azure: Azure, service: str) -> list[dict[str, Any]]:
    """Every call that could change or delete the service: its PATCH/DELETE, any create or key regeneration."""
    changing = [c for c in azure.calls(rf"/services/{service}(/regenerateKeys)?$") if c["method"] != "GET"]
    creates = [c for c in azure.calls(r"/services$", "POST")]
    return changing + creates


def test_an_existing_production_service_is_never_changed_or_deleted(azure: Azure) -> None:
    before = seeded_production(azure, "prod-scoring", "prod-aks")
    azure.emu.clear_calls()
    azure.apply("newcomer", "prod-scoring", provision("gpu-new", agents=1))

    reached = azure.wait_reason("newcomer", "ServiceExists", timeout=90)
    assert "was not created by the operator" in reached["message"]
    assert "gpumodel.io/take-over=true" in reached["message"]
    status = azure.get("newcomer")["status"]
    assert status["ownership"]["serviceAdopted"] is True and status["phase"] == "Failed"
    assert [e["type"] for e in azure.events("newcomer", "ServiceExists")][:1] == ["Warning"]
    assert "scoringUri" not in status  # its keys are not published either
    assert azure.cp.kubectl("get", "secret", "newcomer-scoring-keys", "-n", azure.ns, check=False).returncode != 0

    azure.delete("newcomer")
    assert writes_to(azure, "prod-scoring") == []
    assert cloud_service(azure, "prod-scoring") == before  # same state, tags, models, replicas, update time
    computes, _ = azure.cloud()
    assert "gpu-new" not in computes, "the cluster it created for nothing must not be left billing"
    assert "prod-aks" in computes


def test_taking_over_an_existing_service_and_its_cluster_is_explicit(azure: Azure) -> None:
    seeded_production(azure, "legacy-scoring", "legacy-aks")
    annotations = {"gpumodel.io/take-over": "true"}
    cluster = {"name": "legacy-aks", "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 3}}
    azure.apply("heir", "legacy-scoring", cluster, annotations=annotations)
    obj = azure.wait_ready("heir")
    ownership = obj["status"]["ownership"]
    assert ownership["serviceCreated"] is True and ownership["computeCreated"] is True
    assert not ownership["serviceAdopted"] and not ownership["computeAdopted"]
    assert cloud_service(azure, "legacy-scoring")["tags"]["gpumodel.io/owner"] == f"{azure.ns}/heir"
    azure.delete("heir")
    computes, services = azure.cloud()  # taken over: deleted with the resource, as the user asked
    assert "legacy-scoring" not in services and "legacy-aks" not in computes


def test_a_workspace_edit_is_refused_and_nothing_is_left_billing(azure: Azure) -> None:
    azure.apply("mover", "mover-svc", provision("gpu-mover", agents=1))
    ready = azure.wait_ready("mover")
    docs = [d for d in yaml.safe_load_all(azure.cp.kubectl("get", "gmd", "mover", "-n", azure.ns, "-o", "yaml").stdout)]
    moved = docs[0]
    moved["spec"]["workspace"]["resourceGroup"] = f"{RESOURCE_GROUP}-elsewhere"
    for key in ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp"):
        moved["metadata"].pop(key, None)
    moved.pop("status", None)
    result = azure.cp.kubectl("apply", "-n", azure.ns, "-f", "-", input=json.dumps(moved), check=False)
    assert result.returncode != 0
    assert "spec.workspace.subscriptionId, resourceGroup and name are immutable" in result.stderr
    after = azure.get("mover")
    assert after["metadata"]["generation"] == ready["metadata"]["generation"]
    assert after["spec"]["workspace"]["resourceGroup"] == RESOURCE_GROUP
    azure.delete("mover")
    computes, services = azure.cloud()
    assert "gpu-mover" not in computes and "mover-svc" not in services


def test_kubectl_delete_all_leaves_gpu_deployments_and_their_clusters(azure: Azure) -> None:
    azure.apply("survivor", "survivor-svc", provision("gpu-survivor", agents=1))
    azure.wait_ready("survivor")
    azure.cp.kubectl("delete", "all", "--all", "-n", azure.ns)
    obj = azure.get("survivor")
    assert "deletionTimestamp" not in obj["metadata"]
    computes, services = azure.cloud()
    assert "gpu-survivor" in computes and "survivor-svc" in services
    assert not azure.calls(r"/computes/gpu-survivor$", "DELETE") and not azure.calls(
        r"/services/survivor-svc$", "DELETE"
    )
    azure.delete("survivor")


def test_a_local_resource_is_refused_where_local_serving_is_not_enabled(azure: Azure) -> None:
    """This operator serves no local backend, as the cluster install does not; admission would refuse the resource
    there (tests/integration/test_admission.py), and the operator refuses it too, running nothing."""
    docs = list(yaml.safe_load_all(azure.cp.kubectl("kustomize", str(ROOT / "manifests/examples/local")).stdout))
    for doc in docs:
        if doc["kind"] == "GpuModelDeployment":
            doc["metadata"]["name"] = "sneaky"
            doc["spec"]["model"]["path"] = "/etc"
    azure.cp.kubectl("apply", "-n", azure.ns, "-f", "-", input=yaml.safe_dump_all(docs))
    reached = azure.wait_reason("sneaky", "BackendNotEnabled")
    assert "backend local is not enabled in this operator" in reached["message"]
    assert azure.get("sneaky")["status"]["phase"] == "Failed"
    assert azure.events("sneaky", "BackendNotEnabled")
    state_dir = azure.operator.state_dir
    assert not (state_dir / "services").exists() and not (state_dir / "envs").exists(), "nothing may have run"
    azure.cp.kubectl("delete", "gmd", "sneaky", "-n", azure.ns, "--timeout=60s")
    wait_for("sneaky gone", lambda: azure.cp.kubectl("get", "gmd", "sneaky", "-n", azure.ns, check=False).returncode)
