"""What an azure-ai-ml / azure-identity failure means for the operator: retry later (transient) or wait for the
user (permanent), with a message the user can act on.

The SDK v2 raises azure-core's typed errors, so unlike v1 nothing is read out of free text but Azure's own error
documents: ``HttpResponseError`` carries the HTTP status, ``error.code`` / ``error.message`` / ``error.details`` and
the response's ``Retry-After``; ``ResourceNotFoundError`` is a 404; ``ClientAuthenticationError`` (and
``CredentialUnavailableError``) come from azure-identity with Entra's ``AADSTS`` code in the text;
``ServiceRequestError`` / ``ServiceResponseError`` are connections that failed or broke. Validation refusals of a
deployment arrive as 400 ``BadRequest`` with an ``InferencingClientCreateDeploymentFailed`` detail whose message
holds an RFC 7807 problem naming the field (``VmSize``, ``InstanceType``): that field picks the reason.

Messages never carry a credential: Entra's answers are replaced by fixed explanations naming where the credential
comes from (the Secret's keys, or the workload identity's federated token).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    "700024": "the federated token is not valid (expired or not yet valid)",
    "700027": "the federated token's signature does not match its issuer's keys",
    "50034": "the principal does not exist in the tenant's directory",
}
#: Problem fields (and error codes) of a refused deployment that mean its instance type cannot be used.
INSTANCE_TYPE_FIELDS = {"vmsize", "instancetype", "sku"}
_AADSTS = re.compile(r"AADSTS(\d+)")
_PROBLEM = re.compile(r"error detail:\s*(\{.*\})", re.DOTALL)


@dataclass(frozen=True)
class Failure:
    """What decides the classification: status, Azure's code, the deepest message, and Retry-After."""

    status: int | None
    code: str | None
    detail: str
    retry_after: float | None
    #: The RFC 7807 problem's field names of a refused deployment, lower case (``vmsize``, ``instancetype``).
    fields: frozenset[str] = frozenset()


