"""The azureml-v2 error table: azure-core's typed errors, as azure-ai-ml and azure-identity raise them, to the
operator's reasons, transient or permanent, with messages that name what to fix and never a credential.

The error bodies are ARM's shape and the texts Azure's (or the emulator's, where it models Azure: the quota and
instance-type refusals come from error bodies users posted from real Azure, see the emulator's v2 README)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azureml_v2.errors import classify, operation_error
from gpu_model_operator.backends.base import PermanentBackendError, TransientBackendError

CREDENTIAL = "the service principal in Secret sp (keys tenantId, clientId, clientSecret)"
PROBLEM = (
    'InferencingClient HttpRequest error, error detail: {"errors":{"VmSize":["%s"]},'
    '"type":"https://tools.ietf.org/html/rfc7231#section-6.5.1","title":"One or more validation errors occurred.",'
    '"status":400}'
)


class Response:
    """Just what azure-core reads of an HTTP response to build its exception."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status_code, self.reason, self.headers = status, "reason", headers or {}
        self.content_type, self.request, self._text = "application/json", None, json.dumps(body)

    def text(self, encoding: str | None = None) -> str:
        return self._text

    def body(self) -> bytes:
        return self._text.encode()


def arm(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    kind: type[HttpResponseError] = HttpResponseError,
) -> HttpResponseError:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return kind(response=Response(status, body, headers))


def problem(message: str) -> list[dict[str, str]]:
    return [{"code": "InferencingClientCreateDeploymentFailed", "message": PROBLEM % message}]


@dataclass(frozen=True)
class Case:
    exc: BaseException
    area: str
    transient: bool
    reason: str
    says: str  # a phrase the message must contain
    retry_after: float | None = None


