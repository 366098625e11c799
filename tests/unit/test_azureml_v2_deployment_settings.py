"""An online deployment's probes and request settings, and an endpoint's auth mode, as the azureml-v2 backend sends
them (Azure's REST shape), and which changes make a new deployment (a blue/green rollout): a change of probes or
request settings does; spelling out Azure's defaults does not, nor does upgrading the operator (a deployment made
before these fields existed keeps its name)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator.backends.azureml_v2 import bodies
from gpu_model_operator.backends.base import DeploymentInputs
from gpu_model_operator.models import AzureMLV2Spec

SCRIPT, CONDA = "def run(x): return x", "name: env"
BASE: dict[str, Any] = {
    "backend": "azureml-v2",
    "workspace": {
        "subscriptionId": "sub",
        "resourceGroup": "rg",
        "name": "ws1",
        "credentialsSecretRef": {"name": "sp"},
    },
    "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
    "model": {"name": "fraud", "version": 1},
    "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
    "service": {"name": "fraud-ep"},
}
DEFAULT_PROBE = {
    "initialDelay": "PT10S",
    "period": "PT10S",
    "timeout": "PT2S",
    "successThreshold": 1,
    "failureThreshold": 30,
}


def inputs(**fields: Any) -> DeploymentInputs[AzureMLV2Spec]:
    """The base spec with ``fields`` merged in (one level deep: spec.service, spec.deployment, ...)."""
    data = copy.deepcopy(BASE)
    for key, value in fields.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return DeploymentInputs("ml", "fraud", "uid-1", 1, AzureMLV2Spec.model_validate(data), SCRIPT, CONDA)


def test_a_deployment_made_before_these_fields_keeps_its_name() -> None:
    """The fingerprint of a spec without them is what it was before they existed (the same parts, hashed the same)."""
    old = {
        "entry": SCRIPT,
        "entryName": "score.py",
        "conda": CONDA,
        "image": AzureMLV2Spec.model_validate(BASE).environment.base_image,
        "model": ["fraud", 1],
        "instanceType": "managed:standard_nc4as_t4_v3",
        "timeoutMs": 60000,
    }
    assert bodies.fingerprint(inputs()) == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NameCase:
    fields: dict[str, Any]
    #: A new deployment (another name) than the base spec's.
    new: bool


NAMES: dict[str, NameCase] = {
    "azure-s-defaults-spelled-out": NameCase(
        {
            "deployment": {
                "livenessProbe": {"initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 30},
                "readinessProbe": {"timeoutSeconds": 2, "successThreshold": 1},
                "requestSettings": {"maxConcurrentRequestsPerInstance": 1, "maxQueueWaitMs": 500},
            }
        },
        new=False,
    ),
    "the-request-timeout-said-twice": NameCase(
        {"deployment": {"requestSettings": {"requestTimeoutMs": 60000}}}, new=False
    ),
    "the-auth-mode": NameCase({"service": {"authMode": "AMLToken"}}, new=False),
    "a-longer-readiness-delay": NameCase({"deployment": {"readinessProbe": {"initialDelaySeconds": 600}}}, new=True),
    "more-liveness-failures": NameCase({"deployment": {"livenessProbe": {"failureThreshold": 90}}}, new=True),
    "more-concurrent-requests": NameCase(
        {"deployment": {"requestSettings": {"maxConcurrentRequestsPerInstance": 4}}}, new=True
    ),
    "another-request-timeout": NameCase({"deployment": {"requestSettings": {"requestTimeoutMs": 90000}}}, new=True),
    "another-scoring-timeout": NameCase({"service": {"scoringTimeoutMs": 90000}}, new=True),
}


@pytest.mark.parametrize("name", NAMES)
def test_which_changes_are_a_new_deployment(name: str) -> None:
    case = NAMES[name]
    assert (bodies.deployment_name(inputs(**case.fields)) != bodies.deployment_name(inputs())) is case.new


@dataclass(frozen=True)
class BodyCase:
    fields: dict[str, Any]
    want: dict[str, Any]


BODIES: dict[str, BodyCase] = {
    "azure-s-defaults-and-the-scoring-timeout": BodyCase(
        {},
        {
            "requestSettings": {
                "requestTimeout": "PT60S",
                "maxConcurrentRequestsPerInstance": 1,
                "maxQueueWait": "PT0.5S",
            },
            "livenessProbe": DEFAULT_PROBE,
            "readinessProbe": DEFAULT_PROBE,
        },
    ),
    "a-big-model-s-probes-and-request-settings": BodyCase(
        {
            "deployment": {
                "livenessProbe": {"initialDelaySeconds": 600},
                "readinessProbe": {"initialDelaySeconds": 600, "periodSeconds": 5, "failureThreshold": 60},
                "requestSettings": {"requestTimeoutMs": 180000, "maxConcurrentRequestsPerInstance": 2},
            }
        },
        {
            "requestSettings": {
                "requestTimeout": "PT180S",
                "maxConcurrentRequestsPerInstance": 2,
                "maxQueueWait": "PT0.5S",
            },
            "livenessProbe": {**DEFAULT_PROBE, "initialDelay": "PT600S"},
            "readinessProbe": {**DEFAULT_PROBE, "initialDelay": "PT600S", "period": "PT5S", "failureThreshold": 60},
        },
    ),
}


@pytest.mark.parametrize("name", BODIES)
def test_the_deployment_body(name: str) -> None:
    case = BODIES[name]
    made = inputs(**case.fields)
    body = bodies.new_deployment(made, "eastus", "/models/fraud/1", "/envs/e/1", "/codes/c/1", 2)
    sent = {k: body["properties"][k] for k in ("requestSettings", "livenessProbe", "readinessProbe")}
    assert sent == case.want


@pytest.mark.parametrize(("mode", "sent"), [("Key", "Key"), ("AMLToken", "AMLToken")])
def test_the_endpoint_is_made_with_the_spec_s_auth_mode(mode: str, sent: str) -> None:
    body = bodies.new_endpoint(inputs(service={"authMode": mode}), "eastus", "/ws")
    assert body["properties"] == {"authMode": sent, "traffic": {}}
