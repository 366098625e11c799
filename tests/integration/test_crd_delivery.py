"""The CRD's rules for issue 23's fields on the real apiserver: spec.service.authMode (azureml-v2's, immutable),
spec.deployment's probes and request settings (Azure's defaults filled in, Azure's bounds refused), and the $/H
column that `kubectl get -o wide` shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from gpu_model_operator.models import AzureMLV2Spec, parse_spec
from tests.integration.test_crd_v2 import V1, base, with_

#: A valid azureml (SDK v1) resource: a cluster the operator provisions.
AKS = with_("spec.compute", {"name": "gpu", "provision": {"vmSize": "Standard_NC4as_T4_v3"}}, V1)
PROBE_DEFAULTS = {
    "initialDelaySeconds": 10,
    "periodSeconds": 10,
    "timeoutSeconds": 2,
    "successThreshold": 1,
    "failureThreshold": 30,
}


@dataclass(frozen=True)
class Refused:
    obj: dict[str, Any]
    message: str
    #: The operator's models refuse it too (a spec that arrives despite the CRD is InvalidSpec).
    model_refuses: bool = True


REFUSED: dict[str, Refused] = {
    "auth-mode-of-another-kind": Refused(with_("spec.service.authMode", "AADToken"), "Unsupported value"),
    "aml-token-on-azureml": Refused(with_("spec.service.authMode", "AMLToken", AKS), "is backend azureml-v2's", False),
    "deployment-on-azureml": Refused(
        with_("spec.deployment", {"readinessProbe": {"initialDelaySeconds": 600}}, AKS),
        "spec.deployment (an online deployment's probes and request settings) is backend azureml-v2's",
        False,
    ),
    "rollout-on-azureml": Refused(
        with_("spec.rollout", {"steps": [{"trafficPercent": 10, "holdSeconds": 60}]}, AKS),
        "spec.rollout (a canary over an online endpoint's traffic) is backend azureml-v2's",
        False,
    ),
    "a-scoring-timeout-past-azure-s-limit": Refused(
        with_("spec.service.scoringTimeoutMs", 180001),
        "spec.service.scoringTimeoutMs is at most 180000 with backend azureml-v2",
    ),
    "a-request-timeout-past-azure-s-limit": Refused(
        with_("spec.deployment", {"requestSettings": {"requestTimeoutMs": 180001}}),
        "spec.deployment.requestSettings.requestTimeoutMs",
    ),
    "no-initial-delay": Refused(
        with_("spec.deployment", {"readinessProbe": {"initialDelaySeconds": 0}}),
        "spec.deployment.readinessProbe.initialDelaySeconds",
    ),
    "no-failure-allowed": Refused(
        with_("spec.deployment", {"livenessProbe": {"failureThreshold": 0}}),
        "spec.deployment.livenessProbe.failureThreshold",
    ),
    "a-timeout-of-zero": Refused(
        with_("spec.deployment", {"readinessProbe": {"timeoutSeconds": 0}}),
        "spec.deployment.readinessProbe.timeoutSeconds",
    ),
    "no-concurrent-request": Refused(
        with_("spec.deployment", {"requestSettings": {"maxConcurrentRequestsPerInstance": 0}}),
        "spec.deployment.requestSettings.maxConcurrentRequestsPerInstance",
    ),
    "liveness-needing-two-successes": Refused(
        with_("spec.deployment", {"livenessProbe": {"successThreshold": 2}}),
        "spec.deployment.livenessProbe.successThreshold is fixed at 1 by Azure",
    ),
    "a-threshold-past-int32": Refused(
        with_("spec.deployment", {"readinessProbe": {"failureThreshold": 2**31}}),
        "spec.deployment.readinessProbe.failureThreshold",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_the_crd_refuses(control_plane: Any, namespace: str, name: str) -> None:
    case = REFUSED[name]
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case.obj), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert case.message in result.stderr, result.stderr


@pytest.mark.parametrize("name", REFUSED)
def test_the_models_refuse_what_the_crd_refuses(name: str) -> None:
    """Where the model has the field (azureml-v2's spec); azureml's spec has neither field, and ignores it."""
    case = REFUSED[name]
    if case.model_refuses:
        with pytest.raises(ValidationError):
            parse_spec(case.obj["spec"])
    else:
        parse_spec(case.obj["spec"])


def test_azure_s_defaults_are_filled_in_where_a_probe_is_given(control_plane: Any, namespace: str) -> None:
    obj = with_("spec.deployment", {"readinessProbe": {"initialDelaySeconds": 600}, "requestSettings": {}})
    obj = with_("spec.service.authMode", "AMLToken", obj)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    stored = json.loads(control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "json").stdout)["spec"]
    assert stored["deployment"] == {
        "readinessProbe": {**PROBE_DEFAULTS, "initialDelaySeconds": 600},
        "requestSettings": {"maxConcurrentRequestsPerInstance": 1, "maxQueueWaitMs": 500},
    }
    assert stored["service"]["authMode"] == "AMLToken"
    parsed = parse_spec(stored)
    assert isinstance(parsed, AzureMLV2Spec) and parsed.deployment.liveness_probe.initial_delay_seconds == 10


@pytest.mark.parametrize(
    ("before", "after"), [(None, "AMLToken"), ("AMLToken", None), ("Key", "AMLToken")], ids=["set", "unset", "changed"]
)
def test_the_auth_mode_is_key_when_unset_and_immutable(
    control_plane: Any, namespace: str, before: str | None, after: str | None
) -> None:
    """Unset is Key (the model's default; nothing stored, as other backends have no such field): setting AMLToken
    later, or dropping it, is a change of the endpoint's auth mode, refused like any other."""
    first = with_("spec.service.authMode", before)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(first))
    stored = json.loads(control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "json").stdout)["spec"]
    parsed = parse_spec(stored)
    assert isinstance(parsed, AzureMLV2Spec) and parsed.service.auth_mode.value == (before or "Key")
    changed = with_("spec.service.authMode", after)
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert result.returncode != 0 and "spec.service.authMode is immutable" in result.stderr, result.stderr


def test_unset_and_key_are_the_same_auth_mode(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    same = with_("spec.service.authMode", "Key")
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(same), check=False)
    assert result.returncode == 0, result.stderr


def test_probes_and_request_settings_may_change(control_plane: Any, namespace: str) -> None:
    """A change of them is a new deployment, rolled out blue/green: accepted."""
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    changed = with_("spec.deployment", {"livenessProbe": {"initialDelaySeconds": 900}})
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert result.returncode == 0, result.stderr


def test_get_wide_shows_the_estimated_cost_per_hour(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    cost = {"cost": {"perHour": 1.052, "currency": "USD", "items": [{"size": "Standard_NC4as_T4_v3", "count": 2}]}}
    control_plane.kubectl(
        "patch",
        "gmd",
        "digits",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": cost}),
    )
    narrow = control_plane.kubectl("get", "gmd", "digits", "-n", namespace).stdout.splitlines()
    wide = control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "$/H" not in narrow[0].split()
    start = wide[0].index("$/H")  # kubectl aligns the columns; empty ones (no Ready yet) print as blanks
    assert wide[1][start:].split()[0] == "1.052"
