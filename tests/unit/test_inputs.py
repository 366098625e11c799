"""The spec as the operator reads it: each backend's spec parsed into its own model, a spec the CRD would have
refused (an old CRD, a CEL rule the apiserver skipped) ending in InvalidSpec with the field named as the user
writes it, and what the inputs derive from each kind of spec (the compute's key and name, the sign-in)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.inputs import (
    InputError,
    Resource,
    compute_key,
    compute_name,
    load_inputs,
    owns_compute,
    parse_spec,
)
from gpu_model_operator.kube import KubeClient
from gpu_model_operator.models import AzureMLSpec, AzureMLV2Spec, BackendKind, GpuModelDeploymentSpec, LocalSpec

SOURCE: dict[str, Any] = {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"}
SERVICE: dict[str, Any] = {"name": "digits-svc"}
WORKSPACE: dict[str, Any] = {"subscriptionId": "Sub", "resourceGroup": "RG", "name": "ws1"}
SECRET: dict[str, Any] = {"credentialsSecretRef": {"name": "sp"}}
IDENTITY: dict[str, Any] = {"workloadIdentity": {"clientId": "client", "tenantId": "tenant"}}
KUBERNETES: dict[str, Any] = {"kubernetes": {"computeName": "K8s-A", "instanceType": "gpu1", "nodeGpus": [1, 2]}}
LOCAL: dict[str, Any] = {"backend": "local", "model": {"path": "/models/digits"}, "source": SOURCE, "service": SERVICE}
AZUREML: dict[str, Any] = {
    "backend": "azureml",
    "workspace": {**WORKSPACE, **SECRET},
    "compute": {"name": "GPU-Cluster", "provision": {"vmSize": "Standard_NC4as_T4_v3"}},
    "model": {"name": "digits"},
    "source": SOURCE,
    "service": SERVICE,
}
AZUREML_V2: dict[str, Any] = {
    "backend": "azureml-v2",
    "workspace": {**WORKSPACE, **IDENTITY},
    "compute": KUBERNETES,
    "model": {"name": "digits", "version": 2},
    "source": SOURCE,
    "service": SERVICE,
}
ALL = tuple(BackendKind)


def resource(spec: dict[str, Any]) -> Resource:
    return Resource("team-a", "digits", "uid-1", 1, spec, {})


def parsed(spec: dict[str, Any]) -> GpuModelDeploymentSpec:
    return parse_spec(resource(spec), ALL)


def test_each_backend_gets_its_own_model() -> None:
    assert isinstance(parsed(LOCAL), LocalSpec)
    azureml = parsed(AZUREML)
    assert isinstance(azureml, AzureMLSpec)
    assert azureml.workspace.credentials_secret_ref.name == "sp"
    v2 = parsed(AZUREML_V2)
    assert isinstance(v2, AzureMLV2Spec)
    assert (v2.model.name, v2.model.version) == ("digits", 2)


def without(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``spec`` without the field at the dotted ``path``."""
    head, _, rest = path.partition(".")
    if not rest:
        return {k: v for k, v in spec.items() if k != head}
    return {**spec, head: without(spec[head], rest)}


