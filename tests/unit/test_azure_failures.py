"""The one failure table of both Azure backends (``backends/azure/failures.py``): each row a failure as one of the
SDKs raises it (azureml-core's texts, azure-core's typed errors), against the whole classification the backend
makes of it: retry or not, the reason, the message, Retry-After. What each backend reads its own way, and the rules
that are its own, are in ``test_azureml_errors.py`` and ``test_azureml_v2_errors.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msal.exceptions
import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azureml.exceptions import ComputeTargetException, ProjectSystemException, WebserviceException

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azure.failures import error_line
from gpu_model_operator.backends.base import PermanentBackendError, TransientBackendError
from tests.unit.sdk_errors import (
    CLASSIFY,
    CREDENTIAL,
    Outcome,
    aad,
    arm,
    classified,
    http_error,
    mms,
    sign_in_refused,
)

WHO = CREDENTIAL
UNAVAILABLE, INVALID = c.BACKEND_UNAVAILABLE, c.CREDENTIALS_INVALID


@dataclass(frozen=True)
class Case:
    backend: str  # whose SDK raises it: "azureml" or "azureml-v2"
    exc: BaseException
    area: str
    want: Outcome


def transient(message: str, retry_after: float | None = None) -> Outcome:
    return Outcome(True, UNAVAILABLE, f"doing it failed: {message}", retry_after)


def permanent(reason: str, message: str) -> Outcome:
    return Outcome(False, reason, f"doing it failed: {message}")


V1_ROLE = "grant it AzureML Data Scientist or Contributor on the workspace"
V2_ROLE = "grant it AzureML Data Scientist on the workspace (and Reader on the subscription for quota)"
QUOTA_V1 = "ask for more vCPUs of the VM family in the region, or lower spec.compute.provision.agentCount"
QUOTA_V2 = "ask for more vCPUs of the family or lower spec.service.replicas"
WRONG_SECRET = f"cannot sign in with {WHO}: the clientSecret is wrong (use the secret's value, not its ID)"

CASES: dict[str, Case] = {
    # -- throttled: the wait Azure asks for is kept, so the gate and the backoff honour it
    "v1 429 with Retry-After": Case("azureml", WebserviceException(mms(429, "TooManyRequests", "Slow.", 7)), "service",
        transient("throttled by Azure (HTTP 429 TooManyRequests); retrying after 7s as Retry-After asks", 7.0)),
    "v1 429 without Retry-After": Case("azureml", ComputeTargetException(mms(429, "TooManyRequests", "x")), "compute",
        transient("throttled by Azure (HTTP 429 TooManyRequests)")),
    "v1 429 of a requests response": Case("azureml", http_error(429, "4"), "service",
        transient("throttled by Azure (HTTP 429); retrying after 4s as Retry-After asks", 4.0)),
    "v1 workspace 429": Case("azureml", ProjectSystemException('{"error_details": {"code": "TooManyRequests"}, '
        '"status_code": 429}'), "workspace", transient("throttled by Azure (HTTP 429 TooManyRequests)")),
    "v2 429 with Retry-After": Case("azureml-v2", arm(429, "TooManyRequests", "slow", headers={"Retry-After": "7"}),
        "endpoint", transient("throttled by Azure (HTTP 429 TooManyRequests); retrying after 7s as Retry-After asks",
        7.0)),
    # -- unavailable: 5xx and 408
    "v1 503": Case("azureml", WebserviceException(mms(503, "ServiceUnavailable", "Try later.")), "service",
        transient("Azure is unavailable (HTTP 503 ServiceUnavailable: Try later.)")),
    "v1 504 with Retry-After": Case("azureml", WebserviceException(mms(504, "GatewayTimeout", "x", 2)), "service",
        transient("Azure is unavailable (HTTP 504 GatewayTimeout: x)", 2.0)),
    "v1 408": Case("azureml", WebserviceException(mms(408, "RequestTimeout", "x")), "service",
        transient("Azure is unavailable (HTTP 408 RequestTimeout: x)")),
    "v1 token endpoint 503": Case("azureml", msal.exceptions.MsalServiceError("HTTP Error: 503", error="x",
        error_description="y"), "workspace", transient("Azure is unavailable (HTTP 503: HTTP Error: 503)")),
    "v2 500": Case("azureml-v2", arm(500, "InternalServerError", "oops"), "deployment",
        transient("Azure is unavailable (HTTP 500 InternalServerError: oops)")),
    # -- no answer at all
    "v1 connection reset": Case("azureml", requests.ConnectionError("Connection aborted."), "compute",
        transient("Azure did not answer (ConnectionError: Connection aborted.)")),
    "v1 read timeout": Case("azureml", requests.ReadTimeout("Read timed out."), "service",
        transient("Azure did not answer (ReadTimeout: Read timed out.)")),
    "v1 MMS list timed out": Case("azureml", WebserviceException("Error, request to MMS timed out"), "service",
        transient("Azure did not answer (WebserviceException: Error, request to MMS timed out)")),
    "v2 connection reset": Case("azureml-v2", ServiceResponseError("Connection aborted: reset"), "endpoint",
        transient("Azure did not answer (ServiceResponseError: Connection aborted: reset)")),
    "v2 no connection": Case("azureml-v2", ServiceRequestError("Name or service not known"), "endpoint",
        transient("Azure did not answer (ServiceRequestError: Name or service not known)")),
    "v2 timeout": Case("azureml-v2", TimeoutError("timed out"), "endpoint",
        transient("Azure did not answer (TimeoutError: timed out)")),
    # -- Entra refused the sign-in: fixed words for its code, never its answer
    "v1 wrong client secret": Case("azureml", aad("7000215", "Invalid client secret."), "workspace",
        permanent(INVALID, f"{WRONG_SECRET} (AADSTS7000215)")),
    "v1 refused without a code": Case("azureml", sign_in_refused("refused: client_secret=abc"), "workspace",
        permanent(INVALID, f"cannot sign in with {WHO}: Entra ID refused it")),
    "v2 wrong client secret": Case("azureml-v2", ClientAuthenticationError(message="AADSTS7000215: Invalid secret"),
        "workspace", permanent(INVALID, f"{WRONG_SECRET} (AADSTS7000215)")),
    "v2 federation mismatch": Case("azureml-v2", ClientAuthenticationError(message="AADSTS70021: No match"),
        "workspace", permanent(INVALID, f"cannot sign in with {WHO}: no federated credential of the application "
        "matches the token's issuer, subject and audience (AADSTS70021)")),
    "v2 unknown application": Case("azureml-v2", arm(400, "unauthorized_client", "AADSTS700016: Application 'x' "
        "was not found.", kind=ClientAuthenticationError), "workspace", permanent(INVALID, f"cannot sign in with "
        f"{WHO}: the clientId is not an application in the tenant's directory (AADSTS700016)")),
    "v2 token endpoint down": Case("azureml-v2", ClientAuthenticationError(message="connection timed out"),
        "workspace", transient(f"Entra ID did not answer when signing in with {WHO}")),
    # -- ARM refused the token, or the principal has no role
    "v1 401": Case("azureml", WebserviceException(mms(401, "Unauthorized", "x")), "service",
        permanent(INVALID, f"Azure refused the token of {WHO} (HTTP 401 Unauthorized)")),
    "v2 401": Case("azureml-v2", arm(401, "InvalidAuthenticationToken", "bad", kind=ClientAuthenticationError),
        "endpoint", permanent(INVALID, f"Azure refused the token of {WHO} (HTTP 401 InvalidAuthenticationToken)")),
    "v1 403": Case("azureml", ComputeTargetException(mms(403, "AuthorizationFailed", "no write")), "compute",
        permanent(INVALID, f"{WHO} lacks an Azure role for this (HTTP 403 AuthorizationFailed: no write); {V1_ROLE}")),
    "v2 403": Case("azureml-v2", arm(403, "AuthorizationFailed", "no read"), "endpoint",
        permanent(INVALID, f"{WHO} lacks an Azure role for this (HTTP 403 AuthorizationFailed: no read); {V2_ROLE}")),
    # -- quota, by Azure's code or its words
    "v1 quota at the compute's PUT": Case("azureml", ComputeTargetException(mms(400, "QuotaExceeded", "Exceeds "
        "approved standardNCFamily Cores quota.")), "compute", permanent(c.QUOTA_EXCEEDED, "not enough quota (HTTP "
        f"400 QuotaExceeded: Exceeds approved standardNCFamily Cores quota.); {QUOTA_V1}")),
    "v1 quota through the ARM client": Case("azureml", arm(409, "OperationNotAllowed", "Operation results in "
        "exceeding quota limits of Core."), "compute", permanent(c.QUOTA_EXCEEDED, "not enough quota (HTTP 409 "
        f"OperationNotAllowed: Operation results in exceeding quota limits of Core.); {QUOTA_V1}")),
    "v2 quota in words": Case("azureml-v2", arm(400, "BadArgument", "Not enough quota available for X."),
        "deployment", permanent(c.QUOTA_EXCEEDED, f"not enough quota (HTTP 400 BadArgument: Not enough quota "
        f"available for X.); {QUOTA_V2}")),
    # -- another operation holds the resource
    "v1 409 busy": Case("azureml", WebserviceException(mms(409, "Conflict", "operation in progress")), "service",
        transient("another operation is in progress (HTTP 409 Conflict: operation in progress)")),
    "v2 409 busy": Case("azureml-v2", arm(409, "Conflict", "in state 'Updating'", kind=ResourceExistsError),
        "endpoint", transient("another operation is in progress (HTTP 409 Conflict: in state 'Updating')")),
    # -- the workspace is missing, or not visible to the principal
    "v2 workspace 404": Case("azureml-v2", arm(404, "ResourceNotFound", "ws9", kind=ResourceNotFoundError),
        "workspace", permanent(c.INVALID_SPEC, f"the workspace does not exist, or {WHO} cannot see it; check "
        "spec.workspace")),
    # -- any other refusal: the area's reason
    "v1 400 on a service": Case("azureml", WebserviceException(mms(400, "BadArgument", "cpu must be positive")),
        "service", permanent(c.SERVICE_FAILED, "HTTP 400 BadArgument: cpu must be positive")),
    "v1 400 on a compute": Case("azureml", ComputeTargetException(mms(400, "BadRequest", "bad subnet")), "compute",
        permanent(c.COMPUTE_FAILED, "HTTP 400 BadRequest: bad subnet")),
    "v1 SDK refusal without HTTP": Case("azureml", WebserviceException("Invalid compute type"), "service",
        permanent(c.SERVICE_FAILED, "WebserviceException: Invalid compute type")),
    "v2 400 on an endpoint": Case("azureml-v2", arm(400, "BadArgument", "Traffic must be 0-100."), "endpoint",
        permanent(c.SERVICE_FAILED, "HTTP 400 BadArgument: Traffic must be 0-100.")),
    "v2 400 on a compute": Case("azureml-v2", arm(400, "BadArgument", "nope"), "compute",
        permanent(c.COMPUTE_FAILED, "HTTP 400 BadArgument: nope")),
    # -- nothing explains it: a bug or a surprise, retried
    "v1 unexpected": Case("azureml", KeyError("properties"), "compute", transient("unexpected KeyError: 'properties'")),
    "v2 unexpected": Case("azureml-v2", ValueError("odd"), "endpoint", transient("unexpected ValueError: odd")),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_each_failure_is_classified(name: str) -> None:
    case = CASES[name]
    assert classified(case.backend, case.exc, case.area) == case.want


def test_no_credential_in_any_message() -> None:
    """Entra's answers are explained in fixed words: what was sent (a secret's value) never comes back."""
    secret = "right-secret-value"
    refusals: dict[str, BaseException] = {
        "azureml": aad("700016", f"Application 'nobody' was not found. client_secret={secret}"),
        "azureml-v2": ClientAuthenticationError(message=f"AADSTS7000215: Invalid client secret '{secret}'"),
    }
    for backend, exc in refusals.items():
        message = classified(backend, exc, "workspace").message
        assert secret not in message and "nobody" not in message
        assert message.startswith(f"doing it failed: cannot sign in with {WHO}: ")


@pytest.mark.parametrize("backend", CLASSIFY)
def test_the_operator_s_own_errors_pass_through(backend: str) -> None:
    for error in (TransientBackendError("already decided", retry_after=3), PermanentBackendError("p")):
        assert CLASSIFY[backend](error, "x", area="service", credential=WHO) is error


@dataclass(frozen=True)
class Document:
    errors: Any
    line: str


COMPUTE_ERRORS = [{"error": {"code": "QuotaExceeded", "statusCode": 400, "message": "Cores quota exceeded."}}]
SERVICE_ERROR = {
    "code": "DeploymentFailed",
    "message": "Deployment Failed. InsufficientGPU",
    "details": [{"code": "CouldNotScheduleReplicas", "message": "0/2 nodes are available"}],
}
DOCUMENTS: dict[str, Document] = {
    "a compute's provisioning errors": Document(COMPUTE_ERRORS, "QuotaExceeded: Cores quota exceeded."),
    "a service's error, listed": Document(
        [SERVICE_ERROR],
        "DeploymentFailed: Deployment Failed. InsufficientGPU; CouldNotScheduleReplicas: 0/2 nodes are available",
    ),
    "an operation's error": Document({"message": "Couldn't schedule"}, "Couldn't schedule"),
    "text": Document(["it broke"], "it broke"),
    "none": Document(None, ""),
}  # fmt: skip


@pytest.mark.parametrize("name", DOCUMENTS)
def test_azure_s_error_documents_read_as_one_line(name: str) -> None:
    case = DOCUMENTS[name]
    assert error_line(case.errors) == case.line
