"""The CRD's rules for backend azureml-v2 on the real apiserver: what a managed or Kubernetes online endpoint
needs, what only one backend takes, sign-in by exactly one of a Secret and workload identity, and which changes
are a blue/green rollout (accepted) or would strand an endpoint (refused)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from gpu_model_operator.models import AzureMLV2Spec, parse_spec


def base() -> dict[str, Any]:
    return {
        "apiVersion": "gpumodel.io/v1alpha1",
        "kind": "GpuModelDeployment",
        "metadata": {"name": "digits"},
        "spec": {
            "backend": "azureml-v2",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "workloadIdentity": {"clientId": "app", "tenantId": "tenant"},
            },
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "digits-ep"},
        },
    }


def with_(path: str, value: Any, obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base resource (or ``obj``) with one field set (value None deletes it)."""
    obj = copy.deepcopy(obj or base())
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


KUBERNETES = {"kubernetes": {"computeName": "k8s", "instanceType": "gpu1", "nodeGpus": [1, 1]}}
STEP_10 = {"trafficPercent": 10, "holdSeconds": 300}
CANARY = {"steps": [STEP_10, {"trafficPercent": 50, "holdSeconds": 600}], "maxErrorPercent": 0.5, "minRequests": 20}
SECRET = {"subscriptionId": "sub", "resourceGroup": "rg", "name": "ws1", "credentialsSecretRef": {"name": "sp"}}
V1 = with_("spec.backend", "azureml", with_("spec.workspace", SECRET))


@dataclass(frozen=True)
class Invalid:
    obj: dict[str, Any]
    #: What the apiserver's refusal says.
    message: str
    #: Whether the operator's models refuse it too. Some refusals are the CRD's alone: Azure refuses an online
    #: endpoint without auth; a compute name is ignored where the endpoint's compute is managed or named in
    #: spec.compute.kubernetes; the managed SKU list (the backend asks Azure's size list at run time).
    model_refuses: bool = True


INVALID: dict[str, Invalid] = {
    "no-compute": Invalid(with_("spec.compute", None), "backend azureml-v2 needs spec.compute.managed"),
    "provision-on-v2": Invalid(
        with_("spec.compute", {"name": "gpu", "provision": {"vmSize": "Standard_NC4as_T4_v3"}}),
        "backend azureml-v2 needs spec.compute.managed",
    ),
    "managed-and-kubernetes": Invalid(
        with_("spec.compute", {"managed": {"instanceType": "Standard_NC4as_T4_v3"}, **KUBERNETES}),
        "set exactly one of spec.compute.provision",
    ),
    "compute-name-on-v2": Invalid(
        with_("spec.compute.name", "gpu"),
        "backend azureml-v2 names its compute in spec.compute.kubernetes.computeName",
        model_refuses=False,
    ),
    "no-workspace": Invalid(with_("spec.workspace", None), "spec.workspace is required when backend is azureml-v2"),
    "no-model-version": Invalid(with_("spec.model", {"name": "digits"}), "spec.model.name and spec.model.version"),
    "both-credentials": Invalid(
        with_("spec.workspace.credentialsSecretRef", {"name": "sp"}),
        "set exactly one of spec.workspace.credentialsSecretRef",
    ),
    "no-credentials": Invalid(
        with_("spec.workspace.workloadIdentity", None), "set exactly one of spec.workspace.credentialsSecretRef"
    ),
    "workload-identity-without-tenant": Invalid(
        with_("spec.workspace.workloadIdentity", {"clientId": "app"}),
        "spec.workspace.workloadIdentity.tenantId: Required",
    ),
    "kubernetes-without-node-gpus": Invalid(
        with_("spec.compute", {"kubernetes": {"computeName": "k8s", "instanceType": "gpu1"}}),
        "spec.compute.kubernetes.nodeGpus: Required",
    ),
    "auth-disabled": Invalid(
        with_("spec.service.authEnabled", False), "online endpoints always authenticate", model_refuses=False
    ),
    "managed-on-v1": Invalid(
        with_("spec.compute", {"name": "gpu", "managed": {"instanceType": "Standard_NC4as_T4_v3"}}, V1),
        "managed and kubernetes are online endpoints of backend azureml-v2",
    ),
    "workload-identity-on-v1": Invalid(
        with_("spec.workspace", base()["spec"]["workspace"], V1),
        "spec.workspace.credentialsSecretRef is required when backend is azureml",
    ),
    # Azure's limits and name rules (how-to-manage-quotas; the managed online endpoints SKU list; the compute pages).
    "managed-51-replicas": Invalid(with_("spec.service.replicas", 51), "spec.service.replicas is at most 50"),
    "endpoint-name-double-dash": Invalid(with_("spec.service.name", "digits--ep"), "single dashes"),
    "managed-retired-size": Invalid(
        with_("spec.compute.managed.instanceType", "Standard_NC6s_v3"),
        "must be a current whole-GPU size of Azure's managed online endpoints SKU list",
        model_refuses=False,
    ),
    "managed-size-not-on-the-list": Invalid(
        with_("spec.compute.managed.instanceType", "Standard_ND96isr_H200_v5"),
        "must be a current whole-GPU size of Azure's managed online endpoints SKU list",
        model_refuses=False,
    ),
    "compute-name-ending-in-dash-digits": Invalid(
        with_("spec.compute", {"kubernetes": {**KUBERNETES["kubernetes"], "computeName": "k8s-1"}}),
        "spec.compute.kubernetes.computeName",
    ),
    # Canary steps and mirrored traffic: increasing shares; Azure's mirroring limits (how-to-safely-rollout-online-
    # endpoints: at most 50%, not on Kubernetes online endpoints).
    "canary-steps-not-increasing": Invalid(
        with_("spec.rollout", {"steps": [{"trafficPercent": 50, "holdSeconds": 60}, STEP_10]}),
        "spec.rollout.steps must take increasing trafficPercent",
    ),
    "canary-steps-repeating-a-share": Invalid(
        with_("spec.rollout", {"steps": [STEP_10, STEP_10]}),
        "spec.rollout.steps must take increasing trafficPercent",
    ),
    "canary-step-of-all-the-traffic": Invalid(
        with_("spec.rollout", {"steps": [{"trafficPercent": 100, "holdSeconds": 0}]}),
        "spec.rollout.steps[0].trafficPercent",
    ),
    "canary-step-without-hold": Invalid(
        with_("spec.rollout", {"steps": [{"trafficPercent": 10}]}), "holdSeconds: Required"
    ),
    "mirror-over-50": Invalid(with_("spec.rollout", {"mirrorPercent": 60}), "spec.rollout.mirrorPercent"),
    "mirror-on-kubernetes": Invalid(
        with_("spec.rollout", {"mirrorPercent": 10}, with_("spec.compute", KUBERNETES)),
        "Azure does not mirror traffic on Kubernetes online endpoints",
    ),
    "compute-name-of-25-characters": Invalid(
        with_("spec.compute", {"kubernetes": {**KUBERNETES["kubernetes"], "computeName": "k" * 25}}),
        "spec.compute.kubernetes.computeName",
    ),
}


