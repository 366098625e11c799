"""The Azure SDKs' exceptions as they raise them, for the failure tables, and what a classification comes to.

azureml-core's texts are the ones it puts in its exceptions (taken from its answers to the emulator's faults);
azure-core's errors are built from an ARM error body the way azure-core builds them from a real response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from azure.core.exceptions import HttpResponseError
from azureml._vendor.azure_cli_core.azclierror import AuthenticationError

from gpu_model_operator.backends.azureml.errors import classify as classify_v1
from gpu_model_operator.backends.azureml_v2.errors import classify as classify_v2
from gpu_model_operator.backends.base import BackendError, TransientBackendError

#: Where the sign-in comes from, as both backends name a Secret's service principal.
CREDENTIAL = "the service principal in Secret sp (keys tenantId, clientId, clientSecret)"
ACTION = "doing it"
CLASSIFY = {"azureml": classify_v1, "azureml-v2": classify_v2}


@dataclass(frozen=True)
class Outcome:
    """A classification, whole: retry or not, the reason, the message, and the wait Azure asked for."""

    transient: bool
    reason: str
    message: str
    retry_after: float | None = None


def outcome(error: BackendError) -> Outcome:
    retry_after = error.retry_after if isinstance(error, TransientBackendError) else None
    return Outcome(isinstance(error, TransientBackendError), error.reason, error.message, retry_after)


def classified(backend: str, exc: BaseException, area: str, action: str = ACTION) -> Outcome:
    return outcome(CLASSIFY[backend](exc, action, area=area, credential=CREDENTIAL))


# ---- azureml-core ---------------------------------------------------------------------------------------------


def mms(status: int, code: str, message: str, retry_after: int | None = None) -> str:
    """The text of azureml-core's exception for a bad Model Management or compute answer."""
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
    """azureml-core's (its vendored Azure CLI's) sign-in error, with Entra's answer in it."""
    return sign_in_refused(f'AADSTS{code}: {text}\n{{"error": {{"message": "AADSTS{code}: {text}"}}}}')


def sign_in_refused(text: str) -> AuthenticationError:
    return AuthenticationError(text)


# ---- azure-core -----------------------------------------------------------------------------------------------


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
    """azure-core's error for an ARM error answer (``{"error": {code, message, details}}``)."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return kind(response=Response(status, body, headers))
