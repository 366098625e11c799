"""The middleware that holds every ARM exchange to Azure's published contract.

Always: a request to the Microsoft.MachineLearningServices provider without ``api-version``, or with one the
emulator does not model for the resource type, is answered as ARM answers it (:func:`api_version_refusal`); a
success answer is projected onto the schema of the request's api-version (:func:`.validation.project`), as a
resource provider answers in the model of the version asked for.

In conformance mode (``V2Config.conformance``; on when ``AZUREML_EMULATOR_CONFORMANCE=1`` is set where the emulator
starts, as the test suites set it): each request body of a modelled operation is validated against its
definition (``readOnly`` enforced), each answer against the definition of its status (``writeOnly`` enforced; an
error answer against ARM's ErrorResponse), its status against the statuses the operation defines, and the headers
the specification promises are checked. Nothing is refused for it: what does not conform is recorded
(``EmulatorState.violations``, ``GET /_emulator/v2/violations``), and the test suites fail on any record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import operations, validation
from .operations import COMMON, Operation

if TYPE_CHECKING:
    from ..state import EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Violation:
    """One exchange outside the contract: who was wrong (``request``: the client; ``response``: the emulator)."""

    kind: str
    method: str
    path: str
    api_version: str
    operation: str
    status: int
    problems: list[str]
    t: float = field(default_factory=time.time)

    def line(self) -> str:
        who = "the client's request" if self.kind == "request" else f"the emulator's {self.status} answer"
        return f"{self.operation} {self.method} {self.path}?api-version={self.api_version}: {who}: " + "; ".join(
            self.problems
        )


def _hash_version_as_text(body: Any) -> Any:
    properties = ((body or {}).get("properties") or {}).get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("hash_version"), int):
        properties["hash_version"] = str(properties["hash_version"])
    return body


#: What a real SDK sends outside the specification, which Azure takes as every user of that SDK sends it: before
#: validation the request is normalised as Azure's service evidently reads it. Each entry names the SDK's own code.
#: - azure-ai-ml 1.35.2, ``entities/_assets/_artifacts/code.py`` line 116: ``properties["hash_version"] =
#:   get_content_hash_version()``, the number 202208, in the property dictionary the specification types as
#:   strings (ResourceBase.properties); the SDK's own listing sends it as text (``hashVersion=str(...)``).
TOLERATED: dict[str, Callable[[Any], Any]] = {"CodeVersions_CreateOrUpdate": _hash_version_as_text}


def api_version_refusal(state: EmulatorState, request: web.Request) -> web.Response | None:
    """ARM's answer to a request whose ``api-version`` is missing or not registered for the resource type, or None.

    Missing: 400 ``MissingApiVersionParameter`` "The api-version query parameter (?api-version=) is required for all
    requests." (ARM's body as posted in cloudquery/cloudquery#6626). Unknown: 400 ``NoRegisteredProviderFound``
    "No registered resource provider found for location '...' and API version '...' for type '...'. The supported
    api-versions are '...'. The supported locations are '...'." (posted for Microsoft.MachineLearningServices in
    Azure/azure-sdk-for-js#4097, the 400 status in pulumi/pulumi-azure-nextgen#170). ``InvalidApiVersionParameter``
    is the answer of ARM's own resource types (resource groups, deployments), not of a provider's, so it is not
    used here. The supported lists are the emulator's (see :data:`.operations.API_VERSIONS`), Azure's are longer.
    """
    typed = operations.arm_type(request.path)
    if typed is None:
        return None
    kind, location = typed
    supported = operations.API_VERSIONS.get(kind)
    if supported is None:
        return None
    version = request.query.get("api-version")
    if not version:
        return _arm_error(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version in supported:
        return None
    where = location or _workspace_location(state, request.path)
    from ..v2 import REGIONS

    return _arm_error(
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{where}' and API version '{version}' for type "
        f"'{kind}'. The supported api-versions are '{', '.join(sorted(supported, reverse=True))}'. The supported "
        f"locations are '{', '.join(REGIONS)}'.",
    )


def _arm_error(code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=400)


def _workspace_location(state: EmulatorState, path: str) -> str:
    parts = path.split("/")
    lowered = [p.lower() for p in parts]
    if "workspaces" in lowered and "resourcegroups" in lowered:
        i = lowered.index("workspaces")
        found = state.workspace(parts[2], parts[lowered.index("resourcegroups") + 1], parts[i + 1])
        if found is not None:
            return str(found.location).lower()
    return state.config.location.lower()


def middleware(state: EmulatorState) -> Middleware:
    """The contract middleware; it goes between the bearer check and the v2 overlay (see the server's module)."""

    @web.middleware
    async def contract(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        refusal = api_version_refusal(state, request)
        if refusal is not None:
            return refusal
        op = operations.find(request.method, request.path)
        version = request.query.get("api-version", "")
        document = op.versions.get(version) if op is not None else None
        if op is None or document is None:
            return await handler(request)
        checking = state.v2_config.conformance
        if checking and op.request is not None:
            await _check_request(state, request, op, version, document)
        response = await handler(request)
        if isinstance(response, web.Response):
            _answer(state, request, response, op, version, document, checking)
        return response

    return contract


async def _check_request(state: EmulatorState, request: web.Request, op: Operation, version: str, doc: str) -> None:
    assert op.request is not None
    body: Any = None
    if request.body_exists:
        try:
            body = await request.json()
        except ValueError:
            body = None
    body = TOLERATED.get(op.name, lambda b: b)(body)
    problems = validation.violations("request", validation.schema_ref(doc, op.request), body)
    if problems:
        _record(state, Violation("request", request.method, request.path, version, op.name, 0, problems))


def _answer(
    state: EmulatorState,
    request: web.Request,
    response: web.Response,
    op: Operation,
    version: str,
    doc: str,
    checking: bool,
) -> None:
    """Project a success answer onto its version's schema and, in conformance mode, check it."""
    status = response.status
    body = _json(response)
    definition = op.responses.get(status)
    if 200 <= status < 300 and definition is not None and body is not None:
        body = validation.project(body, validation.schema_ref(doc, definition))
        response.body = json.dumps(body).encode()
    if not checking:
        return
    problems: list[str] = []
    if status >= 400:
        problems = validation.violations("response", f"{COMMON}#/$defs/ErrorResponse", body)
    elif status not in op.responses:
        problems = [f"status {status} is not one {op.name} answers with ({sorted(op.responses)})"]
    elif definition is not None:
        problems = validation.violations("response", validation.schema_ref(doc, definition), body)
    problems += [f"no {h} header on a {status}" for h in op.headers.get(status, ()) if h not in response.headers]
    if problems:
        _record(state, Violation("response", request.method, request.path, version, op.name, status, problems))


def _json(response: web.Response) -> Any:
    if response.body is None or not (response.content_type or "").endswith("json"):
        return None
    try:
        return json.loads(bytes(response.body))  # type: ignore[arg-type]
    except ValueError:
        return None


def _record(state: EmulatorState, violation: Violation) -> None:
    with state.lock:
        state.violations.append(asdict(violation))
