"""The CRD on the real apiserver: examples accepted, bad specs rejected at `kubectl apply` with the
schema's or CEL rule's own message, printer columns, generation semantics."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent for p in (ROOT / "manifests" / "examples").glob("*/kustomization.yaml"))


def base() -> dict[str, Any]:
    return {
        "apiVersion": "gpumodel.io/v1alpha1",
        "kind": "GpuModelDeployment",
        "metadata": {"name": "digits"},
        "spec": {
            "backend": "azureml",
            "workspace": {
                "subscriptionId": "sub",
                "resourceGroup": "rg",
                "name": "ws1",
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"name": "gpu-cluster", "provision": {"vmSize": "Standard_NC4as_T4_v3"}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "digits-svc"},
        },
    }


def with_(path: str, value: Any) -> dict[str, Any]:
    """The base resource with one field set (value None deletes it)."""
    obj = base()
    *parents, last = path.split(".")
    node = obj
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


INVALID: list[tuple[str, dict[str, Any], str]] = [
    # A label value on the keys Secret: a longer name would leave the Secret unpublishable (422) behind a service.
    ("name-over-63", with_("metadata.name", "d" * 64), "metadata.name must be at most 63 characters"),
    ("unknown-backend", with_("spec.backend", "sagemaker"), 'Unsupported value: "sagemaker"'),
    ("zero-replicas", with_("spec.service.replicas", 0), "should be greater than or equal to 1"),
    ("zero-cpu", with_("spec.service.cpuCores", 0), "should be greater than 0"),
    ("negative-memory", with_("spec.service.memoryGb", -1), "should be greater than 0"),
    ("zero-gpu-cores", with_("spec.service.gpuCores", 0), "should be greater than or equal to 1"),
    ("uppercase-service-name", with_("spec.service.name", "Digits_Svc"), "spec.service.name: Invalid value"),
    ("short-service-name", with_("spec.service.name", "ab"), "spec.service.name: Invalid value"),
    # Azure ML's compute names: 3-24 characters, a letter first, a dash followed later by a letter.
    ("long-compute-name", with_("spec.compute.name", "a-much-too-long-compute-x"), "may not be more than 24"),
    ("short-compute-name", with_("spec.compute.name", "ab"), "should be at least 3"),
    ("compute-name-ending-in-dash-digits", with_("spec.compute.name", "gpu-1"), "spec.compute.name: Invalid value"),
    ("compute-name-ending-in-a-dash", with_("spec.compute.name", "gpu-"), "spec.compute.name: Invalid value"),
    ("bad-deletion-policy", with_("spec.compute.deletionPolicy", "Orphan"), 'Unsupported value: "Orphan"'),
    (
        "provision-and-attach",
        with_("spec.compute.attach", {"resourceGroup": "rg", "clusterName": "aks"}),
        "set exactly one of spec.compute.provision",
    ),
    (
        "neither-provision-nor-attach",
        with_("spec.compute.provision", None),
        "set exactly one of spec.compute.provision",
    ),
    (
        "provision-without-vm-size",
        with_("spec.compute.provision", {"agentCount": 2}),
        "spec.compute.provision.vmSize: Required",
    ),
    ("azureml-without-workspace", with_("spec.workspace", None), "spec.workspace is required when backend is azureml"),
    ("azureml-without-compute", with_("spec.compute", None), "spec.compute is required when backend is azureml"),
    (
        "azureml-without-model-name",
        with_("spec.model", {"path": "/m"}),
        "spec.model.name (a registered model) is required",
    ),
    (
        "secret-in-another-namespace",
        with_("spec.workspace.credentialsSecretRef", {"name": "sp", "namespace": "kube-system"}),
        "credentialsSecretRef takes only a name",
    ),
    ("local-without-model-path", with_("spec.backend", "local"), "spec.model.path (a model directory or file"),
    ("no-conda-environment", with_("spec.source.condaFile", None), "a conda environment is required"),
    (
        "conda-twice",
        with_("spec.environment", {"condaSpec": "dependencies: [python=3.11]"}),
        "give the conda environment once",
    ),
    ("missing-service", with_("spec.service", None), "spec.service: Required value"),
    ("replicas-over-limit", with_("spec.service.replicas", 1000), "should be less than or equal to 100"),
    ("bad-cluster-purpose", with_("spec.compute.provision.clusterPurpose", "Cheap"), 'Unsupported value: "Cheap"'),
    ("zero-model-version", with_("spec.model.version", 0), "should be greater than or equal to 1"),
    (
        "retired-vm-size",
        with_("spec.compute.provision", {"vmSize": "Standard_NC6s_v3"}),
        "is a size Azure has retired",
    ),
    (
        "retired-on-2026-09-30",
        with_("spec.compute.provision", {"vmSize": "Standard_NV12s_v3"}),
        "is a size Azure has retired",
    ),
    (
        "retired-vm-size-any-case",
        with_("spec.compute.provision", {"vmSize": "standard_nc6"}),
        "is a size Azure has retired",
    ),
    (
        "more-gpus-per-replica-than-a-node-has",
        with_("spec.service.gpuCores", 2),  # Standard_NC4as_T4_v3: one T4 per node
        "spec.service.gpuCores is more than one node of spec.compute.provision.vmSize has",
    ),
    (
        "fastprod-below-3-nodes",
        with_("spec.compute.provision", {"vmSize": "Standard_NC24ads_A100_v4", "agentCount": 1}),
        "FastProd (production) needs at least 3",
    ),
    (
        "fastprod-below-12-vcpus",
        with_("spec.compute.provision", {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 2}),
        "FastProd needs at least 12 vCPUs",
    ),
]


@pytest.mark.parametrize(("case", "obj", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_resource_is_rejected_with_its_message(
    control_plane: Any, namespace: str, case: str, obj: dict[str, Any], message: str
) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr


#: What the CRD refuses that the operator's models leave to the backend (the VM size tables, checked again before
#: a cluster is provisioned) or need not check (a Secret is only ever read in the resource's own namespace; the
#: resource's name is not in its spec).
NOT_THE_MODELS = {
    "retired-vm-size",
    "retired-vm-size-any-case",
    "retired-on-2026-09-30",
    "more-gpus-per-replica-than-a-node-has",
    "fastprod-below-12-vcpus",
    "fastprod-below-3-nodes",
    "secret-in-another-namespace",
    "name-over-63",  # metadata, not the spec
}


@pytest.mark.parametrize(("case", "obj", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_the_model_refuses_what_the_crd_refuses(case: str, obj: dict[str, Any], message: str) -> None:
    """A spec that arrives despite the CRD (an old CRD, a CEL rule skipped) fails to parse: InvalidSpec."""
    from pydantic import ValidationError

    from gpu_model_operator.models import parse_spec

    if case in NOT_THE_MODELS:
        parse_spec(obj["spec"])
    else:
        with pytest.raises(ValidationError):
            parse_spec(obj["spec"])


def test_the_base_resource_is_valid(control_plane: Any, namespace: str) -> None:
    """So each invalid case above fails for its own reason, not the base's."""
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_accepted(control_plane: Any, namespace: str, example: Path) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-k", str(example), check=False)
    assert result.returncode == 0, result.stderr


