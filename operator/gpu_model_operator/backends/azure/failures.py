"""What an Azure failure means for the operator: retry later (transient) or wait for the user (permanent), with a
message the user can act on. One table for both Azure backends.

Each backend reads its SDK's exceptions into a :class:`Failure` (its :class:`Dialect`: the SDK v1 hides the HTTP
answer in its exceptions' text, the SDK v2 raises azure-core's typed errors) and adds the rules that are its own
(a VM size or an instance type refused, a model missing, an endpoint name taken). The rest is :data:`RULES`, in
order: Entra's sign-in errors, no answer, 429 (its Retry-After kept), 5xx and 408, 401, 403, quota, the backend's
own, 409 (another operation in progress), a missing workspace, any other refusal, and what nothing explains.

Messages never carry a credential: Entra's answers are replaced by fixed explanations naming where the credential
comes from (a Secret's keys, or a workload identity's federated token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from ... import conditions as c
from ..base import BackendError, PermanentBackendError, TransientBackendError

#: Entra ID error codes a user meets with a wrong Secret or a federation that does not match, explained without
#: repeating what was sent (learn.microsoft.com/entra/identity-platform/reference-error-codes).
AAD_ERRORS = {
    "7000215": "the clientSecret is wrong (use the secret's value, not its ID)",
    "7000222": "the clientSecret has expired; create a new one",
    "700016": "the clientId is not an application in the tenant's directory",
    "90002": "the tenantId is not a known Entra tenant",
    "900023": "the tenantId is not a valid tenant id or domain",
    "70021": "no federated credential of the application matches the token's issuer, subject and audience",
    "700024": "the client assertion (the federated token) is not valid: expired or not yet valid",
    "700027": "the federated token's signature does not match its issuer's keys",
    "50034": "the principal does not exist in the tenant's directory",
}
AADSTS = re.compile(r"AADSTS(\d+)")
#: Exception class names (requests, urllib3, http.client, aiohttp, the standard library) of a call that got no
#: answer: the connection failed, broke, or timed out.
NO_ANSWER_TYPES = frozenset(
    {
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
)
#: The token endpoint did not answer: an outage, not a wrong credential.
_OUTAGE = re.compile(r"timed out|connection|temporarily|unavailable|\b5\d\d\b", re.IGNORECASE)
_QUOTA = re.compile(r"not enough quota|quota .*exceed|exceed\w* .*quota", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """What decides the classification, as a backend's :class:`Dialect` reads it from an exception."""

    kind: str  # the exception's class name
    status: int | None = None
    code: str | None = None  # Azure's error code
    detail: str = ""  # Azure's most specific message, or the exception's first line
    retry_after: float | None = None
    #: Entra refused or failed the sign-in (``aadsts``: its error code, where it gave one).
    sign_in: bool = False
    aadsts: str | None = None
    #: No HTTP answer: the connection failed, broke, or timed out.
    no_answer: bool = False
    #: The SDK's own error type: a refusal (by Azure, or by the SDK before sending), not a bug of the operator.
    sdk_error: bool = False
    #: Azure's messages, outermost first, and the fields a validation problem (RFC 7807) names, lower case.
    messages: tuple[str, ...] = ()
    fields: frozenset[str] = field(default_factory=frozenset)
    text: str = ""  # the whole text, for a backend's own rules

    @property
    def http(self) -> str:
        """ "HTTP 409 Conflict", or Azure's code, or the exception's class: how the message names the answer."""
        if self.status:
            return f"HTTP {self.status}" + (f" {self.code}" if self.code else "")
        return self.code or self.kind


@dataclass(frozen=True)
class At:
    """Where a failure happened: ``what`` failed ("reading compute gpu1 failed"), in which ``area`` ("compute",
    "service", "endpoint", "deployment", "model", "workspace"), signed in with which ``credential``."""

    what: str
    area: str
    credential: str


class Dialect(Protocol):
    """What one backend's SDK says in its own way, and the rules that are that backend's own."""

    #: The Azure role a 403 asks to grant the principal.
    roles: str
    #: What a quota refusal asks the user to change.
    quota_hint: str

    def describe(self, exc: BaseException) -> Failure: ...

    def own(self, f: Failure, at: At) -> BackendError | None: ...


def classify(exc: BaseException, action: str, *, area: str, credential: str, dialect: Dialect) -> BackendError:
    """The operator's error for ``exc``, raised while ``action`` ("creating deployment d-1 of endpoint e")."""
    if isinstance(exc, BackendError):
        return exc
    f, at = dialect.describe(exc), At(f"{action} failed", area, credential)
    for rule in RULES:
        error = rule(f, at, dialect)
        if error is not None:
            return error
    raise AssertionError("the last rule answers every failure")  # pragma: no cover


# ---- the table ------------------------------------------------------------------------------------------------


