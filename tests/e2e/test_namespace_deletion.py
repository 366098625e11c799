"""Deleting a namespace, as a platform engineer tears a team down: ``kubectl delete namespace`` with an ``azureml``
resource and an ``azureml-v2`` resource in it, both signed in with the namespace's credentials Secret.

The control plane runs kube-controller-manager's namespace controller for this module, so the namespace is deleted
as a cluster deletes it: every object in it at once, the Secret included, each gone when its finalizers are. The
README's promise: deletion never depends on an input that can vanish first. The operator holds the credentials
Secret while anything the resource made exists in Azure, so both resources delete what they made, then the Secret
goes, then the namespace. Nothing is left billing in the emulated workspace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import Azure, clean_up, provision
from tests.e2e.azure_v2_harness import AzureV2, managed, prepare
from tests.e2e.azure_v2_harness import clean_up as clean_up_v2
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def controllers(control_plane: ControlPlane) -> Iterator[None]:
    """The namespace and garbage-collector controllers, for this module only (``tests/conftest.py``)."""
    control_plane.start_controller_manager()
    yield
    control_plane.stop_controller_manager()


@pytest.fixture(scope="module")
def both_operator(
    control_plane: ControlPlane, controllers: None, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator serving both Azure backends against one emulator (its v1 and v2 surfaces)."""
    prepare(emu)
    logs = tmp_path_factory.mktemp("logs")
    env = {**emu.client_env_v2(), "HOME": str(tmp_path_factory.mktemp("home"))}
    args = ["--backend", "azureml", "--backend", "azureml-v2", "--all-namespaces", "--poll-seconds", "1"]
    args += ["--resync-seconds", "5"]
    with OperatorProcess(
        control_plane.kubeconfig, [], logs / "state", logs / "operator.log", extra_args=args, env=env
    ) as op:
        yield op
        clean_up(control_plane)
        clean_up_v2(control_plane)


def namespace_gone(cp: ControlPlane, name: str) -> bool:
    return cp.kubectl("get", "namespace", name, check=False).returncode != 0


def what_is_left(cp: ControlPlane, ns: str) -> dict[str, Any]:
    """For a failure's message: the namespace's status and what still holds it."""
    found = {"namespace": json.loads(cp.kubectl("get", "namespace", ns, "-o", "json").stdout).get("status")}
    for kind in ("gmd", "secrets"):
        items = json.loads(cp.kubectl("get", kind, "-n", ns, "-o", "json").stdout)["items"]
        found[kind] = {i["metadata"]["name"]: i["metadata"].get("finalizers") for i in items}
    return found


def test_deleting_the_namespace_deletes_what_both_backends_made_then_the_namespace(
    control_plane: ControlPlane, namespace: str, emu: Emulator, both_operator: OperatorProcess
) -> None:
    v1, v2 = Azure(control_plane, namespace, emu, both_operator), AzureV2(control_plane, namespace, emu, both_operator)
    v1.secret()
    v1.apply("v1", "team-v1-svc", provision("team-gpu", agents=1))
    v2.apply("v2", "team-v2-ep", managed())
    v1.wait_ready("v1", timeout=120)
    v2.wait_ready("v2", timeout=120)
    assert v1.cloud() == ({"team-gpu"}, {"team-v1-svc"})
    assert v2.endpoint("team-v2-ep") is not None

    control_plane.kubectl("delete", "namespace", namespace, "--wait=false")
    try:
        wait_for(f"namespace {namespace} gone", lambda: namespace_gone(control_plane, namespace), 180)
    except AssertionError:
        raise AssertionError(
            f"still there: {what_is_left(control_plane, namespace)}\n{both_operator.log_tail()}"
        ) from None

    computes, services = v1.cloud()
    endpoints = emu.v2.summary()
    assert (computes, services) == (set(), set()), "the azureml resource's cluster and service are deleted"
    assert endpoints["endpoints"] == [] and endpoints["deployments"] == [], "the azureml-v2 endpoint is deleted"