def test_defaults_are_applied_by_the_apiserver(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    spec = json.loads(control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["service"]["authEnabled"] is True
    assert spec["service"]["gpuCores"] == 1
    assert spec["service"]["replicas"] == 1
    assert spec["compute"]["deletionPolicy"] == "Delete"
    assert spec["compute"]["provision"]["agentCount"] == 3  # Azure's default; with T4 nodes, FastProd's 12 vCPUs
    assert spec["compute"]["provision"]["clusterPurpose"] == "FastProd"
    assert spec["source"]["entryScript"] == "score.py"


def test_apiserver_defaults_round_trip_through_the_model(control_plane: Any, namespace: str) -> None:
    """What the apiserver stores (with its defaults) parses into the model and serialises back unchanged."""
    from gpu_model_operator.models import parse_spec

    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    stored = json.loads(control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "json").stdout)["spec"]
    model = parse_spec(stored)
    wire = model.to_wire()
    wire.pop("environment")  # a model-side default the CRD leaves unset
    assert wire == stored


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.backend", "local", "spec.backend is immutable"),
        ("spec.compute.name", "other-cluster", "spec.compute.name is immutable"),
        ("spec.service.name", "other-svc", "spec.service.name is immutable"),
        ("spec.workspace.resourceGroup", "other-rg", "spec.workspace.subscriptionId, resourceGroup and name are"),
        ("spec.workspace.subscriptionId", "other-sub", "spec.workspace.subscriptionId, resourceGroup and name are"),
        ("spec.workspace.name", "ws2", "spec.workspace.subscriptionId, resourceGroup and name are immutable"),
        ("spec.compute.provision.vmSize", "Standard_NC8as_T4_v3", "spec.compute.provision is immutable"),
        ("spec.compute.provision.agentCount", 4, "spec.compute.provision is immutable"),
        ("spec.compute.provision.clusterPurpose", "DevTest", "spec.compute.provision is immutable"),
    ],
)
def test_immutable_fields(control_plane: Any, namespace: str, path: str, value: Any, message: str) -> None:
    obj = base()
    obj["spec"]["model"]["path"] = "/models/digits"  # so that switching to local is otherwise valid
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    changed = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_switching_between_provision_and_attach_is_refused(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    attached = base()
    attached["spec"]["compute"] = {"name": "gpu-cluster", "attach": {"resourceGroup": "rg", "clusterName": "aks"}}
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(attached), check=False)
    assert result.returncode != 0
    assert "spec.compute cannot switch between provision and attach" in result.stderr


