"""What the azureml-v2 backend writes, with a fake session in place of Azure: never to an endpoint that is not this
resource's by its tags (the core may still ask, trusting its own record of having created it), and a traffic shift
that sends the endpoint back whole, with what the operator does not manage left as it was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azureml_v2 import arm, rollout
from gpu_model_operator.backends.azureml_v2 import backend as v2backend
from gpu_model_operator.backends.azureml_v2.rollout import DeploymentView, EndpointView, StepKind
from gpu_model_operator.backends.base import (
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    TransientBackendError,
)
from gpu_model_operator.decision import Action, DeleteAction, Facts, Observation, Timing
from gpu_model_operator.deletion import decide_deletion
from gpu_model_operator.models import AzureMLV2Spec, GpuModelDeploymentStatus, Ownership
from gpu_model_operator.reconcile import decide

V2Inputs = DeploymentInputs[AzureMLV2Spec]

OWNER = "ml/fraud/uid-1"  # namespace/name/uid of the resource the inputs below are for
OURS = {arm.MANAGED_BY: arm.MANAGER, arm.OWNER_TAG: OWNER}


def spec() -> AzureMLV2Spec:
    return AzureMLV2Spec.model_validate(
        {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "workloadIdentity": {"clientId": "app", "tenantId": "tenant"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "fraud", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": "fraud-ep", "replicas": 1},
        }
    )


def inputs(take_over: bool = False) -> V2Inputs:
    return DeploymentInputs("ml", "fraud", "uid-1", 1, spec(), "def run(x): return x", "name: env", {}, "fp", take_over)


class Workspace:
    location, arm_id, name = "eastus", "/subscriptions/sub/resourceGroups/rg/workspaces/ws1", "ws1"


class FakeSession:
    """Runs reads (the endpoint as given) and records writes by what they were for, without running them."""

    def __init__(self, endpoint: dict[str, Any] | None) -> None:
        self.endpoint = endpoint
        self.writes: list[str] = []

    def key(self, inputs: V2Inputs) -> tuple[str, str, str, str]:
        return ("sub", "rg", "ws1", "d")

    async def workspace(self, inputs: V2Inputs) -> Any:
        return Workspace()

    async def call(self, inputs: V2Inputs, action: str, area: str, fn: Callable[[], Any], t: float = 0) -> Any:
        if action.startswith("reading endpoint"):
            return self.endpoint
        self.writes.append(action)
        return None


def backend_on(endpoint: dict[str, Any] | None, view: EndpointView | None) -> tuple[Any, FakeSession]:
    b: Any = v2backend.AzureMLV2Backend(workers=1)
    fake = FakeSession(endpoint)
    b._session = fake

    async def read(inputs: V2Inputs, ws: Any) -> tuple[EndpointView | None, dict[str, Any] | None]:
        return view, (endpoint if view is not None else None)

    b._read = read
    return b, fake


FOREIGN = {"name": "fraud-ep", "tags": {"team": "other"}, "properties": {"traffic": {"blue": 100}}}
#: An endpoint of that name made outside the operator after ours was deleted: untagged, "blue" live, "green" idle.
FOREIGN_VIEW = EndpointView(
    "fraud-ep",
    "Succeeded",
    None,
    "https://fraud-ep/score",
    {"blue": 100},
    (DeploymentView("blue", "Succeeded", 1), DeploymentView("green", "Succeeded", 1)),
)


def managed_quota() -> ObservedCompute:
    return ObservedCompute("Standard_NC4as_T4_v3", ComputeState.READY, (1, 1, 1, 1), surges_on_redeploy=False)


def test_the_core_trusts_its_record_so_the_backend_must_check_the_tags() -> None:
    """The status says serviceCreated, the endpoint carries no tag of ours: the core asks for a deploy (its record is
    never overruled by a missing tag), and the rollout's next step would delete the foreign endpoint's idle
    deployment."""
    assert arm.owner_of(FOREIGN) is None
    prev = GpuModelDeploymentStatus(ownership=Ownership(service_created=True))
    observed = rollout.observe(FOREIGN_VIEW, "gmo-x", "fp", "fraud-ep")
    obs = Observation(managed_quota(), observed, (), "fp", owner=OWNER, secret_name="fraud-scoring-keys")
    decision = decide(Facts(2, prev, "2026-01-01T00:00:00Z", Timing(), spec=spec(), observation=obs))
    assert decision.action == Action.DEPLOY
    assert rollout.next_step(FOREIGN_VIEW, v2backend._desired(inputs()), 1).kind == StepKind.DELETE_DEPLOYMENT
    step = decide_deletion(spec(), prev, observed, None, 0, OWNER)
    assert step.action == DeleteAction.DELETE_SERVICE


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"team": "other"}, c.SERVICE_EXISTS),
        ({arm.MANAGED_BY: arm.MANAGER, arm.OWNER_TAG: "ml/other"}, c.SERVICE_CONFLICT),
    ],
)
def test_a_rollout_step_on_an_endpoint_not_tagged_as_ours_is_refused(tags: dict[str, str], reason: str) -> None:
    raw = {**FOREIGN, "tags": tags}
    b, fake = backend_on(raw, FOREIGN_VIEW)
    with pytest.raises(TransientBackendError) as refused:
        asyncio.run(b.deploy_service(inputs(), 1))
    assert refused.value.reason == reason and "nothing of it was changed" in refused.value.message
    assert "gpumodel.io/take-over=true" in refused.value.message
    with pytest.raises(TransientBackendError):
        asyncio.run(b.scale_service(inputs(), 1))
    assert fake.writes == []


def test_deleting_an_endpoint_not_tagged_as_ours_never_happens() -> None:
    b, fake = backend_on(FOREIGN, FOREIGN_VIEW)
    with pytest.raises(TransientBackendError) as refused:
        asyncio.run(b.delete_service(inputs()))
    assert "not deleting endpoint fraud-ep" in refused.value.message and "detach-on-delete" in refused.value.message
    # Not even when told to take it over, if another resource's tags are on it.
    theirs = {**FOREIGN, "tags": {arm.MANAGED_BY: arm.MANAGER, arm.OWNER_TAG: "ml/other"}}
    b, fake2 = backend_on(theirs, FOREIGN_VIEW)
    with pytest.raises(TransientBackendError):
        asyncio.run(b.delete_service(inputs(take_over=True)))
    assert fake.writes == fake2.writes == []


def test_our_endpoint_or_one_taken_over_is_written_to() -> None:
    b, fake = backend_on({**FOREIGN, "tags": OURS}, FOREIGN_VIEW)
    asyncio.run(b.deploy_service(inputs(), 1))
    assert fake.writes == ["deleting deployment green of endpoint fraud-ep"]
    b, fake = backend_on(FOREIGN, FOREIGN_VIEW)
    asyncio.run(b.deploy_service(inputs(take_over=True), 1))
    asyncio.run(b.delete_service(inputs(take_over=True)))
    assert fake.writes == ["deleting deployment green of endpoint fraud-ep", "deleting endpoint fraud-ep"]
    b, fake = backend_on({**FOREIGN, "tags": OURS}, FOREIGN_VIEW)
    asyncio.run(b.delete_service(inputs()))
    assert fake.writes == ["deleting endpoint fraud-ep"]


def test_our_endpoint_tagged_before_tags_carried_the_uid_is_still_ours() -> None:
    """Endpoints made before the uid was added to the tag (``namespace/name``): the core decided from this
    resource's own record, and the backend writes to them and deletes them as before."""
    legacy = {arm.MANAGED_BY: arm.MANAGER, arm.OWNER_TAG: OWNER.rsplit("/", 1)[0]}
    b, fake = backend_on({**FOREIGN, "tags": legacy}, FOREIGN_VIEW)
    asyncio.run(b.deploy_service(inputs(), 1))
    asyncio.run(b.delete_service(inputs()))
    assert fake.writes == ["deleting deployment green of endpoint fraud-ep", "deleting endpoint fraud-ep"]


