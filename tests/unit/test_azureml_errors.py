"""What each Azure ML SDK failure becomes: a table of the SDK's own exceptions, with the texts azureml-core 1.61
puts in them (taken from its answers to the emulator's faults), against the operator's error and reason."""

from __future__ import annotations

from dataclasses import dataclass

import msal.exceptions
import pytest
import requests
from azureml._vendor.azure_cli_core.azclierror import AuthenticationError
from azureml.exceptions import ComputeTargetException, ProjectSystemException, WebserviceException

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azureml.errors import classify, describe, is_not_found, provisioning_errors
from gpu_model_operator.backends.base import BackendError, PermanentBackendError, TransientBackendError

SECRET_VALUE = "s3cr3t-v4lue"


def mms(status: int, code: str, message: str, retry_after: int | None = None) -> str:
    """The text of the SDK's exception for a bad Model Management or compute answer."""
    headers = {"x-ms-failure-cause": "injected", "Content-Type": "application/json; charset=utf-8"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    content = f'{{"code": "{code}", "statusCode": {status}, "message": "{message}"}}'
    return (
        f"Received bad response from Model Management Service:\nResponse Code: {status}\n"
        f"Headers: {headers}\nContent: b'{content}'"
    )


def http_error(status: int, retry_after: str | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    response._content = b'{"error": {"code": "TooManyRequests", "message": "slow down"}}'
    return requests.HTTPError(f"Response Code: {status}: slow down", response=response)


def aad(code: str, text: str) -> AuthenticationError:
    return AuthenticationError(f'AADSTS{code}: {text}\n{{"error": {{"message": "AADSTS{code}: {text}"}}}}')


@dataclass
class Case:
    id: str
    exc: BaseException
    area: str
    transient: bool
    reason: str
    retry_after: float | None = None
    says: str = ""


CASES = [
    Case("429 with Retry-After", WebserviceException(mms(429, "TooManyRequests", "Slow down.", 7)), "service",
         True, c.BACKEND_UNAVAILABLE, 7.0, "throttled"),
    Case("429 without Retry-After", ComputeTargetException(mms(429, "TooManyRequests", "x")), "compute",
         True, c.BACKEND_UNAVAILABLE, None, "HTTP 429 TooManyRequests"),
    Case("429 from a requests response", http_error(429, "4"), "service", True, c.BACKEND_UNAVAILABLE, 4.0),
    Case("503", WebserviceException(mms(503, "ServiceUnavailable", "Try later.")), "service",
         True, c.BACKEND_UNAVAILABLE, None, "Try later."),
    Case("500", ComputeTargetException(mms(500, "InternalServerError", "Oops.")), "compute",
         True, c.BACKEND_UNAVAILABLE),
    Case("504 with Retry-After", WebserviceException(mms(504, "GatewayTimeout", "x", 2)), "service",
         True, c.BACKEND_UNAVAILABLE, 2.0),
    Case("408", WebserviceException(mms(408, "RequestTimeout", "x")), "service", True, c.BACKEND_UNAVAILABLE),
    Case("409 busy", WebserviceException(mms(409, "Conflict", "operation in progress")), "service",
         True, c.BACKEND_UNAVAILABLE, None, "in progress"),
    Case("workspace 429 after msrest retries",
         ProjectSystemException('{\n "error_details": {"code": "TooManyRequests"},\n "status_code": 429\n}'),
         "workspace", True, c.BACKEND_UNAVAILABLE),
    Case("connection reset", requests.ConnectionError("('Connection aborted.', RemoteDisconnected('x'))"),
         "compute", True, c.BACKEND_UNAVAILABLE, None, "did not answer"),
    Case("read timeout", requests.ReadTimeout("Read timed out. (read timeout=60)"), "service",
         True, c.BACKEND_UNAVAILABLE),
    Case("timeout", TimeoutError(), "service", True, c.BACKEND_UNAVAILABLE),
    Case("MMS list timed out", WebserviceException("Error, request to MMS timed out to URL: https://x"), "service",
         True, c.BACKEND_UNAVAILABLE),
    Case("token endpoint 503", msal.exceptions.MsalServiceError("HTTP Error: 503", error="x", error_description="y"),
         "workspace", True, c.BACKEND_UNAVAILABLE),
    Case("wrong client secret", aad("7000215", "Invalid client secret provided."), "workspace",
         False, c.CREDENTIALS_INVALID, None, "clientSecret is wrong"),
    Case("unknown client id", aad("700016", "Application with identifier 'nobody' was not found."), "workspace",
         False, c.CREDENTIALS_INVALID, None, "clientId"),
    Case("unknown tenant", aad("90002", "Tenant 'x' not found."), "workspace", False, c.CREDENTIALS_INVALID),
    Case("401", WebserviceException(mms(401, "Unauthorized", "x")), "service", False, c.CREDENTIALS_INVALID),
    Case("403 no role", ComputeTargetException(mms(403, "AuthorizationFailed", "no write")), "compute",
         False, c.CREDENTIALS_INVALID, None, "AzureML Data Scientist"),
    Case("model not found", WebserviceException("ModelNotFound: Model with id digits:3 not found in provided "
         "workspace"), "service", False, c.MODEL_NOT_FOUND, None, "digits:3"),
    Case("model not found at deploy", WebserviceException(mms(404, "ModelNotFound", "Model with id m:1 not found.")),
         "service", False, c.MODEL_NOT_FOUND),
    Case("quota at PUT", ComputeTargetException(mms(400, "QuotaExceeded", "Operation could not be completed as it "
         "results in exceeding approved standardNCFamily Cores quota.")), "compute", False, c.QUOTA_EXCEEDED),
    Case("invalid VM size", ComputeTargetException(mms(400, "InvalidVMSize", "The VM size Standard_X1 is invalid.")),
         "compute", False, c.INVALID_VM_SIZE),
    Case("size not offered", ComputeTargetException(mms(409, "SkuNotAvailable", "The requested VM size is not "
         "available in location eastus.")), "compute", False, c.INVALID_VM_SIZE),
    Case("workspace not found", ProjectSystemException("Workspace not found."), "workspace", False, c.INVALID_SPEC),
    Case("other 400 on a service", WebserviceException(mms(400, "BadArgument", "cpu must be positive")), "service",
         False, c.SERVICE_FAILED, None, "cpu must be positive"),
    Case("other 400 on a compute", ComputeTargetException(mms(400, "BadRequest", "bad subnet")), "compute",
         False, c.COMPUTE_FAILED),
    Case("SDK refusal without HTTP", WebserviceException("Invalid compute type"), "service", False, c.SERVICE_FAILED),
    Case("unexpected bug", KeyError("properties"), "compute", True, c.BACKEND_UNAVAILABLE, None, "KeyError"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_classify(case: Case) -> None:
    error = classify(case.exc, "reading service digits", area=case.area, secret="azure-sp")
    assert isinstance(error, TransientBackendError if case.transient else PermanentBackendError), error.message
    assert error.reason == case.reason, error.message
    assert error.message.startswith("reading service digits failed")
    assert case.says in error.message
    if case.transient:
        assert isinstance(error, TransientBackendError) and error.retry_after == case.retry_after


def test_credential_errors_name_the_secret_and_its_keys_never_a_value() -> None:
    exc = aad("700016", f"Application with identifier 'nobody' was not found. client_secret={SECRET_VALUE}")
    error = classify(exc, "connecting to workspace ws1", area="workspace", secret="azure-sp")
    assert "Secret azure-sp (keys tenantId, clientId, clientSecret)" in error.message
    assert "AADSTS700016" in error.message
    assert SECRET_VALUE not in error.message and "nobody" not in error.message


def test_backend_errors_pass_through() -> None:
    error = TransientBackendError("already decided", retry_after=3)
    assert classify(error, "x", area="service") is error
    assert isinstance(classify(PermanentBackendError("p"), "x", area="service"), BackendError)


def test_describe_reads_status_code_retry_after_and_message() -> None:
    f = describe(WebserviceException(mms(429, "TooManyRequests", 'Wait \\"a bit\\".', 12)))
    assert (f.kind, f.status, f.code, f.retry_after) == ("WebserviceException", 429, "TooManyRequests", 12.0)
    assert f.detail == 'Wait "a bit".'


def test_not_found_is_told_apart_from_other_errors() -> None:
    assert is_not_found(ComputeTargetException("ComputeTargetNotFound: Compute Target with name x not found"))
    assert is_not_found(WebserviceException("WebserviceNotFound: Webservice with name x not found"))
    assert not is_not_found(WebserviceException(mms(404, "ModelNotFound", "Model with id m:1 not found.")))


def test_provisioning_errors_of_a_compute_and_a_service() -> None:
    compute = [{"error": {"code": "QuotaExceeded", "statusCode": 400, "message": "Cores quota exceeded."}}]
    assert provisioning_errors(compute) == "QuotaExceeded: Cores quota exceeded."
    service = {
        "code": "DeploymentFailed",
        "message": "Deployment Failed. InsufficientGPU",
        "details": [{"code": "CouldNotScheduleReplicas", "message": "0/2 nodes are available"}],
        "error": {"code": "DeploymentFailed", "message": "Deployment Failed. InsufficientGPU"},
    }
    assert provisioning_errors([service]) == (
        "DeploymentFailed: Deployment Failed. InsufficientGPU; CouldNotScheduleReplicas: 0/2 nodes are available"
    )
    assert provisioning_errors(None) == ""
