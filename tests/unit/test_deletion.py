"""The deletion core as named cases: what the backend shows and what the status records in, the whole step out
(its action, message and events). Pure: no Kubernetes, no backend; but for the last tests, the controller's
deletion of a spec it cannot parse (a fake for the keys Secret, no backend)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import ComputeState, ObservedCompute, ObservedService, ServiceState
from gpu_model_operator.controller import Controller
from gpu_model_operator.decision import DeleteAction, normal
from gpu_model_operator.deletion import DeletionDecision, created_nothing, decide_deletion
from gpu_model_operator.inputs import InputError, Resource
from gpu_model_operator.kube import KubeClient
from gpu_model_operator.models import (
    AzureMLSpec,
    BackendKind,
    DeletionPolicy,
    GpuModelDeploymentSpec,
    GpuModelDeploymentStatus,
    Operation,
    Ownership,
    Phase,
    parse_spec,
)
from gpu_model_operator.settings import Settings
from tests.unit.test_reconcile import ABSENT, LEGACY_OWNER, OWNER, compute, local_spec, service, spec


def retained(spec_: AzureMLSpec) -> AzureMLSpec:
    return spec_.model_copy(
        update={"compute": spec_.compute.model_copy(update={"deletion_policy": DeletionPolicy.RETAIN})}
    )


def v2_spec(policy: str = "Delete") -> GpuModelDeploymentSpec:
    return parse_spec(
        {
            **spec().to_wire(),
            "backend": "azureml-v2",
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}, "deletionPolicy": policy},
        }
    )


@dataclass(frozen=True)
class Case:
    svc: ObservedService
    comp: ObservedCompute | None
    ownership: Ownership
    want: DeletionDecision
    others: int = 0
    spec: GpuModelDeploymentSpec = field(default_factory=spec)


LEAVE_THEIRS = "leaving service digits-svc: the operator did not create it for this resource"
RETAIN_ENDPOINT = "retaining endpoint digits-svc (deletionPolicy: Retain); it still bills until you delete it"
DELETE_COMPUTE = "deleting compute gpu-cluster (deletionPolicy: Delete)"
CASES: dict[str, Case] = {
    "the-service-first": Case(
        service(), compute(), Ownership(service_created=True),
        DeletionDecision(DeleteAction.DELETE_SERVICE, "deleting service digits-svc",
                         (normal(c.DELETED_SERVICE, "deleting service digits-svc"),)),
    ),
    "waits-for-the-service": Case(
        service(ServiceState.DELETING), compute(), Ownership(),
        DeletionDecision(DeleteAction.WAIT, "waiting for service digits-svc to be deleted"),
    ),
    "then-the-compute": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.DELETE_COMPUTE, DELETE_COMPUTE, (normal(c.DELETED_COMPUTE, DELETE_COMPUTE),)),
    ),
    "retain-keeps-the-cluster-and-says-it-bills": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "retaining compute gpu-cluster (deletionPolicy: Retain); it still bills until you delete it",
            (normal(c.RETAINED_COMPUTE,
                    "retaining compute gpu-cluster (deletionPolicy: Retain); it still bills until you delete it"),),
        ),
        spec=retained(spec()),
    ),
    "a-shared-compute-is-kept-for-its-other-users": Case(
        ABSENT, compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it"),),
        ),
        others=1,
    ),
    "an-adopted-compute-is-never-deleted": Case(
        ABSENT, compute(created_by_operator=False), Ownership(compute_adopted=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: the operator did not create it",
            (normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: the operator did not create it"),),
        ),
    ),
    "waits-for-the-compute": Case(
        ABSENT, compute(ComputeState.DELETING), Ownership(compute_created=True),
        DeletionDecision(DeleteAction.WAIT, "waiting for compute gpu-cluster to be deleted"),
    ),
    "already-gone-is-success": Case(
        ABSENT, compute(ComputeState.ABSENT), Ownership(),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
    ),
    "an-attached-cluster-is-detached-never-deleted": Case(
        ABSENT, compute(attached=True), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DELETE_COMPUTE,
            "detaching cluster gpu-cluster (attached clusters are never deleted)",
            (normal(c.DETACHED_COMPUTE, "detaching cluster gpu-cluster (attached clusters are never deleted)"),),
        ),
    ),
    "the-adoption-record-wins-over-a-tag": Case(
        service(),  # our tag on it, but the record says adopted (someone else put the tag there)
        compute(), Ownership(service_adopted=True, compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),
             normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it")),
        ),
    ),
    "a-conflicting-service-elsewhere-does-not-keep-our-compute": Case(
        service(owner="team-b/other", compute_name="their-cluster"), compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DELETE_COMPUTE,
            DELETE_COMPUTE,
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS), normal(c.DELETED_COMPUTE, DELETE_COMPUTE)),
        ),
    ),
    "a-service-left-on-our-compute-keeps-it-whatever-the-letter-case": Case(
        service(owner="team-b/other", compute_name="GPU-Cluster"), compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),
             normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it")),
        ),
    ),
    "an-earlier-resource-of-this-name-keeps-its-service": Case(
        service(owner="team-a/digits/uid-0"), compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),
             normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it")),
        ),
    ),
    "a-tag-from-before-uids-is-ours-by-our-own-record": Case(
        service(owner=LEGACY_OWNER), compute(), Ownership(service_created=True),
        DeletionDecision(
            DeleteAction.DELETE_SERVICE,
            "deleting service digits-svc",
            (normal(c.DELETED_SERVICE, "deleting service digits-svc"),),
        ),
    ),
    "a-tag-from-before-uids-without-our-record-is-not-ours": Case(
        service(owner=LEGACY_OWNER), compute(), Ownership(compute_created=True),
        DeletionDecision(
            DeleteAction.DONE,
            "leaving compute gpu-cluster: 1 other deployment(s) still use it",
            (normal(c.RETAINED_SERVICE, LEAVE_THEIRS),
             normal(c.RETAINED_COMPUTE, "leaving compute gpu-cluster: 1 other deployment(s) still use it")),
        ),
    ),
    # ---- azureml-v2: the policy is the endpoint's; the compute is never the operator's ------------------
    "azureml-v2-deletes-its-endpoint": Case(
        service(), None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DELETE_SERVICE, "deleting service digits-svc",
                         (normal(c.DELETED_SERVICE, "deleting service digits-svc"),)),
        spec=v2_spec(),
    ),
    "azureml-v2-retain-keeps-the-endpoint-and-says-it-bills": Case(
        service(), None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DONE, RETAIN_ENDPOINT, (normal(c.RETAINED_SERVICE, RETAIN_ENDPOINT),)),
        spec=v2_spec("Retain"),
    ),
    "azureml-v2-is-done-when-the-endpoint-is-gone": Case(
        ABSENT, None, Ownership(service_created=True),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
        spec=v2_spec(),
    ),
    # ---- local: this machine is never deleted ---------------------------------------------------------------
    "local-is-done-when-the-service-is-gone": Case(
        ABSENT, compute(), Ownership(service_created=True, compute_created=True),
        DeletionDecision(DeleteAction.DONE, "nothing left to delete"),
        spec=local_spec(allow_cpu=False),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_case(name: str) -> None:
    case = CASES[name]
    status = GpuModelDeploymentStatus(ownership=case.ownership)
    assert decide_deletion(case.spec, status, case.svc, case.comp, case.others, OWNER) == case.want


# ---- a spec the CRD would refuse (an old CRD): deleting it -----------------------------------------------------

#: A local spec without spec.model.path: what the operator cannot serve, nor say which service to delete for.
INVALID_LOCAL: dict[str, Any] = {
    "backend": "local",
    "model": {},
    "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
    "service": {"name": "digits-svc"},
}


class SecretsKube(KubeClient):
    """Only the keys Secret's deletion, which a finished deletion does."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_owned_secret(self, namespace: str, name: str, resource_name: str) -> bool:
        self.deleted.append(name)
        return True