def test_changes_that_are_carried_out_in_place_are_accepted(control_plane: Any, namespace: str) -> None:
    """Only what would orphan a billing resource is frozen: the same workspace in other letter case (Azure names
    are case-insensitive), another credentials Secret, the deletion policy, replicas and the model all change."""
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    changed = base()
    changed["spec"]["workspace"].update(resourceGroup="RG", name="WS1", credentialsSecretRef={"name": "sp2"})
    changed["spec"]["compute"]["deletionPolicy"] = "Retain"
    changed["spec"]["service"]["replicas"] = 2
    changed["spec"]["model"]["version"] = 2
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False)
    assert result.returncode == 0, result.stderr


def test_the_kind_is_not_in_the_all_category(control_plane: Any, namespace: str) -> None:
    """`kubectl delete all --all` is routine clean-up; it must not reach a resource that deletes a GPU cluster."""
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    assert "digits" not in control_plane.kubectl("get", "all", "-n", namespace, "-o", "name").stdout
    assert control_plane.kubectl("get", "gpumodel", "-n", namespace, "-o", "name").stdout.strip() == (
        "gpumodeldeployment.gpumodel.io/digits"
    )


def test_printer_columns(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))
    status = {
        "status": {
            "phase": "Ready",
            "replicasSummary": "2/3",
            "gpus": {"held": 2, "total": 2},
            "scoringUri": "http://10.0.0.1/api/v1/service/digits-svc/score",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ProbeSucceeded",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    control_plane.kubectl(
        "patch", "gmd", "digits", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    # The reason says at a glance why a resource is or is not Ready; the URL, long, waits for -o wide.
    out = control_plane.kubectl("get", "gmd", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "BACKEND", "READY", "REASON", "REPLICAS", "GPUS", "PHASE", "AGE"]
    assert out[1].split()[:7] == ["digits", "azureml", "True", "ProbeSucceeded", "2/3", "2", "Ready"]
    wide = control_plane.kubectl("get", "gmd", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "BACKEND", "READY", "REASON", "REPLICAS", "GPUS", "PHASE", "URL", "$/H", "AGE"]
    assert wide[1].split()[7] == status["status"]["scoringUri"]


def test_spec_change_bumps_generation_status_patch_does_not(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(base()))

    def generation() -> int:
        out = control_plane.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "jsonpath={.metadata.generation}")
        return int(out.stdout)

    assert generation() == 1
    control_plane.kubectl(
        "patch",
        "gmd",
        "digits",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Deploying"}}),
    )
    assert generation() == 1
    control_plane.kubectl(
        "patch", "gmd", "digits", "-n", namespace, "--type=merge", "-p", '{"spec":{"service":{"replicas":2}}}'
    )
    assert generation() == 2


def test_kubectl_explain_prints_field_descriptions(control_plane: Any) -> None:
    out = control_plane.kubectl("explain", "gmd.spec.service.replicas").stdout
    assert "capped at the GPUs available" in out


def test_example_yaml_files_parse() -> None:
    for path in (ROOT / "manifests" / "examples").rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text()))
