"""The CRD's rules for backend azureml-v2 on the real apiserver: what a managed or Kubernetes online endpoint
needs, what only one backend takes, sign-in by exactly one of a Secret and workload identity, and which changes
are a blue/green rollout (accepted) or would strand an endpoint (refused)."""

from __future__ import annotations

import copy
import json
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
SECRET = {"subscriptionId": "sub", "resourceGroup": "rg", "name": "ws1", "credentialsSecretRef": {"name": "sp"}}
V1 = with_("spec.backend", "azureml", with_("spec.workspace", SECRET))

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-compute", with_("spec.compute", None), "backend azureml-v2 needs spec.compute.managed"),
    (
        "provision-on-v2",
        with_("spec.compute", {"name": "gpu", "provision": {"vmSize": "Standard_NC4as_T4_v3"}}),
        "backend azureml-v2 needs spec.compute.managed",
    ),
    (
        "managed-and-kubernetes",
        with_("spec.compute", {"managed": {"instanceType": "Standard_NC4as_T4_v3"}, **KUBERNETES}),
        "set exactly one of spec.compute.provision",
    ),
    (
        "compute-name-on-v2",
        with_("spec.compute.name", "gpu"),
        "backend azureml-v2 names its compute in spec.compute.kubernetes.computeName",
    ),
    ("no-workspace", with_("spec.workspace", None), "spec.workspace is required when backend is azureml-v2"),
    ("no-model-version", with_("spec.model", {"name": "digits"}), "spec.model.name and spec.model.version"),
    (
        "both-credentials",
        with_("spec.workspace.credentialsSecretRef", {"name": "sp"}),
        "set exactly one of spec.workspace.credentialsSecretRef",
    ),
    (
        "no-credentials",
        with_("spec.workspace.workloadIdentity", None),
        "set exactly one of spec.workspace.credentialsSecretRef",
    ),
    (
        "workload-identity-without-tenant",
        with_("spec.workspace.workloadIdentity", {"clientId": "app"}),
        "spec.workspace.workloadIdentity.tenantId: Required",
    ),
    (
        "kubernetes-without-node-gpus",
        with_("spec.compute", {"kubernetes": {"computeName": "k8s", "instanceType": "gpu1"}}),
        "spec.compute.kubernetes.nodeGpus: Required",
    ),
    ("auth-disabled", with_("spec.service.authEnabled", False), "online endpoints always authenticate"),
    (
        "managed-on-v1",
        with_("spec.compute", {"name": "gpu", "managed": {"instanceType": "Standard_NC4as_T4_v3"}}, V1),
        "managed and kubernetes are online endpoints of backend azureml-v2",
    ),
    (
        "workload-identity-on-v1",
        with_("spec.workspace", base()["spec"]["workspace"], V1),
        "spec.workspace.credentialsSecretRef is required when backend is azureml",
    ),
]


@pytest.mark.parametrize(("case", "obj", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_v2_resource_is_rejected_with_its_message(
    control_plane: Any, namespace: str, case: str, obj: dict[str, Any], message: str
) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr


#: What the CRD refuses that the operator's models do not check: Azure refuses an online endpoint without auth, and a
#: compute name is ignored where the endpoint's compute is managed or named in spec.compute.kubernetes.
NOT_THE_MODELS = {"auth-disabled", "compute-name-on-v2"}


@pytest.mark.parametrize(("case", "obj", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_the_model_refuses_what_the_crd_refuses(case: str, obj: dict[str, Any], message: str) -> None:
    """A spec that arrives despite the CRD (an old CRD, a CEL rule skipped) fails to parse: InvalidSpec."""
    if case in NOT_THE_MODELS:
        parse_spec(obj["spec"])
    else:
        with pytest.raises(ValidationError):
            parse_spec(obj["spec"])


VALID = [base(), with_("spec.compute", KUBERNETES), with_("spec.workspace", SECRET)]
VALID_IDS = ["managed-workload-identity", "kubernetes", "managed-secret"]


@pytest.mark.parametrize("obj", VALID, ids=VALID_IDS)
def test_valid_v2_resources_are_accepted(control_plane: Any, namespace: str, obj: dict[str, Any]) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("obj", VALID, ids=VALID_IDS)
def test_valid_v2_resources_parse_as_azureml_v2(obj: dict[str, Any]) -> None:
    assert isinstance(parse_spec(obj["spec"]), AzureMLV2Spec)


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


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (with_("spec.compute", KUBERNETES), "spec.compute cannot switch between managed and kubernetes"),
        (with_("spec.backend", "azureml", with_("spec.workspace", SECRET)), "spec.backend is immutable"),
    ],
    ids=["managed-to-kubernetes", "backend"],
)
def test_changes_that_would_strand_an_endpoint_are_refused(
    control_plane: Any, namespace: str, after: dict[str, Any], message: str
) -> None:
    result = _change(control_plane, namespace, base(), after)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_kubernetes_compute_name_is_immutable(control_plane: Any, namespace: str) -> None:
    kube = with_("spec.compute", KUBERNETES)
    result = _change(control_plane, namespace, kube, with_("spec.compute.kubernetes.computeName", "k8s2", kube))
    assert result.returncode != 0 and "computeName is immutable" in result.stderr, result.stderr