NOT_BOTH = "give the conda environment once: spec.source.condaFile or spec.environment.condaSpec, not both"
AZUREML_COMPUTE = (
    "backend azureml takes exactly one of spec.compute.provision (create a GPU cluster) or spec.compute.attach "
    "(use an existing AKS cluster); managed and kubernetes are online endpoints of backend azureml-v2"
)
V2_COMPUTE = (
    "backend azureml-v2 takes exactly one of spec.compute.managed (a GPU instance type) or spec.compute.kubernetes "
    "(an attached Kubernetes compute); provision and attach are backend azureml's"
)
ONE_SIGN_IN = (
    "set exactly one of spec.workspace.credentialsSecretRef (a service principal's Secret) or "
    "spec.workspace.workloadIdentity"
)
#: Specs the CRD refuses, and the message the operator gives when one arrives anyway (after "the spec is invalid: ").
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "no-backend": (without(LOCAL, "backend"), "spec.backend: must be one of azureml, azureml-v2, local"),
    "an-unknown-backend": (
        {**LOCAL, "backend": "aks"},
        "spec.backend: must be one of azureml, azureml-v2, local, not 'aks'",
    ),
    "local-without-a-model-path": (without(LOCAL, "model.path"), "spec.model.path: Field required"),
    "local-with-local-options-and-no-model-path": (
        {**without(LOCAL, "model.path"), "local": {"allowCpuFallback": True}},
        "spec.model.path: Field required",
    ),
    "no-conda-environment": (
        without(LOCAL, "source.condaFile"),
        "spec: a conda environment is required: set spec.source.condaFile (a key of the source ConfigMap) or "
        "spec.environment.condaSpec",
    ),
    "two-conda-environments": ({**LOCAL, "environment": {"condaSpec": "dependencies: []"}}, f"spec: {NOT_BOTH}"),
    "azureml-without-a-workspace": (without(AZUREML, "workspace"), "spec.workspace: Field required"),
    "azureml-with-workload-identity": (
        {**AZUREML, "workspace": {**WORKSPACE, **IDENTITY}},
        "spec.workspace.credentialsSecretRef: Field required",
    ),
    "azureml-without-a-compute-name": (without(AZUREML, "compute.name"), "spec.compute.name: Field required"),
    "azureml-with-neither-provision-nor-attach": (
        without(AZUREML, "compute.provision"),
        f"spec.compute: {AZUREML_COMPUTE}",
    ),
    "azureml-with-a-managed-endpoint": (
        {**AZUREML, "compute": {"name": "gpu", "managed": {"instanceType": "Standard_NC4as_T4_v3"}}},
        f"spec.compute: {AZUREML_COMPUTE}",
    ),
    "azureml-with-provision-and-attach": (
        {**AZUREML, "compute": {**AZUREML["compute"], "attach": {"resourceGroup": "rg", "clusterName": "aks"}}},
        f"spec.compute: {AZUREML_COMPUTE}",
    ),
    "azureml-provision-without-a-vm-size": (
        {**AZUREML, "compute": {"name": "gpu", "provision": {"agentCount": 3}}},
        "spec.compute.provision.vmSize: Field required",
    ),
    "azureml-without-a-model-name": (without(AZUREML, "model.name"), "spec.model.name: Field required"),
    "azureml-v2-without-a-sign-in": (
        {**AZUREML_V2, "workspace": WORKSPACE},
        f"spec.workspace: {ONE_SIGN_IN}",
    ),
    "azureml-v2-with-two-sign-ins": (
        {**AZUREML_V2, "workspace": {**WORKSPACE, **SECRET, **IDENTITY}},
        f"spec.workspace: {ONE_SIGN_IN}",
    ),
    "azureml-v2-with-an-aks-cluster": (
        {**AZUREML_V2, "compute": AZUREML["compute"]},
        f"spec.compute: {V2_COMPUTE}",
    ),
    "azureml-v2-without-a-model-version": (
        without(AZUREML_V2, "model.version"),
        "spec.model.version: Field required",
    ),
    "azureml-v2-node-gpus-out-of-bounds": (
        {**AZUREML_V2, "compute": {"kubernetes": {**KUBERNETES["kubernetes"], "nodeGpus": [1, 65]}}},
        "spec.compute.kubernetes.nodeGpus[1]: Input should be less than or equal to 64",
    ),
    "azureml-v2-identity-without-a-tenant": (
        {**AZUREML_V2, "workspace": {**WORKSPACE, "workloadIdentity": {"clientId": "client"}}},
        "spec.workspace.workloadIdentity.tenantId: Field required",
    ),
}