def describe(exc: HttpResponseError) -> Failure:
    """The status, code, most specific message, Retry-After and problem fields of an ARM error answer."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or None
    messages = [str(getattr(error, "message", "") or "")]
    fields: set[str] = set()
    for detail in _details(error):
        messages.append(str(getattr(detail, "message", "") or ""))
        code = code if code not in (None, "BadRequest") else (getattr(detail, "code", None) or code)
    for text in list(messages):
        problem = _PROBLEM.search(text)
        if problem:
            found = _problem(problem.group(1))
            fields |= {k.lower() for k in found}
            messages.extend(m for ms in found.values() for m in ms)
    detail = next((m for m in reversed(messages) if m and not m.startswith("InferencingClient")), "")
    detail = detail or str(exc.message or exc).splitlines()[0]
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    return Failure(exc.status_code, code, detail[:500], _seconds(headers.get("Retry-After")), frozenset(fields))


def classify(exc: BaseException, action: str, *, area: str, credential: str) -> BackendError:
    """The operator's error for ``exc``, raised while ``action`` ("creating deployment d-1 of endpoint e").

    ``area`` picks the reason of refusals nothing more specific explains: "endpoint"/"deployment" →
    ServiceFailed, "compute" → ComputeFailed, "model" → ModelNotFound on a 404, "workspace" → InvalidSpec.
    ``credential`` says where the sign-in comes from ("the service principal in Secret sp", "the workload
    identity of client id X"), for messages about credentials.
    """
    if isinstance(exc, BackendError):
        return exc
    what = f"{action} failed"
    if isinstance(exc, ClientAuthenticationError) and (exc.status_code is None or _AADSTS.search(str(exc))):
        # Entra's refusal, from azure-identity (with or without the token endpoint's HTTP answer); a
        # ClientAuthenticationError without an AADSTS code is ARM's own 401, classified with the other answers.
        return _auth(exc, what, credential)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError):
        return TransientBackendError(f"{what}: Azure did not answer ({type(exc).__name__}: {_first_line(exc)})")
    if isinstance(exc, HttpResponseError):
        return _http(describe(exc), what, area, credential)
    # azure-ai-ml's own refusals (ValidationException and the like) are about what was asked, not Azure's state.
    if type(exc).__module__.startswith("azure.ai.ml"):
        return PermanentBackendError(f"{what}: {_first_line(exc)}", reason=c.INVALID_SPEC)
    return TransientBackendError(f"{what}: unexpected {type(exc).__name__}: {_first_line(exc)}")


def _http(f: Failure, what: str, area: str, credential: str) -> BackendError:
    http = f"HTTP {f.status}" + (f" {f.code}" if f.code else "")
    code = (f.code or "").lower()
    if f.status == 429:
        wait = f"; retrying after {f.retry_after:g}s as Retry-After asks" if f.retry_after else ""
        return TransientBackendError(f"{what}: throttled by Azure ({http}){wait}", retry_after=f.retry_after)
    if f.status is not None and (f.status >= 500 or f.status == 408):
        return TransientBackendError(f"{what}: Azure is unavailable ({http}: {f.detail})", retry_after=f.retry_after)
    if f.status == 401:
        return PermanentBackendError(
            f"{what}: Azure refused the token of {credential} ({http})", reason=c.CREDENTIALS_INVALID
        )
    if f.status == 403:
        return PermanentBackendError(
            f"{what}: {credential} lacks an Azure role for this ({http}: {f.detail}); grant it AzureML Data "
            "Scientist on the workspace (and Reader on the subscription for quota)",
            reason=c.CREDENTIALS_INVALID,
        )
    if f.status == 409 and code == "endpointalreadyexists":
        return PermanentBackendError(
            f"{what}: {f.detail} Endpoint names are unique in their Azure region across every subscription; "
            "choose another spec.service.name",
            reason=c.SERVICE_CONFLICT,
        )
    if f.status == 409:
        return TransientBackendError(f"{what}: another operation is in progress ({http}: {f.detail})")
    if "quota" in code or re.search(r"not enough quota|quota .*exceed|exceed\w* .*quota", f.detail, re.I):
        return PermanentBackendError(
            f"{what}: not enough quota ({f.detail}); ask for more vCPUs of the family or lower spec.service.replicas",
            reason=c.QUOTA_EXCEEDED,
        )
    if f.fields & INSTANCE_TYPE_FIELDS or code in INSTANCE_TYPE_FIELDS:
        return PermanentBackendError(f"{what}: the instance type cannot be used ({f.detail})", reason=c.INVALID_VM_SIZE)
    if (area == "model" and f.status == 404) or re.search(r"/models/[^']+' referenced by the deployment", f.detail):
        return PermanentBackendError(
            f"{what}: {f.detail}; register the model version in the workspace or fix spec.model",
            reason=c.MODEL_NOT_FOUND,
        )
    if area == "workspace" and f.status == 404:
        return PermanentBackendError(
            f"{what}: the workspace does not exist, or {credential} cannot see it; check spec.workspace",
            reason=c.INVALID_SPEC,
        )
    reason = {"compute": c.COMPUTE_FAILED, "workspace": c.INVALID_SPEC}.get(area, c.SERVICE_FAILED)
    return PermanentBackendError(f"{what}: {http}: {f.detail}", reason=reason)


def _auth(exc: BaseException, what: str, credential: str) -> BackendError:
    text = str(exc)
    aad = _AADSTS.search(text)
    if aad is None and re.search(r"timed out|connection|temporarily|unavailable|\b5\d\d\b", text, re.I):
        # The token endpoint did not answer: an outage, not a wrong credential.
        return TransientBackendError(f"{what}: Entra ID did not answer when signing in with {credential}")
    why = AAD_ERRORS.get(aad.group(1), "Entra ID refused it") if aad else _first_line(exc)[:200]
    code = f" (AADSTS{aad.group(1)})" if aad else ""
    return PermanentBackendError(f"{what}: cannot sign in with {credential}: {why}{code}", reason=c.CREDENTIALS_INVALID)


def operation_error(error: Any) -> str:
    """A failed deployment's or endpoint's ``error`` document as one line: "code: message; code: message"."""
    parts: list[str] = []
    for entry in [error, *_details(error)] if error else []:
        code = _get(entry, "code")
        message = _get(entry, "message")
        if message:
            parts.append(f"{code}: {message}" if code else str(message))
    return "; ".join(parts)


def _details(error: Any) -> Iterable[Any]:
    return list(_get(error, "details") or [])


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def _problem(text: str) -> dict[str, list[str]]:
    """The ``errors`` of an RFC 7807 validation problem: field -> messages."""
    try:
        found = json.loads(text).get("errors") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in found.items()}


def _seconds(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
