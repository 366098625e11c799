"""The rules of the failure table that are the azureml-v2 backend's own: a deployment's validation problem (RFC 7807)
naming the field refused, an endpoint name taken in the region, a model version missing, azure-ai-ml's own
refusals. The shared rules are ``test_azure_failures.py``'s.

The error bodies are ARM's shape and the texts Azure's (or the emulator's, where it models Azure: the quota and
instance-type refusals come from error bodies users posted from real Azure, see the emulator's v2 README)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from gpu_model_operator import conditions as c
from tests.unit.sdk_errors import Outcome, arm, classified

PROBLEM = (
    'InferencingClient HttpRequest error, error detail: {"errors":{"%s":["%s"]},'
    '"type":"https://tools.ietf.org/html/rfc7231#section-6.5.1","title":"One or more validation errors occurred.",'
    '"status":400}'
)


def call_failed(message: str) -> list[dict[str, str]]:
    """The management front end's detail of a refused endpoint (Azure/azure-sdk-for-python#35109)."""
    return [{"code": "InferencingClientCallFailed", "message": message}]


def problem(field: str, message: str) -> list[dict[str, str]]:
    return [{"code": "InferencingClientCreateDeploymentFailed", "message": PROBLEM % (field, message)}]


@dataclass(frozen=True)
class Case:
    exc: BaseException
    area: str
    expected: Outcome
    action: str = "doing it"


def permanent(reason: str, message: str) -> Outcome:
    return Outcome(False, reason, f"doing it failed: {message}")


UNIQUE = (
    "There is already an endpoint with this name, Endpoint name needs to be unique within a region. Try some other "
    "name."
)
CLASH = json.dumps({"errors": {"": [UNIQUE]}, "title": "One or more validation errors occurred."})
IN_CLUSTER = (
    '{"errors":{"":["OnlineEndpoint e already exists in cluster, in workspace ws1 of resource group rg. Please '
    'notice endpoint name must be unique per cluster."]},"title":"One or more validation errors occurred."}'
)
HELD = (
    "Azure still holds the name, as it does for a while after an endpoint of that name was deleted; retried until it "
    "lets it go (or choose another spec.service.name)"
)
QUOTA = "Not enough quota available for Standard_NC4as_T4_v3 in SubscriptionId sub. Current usage/limit: 16/24."
REGISTER = "register the model version in the workspace or fix spec.model"
CASES: dict[str, Case] = {
    "endpoint name taken": Case(
        arm(409, "EndpointAlreadyExists", "An endpoint named 'e' already exists.", kind=ResourceExistsError),
        "endpoint",
        permanent(c.SERVICE_CONFLICT, "An endpoint named 'e' already exists. Endpoint names are unique in their "
                  "Azure region across every subscription; choose another spec.service.name"),
    ),
    "quota, though the problem names VmSize": Case(
        arm(400, "BadRequest", "The request is invalid.", problem("VmSize", QUOTA)),
        "deployment",
        permanent(c.QUOTA_EXCEEDED, f"not enough quota (HTTP 400 InferencingClientCreateDeploymentFailed: {QUOTA}); "
                  "ask for more vCPUs of the family or lower spec.service.replicas"),
    ),
    "retired instance type": Case(
        arm(400, "BadRequest", "The request is invalid.", problem("VmSize", "Standard_NC6s_v3 has been retired")),
        "deployment",
        permanent(c.INVALID_VM_SIZE, "the instance type cannot be used (Standard_NC6s_v3 has been retired)"),
    ),
    "unknown Kubernetes instance type": Case(
        arm(400, "BadRequest", "The request is invalid.", problem("InstanceType", "Instance type gpu9 is not defined")),
        "deployment",
        permanent(c.INVALID_VM_SIZE, "the instance type cannot be used (Instance type gpu9 is not defined)"),
    ),
    "model version missing": Case(
        arm(404, "ResourceNotFound", "The Resource '.../models/digits/versions/9' was not found.",
            kind=ResourceNotFoundError),
        "model",
        permanent(c.MODEL_NOT_FOUND, f"The Resource '.../models/digits/versions/9' was not found.; {REGISTER}"),
    ),
    "model missing at the deployment's PUT": Case(
        arm(400, "BadArgument", "The asset '/subscriptions/s/models/digits/versions/9' referenced by the deployment "
            "was not found."),
        "deployment",
        permanent(c.MODEL_NOT_FOUND, "The asset '/subscriptions/s/models/digits/versions/9' referenced by the "
                  f"deployment was not found.; {REGISTER}"),
    ),
    "azure-ai-ml refused before sending": Case(
        ValidationException(message="instance_count must be positive", no_personal_data_message="x"),
        "deployment",
        permanent(c.INVALID_SPEC, "instance_count must be positive"),
    ),
    "a managed endpoint's name held after its deletion: waited for": Case(
        arm(404, "NotFound", "The specified resource was not found.",
            [{"code": "InferencingClientCallFailed", "message": '{"title":"Not Found"}'}], kind=ResourceNotFoundError),
        "deployment",
        Outcome(True, c.NAME_HELD, f"creating endpoint e failed: HTTP 404 NotFound: {HELD}"),
        action="creating endpoint e",
    ),
    "a Kubernetes endpoint's name the cluster still has: waited for": Case(
        arm(400, "BadRequest", "The request is invalid.", call_failed(IN_CLUSTER)),
        "deployment",
        Outcome(True, c.NAME_HELD, f"creating endpoint e failed: HTTP 400 InferencingClientCallFailed: {HELD}"),
        action="creating endpoint e",
    ),
    "a name another workspace's endpoint has in the region: a conflict": Case(
        arm(400, "BadRequest", "The request is invalid.", call_failed(CLASH)),
        "deployment",
        permanent(c.SERVICE_CONFLICT, f"{UNIQUE} Endpoint names are unique in their Azure region across every "
                  "subscription; choose another spec.service.name"),
    ),
    "another 404 is no model's": Case(
        arm(404, "ResourceNotFound", "Endpoint e was not found.", kind=ResourceNotFoundError),
        "endpoint",
        permanent(c.SERVICE_FAILED, "HTTP 404 ResourceNotFound: Endpoint e was not found."),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_the_backend_s_own_rules(name: str) -> None:
    case = CASES[name]
    assert classified("azureml-v2", case.exc, case.area, case.action) == case.expected