def _sign_in(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if not f.sign_in:
        return None
    if f.aadsts is None and _OUTAGE.search(f.text):
        return TransientBackendError(f"{at.what}: Entra ID did not answer when signing in with {at.credential}")
    why = AAD_ERRORS.get(f.aadsts, "Entra ID refused it") if f.aadsts else (f.detail or "Entra ID refused it")
    code = f" (AADSTS{f.aadsts})" if f.aadsts else ""
    return PermanentBackendError(
        f"{at.what}: cannot sign in with {at.credential}: {why}{code}", reason=c.CREDENTIALS_INVALID
    )


def _no_answer(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status is None and f.no_answer:
        return TransientBackendError(f"{at.what}: Azure did not answer ({f.kind}: {f.detail})")
    return None


def _throttled(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status != 429:
        return None
    wait = f"; retrying after {f.retry_after:g}s as Retry-After asks" if f.retry_after else ""
    return TransientBackendError(f"{at.what}: throttled by Azure ({f.http}){wait}", retry_after=f.retry_after)


def _unavailable(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status is None or (f.status < 500 and f.status != 408):
        return None
    return TransientBackendError(f"{at.what}: Azure is unavailable ({f.http}: {f.detail})", retry_after=f.retry_after)


def _unauthorized(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status != 401:
        return None
    return PermanentBackendError(
        f"{at.what}: Azure refused the token of {at.credential} ({f.http})", reason=c.CREDENTIALS_INVALID
    )


def _forbidden(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status != 403:
        return None
    return PermanentBackendError(
        f"{at.what}: {at.credential} lacks an Azure role for this ({f.http}: {f.detail}); grant it {d.roles}",
        reason=c.CREDENTIALS_INVALID,
    )


def _quota(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if "quota" not in (f.code or "").lower() and not _QUOTA.search(f.detail):
        return None
    return PermanentBackendError(
        f"{at.what}: not enough quota ({f.http}: {f.detail}); {d.quota_hint}", reason=c.QUOTA_EXCEEDED
    )


def _own(f: Failure, at: At, d: Dialect) -> BackendError | None:
    return d.own(f, at)


def _busy(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status != 409:
        return None
    return TransientBackendError(f"{at.what}: another operation is in progress ({f.http}: {f.detail})")


def _workspace_missing(f: Failure, at: At, d: Dialect) -> BackendError | None:
    return workspace_missing(at) if at.area == "workspace" and f.status == 404 else None


def _refused(f: Failure, at: At, d: Dialect) -> BackendError | None:
    if f.status is None and not f.sdk_error:
        return None
    reason = {"compute": c.COMPUTE_FAILED, "workspace": c.INVALID_SPEC}.get(at.area, c.SERVICE_FAILED)
    return PermanentBackendError(f"{at.what}: {f.http}: {f.detail}", reason=reason)


def _unexpected(f: Failure, at: At, d: Dialect) -> BackendError | None:
    return TransientBackendError(f"{at.what}: unexpected {f.kind}: {f.detail}")


Rule = Callable[[Failure, At, Dialect], "BackendError | None"]
RULES: tuple[Rule, ...] = (
    _sign_in,
    _no_answer,
    _throttled,
    _unavailable,
    _unauthorized,
    _forbidden,
    _quota,
    _own,
    _busy,
    _workspace_missing,
    _refused,
    _unexpected,
)


def workspace_missing(at: At) -> PermanentBackendError:
    return PermanentBackendError(
        f"{at.what}: the workspace does not exist, or {at.credential} cannot see it; check spec.workspace",
        reason=c.INVALID_SPEC,
    )


# ---- reading azure-core's errors ------------------------------------------------------------------------------


def describe_azure_core(exc: BaseException) -> Failure | None:
    """azure-core's typed errors (the SDK v2's and the ARM client's): ``HttpResponseError`` carries the HTTP status,
    ARM's error document (``error.code``, ``error.message``, ``error.details``) and the response's Retry-After;
    ``ClientAuthenticationError`` without an HTTP answer, or with Entra's ``AADSTS`` code, is azure-identity's
    refused sign-in (one with neither is ARM's own 401); ``ServiceRequestError`` / ``ServiceResponseError`` are
    connections that failed or broke. None for any other exception."""
    kind, text = type(exc).__name__, str(exc)
    if isinstance(exc, ClientAuthenticationError) and (exc.status_code is None or AADSTS.search(text)):
        aad = AADSTS.search(text)
        code = aad.group(1) if aad else None
        return Failure(kind, sign_in=True, aadsts=code, detail=first_line(exc)[:200], text=text)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Failure(kind, no_answer=True, detail=first_line(exc), text=text)
    if not isinstance(exc, HttpResponseError):
        return None
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or None
    messages = [str(getattr(error, "message", "") or "")]
    for detail in details(error):
        messages.append(str(getattr(detail, "message", "") or ""))
        code = code if code not in (None, "BadRequest") else (getattr(detail, "code", None) or code)
    specific = next((m for m in reversed(messages) if m), "") or str(exc.message or exc).splitlines()[0]
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    return Failure(
        kind,
        exc.status_code,
        code,
        specific[:500],
        seconds(headers.get("Retry-After")),
        sdk_error=True,
        messages=tuple(messages),
        text=text,
    )


def no_answer(exc: BaseException) -> bool:
    """The call got no HTTP answer, by the exception's type."""
    return type(exc).__name__ in NO_ANSWER_TYPES or isinstance(exc, ConnectionError | TimeoutError)


def error_line(errors: Any) -> str:
    """Azure's error documents as one line, "code: message; code: message": a failed operation's ``error``
    (``{code, message, details: [{code, message}]}``, as a mapping or the SDK's object), or a list of them, each
    perhaps wrapped as ``{"error": {...}}`` (a compute's ``provisioningErrors``)."""
    parts: list[str] = []
    for item in errors if isinstance(errors, list) else [errors]:
        if item is None:
            continue
        if isinstance(item, str):
            parts.append(item)
            continue
        error = item if _get(item, "message") or not isinstance(item, dict) else item.get("error") or {}
        for entry in [error, *details(error)]:
            code, message = _get(entry, "code"), _get(entry, "message")
            if message:
                parts.append(f"{code}: {message}" if code else str(message))
    return "; ".join(parts)


def details(error: Any) -> Iterable[Any]:
    return list(_get(error, "details") or [])


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