def test_an_endpoint_that_appeared_since_the_observation_is_not_replaced() -> None:
    """The observation found no endpoint (the core asks to create it); one of that name exists by the time of the
    PUT, which would replace it whole."""
    b, fake = backend_on(FOREIGN, None)
    with pytest.raises(TransientBackendError) as refused:
        asyncio.run(b.deploy_service(inputs(), 1))
    assert "endpoint fraud-ep appeared meanwhile" in refused.value.message
    assert fake.writes == []


def test_deleting_an_endpoint_already_gone_is_success() -> None:
    b, fake = backend_on(None, None)
    asyncio.run(b.delete_service(inputs()))
    assert fake.writes == []


#: Our endpoint as read, with what a security team set behind the operator's back: a private endpoint, a
#: user-assigned identity, a mirrored share, a description and a tag of their own.
HARDENED = {
    "id": f"{Workspace.arm_id}/onlineEndpoints/fraud-ep",
    "name": "fraud-ep",
    "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
    "location": "eastus",
    "kind": "Managed",
    "tags": {**OURS, "cost-center": "42"},
    "identity": {
        "type": "UserAssigned",
        "principalId": "p",
        "tenantId": "t",
        "userAssignedIdentities": {"/subscriptions/s/uami": {"principalId": "p2", "clientId": "c2"}},
    },
    "systemData": {"createdBy": "someone"},
    "properties": {
        "authMode": "Key",
        "description": "fraud scoring",
        "properties": {"azureml.onlineendpointid": "x"},
        "traffic": {"gmo-old": 100, "gmo-other": 0},
        "mirrorTraffic": {"gmo-other": 10},
        "publicNetworkAccess": "Disabled",
        "someFutureProperty": {"on": True},
        "compute": None,
        "provisioningState": "Succeeded",
        "scoringUri": "https://fraud-ep.eastus.inference.ml.azure.com/score",
        "swaggerUri": "https://fraud-ep.eastus.inference.ml.azure.com/swagger.json",
    },
}