def delete_invalid(status: GpuModelDeploymentStatus) -> tuple[DeletionDecision, list[str]]:
    kube = SecretsKube()
    untouched: Any = SimpleNamespace(name="local")  # never called: the spec is refused before any backend call
    controller = Controller(Settings(backends=(BackendKind.LOCAL,)), {BackendKind.LOCAL: untouched}, kube)
    res = Resource("team-a", "digits", "uid-1", 1, INVALID_LOCAL, status.to_wire())
    return asyncio.run(controller.delete(res)), kube.deleted


def test_an_invalid_spec_that_never_got_anything_made_is_deleted_at_once() -> None:
    """InvalidSpec from the first pass: nothing exists that needs the spec's fields, so no finalizer is stuck."""
    status = GpuModelDeploymentStatus(phase=Phase.FAILED, last_error="the spec is invalid: spec.model.path: ...")
    assert created_nothing(status)
    decision, deleted = delete_invalid(status)
    assert decision == DeletionDecision(
        DeleteAction.DONE, "nothing to delete: the spec is invalid and nothing was created for it"
    )
    assert deleted == ["digits-scoring-keys"]


@pytest.mark.parametrize(
    "status",
    [
        GpuModelDeploymentStatus(service_name="digits-svc"),
        GpuModelDeploymentStatus(ownership=Ownership(service_created=True)),
        GpuModelDeploymentStatus(ownership=Ownership(compute_adopted=True)),
        GpuModelDeploymentStatus(operation=Operation(kind="deploy", target="digits-svc", started_at="2026-01-01")),
    ],
    ids=["observed", "service-created", "compute-adopted", "operation-in-flight"],
)
def test_an_invalid_spec_of_a_resource_that_had_something_waits_for_a_fix(status: GpuModelDeploymentStatus) -> None:
    """The operator does not guess what to delete from a spec it cannot read: InvalidSpec names the field, and the
    deletion finishes once the spec is fixed."""
    assert not created_nothing(status)
    with pytest.raises(InputError) as raised:
        delete_invalid(status)
    assert (raised.value.reason, raised.value.message) == (
        c.INVALID_SPEC,
        "the spec is invalid: spec.model.path: Field required",
    )