@pytest.mark.parametrize("name", INVALID)
def test_invalid_v2_resource_is_rejected_with_its_message(control_plane: Any, namespace: str, name: str) -> None:
    case = INVALID[name]
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case.obj), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert case.message in result.stderr, result.stderr


@pytest.mark.parametrize("name", INVALID)
def test_the_model_refuses_what_the_crd_refuses(name: str) -> None:
    """A spec that arrives despite the CRD (an old CRD, a CEL rule skipped) fails to parse: InvalidSpec."""
    case = INVALID[name]
    if case.model_refuses:
        with pytest.raises(ValidationError):
            parse_spec(case.obj["spec"])
    else:
        parse_spec(case.obj["spec"])


@dataclass(frozen=True)
class Valid:
    obj: dict[str, Any]


VALID: dict[str, Valid] = {
    "managed-workload-identity": Valid(base()),
    "kubernetes": Valid(with_("spec.compute", KUBERNETES)),
    "managed-secret": Valid(with_("spec.workspace", SECRET)),
    "managed-50-replicas": Valid(with_("spec.service.replicas", 50)),
    # The limit of 50 instances is managed endpoints'; a Kubernetes compute has its own nodes.
    "kubernetes-60-replicas": Valid(with_("spec.service.replicas", 60, with_("spec.compute", KUBERNETES))),
    "compute-name-with-a-letter-after-its-dash": Valid(
        with_("spec.compute", {"kubernetes": {**KUBERNETES["kubernetes"], "computeName": "gpu-pool-a1"}})
    ),
    "canary-steps-and-mirroring": Valid(with_("spec.rollout", {**CANARY, "mirrorPercent": 50, "mirrorSeconds": 120})),
    "canary-steps-on-kubernetes": Valid(with_("spec.rollout", CANARY, with_("spec.compute", KUBERNETES))),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_v2_resources_are_accepted(control_plane: Any, namespace: str, name: str) -> None:
    obj = VALID[name].obj
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", VALID)
def test_valid_v2_resources_parse_as_azureml_v2(name: str) -> None:
    assert isinstance(parse_spec(VALID[name].obj["spec"]), AzureMLV2Spec)


def _change(control_plane: Any, namespace: str, before: dict[str, Any], after: dict[str, Any]) -> Any:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(before))
    return control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(after), check=False)


def test_rollout_changes_are_accepted(control_plane: Any, namespace: str) -> None:
    """A new model version, instance type or Kubernetes instance type is a blue/green rollout, not a refusal."""
    changed = with_("spec.compute.managed.instanceType", "Standard_NC24ads_A100_v4", with_("spec.model.version", 2))
    assert _change(control_plane, namespace, base(), changed).returncode == 0
    kube = with_("spec.compute", KUBERNETES, with_("metadata.name", "kube"))
    other_type = with_("spec.compute.kubernetes.instanceType", "gpu2", kube)
    assert _change(control_plane, namespace, kube, other_type).returncode == 0


@dataclass(frozen=True)
class Strand:
    after: dict[str, Any]
    message: str


STRANDS: dict[str, Strand] = {
    "managed-to-kubernetes": Strand(
        with_("spec.compute", KUBERNETES), "spec.compute cannot switch between managed and kubernetes"
    ),
    "backend": Strand(with_("spec.backend", "azureml", with_("spec.workspace", SECRET)), "spec.backend is immutable"),
}


@pytest.mark.parametrize("name", STRANDS)
def test_changes_that_would_strand_an_endpoint_are_refused(control_plane: Any, namespace: str, name: str) -> None:
    case = STRANDS[name]
    result = _change(control_plane, namespace, base(), case.after)
    assert result.returncode != 0 and case.message in result.stderr, result.stderr


def test_the_kubernetes_compute_name_is_immutable(control_plane: Any, namespace: str) -> None:
    kube = with_("spec.compute", KUBERNETES)
    result = _change(control_plane, namespace, kube, with_("spec.compute.kubernetes.computeName", "k8s2", kube))
    assert result.returncode != 0 and "computeName is immutable" in result.stderr, result.stderr
