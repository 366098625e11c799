"""The azureml-v2 scoring probe, behind a rollout's traffic shift and Ready: Ready means a client can score, so only
a 2xx answer passes. Azure's 424 is the model's run() failing on the request, never a success, with a probe request
or without one (then the body is ``{}``, and the answer says to set spec.rollout.probeRequest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gpu_model_operator.backends.azureml_v2 import backend as v2backend
from gpu_model_operator.backends.base import DeploymentInputs, ProbeResult
from gpu_model_operator.models import AzureMLV2Spec

V2Inputs = DeploymentInputs[AzureMLV2Spec]

URI = "https://fraud-ep.eastus.inference.ml.azure.com/score"


def inputs(probe_request: str | None) -> V2Inputs:
    spec = AzureMLV2Spec.model_validate(
        {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "workloadIdentity": {"clientId": "app", "tenantId": "tenant"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "fraud", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": "fraud-ep"},
            **({"rollout": {"probeRequest": probe_request}} if probe_request else {}),
        }
    )
    return DeploymentInputs("ml", "fraud", "uid-1", 1, spec, "", "", {}, "fp")


class Answer:
    def __init__(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.status_code, self.text, self.headers = status, text, headers or {}


class Session:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def key(self, inputs: V2Inputs) -> tuple[str, str, str, str]:
        return ("sub", "rg", "ws1", "d")

    async def workspace(self, inputs: V2Inputs) -> Any:
        return None

    async def call(self, inputs: V2Inputs, action: str, area: str, fn: Callable[[], Any], t: float = 0) -> Any:
        return ("key1", "key2")

    async def run(self, fn: Callable[[], Any], timeout: float) -> Any:
        return self.answer


def probe(answer: Answer, probe_request: str | None) -> ProbeResult:
    b: Any = v2backend.AzureMLV2Backend(workers=1)
    b._session = Session(answer)
    return asyncio.run(b._score(inputs(probe_request), URI, "gmo-new"))  # type: ignore[no-any-return]


MODEL_ERROR = {"ms-azureml-model-error-statuscode": "500", "ms-azureml-model-error-reason": "model_error"}


@pytest.mark.parametrize("probe_request", [None, '{"data": [[1, 2]]}'])
def test_a_2xx_passes(probe_request: str | None) -> None:
    result = probe(Answer(200, "[1]"), probe_request)
    assert result == ProbeResult(True, f"POST {URI} (deployment gmo-new) answered 200")


def test_the_model_failing_on_the_default_body_is_not_ready_and_says_what_to_set() -> None:
    result = probe(Answer(424, '{"message": "KeyError: data"}', MODEL_ERROR), None)
    assert not result.ok
    assert "answered 424: the model's run() failed with 500 on the probe's default body {}" in result.message
    assert "set spec.rollout.probeRequest to a request the model answers" in result.message


def test_the_model_failing_on_the_probe_request_is_not_ready() -> None:
    result = probe(Answer(424, '{"message": "bad shape"}', MODEL_ERROR), '{"data": [[1, 2]]}')
    assert not result.ok and "answered 424: the model's run() failed with 500" in result.message
    assert "probeRequest" not in result.message and "bad shape" in result.message


@pytest.mark.parametrize("status", [401, 404, 502, 503])
def test_other_answers_are_not_ready(status: int) -> None:
    result = probe(Answer(status, "no"), None)
    assert not result.ok and f"answered {status} no" in result.message
