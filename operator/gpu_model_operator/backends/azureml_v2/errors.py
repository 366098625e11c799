"""What is the azureml-v2 backend's own in reading a failure; the table itself is :mod:`..azure.failures`.

azure-ai-ml, azure-identity and the ARM client raise azure-core's typed errors, read by the shared
:func:`~..azure.failures.describe_azure_core`. Own to this backend: validation refusals of a deployment arrive as
400 ``BadRequest`` with an ``InferencingClientCreateDeploymentFailed`` detail whose message holds an RFC 7807
problem naming the field (``VmSize``, ``InstanceType``), and that field picks the reason; an endpoint name taken
in the region; a model version missing; azure-ai-ml's own refusals (``ValidationException`` and the like), which
are about what was asked, not Azure's state.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from ... import conditions as c
from ..azure import failures
from ..azure.failures import At, Failure
from ..base import BackendError, PermanentBackendError, TransientBackendError

#: Problem fields (and error codes) of a refused deployment that mean its instance type cannot be used.
INSTANCE_TYPE_FIELDS = {"vmsize", "instancetype", "sku"}
_PROBLEM = re.compile(r"error detail:\s*(\{.*\})", re.DOTALL)
#: A deployment's PUT refused because the model version it names does not exist.
_MODEL_MISSING = re.compile(r"/models/[^']+' referenced by the deployment")
#: Another endpoint of the name in the region, in any subscription (the name is the scoring host): Azure answers a
#: 400 validation problem, "Endpoint name needs to be unique within a region" (Azure/azureml-examples#1930).
_REGION_CLASH = re.compile(r"unique within a region", re.IGNORECASE)
#: A Kubernetes endpoint's name the cluster still has, just deleted or another workspace's: 400 "OnlineEndpoint
#: {name} already exists in cluster" (Azure/azure-sdk-for-python#35109).
_IN_CLUSTER = re.compile(r"already exists in cluster", re.IGNORECASE)
#: How long Azure holds a name after its deletion its documentation does not say; the refusal says to wait.
_HELD = (
    "Azure still holds the name, as it does for a while after an endpoint of that name was deleted; retried until it "
    "lets it go (or choose another spec.service.name)"
)


class Dialect:
    """azure-ai-ml's failures (see the module)."""

    roles = "AzureML Data Scientist on the workspace (and Reader on the subscription for quota)"
    quota_hint = "ask for more vCPUs of the family or lower spec.service.replicas"

    def describe(self, exc: BaseException) -> Failure:
        found = failures.describe_azure_core(exc)
        if found is None:
            return Failure(
                type(exc).__name__,
                detail=failures.first_line(exc),
                no_answer=failures.no_answer(exc),
                sdk_error=type(exc).__module__.startswith("azure.ai.ml"),
                text=str(exc),
            )
        return _with_problem(found)

    def own(self, f: Failure, at: At) -> BackendError | None:
        code = (f.code or "").lower()
        said = " ".join(f.messages) or f.detail
        if at.what.startswith("creating endpoint") and (
            f.status == 404 or (f.status == 400 and _IN_CLUSTER.search(said))
        ):
            # A managed endpoint's name just deleted: the PUT is answered 404 NotFound with an
            # InferencingClientCallFailed detail {"title":"Not Found"} (Azure/azure-cli-extensions#7660, #7107).
            return TransientBackendError(f"{at.what}: {f.http}: {_HELD}", reason=c.NAME_HELD)
        if f.status == 400 and _REGION_CLASH.search(said):
            return PermanentBackendError(
                f"{at.what}: {f.detail} Endpoint names are unique in their Azure region across every subscription; "
                "choose another spec.service.name",
                reason=c.SERVICE_CONFLICT,
            )
        if f.status == 409 and code == "endpointalreadyexists":
            return PermanentBackendError(
                f"{at.what}: {f.detail} Endpoint names are unique in their Azure region across every subscription; "
                "choose another spec.service.name",
                reason=c.SERVICE_CONFLICT,
            )
        if f.fields & INSTANCE_TYPE_FIELDS or code in INSTANCE_TYPE_FIELDS:
            return PermanentBackendError(
                f"{at.what}: the instance type cannot be used ({f.detail})", reason=c.INVALID_VM_SIZE
            )
        if (at.area == "model" and f.status == 404) or _MODEL_MISSING.search(f.detail):
            return PermanentBackendError(
                f"{at.what}: {f.detail}; register the model version in the workspace or fix spec.model",
                reason=c.MODEL_NOT_FOUND,
            )
        if f.status is None and f.sdk_error:
            return PermanentBackendError(f"{at.what}: {f.detail}", reason=c.INVALID_SPEC)
        return None


DIALECT = Dialect()


def classify(exc: BaseException, action: str, *, area: str, credential: str) -> BackendError:
    """The operator's error for ``exc``, raised while ``action`` ("creating deployment d-1 of endpoint e").

    ``area`` picks the reason of refusals nothing more specific explains: "endpoint"/"deployment" →
    ServiceFailed, "compute" → ComputeFailed, "model" → ModelNotFound on a 404, "workspace" → InvalidSpec.
    ``credential`` says where the sign-in comes from, for messages about credentials.
    """
    return failures.classify(exc, action, area=area, credential=credential, dialect=DIALECT)


def _with_problem(f: Failure) -> Failure:
    """The failure with the problem's fields and messages: its message the most specific one that is not the
    inferencing client's wrapper."""
    fields: set[str] = set()
    messages = list(f.messages)
    for text in f.messages:
        problem = _PROBLEM.search(text)
        raw = problem.group(1) if problem else text if text.lstrip().startswith("{") else None
        if raw is not None:
            found = _problem(raw)
            fields |= {k.lower() for k in found}
            messages.extend(m for ms in found.values() for m in ms)
    detail = next((m for m in reversed(messages) if m and not m.startswith("InferencingClient")), "") or f.detail
    return replace(f, detail=detail[:500], fields=frozenset(fields), messages=tuple(messages))


def _problem(text: str) -> dict[str, list[str]]:
    """The ``errors`` of an RFC 7807 validation problem: field -> messages."""
    try:
        found = json.loads(text).get("errors") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in found.items()}