@pytest.mark.parametrize("name", INVALID)
def test_a_spec_the_crd_refuses_is_invalid_naming_the_field(name: str) -> None:
    spec, message = INVALID[name]
    with pytest.raises(InputError) as raised:
        parsed(spec)
    assert (raised.value.reason, raised.value.message) == (c.INVALID_SPEC, f"the spec is invalid: {message}")
    assert not raised.value.transient


def test_a_backend_not_enabled_is_refused_by_name() -> None:
    with pytest.raises(InputError) as raised:
        parse_spec(resource(LOCAL), (BackendKind.AZUREML,))
    assert raised.value.reason == c.BACKEND_NOT_ENABLED
    assert raised.value.message.startswith("backend local is not enabled in this operator (it runs the entry script")


MANAGED: dict[str, Any] = {**AZUREML_V2, "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}}}
ATTACHED: dict[str, Any] = {
    **AZUREML,
    "compute": {"name": "Att-A", "attach": {"resourceGroup": "rg", "clusterName": "aks"}},
}
#: The compute each kind of spec is on: its key (shared GPUs, lower case), its name in status, whether deletion
#: may delete it.
COMPUTES: dict[str, tuple[dict[str, Any], str, str, bool]] = {
    "local": (LOCAL, "local", "local", False),
    "azureml-provisioned": (AZUREML, "azureml/sub/rg/ws1/gpu-cluster", "GPU-Cluster", True),
    "azureml-attached": (ATTACHED, "azureml/sub/rg/ws1/att-a", "Att-A", True),
    "azureml-v2-kubernetes": (AZUREML_V2, "azureml-v2/sub/rg/ws1/k8s-a", "K8s-A", False),
    "azureml-v2-managed": (MANAGED, "azureml-v2/sub/rg/ws1/managed/digits-svc", "Standard_NC4as_T4_v3", False),
}


@pytest.mark.parametrize("name", COMPUTES)
def test_the_compute_of_each_kind_of_spec(name: str) -> None:
    spec, key, shown, owned = COMPUTES[name]
    got = parsed(spec)
    assert (compute_key(got), compute_name(got), owns_compute(got)) == (key, shown, owned)


class FakeKube(KubeClient):
    """The ConfigMap and Secret reads, from dicts."""

    def __init__(self, config_maps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]) -> None:
        self.config_maps, self.secrets = config_maps, secrets

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.config_maps.get(name)

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get(name)


SP: dict[str, str] = {"tenantId": "t", "clientId": "c", "clientSecret": "s"}
SIGN_INS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "local-signs-in-to-nothing": (LOCAL, {}),
    "azureml-with-its-secret": (AZUREML, SP),
    "azureml-v2-with-a-secret": ({**AZUREML_V2, "workspace": {**WORKSPACE, **SECRET}}, SP),
    "azureml-v2-with-its-workload-identity": (AZUREML_V2, {"tenantId": "tenant", "clientId": "client"}),
}


@pytest.mark.parametrize("name", SIGN_INS)
def test_the_sign_in_of_each_kind_of_spec(name: str) -> None:
    spec, credentials = SIGN_INS[name]
    kube = FakeKube({"src": {"score.py": "def run(x): pass", "myenv.yml": "dependencies: []"}}, {"sp": SP})
    res = resource(spec)
    allowed = ((res.namespace, "client"),)  # the workload identity's application, allowed in this namespace
    inputs = asyncio.run(load_inputs(kube, res, parse_spec(res, ALL), identities=allowed))
    assert (inputs.credentials, inputs.entry_script, inputs.conda_spec) == (
        credentials,
        "def run(x): pass",
        "dependencies: []",
    )


def test_a_missing_secret_is_a_credentials_problem() -> None:
    res = resource(AZUREML)
    with pytest.raises(InputError) as raised:
        asyncio.run(load_inputs(FakeKube({}, {}), res, parse_spec(res, ALL)))
    assert raised.value.reason == c.CREDENTIALS_INVALID
    assert raised.value.message.startswith("Secret sp not found in namespace team-a")
