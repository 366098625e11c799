"""Azure GPU VM sizes: the table behind the replica cap on AKS, its refusal to guess, what Azure retired, and the
CRD's CEL rules that repeat the table for `kubectl apply`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import PermanentBackendError
from gpu_model_operator.backends.vm_sizes import GPUS_PER_VM_SIZE, VM_SIZES, check_provisionable, gpus_per_vm

CRD = Path(__file__).resolve().parents[2] / "crds" / "gpumodel.io_gpumodeldeployments.yaml"


@pytest.mark.parametrize(
    ("vm_size", "gpus"),
    [
        ("Standard_NC6", 1),
        ("Standard_NC12", 2),
        ("Standard_NC24r", 4),
        ("Standard_NC24rs_v2", 4),
        ("Standard_NC6s_v3", 1),
        ("Standard_NC24rs_v3", 4),
        ("Standard_NC4as_T4_v3", 1),
        ("Standard_NC16as_T4_v3", 1),
        ("Standard_NC64as_T4_v3", 4),
        ("Standard_NC24ads_A100_v4", 1),
        ("Standard_NC96ads_A100_v4", 4),
        ("Standard_NC40ads_H100_v5", 1),
        ("Standard_NC80adis_H100_v5", 2),
        ("Standard_ND40rs_v2", 8),
        ("Standard_ND96amsr_A100_v4", 8),
        ("Standard_ND96isr_H100_v5", 8),
        ("Standard_ND96isr_H200_v5", 8),
        ("Standard_NV36ads_A10_v5", 1),
        ("Standard_NV72ads_A10_v5", 2),
    ],
)
def test_gpus_per_vm(vm_size: str, gpus: int) -> None:
    assert gpus_per_vm(vm_size) == gpus


@pytest.mark.parametrize("spelling", ["standard_nc4as_t4_v3", "STANDARD_NC4AS_T4_V3", " Standard_NC4as_T4_v3 "])
def test_lookup_ignores_case(spelling: str) -> None:
    assert gpus_per_vm(spelling) == 1


@pytest.mark.parametrize("vm_size", ["Standard_D3_v2", "Standard_NV4as_v4", "Standard_NC6s_v9", "NC6", "", None])
def test_unknown_sizes_are_refused_never_guessed(vm_size: str | None) -> None:
    with pytest.raises(PermanentBackendError) as raised:
        gpus_per_vm(vm_size)
    assert raised.value.reason == c.INVALID_VM_SIZE
    assert raised.value.message.startswith(f"unknown GPU VM size {vm_size or '(none)'}; current sizes: ")
    assert "Standard_NC4as_T4_v3" in raised.value.message
    assert "Standard_NC6," not in raised.value.message  # retired sizes are not offered


def test_every_size_has_whole_gpus_and_a_canonical_name() -> None:
    assert all(gpus in (1, 2, 4, 8) for gpus in GPUS_PER_VM_SIZE.values())
    assert all(name.startswith("Standard_") for name in GPUS_PER_VM_SIZE)
    assert len({name.lower() for name in GPUS_PER_VM_SIZE}) == len(GPUS_PER_VM_SIZE)


@pytest.mark.parametrize(
    ("vm_size", "retired"),
    [
        ("Standard_NC6", "2023-09-06"),
        ("Standard_NC6s_v2", "2023-09-06"),
        ("Standard_ND24rs", "2023-09-06"),
        ("Standard_NV24", "2023-09-06"),
        ("Standard_NC6s_v3", "2025-09-30"),
        ("Standard_NC24rs_v3", "2025-03-31"),
    ],
)
def test_retired_sizes_are_known_but_never_provisioned(vm_size: str, retired: str) -> None:
    assert gpus_per_vm(vm_size) >= 1  # an attached or adopted cluster of one is still observed and deleted
    with pytest.raises(PermanentBackendError) as raised:
        check_provisionable(vm_size, 3, "DevTest")
    assert raised.value.reason == c.INVALID_VM_SIZE
    assert f"retired by Azure on {retired}" in raised.value.message


@pytest.mark.parametrize(
    ("vm_size", "agents", "purpose", "ok"),
    [
        ("Standard_NC4as_T4_v3", 3, "FastProd", True),  # 12 vCPUs: the example and the defaults
        ("Standard_NC4as_T4_v3", 2, "FastProd", False),
        ("Standard_NC4as_T4_v3", 1, "DevTest", True),
        ("Standard_NC24ads_A100_v4", 1, "FastProd", True),
    ],
)
def test_cluster_purpose_needs_its_vcpus(vm_size: str, agents: int, purpose: str, ok: bool) -> None:
    if ok:
        assert check_provisionable(vm_size, agents, purpose).name == vm_size
        return
    with pytest.raises(PermanentBackendError) as raised:
        check_provisionable(vm_size, agents, purpose)
    assert raised.value.reason == c.INVALID_SPEC
    assert "FastProd needs at least 12 vCPUs" in raised.value.message


def _provision_rules() -> list[str]:
    doc = yaml.safe_load(CRD.read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    provision = spec["properties"]["compute"]["properties"]["provision"]
    return [rule["rule"] for rule in provision["x-kubernetes-validations"]]


def test_the_crd_refuses_exactly_the_retired_sizes() -> None:
    rule = next(r for r in _provision_rules() if "!(self.vmSize.lowerAscii() in [" in r)
    listed = ast.literal_eval(re.search(r"in (\[.*?\])\)", rule).group(1))  # type: ignore[union-attr]
    assert sorted(listed) == sorted(size.name.lower() for size in VM_SIZES.values() if size.retired)


def test_the_crds_vcpus_are_the_tables() -> None:
    rule = next(r for r in _provision_rules() if "agentCount *" in r)
    maps = [ast.literal_eval(m) for m in re.findall(r"\{[^{}]*\}", rule)]
    current = {size.name.lower(): size.vcpus for size in VM_SIZES.values() if not size.retired}
    assert maps == [current, current]


def test_the_crds_gpus_per_node_are_the_tables() -> None:
    doc = yaml.safe_load(CRD.read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = next(r["rule"] for r in spec["x-kubernetes-validations"] if "gpuCores" in r["rule"])
    maps = [ast.literal_eval(m) for m in re.findall(r"\{[^{}]*\}", rule)]
    current = {size.name.lower(): size.gpus for size in VM_SIZES.values() if not size.retired}
    assert maps == [current, current]
