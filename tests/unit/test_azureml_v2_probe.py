"""The azureml-v2 scoring probe, behind a rollout's traffic shift and Ready: Ready means a client can score, so only
a 2xx answer passes. Azure's 424 is the model's run() failing on the request, never a success, with a probe request
or without one (then the body is ``{}``, and the answer says to set spec.rollout.probeRequest)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator.backends.azureml_v2 import backend as v2backend
from gpu_model_operator.backends.base import DeploymentInputs, ObservedService, ProbeResult, ServiceState
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

    async def call(
        self, inputs: V2Inputs, action: str, area: str, fn: Callable[[], Any], t: float = 0, **how: Any
    ) -> Any:
        return ("key1", "key2")

    async def run(self, fn: Callable[[], Any], timeout: float) -> Any:
        return self.answer


def probe(answer: Answer, probe_request: str | None) -> ProbeResult:
    b: Any = v2backend.AzureMLV2Backend(workers=1)
    b._session = Session(answer)
    service = ObservedService("fraud-ep", ServiceState.HEALTHY, scoring_uri=URI)
    return asyncio.run(b.probe(inputs(probe_request), service, "gmo-new"))  # type: ignore[no-any-return]


MODEL_ERROR = {"ms-azureml-model-error-statuscode": "500", "ms-azureml-model-error-reason": "model_error"}
BODY = '{"data": [[1, 2]]}'
DEFAULT_BODY_HINT = (
    "answered 424: the model's run() failed with 500 on the probe's default body {}; set spec.rollout.probeRequest "
    'to a request the model answers {"message": "KeyError: data"}'
)


@dataclass(frozen=True)
class Case:
    answer: Answer
    probe_request: str | None
    want: ProbeResult


TO = f"POST {URI} (deployment gmo-new)"
CASES: dict[str, Case] = {
    "a 2xx passes": Case(Answer(200, "[1]"), None, ProbeResult(True, f"{TO} answered 200", 200)),
    "a 2xx to the probe request passes": Case(Answer(200, "[1]"), BODY, ProbeResult(True, f"{TO} answered 200", 200)),
    "the model failing on the default body is not ready, and says what to set": Case(
        Answer(424, '{"message": "KeyError: data"}', MODEL_ERROR),
        None,
        ProbeResult(False, f"{TO} {DEFAULT_BODY_HINT}", 424),
    ),
    "the model failing on the probe request is not ready": Case(
        Answer(424, '{"message": "bad shape"}', MODEL_ERROR),
        BODY,
        ProbeResult(False, f'{TO} answered 424: the model\'s run() failed with 500 {{"message": "bad shape"}}', 424),
    ),
    "401": Case(Answer(401, "no"), None, ProbeResult(False, f"{TO} answered 401 no", 401)),
    "404": Case(Answer(404, "no"), None, ProbeResult(False, f"{TO} answered 404 no", 404)),
    "502": Case(Answer(502, "no"), None, ProbeResult(False, f"{TO} answered 502 no", 502)),
    "503": Case(Answer(503, "no"), None, ProbeResult(False, f"{TO} answered 503 no", 503)),
}


@pytest.mark.parametrize("name", CASES)
def test_only_a_2xx_passes(name: str) -> None:
    case = CASES[name]
    assert probe(case.answer, case.probe_request) == case.want