def test_a_traffic_shift_sends_the_endpoint_back_whole() -> None:
    """ARM's PUT replaces the endpoint: what the body leaves out goes back to Azure's default (a private endpoint
    turns public). Only the split and the operator's tags change; what the server owns is left out."""
    body = arm.endpoint_update(HARDENED, OWNER, {"gmo-new": 100})
    props = body["properties"]
    assert props["traffic"] == {"gmo-new": 100}
    assert props["publicNetworkAccess"] == "Disabled" and props["mirrorTraffic"] == {"gmo-other": 10}
    assert props["someFutureProperty"] == {"on": True} and props["description"] == "fraud scoring"
    assert props["properties"] == {"azureml.onlineendpointid": "x"} and props["authMode"] == "Key"
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/s/uami": {}}}
    assert body["tags"] == {**OURS, "cost-center": "42"} and body["kind"] == "Managed"
    assert body["location"] == "eastus"
    assert not {"id", "name", "type", "systemData"} & set(body)
    assert not {"provisioningState", "scoringUri", "swaggerUri", "compute"} & set(props)  # nor nulls
    # A failed endpoint sent again keeps its live split; the operator's tags are put back if they were lost.
    again = arm.endpoint_update({**HARDENED, "tags": {"cost-center": "42"}}, OWNER, None)
    assert again["properties"]["traffic"] == {"gmo-old": 100} and again["tags"] == {**OURS, "cost-center": "42"}


def test_the_backend_s_shift_puts_that_body() -> None:
    sent: dict[str, Any] = {}

    class Session(FakeSession):
        async def call(self, inputs: V2Inputs, action: str, area: str, fn: Any, t: float = 0) -> Any:
            return fn()

    b: Any = v2backend.AzureMLV2Backend(workers=1)
    b._session = Session(HARDENED)
    original = arm.put_endpoint
    arm.put_endpoint = lambda ws, name, body: sent.update(body)
    try:
        asyncio.run(b._put_endpoint(inputs(), Workspace(), HARDENED, {"gmo-new": 100}))
    finally:
        arm.put_endpoint = original
    assert sent == arm.endpoint_update(HARDENED, OWNER, {"gmo-new": 100})


def test_giving_back_a_failed_rollout_s_instances_records_the_failure_on_the_live_deployment() -> None:
    sent: list[tuple[str, int, Any]] = []

    class Session(FakeSession):
        async def call(self, inputs: V2Inputs, action: str, area: str, fn: Any, t: float = 0) -> Any:
            self.writes.append(action)
            return fn()

    new = v2backend._desired(inputs())
    old = DeploymentView("gmo-old", "Succeeded", 1, tags={"team": "a"})
    view = EndpointView(
        "fraud-ep", "Succeeded", OWNER, "https://x/score", {"gmo-old": 100}, (old, DeploymentView(new, "Failed", 1))
    )
    b: Any = v2backend.AzureMLV2Backend(workers=1)
    b._session = Session({**FOREIGN, "tags": OURS})

    async def read(inputs: V2Inputs, ws: Any) -> tuple[EndpointView | None, dict[str, Any] | None]:
        return view, {**FOREIGN, "tags": OURS}

    b._read = read
    original = arm.scale_deployment
    arm.scale_deployment = lambda ws, e, name, n, tags=None: sent.append((name, n, tags))  # type: ignore[assignment]
    try:
        asyncio.run(b.scale_service(inputs(), 2))
    finally:
        arm.scale_deployment = original
    mark = f"{new}: Azure gave no reason"
    assert sent == [("gmo-old", 2, {"team": "a", rollout.FAILED_ROLLOUT_TAG: mark})]
    assert b._session.writes == [
        f"scaling deployment gmo-old of endpoint fraud-ep to 2 instance(s), recording the failed rollout of {new}"
    ]
