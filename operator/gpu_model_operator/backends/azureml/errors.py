"""What an Azure ML SDK failure means for the operator: retry later (transient) or wait for the user (permanent).

A pure function of the exception, with no azureml import, so it is unit-tested as a table. The SDK hides
the HTTP answer in its exceptions' text (``Response Code: 429`` and the response headers for Model
Management and compute calls, a JSON ``status_code`` for workspace calls, ``AADSTS<n>`` for Azure AD), so
the status, the error code and ``Retry-After`` are read back from there, or from a ``requests`` response
where the exception carries one.

Messages are for the user: the operation, the HTTP status and Azure's own code and message. They never
carry a credential: Azure AD's answers are replaced by fixed explanations that name the Secret's keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ... import conditions as c
from ..base import BackendError, PermanentBackendError, TransientBackendError

T = TypeVar("T")
CREDENTIAL_KEYS = "tenantId, clientId, clientSecret"
#: Azure AD error codes a user meets with a wrong Secret, explained without repeating what was sent.
AAD_ERRORS = {
    "7000215": "the clientSecret is wrong (use the secret's value, not its ID)",
    "7000222": "the clientSecret has expired; create a new one",
    "700016": "the clientId is not an application in the tenantId's directory",
    "90002": "the tenantId is not a known Azure AD tenant",
    "900023": "the tenantId is not a valid tenant id or domain",
    "700024": "the client assertion is not valid",
    "50034": "the principal does not exist in the tenantId's directory",
}
#: Azure error codes meaning the VM size cannot be used: wrong name, not offered here, or not allowed.
VM_SIZE_CODES = {"invalidvmsize", "vmsizenotsupported", "skunotavailable", "invalidvmsku", "badvmsize"}
_STATUS = (
    re.compile(r"Response Code:\s*(\d{3})"),
    re.compile(r"[\"']status_?code[\"']\s*:\s*(\d{3})", re.IGNORECASE),
    re.compile(r"HTTP Error:\s*(\d{3})"),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error\b"),
)
_RETRY_AFTER = re.compile(r"[\"']Retry-After[\"']\s*:\s*[\"']?(\d+(?:\.\d+)?)", re.IGNORECASE)
_CODE = re.compile(r"[\"']code[\"']\s*:\s*[\"']([A-Za-z][\w.]*)[\"']")
_MESSAGE = re.compile(r"[\"']message[\"']\s*:\s*\"((?:[^\"\\]|\\.)*)\"")
_AADSTS = re.compile(r"AADSTS(\d+)")
_CONNECTION_TYPES = {
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "TimeoutError",
    "ProtocolError",
    "RemoteDisconnected",
    "NewConnectionError",
    "MaxRetryError",
    "ChunkedEncodingError",
    "ClientRequestError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "IncompleteRead",
}
_TIMEOUT_WORDS = re.compile(r"timed out|timeout|connection (?:aborted|reset|refused)|temporarily unavailable", re.I)


@dataclass(frozen=True)
class Failure:
    """The parts of an SDK exception that decide what to do."""

    kind: str  # the exception's class name
    status: int | None
    code: str | None
    retry_after: float | None
    detail: str  # Azure's message, or the exception's first line


def describe(exc: BaseException) -> Failure:
    """Read status, Azure error code, Retry-After and message from an SDK exception and its causes."""
    text = _text(exc)
    status = retry_after = None
    response = _response(exc)
    if response is not None:
        status = _int(getattr(response, "status_code", None))
        retry_after = _float((getattr(response, "headers", None) or {}).get("Retry-After"))
    for pattern in _STATUS:
        found = pattern.search(text)
        if status is None and found:
            status = int(found.group(1))
    found = _RETRY_AFTER.search(text)
    if retry_after is None and found:
        retry_after = float(found.group(1))
    code = next((m.group(1) for m in _CODE.finditer(text) if m.group(1).lower() != "error"), None)
    message = _MESSAGE.search(text)
    detail = _unescape(message.group(1)) if message else _first_line(text)
    return Failure(type(exc).__name__, status, code, retry_after, detail[:400])


def classify(exc: BaseException, action: str, *, area: str, secret: str = "the credentials Secret") -> BackendError:
    """The operator's error for ``exc``, raised while ``action`` (e.g. "reading compute gpu1").

    ``area`` picks the reason of otherwise unexplained refusals: "compute" → ComputeFailed, "service" →
    ServiceFailed, "workspace" → InvalidSpec. ``secret`` is the name of the Secret holding the credentials.
    """
    if isinstance(exc, BackendError):
        return exc
    f = describe(exc)
    text = _text(exc)
    what = f"{action} failed"
    http = f"HTTP {f.status}" + (f" {f.code}" if f.code else "") if f.status else (f.code or f.kind)

    aad = _AADSTS.search(text)
    if aad or (f.kind in ("AuthenticationError", "AuthenticationException") and (f.status or 400) < 500):
        why = AAD_ERRORS.get(aad.group(1), "Azure AD refused it") if aad else "Azure AD refused it"
        code = f" (AADSTS{aad.group(1)})" if aad else ""
        return PermanentBackendError(
            f"{what}: cannot sign in with the service principal in Secret {secret} (keys {CREDENTIAL_KEYS}): "
            f"{why}{code}",
            reason=c.CREDENTIALS_INVALID,
        )
    if f.status is None and (f.kind in _CONNECTION_TYPES or isinstance(exc, (ConnectionError, TimeoutError))):
        return TransientBackendError(f"{what}: Azure did not answer ({f.kind}: {f.detail})")
    if f.status == 429:
        wait = f"; retrying after {f.retry_after:g}s as Retry-After asks" if f.retry_after else ""
        return TransientBackendError(f"{what}: throttled by Azure ({http}){wait}", retry_after=f.retry_after)
    if f.status is not None and (f.status >= 500 or f.status == 408):
        return TransientBackendError(f"{what}: Azure is unavailable ({http}: {f.detail})", retry_after=f.retry_after)
    if f.status == 401:
        return PermanentBackendError(
            f"{what}: Azure refused the token of the service principal in Secret {secret} ({http})",
            reason=c.CREDENTIALS_INVALID,
        )
    if f.status == 403:
        return PermanentBackendError(
            f"{what}: the service principal in Secret {secret} lacks an Azure role for this ({http}: {f.detail}); "
            "grant it AzureML Data Scientist or Contributor on the workspace",
            reason=c.CREDENTIALS_INVALID,
        )
    code = (f.code or "").lower()
    if "quota" in code or re.search(r"exceed\w* .*quota|quota .*exceed", text, re.I):
        return PermanentBackendError(f"{what}: not enough quota ({http}: {f.detail})", reason=c.QUOTA_EXCEEDED)
    if code in VM_SIZE_CODES or re.search(r"vm ?size\b.*\b(not|invalid|unsupported|unavailable)", text, re.I):
        return PermanentBackendError(
            f"{what}: the VM size cannot be used ({http}: {f.detail})", reason=c.INVALID_VM_SIZE
        )
    if "ModelNotFound" in text:
        return PermanentBackendError(
            f"{what}: {f.detail}; register the model in the workspace or fix spec.model", reason=c.MODEL_NOT_FOUND
        )
    if f.status == 409:
        return TransientBackendError(f"{what}: another operation is in progress ({http}: {f.detail})")
    if area == "workspace" and (f.status == 404 or "Workspace not found" in text):
        return PermanentBackendError(
            f"{what}: the workspace does not exist, or the service principal in Secret {secret} cannot see it; "
            "check spec.workspace",
            reason=c.INVALID_SPEC,
        )
    if f.status is None and _TIMEOUT_WORDS.search(text):
        return TransientBackendError(f"{what}: Azure did not answer ({f.detail})")
    if f.status is not None or f.kind.endswith("Exception"):  # Azure or the SDK refused the request itself
        reason = {"compute": c.COMPUTE_FAILED, "service": c.SERVICE_FAILED}.get(area, c.INVALID_SPEC)
        return PermanentBackendError(f"{what}: {http}: {f.detail}", reason=reason)
    return TransientBackendError(f"{what}: unexpected {f.kind}: {f.detail}")


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


def provisioning_errors(errors: Any) -> str:
    """Azure's error documents as one line: a compute's ``provisioning_errors`` (``[{"error": {code,
    message}}]``) or a service's ``error`` (``{code, message, details: [{code, message}]}``), in a list."""
    parts = []
    for item in errors or []:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        error = item if item.get("message") else item.get("error") or {}
        for entry in [error, *(error.get("details") or [])]:
            if isinstance(entry, dict) and entry.get("message"):
                parts.append(": ".join(str(entry[k]) for k in ("code", "message") if entry.get(k)))
    return "; ".join(parts)


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


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
