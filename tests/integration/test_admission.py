"""The cluster install's admission policies on a real apiserver of their own (they bind cluster-wide, so the
shared control plane of the other tests, whose operators serve the local backend, does not get them).

A namespace editor, with exactly the editor role the manifests aggregate into ``edit``, cannot create a
``backend: local`` resource (it would run their code inside the operator's pod); an azureml one is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.controlplane import ControlPlane
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
EDITOR = "alice"
NAMESPACE = "team-a"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with the cluster-wide install applied exactly as rendered, and one namespace editor."""
    with ControlPlane(tmp_path_factory.mktemp("admission")) as cp:
        rendered = cp.kubectl("kustomize", str(ROOT / "manifests" / "overlays" / "cluster-wide")).stdout
        cp.kubectl("apply", "-f", "-", input=rendered)
        cp.kubectl("wait", "--for=condition=Established", "crd/gpumodeldeployments.gpumodel.io", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        cp.kubectl(
            "create", "rolebinding", EDITOR, "--clusterrole=gpumodeldeployment-editor", f"--user={EDITOR}",
            "-n", NAMESPACE,
        )  # fmt: skip
        yield cp


def example(cp: ControlPlane, name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all(cp.kubectl("kustomize", str(ROOT / "manifests" / "examples" / name)).stdout)
    return next(doc for doc in docs if doc["kind"] == "GpuModelDeployment")


def apply_as_editor(cp: ControlPlane, obj: dict[str, Any], *flags: str) -> Any:
    args = ["apply", "-n", NAMESPACE, f"--as={EDITOR}", *flags, "-f", "-"]
    return cp.kubectl(*args, input=json.dumps(obj), check=False)


def test_a_namespace_editor_cannot_create_a_local_resource(installed: ControlPlane) -> None:
    local = example(installed, "local")

    def policy_loaded() -> bool:  # a new policy takes effect once the apiserver has loaded it
        return "ValidatingAdmissionPolicy" in apply_as_editor(installed, local, "--dry-run=server").stderr

    wait_for("the admission policy to be in force", policy_loaded, timeout=30)
    result = apply_as_editor(installed, local)
    assert result.returncode != 0, "a backend: local resource was admitted on a cluster install"
    message = result.stderr
    assert "gpumodeldeployments-no-local-backend" in message
    assert "backend local is not enabled on this cluster" in message
    gone = installed.kubectl("get", "gmd", local["metadata"]["name"], "-n", NAMESPACE, check=False)
    assert gone.returncode != 0


def test_a_namespace_editor_can_create_an_azureml_resource(installed: ControlPlane) -> None:
    result = apply_as_editor(installed, example(installed, "azureml"))
    assert result.returncode == 0, result.stderr
