"""ARM's error answers as the v2 surface raises them (:class:`ArmError`, rendered by the routes in ARM's shape
``{"error": {"code", "message", "details", "additionalInfo"}}``, which azure-core turns into ``HttpResponseError``
with the code and message in its text), apart from the store so that the rule modules can raise them too.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..resources import ErrorBody

PROVIDER = "Microsoft.MachineLearningServices"


class ArmError(Exception):
    """An ARM error answer: HTTP status, code, message and optional details."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details or []

    def body(self) -> ErrorBody:
        return {"error": {"code": self.code, "message": self.message, "details": self.details, "additionalInfo": []}}


def not_found(kind: str, name: str, parent: str) -> ArmError:
    """ARM's answer for a missing child resource of the workspace."""
    return ArmError(404, "ResourceNotFound", f"The Resource '{PROVIDER}/{kind}/{name}' under {parent} was not found.")


def conflict(what: str, state: str) -> ArmError:
    """A write while an operation on the same resource runs: ARM refuses it with 409 Conflict."""
    return ArmError(
        409,
        "Conflict",
        f"{what} is in provisioning state '{state}'; retry when the running operation has finished.",
    )


def inferencing_client_error(field_name: str, message: str) -> ArmError:
    """A deployment PUT refused by validation, in the exact shape real Azure answers it (posted verbatim in
    github.com/MicrosoftLearning/mslearn-azure-ml/issues/30 and Azure-Samples/rag-data-openai-python-promptflow#4):
    400 ``BadRequest`` "The request is invalid." with an ``InferencingClientCreateDeploymentFailed`` detail whose
    message carries an RFC 7807 validation problem naming the field.
    """
    problem = {
        "errors": {field_name: [message]},
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "traceId": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
    }
    detail = f"InferencingClient HttpRequest error, error detail: {json.dumps(problem, separators=(',', ':'))}"
    return ArmError(
        400,
        "BadRequest",
        "The request is invalid.",
        [{"code": "InferencingClientCreateDeploymentFailed", "message": detail}],
    )
