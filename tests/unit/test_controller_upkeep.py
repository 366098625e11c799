"""The controller's upkeep around its passes, each found by an adversarial review: holding a credentials Secret that
is being deleted says so at once, a deleted resource leaves nothing in the controller's memory, a cancelled reader
leaves a shared read to the others, and a spec an older CRD let through still finishes deleting.

The Kubernetes client is a fake of the two Secret calls the hold makes, following the API server's documented rules
for them (a JSON patch's ``test``; no new finalizer on an object being deleted); the real API server runs these paths
in tests/e2e/test_namespace_deletion.py and tests/integration/test_rbac.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from kubernetes.client.exceptions import ApiException

from gpu_model_operator.annotations import POLICY_DETACH, POLICY_SKIP, RECONCILE_POLICY
from gpu_model_operator.backends.azure.shared_reads import SharedReads
from gpu_model_operator.controller import Controller
from gpu_model_operator.decision import DeleteAction
from gpu_model_operator.inputs import Resource
from gpu_model_operator.kube import KubeClient, credentials_hold
from gpu_model_operator.models import BackendKind
from gpu_model_operator.settings import Settings

UID = "0b7a1f52-9c2e-4d4b-8a53-3c1d2f9e7a10"


class FakeCore:
    """The two Secret calls the credentials hold makes, with the API server's documented rules for them: a JSON
    patch's ``test`` of resourceVersion, and "no new finalizers can be added if the object is being deleted"
    (apimachinery ValidateNoNewFinalizers, an Invalid error: HTTP 422)."""

    def __init__(self, *names: str, deleting: bool = False) -> None:
        self.secrets: dict[str, Any] = {
            n: SimpleNamespace(
                metadata=SimpleNamespace(
                    finalizers=["other/keep"] if deleting else [],
                    resource_version="1",
                    deletion_timestamp="2026-12-08T00:00:00Z" if deleting else None,
                )
            )
            for n in names
        }
        self.patches = 0

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if name not in self.secrets:
            raise ApiException(status=404)
        return self.secrets[name]

    def patch_namespaced_secret(self, name: str, namespace: str, patch: list[dict[str, Any]]) -> Any:
        self.patches += 1
        meta = self.secrets[name].metadata
        held = list(meta.finalizers)
        for op in patch:
            if op["op"] == "test" and op["value"] != meta.resource_version:
                raise ApiException(status=409)
            if op["op"] == "add":
                held = list(op["value"])
            if op["op"] == "remove":
                del held[int(op["path"].rsplit("/", 1)[1])]
        if meta.deletion_timestamp is not None and set(held) - set(meta.finalizers):
            raise ApiException(status=422, reason="metadata.finalizers: Forbidden: no new finalizers can be added")
        meta.finalizers = held
        meta.resource_version = str(int(meta.resource_version) + 1)
        return self.secrets[name]


class FakeKube(KubeClient):
    def __init__(self, core: FakeCore) -> None:
        self._core = cast(Any, core)

    async def delete_owned_secret(self, namespace: str, name: str, resource_name: str) -> bool:
        return True


def v2_spec(secret: str) -> dict[str, Any]:
    return {
        "backend": "azureml-v2",
        "workspace": {
            "subscriptionId": "sub",
            "resourceGroup": "rg",
            "name": "ws1",
            "credentialsSecretRef": {"name": secret},
        },
        "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
        "model": {"name": "digits", "version": 1},
        "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
        "service": {"name": "digits-ep", "replicas": 1},
    }


def controller(kube: KubeClient) -> Controller:
    untouched: Any = SimpleNamespace(name="azureml-v2")
    return Controller(Settings(backends=(BackendKind.AZUREML_V2,)), {BackendKind.AZUREML_V2: untouched}, kube)


def test_holding_a_secret_being_deleted_says_so_at_once() -> None:
    """A Secret another resource still holds is Terminating (its user deleted it); a resource that starts using it
    cannot add its finalizer (the API server's rule, 422). The pass says that the Secret is being deleted, without
    sending a patch bound to be refused (before: five re-reads and re-patches, then a RuntimeError that said it "kept
    changing", which no condition reported)."""
    core = FakeCore("sp", deleting=True)
    kube = FakeKube(core)
    with pytest.raises(Exception) as raised:
        asyncio.run(kube.hold_secret("team-a", "sp", credentials_hold(UID)))
    assert core.patches == 0, f"{core.patches} patches sent for a refusal that cannot change"
    assert "being deleted" in str(raised.value), str(raised.value)


def test_a_deleted_resource_leaves_nothing_in_the_controllers_memory() -> None:
    """controller._passes keeps the whole last status per uid (and _resource_locks a lock): a deleted resource's
    entry should go with it, else memory grows with every resource ever created (churn: CI namespaces)."""
    ctl = controller(FakeKube(FakeCore()))
    res = Resource("team-a", "digits", UID, 1, v2_spec("sp"), {}, annotations={RECONCILE_POLICY: POLICY_SKIP})
    asyncio.run(ctl.reconcile(res))
    assert UID in ctl._passes
    gone = Resource("team-a", "digits", UID, 1, v2_spec("sp"), {}, annotations={RECONCILE_POLICY: POLICY_DETACH})
    assert asyncio.run(ctl.delete(gone)).action == DeleteAction.DONE
    assert UID not in ctl._passes and UID not in ctl._resource_locks


def test_a_cancelled_reader_does_not_fail_the_others_sharing_its_read() -> None:
    """SharedReads: the first reader's pass is cancelled (the operator draining, kopf cancelling a handler); a
    second pass that joined the read was not cancelled, yet it gets the first one's CancelledError, which its
    task then reports as cancelled rather than as an error or an answer."""

    async def scenario() -> str:
        reads: SharedReads[str] = SharedReads()
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "usage"

        first = asyncio.create_task(reads.read("quota", slow))
        await asyncio.sleep(0)
        second = asyncio.create_task(reads.read("quota", slow))
        await asyncio.sleep(0)
        first.cancel()
        gate.set()
        try:
            return await second
        except asyncio.CancelledError:
            return "second reader got CancelledError"

    assert asyncio.run(scenario()) == "usage"


def test_a_spec_the_crd_of_old_would_have_let_through_still_finishes_deleting() -> None:
    """deletion.py promises a spec that does not parse (an old CRD) is deleted when nothing was made; the new
    _named_secret (controller.py) reads spec.workspace.credentialsSecretRef with .get on whatever is there: a
    string workspace or ref raises AttributeError in _finish_deletion, after the decision was DONE, for ever."""
    ctl = controller(FakeKube(FakeCore("sp")))
    odd = {**v2_spec("sp"), "workspace": {"name": "ws1", "credentialsSecretRef": "sp"}}
    res = Resource("team-a", "digits", UID, 1, odd, {}, annotations={RECONCILE_POLICY: POLICY_DETACH})
    assert asyncio.run(ctl.delete(res)).action == DeleteAction.DONE
