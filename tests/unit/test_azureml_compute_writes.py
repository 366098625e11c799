"""The azureml backend's compute PUTs, sent through the ARM client: the path and api-version azureml-core 1.61 uses,
and the body its own payload builders make for the same configuration, with the operator's ownership (tags and a
description) added. The builders are private to azureml-core, so the product cannot call them; this test does, as
the reference the product's bodies must equal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator.backends.azureml import sdk, writes
from gpu_model_operator.models import ClusterPurpose, Provision

OWNER = "ml/fraud/uid-1"
PATH = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/computes/{}"


class Workspace:
    """What a write reads of the SDK's Workspace."""

    subscription_id, resource_group, name, location = "sub", "rg", "ws", "eastus"


class Arm:
    """Records what would be sent, with the ARM client's signature."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, Any, tuple[int, ...]]] = []

    def send(self, method: str, path: str, api_version: str, body: Any = None, *, ok: tuple[int, ...] = ()) -> None:
        self.sent.append((method, path, api_version, body, ok))


def reference_provision(provision: Provision) -> dict[str, Any]:
    config = sdk.AksCompute.provisioning_configuration(
        agent_count=provision.agent_count,
        vm_size=provision.vm_size,
        location=provision.location,
        cluster_purpose=provision.cluster_purpose.value,
    )
    return writes._mark(
        sdk.AksCompute._build_create_payload(config, Workspace.location, Workspace.subscription_id), OWNER
    )


def reference_attach(resource_group: str, cluster: str) -> dict[str, Any]:
    config = sdk.AksCompute.attach_configuration(resource_group=resource_group, cluster_name=cluster)
    resource_id = sdk.AksCompute._build_resource_id(Workspace.subscription_id, resource_group, cluster)
    payload = sdk.AksCompute._build_attach_payload(config, resource_id)
    payload["location"] = Workspace.location  # what ComputeTarget._attach adds before its PUT
    return writes._mark(payload, OWNER)


@dataclass(frozen=True)
class Case:
    write: Any  # (arm, workspace) -> None
    reference: dict[str, Any]
    name: str


T4 = Provision(vm_size="Standard_NC4as_T4_v3", agent_count=2)
ELSEWHERE = Provision(
    vm_size="Standard_NC6s_v3", agent_count=3, location="westus", cluster_purpose=ClusterPurpose.DEV_TEST
)
CASES: dict[str, Case] = {
    "a cluster provisioned in the workspace's region": Case(
        lambda arm, ws: writes.provision_compute(arm, ws, "gpu", T4, OWNER), reference_provision(T4), "gpu"
    ),
    "a dev-test cluster in another region": Case(
        lambda arm, ws: writes.provision_compute(arm, ws, "gpu2", ELSEWHERE, OWNER),
        reference_provision(ELSEWHERE),
        "gpu2",
    ),
    "an AKS cluster attached": Case(
        lambda arm, ws: writes.attach_compute(arm, ws, "att", "aks-rg", "aks1", OWNER),
        reference_attach("aks-rg", "aks1"),
        "att",
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_the_put_is_azureml_core_s_with_the_operator_s_ownership(name: str) -> None:
    case, arm = CASES[name], Arm()
    case.write(arm, Workspace())
    assert arm.sent == [("PUT", PATH.format(case.name), "2020-02-02", case.reference, (200, 201, 202))]
    assert case.reference["tags"] == {"managed-by": "gpu-model-operator", "gpumodel-owner": OWNER}


# ---- whose compute it is: the owner tag with the uid, read at the observation --------------------------------


@dataclass(frozen=True)
class OwnerCase:
    """A compute's tags and description as ARM returns them, and whether it is the resource ``OWNER``'s."""

    tags: dict[str, str] | None
    description: str | None
    owner: str | None
    ours: bool


OWNERS: dict[str, OwnerCase] = {
    "tagged for this resource": OwnerCase(
        {"managed-by": "gpu-model-operator", "gpumodel-owner": OWNER}, None, OWNER, ours=True
    ),
    # Issue 20, defect 3: managed-by alone was taken for ownership; a cluster kept by an earlier resource of this
    # name (deletionPolicy Retain) is ComputeAdopted, never deleted with this one.
    "issue 20: tagged for an earlier resource of the same name (kept by Retain)": OwnerCase(
        {"managed-by": "gpu-model-operator", "gpumodel-owner": "ml/fraud/uid-0"}, None, "ml/fraud/uid-0", ours=False
    ),
    "issue 20: tagged for a resource of another namespace or cluster": OwnerCase(
        {"managed-by": "gpu-model-operator", "gpumodel-owner": "other/fraud/uid-9"},
        None,
        "other/fraud/uid-9",
        ours=False,
    ),
    "the description where ARM kept no tags": OwnerCase(
        None, f"managed-by gpu-model-operator owner={OWNER}", OWNER, True
    ),
    "managed-by without an owner proves nothing": OwnerCase({"managed-by": "gpu-model-operator"}, None, None, False),
    "someone else's cluster": OwnerCase({"team": "ml"}, "our training cluster", None, ours=False),
}


@pytest.mark.parametrize("name", OWNERS, ids=list(OWNERS))
def test_a_compute_is_ours_only_by_its_owner_tag_with_the_uid(name: str) -> None:
    case = OWNERS[name]
    found = writes.compute_owner(case.tags, case.description)
    assert (found, writes.owns(found, OWNER)) == (case.owner, case.ours)