QUOTA = (
    "Not enough quota available for Standard_NC4as_T4_v3 in SubscriptionId sub. Current usage/limit: 16/24. "
    "Additional needed: 16"
)
CASES: dict[str, Case] = {
    "throttled": Case(
        arm(429, "TooManyRequests", "slow down", headers={"Retry-After": "7"}),
        "endpoint",
        True,
        c.BACKEND_UNAVAILABLE,
        "retrying after 7s",
        7.0,
    ),
    "unavailable": Case(arm(503, "ServiceUnavailable", "busy"), "endpoint", True, c.BACKEND_UNAVAILABLE, "unavailable"),
    "server-error": Case(arm(500, "InternalServerError", "oops"), "deployment", True, c.BACKEND_UNAVAILABLE, "oops"),
    "connection-reset": Case(
        ServiceResponseError("Connection aborted: reset by peer"), "endpoint", True, c.BACKEND_UNAVAILABLE, "did not"
    ),
    "no-connection": Case(
        ServiceRequestError("Name or service not known"), "endpoint", True, c.BACKEND_UNAVAILABLE, ""
    ),
    "operation-in-progress": Case(
        arm(409, "Conflict", "Endpoint 'e' is in provisioning state 'Updating'", kind=ResourceExistsError),
        "endpoint",
        True,
        c.BACKEND_UNAVAILABLE,
        "another operation",
    ),
    "endpoint-name-taken": Case(
        arm(
            409,
            "EndpointAlreadyExists",
            "An endpoint named 'e' already exists in region 'eastus'.",
            kind=ResourceExistsError,
        ),
        "endpoint",
        False,
        c.SERVICE_CONFLICT,
        "choose another spec.service.name",
    ),
    "quota": Case(
        arm(400, "BadRequest", "The request is invalid.", problem(QUOTA)),
        "deployment",
        False,
        c.QUOTA_EXCEEDED,
        "Current usage/limit: 16/24",
    ),
    "retired-instance-type": Case(
        arm(
            400, "BadRequest", "The request is invalid.", problem("The instance type Standard_NC6s_v3 has been retired")
        ),
        "deployment",
        False,
        c.INVALID_VM_SIZE,
        "Standard_NC6s_v3 has been retired",
    ),
    "unknown-kubernetes-instance-type": Case(
        arm(
            400,
            "BadRequest",
            "The request is invalid.",
            [
                {
                    "code": "InferencingClientCreateDeploymentFailed",
                    "message": 'error detail: {"errors":{"InstanceType":["Instance type \'gpu9\' is not defined"]}}',
                }
            ],
        ),
        "deployment",
        False,
        c.INVALID_VM_SIZE,
        "gpu9",
    ),
    "model-missing": Case(
        arm(
            404,
            "ResourceNotFound",
            "The Resource '.../models/digits/versions/9' was not found.",
            kind=ResourceNotFoundError,
        ),
        "model",
        False,
        c.MODEL_NOT_FOUND,
        "register the model version",
    ),
    "asset-missing-at-deploy": Case(
        arm(
            400,
            "BadArgument",
            "The asset '/subscriptions/s/.../models/digits/versions/9' referenced by the deployment was not found.",
        ),
        "deployment",
        False,
        c.MODEL_NOT_FOUND,
        "fix spec.model",
    ),
    "workspace-missing": Case(
        arm(404, "ResourceNotFound", "workspace ws9 was not found", kind=ResourceNotFoundError),
        "workspace",
        False,
        c.INVALID_SPEC,
        "check spec.workspace",
    ),
    "no-role": Case(
        arm(403, "AuthorizationFailed", "The client does not have authorization"),
        "endpoint",
        False,
        c.CREDENTIALS_INVALID,
        "grant it AzureML Data Scientist",
    ),
    "token-refused": Case(
        arm(401, "InvalidAuthenticationToken", "bad token", kind=ClientAuthenticationError),
        "endpoint",
        False,
        c.CREDENTIALS_INVALID,
        "refused the token",
    ),
    "wrong-secret": Case(
        ClientAuthenticationError(
            message="Authentication failed: AADSTS7000215: Invalid client secret provided. 'right-secret-value'"
        ),
        "workspace",
        False,
        c.CREDENTIALS_INVALID,
        "the clientSecret is wrong",
    ),
    "federation-mismatch": Case(
        ClientAuthenticationError(message="WorkloadIdentityCredential authentication failed: AADSTS70021: No match"),
        "workspace",
        False,
        c.CREDENTIALS_INVALID,
        "no federated credential",
    ),
    "unknown-application": Case(
        arm(
            400,
            "unauthorized_client",
            "AADSTS700016: Application with identifier 'stranger-app' was not found in the directory.",
            kind=ClientAuthenticationError,
        ),
        "workspace",
        False,
        c.CREDENTIALS_INVALID,
        "not an application in the tenant's directory (AADSTS700016)",
    ),
    "token-endpoint-down": Case(
        ClientAuthenticationError(message="Authentication failed: connection timed out"),
        "workspace",
        True,
        c.BACKEND_UNAVAILABLE,
        "did not answer",
    ),
    "other-refusal": Case(
        arm(400, "BadArgument", "Traffic for deployment 'x' must be an integer 0-100."),
        "endpoint",
        False,
        c.SERVICE_FAILED,
        "must be an integer",
    ),
    "compute-refusal": Case(arm(400, "BadArgument", "nope"), "compute", False, c.COMPUTE_FAILED, "nope"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_failure_gets_its_reason(name: str) -> None:
    case = CASES[name]
    error = classify(case.exc, "doing it", area=case.area, credential=CREDENTIAL)
    assert isinstance(error, TransientBackendError if case.transient else PermanentBackendError), error
    assert error.reason == case.reason, error.message
    assert error.message.startswith("doing it failed")
    assert case.says in error.message
    if case.transient:
        assert isinstance(error, TransientBackendError) and error.retry_after == case.retry_after


def test_no_credential_in_any_message() -> None:
    """Entra's answers are explained in fixed words: what was sent (here a secret's value) never comes back."""
    for case in CASES.values():
        message = classify(case.exc, "doing it", area=case.area, credential=CREDENTIAL).message
        assert "right-secret-value" not in message


def test_a_failed_operation_s_error_document_reads_as_one_line() -> None:
    error = {
        "code": "DeploymentFailed",
        "message": "Couldn't Schedule",
        "details": [{"code": "PodUnschedulable", "message": "0/2 nodes are available"}],
    }
    assert operation_error(error) == "DeploymentFailed: Couldn't Schedule; PodUnschedulable: 0/2 nodes are available"
    assert operation_error(None) == ""
