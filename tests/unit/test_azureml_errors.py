"""What the azureml backend reads its own way: the HTTP answer azureml-core hides in its exceptions' text, its
not-found errors, and the rules of the failure table that are this backend's own (a VM size refused, a model or a
workspace missing said in words). The shared rules are ``test_azure_failures.py``'s."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import requests
from azureml.exceptions import ComputeTargetException, ProjectSystemException, WebserviceException

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.azure.failures import Failure
from gpu_model_operator.backends.azureml.errors import describe, is_not_found
from tests.unit.sdk_errors import CREDENTIAL, Outcome, aad, arm, classified, http_error, mms


@dataclass(frozen=True)
class Case:
    exc: BaseException
    area: str
    expected: Outcome


def permanent(reason: str, message: str) -> Outcome:
    return Outcome(False, reason, f"doing it failed: {message}")


OWN: dict[str, Case] = {
    "model not found": Case(
        WebserviceException("ModelNotFound: Model with id digits:3 not found in provided workspace"),
        "service",
        permanent(c.MODEL_NOT_FOUND, "ModelNotFound: Model with id digits:3 not found in provided workspace; "
                  "register the model in the workspace or fix spec.model"),
    ),
    "model not found at deploy": Case(
        WebserviceException(mms(404, "ModelNotFound", "Model with id m:1 not found.")),
        "service",
        permanent(c.MODEL_NOT_FOUND, "Model with id m:1 not found.; register the model in the workspace or fix "
                  "spec.model"),
    ),
    "invalid VM size": Case(
        ComputeTargetException(mms(400, "InvalidVMSize", "The VM size Standard_X1 is invalid.")),
        "compute",
        permanent(c.INVALID_VM_SIZE, "the VM size cannot be used (HTTP 400 InvalidVMSize: The VM size Standard_X1 "
                  "is invalid.)"),
    ),
    "size not offered, a 409": Case(
        ComputeTargetException(mms(409, "SkuNotAvailable", "The requested VM size is not available in eastus.")),
        "compute",
        permanent(c.INVALID_VM_SIZE, "the VM size cannot be used (HTTP 409 SkuNotAvailable: The requested VM size "
                  "is not available in eastus.)"),
    ),
    "invalid VM size through the ARM client": Case(
        arm(400, "InvalidVMSize", "Standard_X1 is not a valid VM size."),
        "compute",
        permanent(c.INVALID_VM_SIZE, "the VM size cannot be used (HTTP 400 InvalidVMSize: Standard_X1 is not a "
                  "valid VM size.)"),
    ),
    "workspace not found, in words": Case(
        ProjectSystemException("Workspace not found."),
        "workspace",
        permanent(c.INVALID_SPEC, f"the workspace does not exist, or {CREDENTIAL} cannot see it; check "
                  "spec.workspace"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", OWN)
def test_the_backend_s_own_rules(name: str) -> None:
    case = OWN[name]
    assert classified("azureml", case.exc, case.area) == case.expected


@dataclass(frozen=True)
class Read:
    exc: BaseException
    expected: Failure


WAIT = 'Wait \\"a bit\\".'
READS: dict[str, Read] = {
    "status, code, Retry-After and message of the SDK's text": Read(
        WebserviceException(mms(429, "TooManyRequests", WAIT, 12)),
        Failure("WebserviceException", 429, "TooManyRequests", 'Wait "a bit".', 12.0, sdk_error=True),
    ),
    "status and Retry-After of a requests response": Read(
        http_error(429, "4"), Failure("HTTPError", 429, None, "Response Code: 429: slow down", 4.0)
    ),
    "a workspace call's JSON status": Read(
        ProjectSystemException('{"status_code": 404, "error_details": {"code": "NotFound", "message": "gone"}}'),
        Failure("ProjectSystemException", 404, "NotFound", "gone", sdk_error=True),
    ),
    "no answer": Read(
        requests.ConnectionError("Connection refused"), Failure("ConnectionError", detail="Connection refused",
                                                                no_answer=True)
    ),
    "Entra's refusal, its answer left out": Read(
        aad("7000215", "bad secret s3cr3t"),
        Failure("AuthenticationError", sign_in=True, aadsts="7000215"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", READS)
def test_describe_reads_azureml_core_s_text(name: str) -> None:
    read = READS[name]
    found = describe(read.exc)
    assert found == replace(read.expected, text=found.text)


NOT_FOUND: dict[str, tuple[BaseException, bool]] = {
    "compute": (ComputeTargetException("ComputeTargetNotFound: Compute Target with name x not found"), True),
    "service": (WebserviceException("WebserviceNotFound: Webservice with name x not found"), True),
    "a model, at a deploy": (WebserviceException(mms(404, "ModelNotFound", "Model with id m:1 not found.")), False),
}


@pytest.mark.parametrize("name", NOT_FOUND)
def test_not_found_is_told_apart_from_other_errors(name: str) -> None:
    exc, missing = NOT_FOUND[name]
    assert is_not_found(exc) is missing
