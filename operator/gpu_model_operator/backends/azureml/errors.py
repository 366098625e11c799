"""What is the azureml backend's own in reading a failure; the table itself is :mod:`..azure.failures`.

A pure function of the exception, with no azureml import, so it is unit-tested as a table. azureml-core hides the
HTTP answer in its exceptions' text (``Response Code: 429`` and the response headers for Model Management and
compute calls, a JSON ``status_code`` for workspace calls, ``AADSTS<n>`` for Entra ID), so the status, the error
code and ``Retry-After`` are read back from there, or from a ``requests`` response where the exception carries
one; the compute writes sent through the ARM client raise azure-core's typed errors, read as the shared table
reads them. Own to this backend: a VM size refused, a model missing, a workspace missing said in words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from ... import conditions as c
from ..azure import failures
from ..azure.failures import At, Failure
from ..base import BackendError, PermanentBackendError

T = TypeVar("T")
#: Azure error codes meaning the VM size cannot be used: wrong name, not offered here, or not allowed.
VM_SIZE_CODES = {"invalidvmsize", "vmsizenotsupported", "skunotavailable", "invalidvmsku", "badvmsize"}
_VM_SIZE = re.compile(r"vm ?size\b.*\b(not|invalid|unsupported|unavailable)", re.IGNORECASE)
_STATUS = (
    re.compile(r"Response Code:\s*(\d{3})"),
    re.compile(r"[\"']status_?code[\"']\s*:\s*(\d{3})", re.IGNORECASE),
    re.compile(r"HTTP Error:\s*(\d{3})"),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error\b"),
)
_RETRY_AFTER = re.compile(r"[\"']Retry-After[\"']\s*:\s*[\"']?(\d+(?:\.\d+)?)", re.IGNORECASE)
_CODE = re.compile(r"[\"']code[\"']\s*:\s*[\"']([A-Za-z][\w.]*)[\"']")
_MESSAGE = re.compile(r"[\"']message[\"']\s*:\s*\"((?:[^\"\\]|\\.)*)\"")
_TIMEOUT_WORDS = re.compile(r"timed out|timeout|connection (?:aborted|reset|refused)|temporarily unavailable", re.I)
#: azureml-core's and its vendored Azure CLI's sign-in errors.
_AUTH_TYPES = ("AuthenticationError", "AuthenticationException")


class Dialect:
    """azureml-core's failures (see the module)."""

    roles = "AzureML Data Scientist or Contributor on the workspace"
    quota_hint = "ask for more vCPUs of the VM family in the region, or lower spec.compute.provision.agentCount"

    def describe(self, exc: BaseException) -> Failure:
        return failures.describe_azure_core(exc) or describe(exc)

    def own(self, f: Failure, at: At) -> BackendError | None:
        if (f.code or "").lower() in VM_SIZE_CODES or _VM_SIZE.search(f.text):
            return PermanentBackendError(
                f"{at.what}: the VM size cannot be used ({f.http}: {f.detail})", reason=c.INVALID_VM_SIZE
            )
        if "ModelNotFound" in f.text:
            return PermanentBackendError(
                f"{at.what}: {f.detail}; register the model in the workspace or fix spec.model",
                reason=c.MODEL_NOT_FOUND,
            )
        if at.area == "workspace" and "Workspace not found" in f.text:
            return failures.workspace_missing(at)
        return None


DIALECT = Dialect()


def classify(exc: BaseException, action: str, *, area: str, credential: str) -> BackendError:
    """The operator's error for ``exc``, raised while ``action`` (e.g. "reading compute gpu1").

    ``area`` picks the reason of otherwise unexplained refusals: "compute" → ComputeFailed, "service" →
    ServiceFailed, "workspace" → InvalidSpec. ``credential`` names the Secret the sign-in comes from.
    """
    return failures.classify(exc, action, area=area, credential=credential, dialect=DIALECT)


def describe(exc: BaseException) -> Failure:
    """Status, Azure error code, Retry-After and message of an azureml-core exception and its causes."""
    text = _text(exc)
    status = retry_after = None
    response = _response(exc)
    if response is not None:
        status = _int(getattr(response, "status_code", None))
        retry_after = failures.seconds((getattr(response, "headers", None) or {}).get("Retry-After"))
    for pattern in _STATUS:
        found = pattern.search(text)
        if status is None and found:
            status = int(found.group(1))
    found = _RETRY_AFTER.search(text)
    if retry_after is None and found:
        retry_after = float(found.group(1))
    code = next((m.group(1) for m in _CODE.finditer(text) if m.group(1).lower() != "error"), None)
    message = _MESSAGE.search(text)
    kind = type(exc).__name__
    aad = failures.AADSTS.search(text)
    sign_in = bool(aad) or (kind in _AUTH_TYPES and (status or 400) < 500)
    no_answer = status is None and (failures.no_answer(exc) or bool(_TIMEOUT_WORDS.search(text)))
    return Failure(
        kind,
        status,
        code,
        # Entra's answer is never repeated (it may echo what was sent): the table explains its code instead.
        "" if sign_in else (_unescape(message.group(1)) if message else _first_line(text))[:400],
        retry_after,
        sign_in=sign_in,
        aadsts=aad.group(1) if aad else None,
        no_answer=no_answer,
        sdk_error=kind.endswith("Exception"),
        text=text,
    )


def is_not_found(exc: BaseException) -> bool:
    """The SDK's way of saying a compute target or web service does not exist."""
    text = str(exc)
    return "ComputeTargetNotFound" in text or "WebserviceNotFound" in text


def none_if_not_found(read: Callable[[], T]) -> Callable[[], T | None]:
    """``read`` returning None where the SDK raises its not-found error (what observe calls want)."""

    def wrapped() -> T | None:
        try:
            return read()
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    return wrapped


def _text(exc: BaseException) -> str:
    """The exception and the ones it was raised from, as text (the SDK often wraps the HTTP error)."""
    seen: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 4:
        seen.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(seen)


def _response(exc: BaseException) -> Any:
    current: BaseException | None = exc
    while current is not None:
        response = getattr(current, "response", None)
        if response is not None and hasattr(response, "status_code"):
            return response
        current = current.__cause__ or current.__context__
    return None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # The SDK's exceptions read "WebserviceException:\n\tMessage: <what happened>\n..."
    for line in lines:
        if line.startswith("Message:"):
            return line.removeprefix("Message:").strip()
    return lines[0] if lines else ""


def _unescape(text: str) -> str:
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:
        return text


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
