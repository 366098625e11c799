"""What the azureml-v2 backend writes when it takes a rollout step, with a fake session in place of Azure: never to
an endpoint that is not this resource's by its tags at the moment of the write (the core may still ask, trusting
its own record of having created it), one write per step, and the bodies it sends in Azure's REST shape (a traffic
shift sends the endpoint back whole, with what the operator does not manage left as it was)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azureml_v2 import backend as v2backend
from gpu_model_operator.backends.azureml_v2 import bodies
from gpu_model_operator.backends.azureml_v2.steps import Steps
from gpu_model_operator.backends.base import DeploymentInputs, TransientBackendError
from gpu_model_operator.backends.endpoint import FAILED_ROLLOUT_TAG, RolloutStep, StepKind
from gpu_model_operator.models import AzureMLV2Spec

V2Inputs = DeploymentInputs[AzureMLV2Spec]

OWNER = "ml/fraud/uid-1"  # namespace/name/uid of the resource the inputs below are for
OURS = {bodies.MANAGED_BY: bodies.MANAGER, bodies.OWNER_TAG: OWNER}
LEGACY = {bodies.MANAGED_BY: bodies.MANAGER, bodies.OWNER_TAG: "ml/fraud"}
THEIRS = {bodies.MANAGED_BY: bodies.MANAGER, bodies.OWNER_TAG: "ml/other/uid-9"}


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
    """Answers the reads (the endpoint as given, a registered model) and records each write by what it was for,
    without sending it."""

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
        if action.startswith("reading model"):
            return "/models/fraud/versions/1"
        self.writes.append(action)
        return "/assets/x"


def take(endpoint: dict[str, Any] | None, step: RolloutStep, take_over: bool = False) -> list[str]:
    session = FakeSession(endpoint)
    steps: Any = Steps(session)  # type: ignore[arg-type]
    asyncio.run(steps.take(inputs(take_over), Workspace(), step))
    return session.writes


def endpoint(tags: dict[str, str]) -> dict[str, Any]:
    return {"name": "fraud-ep", "tags": tags, "properties": {"traffic": {"gmo-old": 100}}}


@dataclass(frozen=True)
class WriteCase:
    tags: dict[str, str] | None  # None: no endpoint by that name
    step: RolloutStep
    writes: list[str]
    take_over: bool = False


RECORD = "gmo-new: crash"
WRITES: dict[str, WriteCase] = {
    "create the endpoint": WriteCase(None, RolloutStep(StepKind.CREATE_ENDPOINT), ["creating endpoint fraud-ep"]),
    "a failed endpoint is sent again": WriteCase(
        OURS, RolloutStep(StepKind.REPAIR_ENDPOINT), ["updating endpoint fraud-ep"]
    ),
    "create the new deployment, after its environment and code": WriteCase(
        OURS,
        RolloutStep(StepKind.CREATE_DEPLOYMENT, "gmo-new", 2),
        [
            "creating environment fraud-ep-env",
            "uploading the entry script of fraud-ep",
            "creating deployment gmo-new of endpoint fraud-ep",
        ],
    ),
    "make room": WriteCase(
        OURS,
        RolloutStep(StepKind.MAKE_ROOM, "gmo-old", 1),
        ["scaling deployment gmo-old of endpoint fraud-ep to 1 instance(s)"],
    ),
    "give back, recording the failure": WriteCase(
        OURS,
        RolloutStep(StepKind.GIVE_BACK, "gmo-old", 2, RECORD, {FAILED_ROLLOUT_TAG: RECORD}),
        [f"scaling deployment gmo-old of endpoint fraud-ep to 2 instance(s), recording: {RECORD}"],
    ),
    "clear a record": WriteCase(
        OURS,
        RolloutStep(StepKind.CLEAR_RECORD, "gmo-new", 2, "", {}),
        ["scaling deployment gmo-new of endpoint fraud-ep to 2 instance(s), clearing its record"],
    ),
    "shift the traffic": WriteCase(
        OURS,
        RolloutStep(StepKind.SHIFT_TRAFFIC, "gmo-new"),
        ["setting the traffic of endpoint fraud-ep: gmo-new 100%, mirrored: as it is"],
    ),
    "a canary step's share": WriteCase(
        OURS,
        RolloutStep(StepKind.SHIFT_TRAFFIC, "gmo-new", traffic={"gmo-old": 90, "gmo-new": 10}, mirror={}),
        ["setting the traffic of endpoint fraud-ep: gmo-old 90%, gmo-new 10%, mirrored: none"],
    ),
    "mirror live requests to the new deployment": WriteCase(
        OURS,
        RolloutStep(StepKind.MIRROR_TRAFFIC, "gmo-new", mirror={"gmo-new": 20}),
        ["setting the traffic of endpoint fraud-ep: as it is, mirrored: gmo-new 20%"],
    ),
    "roll back": WriteCase(
        OURS,
        RolloutStep(StepKind.ROLL_BACK, "gmo-new", traffic={"gmo-old": 100}, mirror={}),
        ["setting the traffic of endpoint fraud-ep: gmo-old 100%, mirrored: none"],
    ),
    "delete a deployment": WriteCase(
        OURS, RolloutStep(StepKind.DELETE_DEPLOYMENT, "gmo-old"), ["deleting deployment gmo-old of endpoint fraud-ep"]
    ),
    "an endpoint tagged before tags carried the uid is still ours": WriteCase(
        LEGACY, RolloutStep(StepKind.DELETE_DEPLOYMENT, "gmo-old"), ["deleting deployment gmo-old of endpoint fraud-ep"]
    ),
    "an untagged endpoint taken over is written to": WriteCase(
        {"team": "other"},
        RolloutStep(StepKind.DELETE_DEPLOYMENT, "gmo-old"),
        ["deleting deployment gmo-old of endpoint fraud-ep"],
        take_over=True,
    ),
}


@pytest.mark.parametrize("name", WRITES)
def test_each_step_is_one_write_to_our_endpoint(name: str) -> None:
    case = WRITES[name]
    found = None if case.tags is None else endpoint(case.tags)
    assert take(found, case.step, case.take_over) == case.writes


@dataclass(frozen=True)
class RefusalCase:
    tags: dict[str, str] | None
    step: RolloutStep
    reason: str
    says: str
    take_over: bool = False


REFUSALS: dict[str, RefusalCase] = {
    "an untagged endpoint (made again outside the operator) is never written to": RefusalCase(
        {"team": "other"},
        RolloutStep(StepKind.DELETE_DEPLOYMENT, "green"),
        c.SERVICE_EXISTS,
        "is not tagged as this resource's (gpumodel-owner: none), so nothing of it was changed",
    ),
    "another resource's endpoint is never written to": RefusalCase(
        THEIRS, RolloutStep(StepKind.SHIFT_TRAFFIC, "gmo-new"), c.SERVICE_CONFLICT, "gpumodel-owner: ml/other/uid-9"
    ),
    "not even when told to take it over": RefusalCase(
        THEIRS,
        RolloutStep(StepKind.SCALE, "gmo-new", 3),
        c.SERVICE_CONFLICT,
        "gpumodel-owner: ml/other/uid-9",
        take_over=True,
    ),
    "an endpoint that appeared since the observation is not replaced by a create": RefusalCase(
        {"team": "other"}, RolloutStep(StepKind.CREATE_ENDPOINT), c.SERVICE_EXISTS, "appeared meanwhile"
    ),
    "an endpoint gone since the observation is not written to": RefusalCase(
        None, RolloutStep(StepKind.SHIFT_TRAFFIC, "gmo-new"), c.BACKEND_UNAVAILABLE, "is gone"
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_no_write_to_an_endpoint_that_is_not_ours_at_the_write(name: str) -> None:
    case = REFUSALS[name]
    session = FakeSession(None if case.tags is None else endpoint(case.tags))
    steps: Any = Steps(session)  # type: ignore[arg-type]
    with pytest.raises(TransientBackendError) as refused:
        asyncio.run(steps.take(inputs(case.take_over), Workspace(), case.step))
    assert refused.value.reason == case.reason and case.says in refused.value.message
    assert session.writes == []


def test_deleting_an_endpoint_not_tagged_as_ours_never_happens() -> None:
    b: Any = v2backend.AzureMLV2Backend(workers=1)
    for tags, take_over in (({"team": "other"}, False), (THEIRS, True)):
        b._session = FakeSession(endpoint(tags))
        with pytest.raises(TransientBackendError) as refused:
            asyncio.run(b.delete_service(inputs(take_over)))
        assert "not deleting endpoint fraud-ep" in refused.value.message
        assert "detach-on-delete" in refused.value.message and b._session.writes == []
    b._session = FakeSession(None)
    asyncio.run(b.delete_service(inputs()))  # gone already: success
    b._session = FakeSession(endpoint(OURS))
    asyncio.run(b.delete_service(inputs()))
    assert b._session.writes == ["deleting endpoint fraud-ep"]


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


def test_a_canary_step_sets_both_splits_and_keeps_the_rest() -> None:
    """A canary step's PUT carries the core's split and mirrored traffic whole; the rest of the endpoint is kept."""
    body = bodies.endpoint_update(HARDENED, OWNER, {"gmo-old": 90, "gmo-new": 10}, {"gmo-other": 10})
    props = body["properties"]
    assert (props["traffic"], props["mirrorTraffic"]) == ({"gmo-old": 90, "gmo-new": 10}, {"gmo-other": 10})
    assert props["publicNetworkAccess"] == "Disabled" and body["tags"] == {**OURS, "cost-center": "42"}
    stopped = bodies.endpoint_update(HARDENED, OWNER, None, {})
    assert (stopped["properties"]["traffic"], stopped["properties"]["mirrorTraffic"]) == ({"gmo-old": 100}, {})


def test_azure_monitor_s_answer_reads_as_requests_per_status_code() -> None:
    """Azure Monitor's Metrics List answer (the specification's shape: value[].timeseries[].metadatavalues and
    data[].average per minute), split by status code class and code: summed over the minutes, per code."""

    def series(code: str, *minutes: float) -> dict[str, Any]:
        dims = [{"name": {"value": "statuscodeclass", "localizedValue": "statusCodeClass"}, "value": code[0] + "xx"}]
        dims += [{"name": {"value": "statusCode", "localizedValue": "statusCode"}, "value": code}]
        data = [{"timeStamp": f"2026-01-01T00:0{i}:00Z", "average": n} for i, n in enumerate(minutes)]
        return {"metadatavalues": dims, "data": data}

    answer = {
        "timespan": "2026-01-01T00:00:00Z/2026-01-01T00:03:00Z",
        "value": [
            {"name": {"value": "RequestsPerMinute"}, "timeseries": [series("200", 10, 20, 5), series("424", 0, 2)]}
        ],
    }
    got = bodies.request_counts("gmo-new", answer)
    assert (got.deployment, dict(got.by_status), got.total) == ("gmo-new", {"200": 35, "424": 2}, 37)
    assert bodies.request_counts("gmo-new", {"timespan": "x", "value": []}).total == 0


def test_a_traffic_shift_sends_the_endpoint_back_whole() -> None:
    """ARM's PUT replaces the endpoint: what the body leaves out goes back to Azure's default (a private endpoint
    turns public). Only the split and the operator's tags change; what the server owns is left out."""
    body = bodies.endpoint_update(HARDENED, OWNER, {"gmo-new": 100})
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
    again = bodies.endpoint_update({**HARDENED, "tags": {"cost-center": "42"}}, OWNER, None)
    assert again["properties"]["traffic"] == {"gmo-old": 100} and again["tags"] == {**OURS, "cost-center": "42"}


