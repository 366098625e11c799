"""The azureml-v2 backend's parsers read Azure's answers shaped as the REST specification's documented examples
(``tests/azure_examples``, each citing its example file, validated against the contract schemas by
``test_azure_examples.py``) into the views the core decides on: an endpoint and a deployment into the snapshot,
a failed operation's status into its reason, a Kubernetes compute's instance types into GPUs per instance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.azure.failures import error_line
from gpu_model_operator.backends.azureml_v2 import bodies
from gpu_model_operator.backends.endpoint import DeploymentSnapshot, EndpointSnapshot

EXAMPLES = Path(__file__).resolve().parents[1] / "azure_examples"


def body(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())["body"]
    return found


def test_an_endpoint_and_its_deployment_read_as_the_snapshot() -> None:
    snap = bodies.snapshot(body("online-endpoint-get"), [body("managed-deployment-get")], "gmo-0123456789")
    deployment = DeploymentSnapshot(
        "gmo-0123456789ab",
        "Succeeded",
        2,
        "Standard_NC4as_T4_v3",
        "",
        {"managed-by": "gpu-model-operator", "gpumodel-fingerprint": "0123456789ab"},
    )
    assert snap == EndpointSnapshot(
        "digits-ep",
        "Succeeded",
        "ns/digits/uid-1",
        "https://digits-ep.eastus.inference.ml.azure.com/score",
        {"gmo-0123456789ab": 100},
        (deployment,),
        "",
        "gmo-0123456789",
    )


def test_a_failed_operation_s_status_says_azure_s_reason() -> None:
    status = body("operation-status-failed")
    assert error_line(status["error"]) == (
        "ImageBuildFailure: Image build failed. For more details, check the build log under the storage account "
        "'emuacct' in the container 'azureml' at the path 'ImageLogs/build.log'."
    )


@dataclass(frozen=True)
class InstanceTypeCase:
    name: str
    gpus: int


def _instance_types() -> dict[str, Any]:
    found: dict[str, Any] = body("kubernetes-compute-get")["properties"]["properties"]["instanceTypes"]
    return found


INSTANCE_TYPES: dict[str, InstanceTypeCase] = {
    "the extension's default asks for no GPU (null)": InstanceTypeCase("defaultinstancetype", 0),
    "a two-GPU instance type": InstanceTypeCase("gpu2", 2),
}


@pytest.mark.parametrize("name", INSTANCE_TYPES)
def test_a_kubernetes_compute_s_instance_types_read_as_gpus_per_instance(name: str) -> None:
    case = INSTANCE_TYPES[name]
    assert bodies.instance_type_gpus(_instance_types()[case.name]) == case.gpus