def test_the_snapshot_reads_azure_s_answer() -> None:
    """The endpoint and its deployments as the contract's snapshot, with the deployment the inputs map to, and the
    record of a failed rollout read back from a deployment's tags."""
    listed = [
        {"name": "gmo-old", "sku": {"capacity": 2}, "tags": {FAILED_ROLLOUT_TAG: "gmo-new: crash: exit 1"}},
        {"name": "gmo-new", "properties": {"provisioningState": "Failed", "error": {"code": "E", "message": "m"}}},
    ]
    snap = bodies.snapshot(HARDENED, listed, bodies.deployment_name(inputs()))
    assert snap.owner == OWNER and snap.traffic == {"gmo-old": 100, "gmo-other": 0}
    assert snap.scoring_uri == "https://fraud-ep.eastus.inference.ml.azure.com/score"
    old, new = snap.deployments
    assert (old.instance_count, old.failed_beside("gmo-new"), old.failed_beside("gmo-old")) == (
        2,
        "crash: exit 1",
        None,
    )
    assert (new.state, new.error, new.failed) == ("Failed", "E: m", True)
    assert snap.desired.startswith("gmo-") and 3 <= len(snap.desired) <= 32 and snap.desired[0].isalpha()


def test_the_deployment_name_follows_what_it_runs_not_its_replicas() -> None:
    one = inputs()
    more = DeploymentInputs(
        one.namespace,
        one.name,
        one.uid,
        2,
        spec().model_copy(update={"service": spec().service.model_copy(update={"replicas": 5})}),
        one.entry_script,
        one.conda_spec,
    )
    changed = DeploymentInputs(one.namespace, one.name, one.uid, 3, spec(), "def run(x): return 2 * x", one.conda_spec)
    assert bodies.deployment_name(one) == bodies.deployment_name(more) != bodies.deployment_name(changed)


@dataclass(frozen=True)
class GpuCase:
    instance_type: dict[str, object]
    gpus: int


INSTANCE_TYPES: dict[str, GpuCase] = {
    "from requests": GpuCase({"resources": {"requests": {"nvidia.com/gpu": 2}}}, 2),
    "else from limits": GpuCase({"resources": {"limits": {"nvidia.com/gpu": "1"}}}, 1),
    "none asked": GpuCase({"resources": {"requests": {"cpu": "1"}}}, 0),
}


@pytest.mark.parametrize("name", INSTANCE_TYPES)
def test_instance_type_gpus(name: str) -> None:
    case = INSTANCE_TYPES[name]
    assert bodies.instance_type_gpus(case.instance_type) == case.gpus
