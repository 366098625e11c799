"""Azure GPU VM sizes: the table behind the replica cap on AKS, its refusal to guess, what Azure retired (from each
size's date on), which sizes a managed online deployment takes and which skip the 20% quota reserve, and the CRD's
CEL rules and the emulator's SKU lists that repeat the table: all three must say the same."""

from __future__ import annotations

import ast
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import PermanentBackendError
from gpu_model_operator.backends.vm_sizes import (
    GPUS_PER_VM_SIZE,
    MIN_NODES,
    VM_SIZES,
    check_provisionable,
    gpus_per_vm,
)
from gpu_model_operator_dev.azureml_emulator import aks, gpu
from gpu_model_operator_dev.azureml_emulator.v2 import skus

CRD = Path(__file__).resolve().parents[2] / "crds" / "gpumodel.io_gpumodeldeployments.yaml"


@dataclass(frozen=True)
class Gpus:
    """GPUs of one VM of the size the case is named after."""

    gpus: int


GPUS: dict[str, Gpus] = {
    "Standard_NC6": Gpus(1),
    "Standard_NC12": Gpus(2),
    "Standard_NC24r": Gpus(4),
    "Standard_NC24rs_v2": Gpus(4),
    "Standard_NC6s_v3": Gpus(1),
    "Standard_NC24rs_v3": Gpus(4),
    "Standard_NC4as_T4_v3": Gpus(1),
    "Standard_NC16as_T4_v3": Gpus(1),
    "Standard_NC64as_T4_v3": Gpus(4),
    "Standard_NC24ads_A100_v4": Gpus(1),
    "Standard_NC96ads_A100_v4": Gpus(4),
    "Standard_NC40ads_H100_v5": Gpus(1),
    "Standard_NC80adis_H100_v5": Gpus(2),
    "Standard_ND40rs_v2": Gpus(8),
    "Standard_ND96amsr_A100_v4": Gpus(8),
    "Standard_ND96isr_H100_v5": Gpus(8),
    "Standard_ND96isr_H200_v5": Gpus(8),
    "Standard_NV36ads_A10_v5": Gpus(1),
    "Standard_NV72ads_A10_v5": Gpus(2),
}


@pytest.mark.parametrize("name", GPUS)
def test_gpus_per_vm(name: str) -> None:
    assert gpus_per_vm(name) == GPUS[name].gpus


@dataclass(frozen=True)
class Spelling:
    spelling: str


SPELLINGS: dict[str, Spelling] = {
    "lower case": Spelling("standard_nc4as_t4_v3"),
    "upper case": Spelling("STANDARD_NC4AS_T4_V3"),
    "padded with spaces": Spelling(" Standard_NC4as_T4_v3 "),
}


@pytest.mark.parametrize("name", SPELLINGS)
def test_lookup_ignores_case(name: str) -> None:
    assert gpus_per_vm(SPELLINGS[name].spelling) == 1


@dataclass(frozen=True)
class Unknown:
    vm_size: str | None
    #: How the refusal names it.
    shown: str


UNKNOWN: dict[str, Unknown] = {
    "a CPU size": Unknown("Standard_D3_v2", "Standard_D3_v2"),
    "a GPU size not in the table": Unknown("Standard_NV4as_v4", "Standard_NV4as_v4"),
    "a generation that does not exist": Unknown("Standard_NC6s_v9", "Standard_NC6s_v9"),
    "without the Standard_ prefix": Unknown("NC6", "NC6"),
    "empty": Unknown("", "(none)"),
    "none": Unknown(None, "(none)"),
}


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_sizes_are_refused_never_guessed(name: str) -> None:
    case = UNKNOWN[name]
    with pytest.raises(PermanentBackendError) as raised:
        gpus_per_vm(case.vm_size)
    said, _, offered = raised.value.message.partition("; current sizes: ")
    assert (raised.value.reason, said) == (c.INVALID_VM_SIZE, f"unknown GPU VM size {case.shown}")
    assert "Standard_NC4as_T4_v3" in offered.split(", ")
    assert "Standard_NC6" not in offered.split(", ")  # retired sizes are not offered


def test_every_size_has_whole_gpus_and_a_canonical_name() -> None:
    assert all(gpus in (1, 2, 4, 8) for gpus in GPUS_PER_VM_SIZE.values())
    assert all(name.startswith("Standard_") for name in GPUS_PER_VM_SIZE)
    assert len({name.lower() for name in GPUS_PER_VM_SIZE}) == len(GPUS_PER_VM_SIZE)


#: The current sizes a refusal of a retired one suggests.
SUGGESTED = "Standard_NC4as_T4_v3, Standard_NC8as_T4_v3, Standard_NC16as_T4_v3"


def provisioned(vm_size: str, agents: int, purpose: str) -> str:
    """What :func:`check_provisionable` answers, as one value: the size's name, or the refusal's reason and
    message."""
    try:
        return check_provisionable(vm_size, agents, purpose).name
    except PermanentBackendError as refused:
        return f"{refused.reason}: {refused.message}"


def retired_on(vm_size: str, day: str) -> str:
    return (
        f"{c.INVALID_VM_SIZE}: VM size {vm_size} was retired by Azure on {day} and can no longer be created; "
        f"choose a current size, e.g. {SUGGESTED}"
    )


@dataclass(frozen=True)
class Retired:
    """A retired size, named after it: still known (an attached or adopted cluster of it is still observed and
    deleted), never provisioned."""

    gpus: int
    retired: str


RETIRED: dict[str, Retired] = {
    "Standard_NC6": Retired(1, "2023-09-06"),
    "Standard_NC6s_v2": Retired(1, "2023-09-06"),
    "Standard_ND24rs": Retired(4, "2023-09-06"),
    "Standard_NV24": Retired(4, "2023-09-06"),
    "Standard_NC6s_v3": Retired(1, "2025-09-30"),
    "Standard_NC24rs_v3": Retired(4, "2025-03-31"),
}


@pytest.mark.parametrize("name", RETIRED)
def test_retired_sizes_are_known_but_never_provisioned(name: str) -> None:
    case = RETIRED[name]
    assert (gpus_per_vm(name), provisioned(name, 3, "DevTest")) == (case.gpus, retired_on(name, case.retired))


def too_few(purpose: str, nodes: int, agents: int) -> str:
    return (
        f"{c.INVALID_SPEC}: clusterPurpose {purpose} needs at least {nodes} nodes, and agentCount is {agents}; raise "
        "agentCount or use DevTest"
    )


@dataclass(frozen=True)
class Purpose:
    vm_size: str
    agents: int
    purpose: str
    #: The size's name when it is provisioned, else the refusal.
    want: str


PURPOSES: dict[str, Purpose] = {
    "the example and the defaults: 12 vCPUs on 3 nodes": Purpose(
        "Standard_NC4as_T4_v3", 3, "FastProd", "Standard_NC4as_T4_v3"
    ),
    "FastProd on 2 nodes": Purpose("Standard_NC4as_T4_v3", 2, "FastProd", too_few("FastProd", 3, 2)),
    "DevTest on 1 node": Purpose("Standard_NC4as_T4_v3", 1, "DevTest", "Standard_NC4as_T4_v3"),
    "24 vCPUs, but a production cluster has at least 3 nodes whatever their size": Purpose(
        "Standard_NC24ads_A100_v4", 1, "FastProd", too_few("FastProd", 3, 1)
    ),
    "FastProd on 3 large nodes": Purpose("Standard_NC24ads_A100_v4", 3, "FastProd", "Standard_NC24ads_A100_v4"),
}


@pytest.mark.parametrize("name", PURPOSES)
def test_cluster_purpose_needs_its_nodes_and_vcpus(name: str) -> None:
    case = PURPOSES[name]
    assert provisioned(case.vm_size, case.agents, case.purpose) == case.want


def test_the_crds_minimum_nodes_are_the_tables() -> None:
    rule = next(r for r in _provision_rules() if "self.agentCount >=" in r)
    assert rule == f"self.clusterPurpose != 'FastProd' || self.agentCount >= {MIN_NODES['FastProd']}"
    assert MIN_NODES == {"FastProd": 3, "DevTest": 1}
    assert {k.lower(): v for k, v in MIN_NODES.items()} == aks.MIN_NODES


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


# ---- the CRD, this table and the emulator's SKU lists say the same ----------------------------------------------


@dataclass(frozen=True)
class Size:
    """What the three tables say about one size: GPUs, vCPUs, retirement date, managed online, 20% reserve skipped."""

    gpus: int
    vcpus: int
    retires: str | None
    managed: bool
    skip_reserve: bool


def _products() -> dict[str, Size]:
    return {
        s.name.lower(): Size(s.gpus, s.vcpus, s.retires, s.managed, s.skip_reserve)
        for s in VM_SIZES.values()
        if s.managed or s.name.lower() in skus.SKUS
    }


def _emulators() -> dict[str, Size]:
    """The v2 surface's SKU list (managed online sizes, and the GPU sizes it knows are not on that list), with the
    v1 surface's retirement dates for the sizes AKS agent pools use."""
    found = {}
    for name, s in skus.SKUS.items():
        if not s.gpus:
            continue
        retires = s.retires or gpu.RETIRED.get(name)
        found[name] = Size(s.gpus, s.vcpus, retires, s.managed_online, s.skip_reserve)
    return found


def test_the_emulators_sku_list_is_the_products_table() -> None:
    assert _emulators() == _products()


def test_the_v1_emulators_sizes_and_retirements_are_the_tables() -> None:
    assert {n: (s.gpus, s.vcpus) for n, s in ((k.lower(), v) for k, v in VM_SIZES.items())} == {
        n: gpus_vcpus for n, gpus_vcpus in gpu.VM_SIZES.items() if gpus_vcpus[0]
    }
    assert {k.lower(): v.retires for k, v in VM_SIZES.items() if v.retires} == gpu.RETIRED


def test_the_crd_takes_exactly_the_current_managed_sizes() -> None:
    doc = yaml.safe_load(CRD.read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec["properties"]["compute"]["properties"]["managed"]["x-kubernetes-validations"]
    listed = ast.literal_eval(re.search(r"in (\[.*?\])", rules[0]["rule"]).group(1))  # type: ignore[union-attr]
    assert listed == [s.name.lower() for s in VM_SIZES.values() if s.managed and not s.retired]
    assert sorted(listed) == sorted(n for n, s in skus.SKUS.items() if s.managed_online and s.gpus and not s.retired)


@dataclass(frozen=True)
class Retirement:
    size: str
    day: datetime.date
    retired: str | None


#: Retirement takes effect on its date (today is after NVv3's 2026-09-30).
RETIREMENTS: dict[str, Retirement] = {
    "NVv3 the day before": Retirement("Standard_NV12s_v3", datetime.date(2026, 9, 29), None),
    "NVv3 on the day": Retirement("Standard_NV12s_v3", datetime.date(2026, 9, 30), "2026-09-30"),
    "NCv3 after": Retirement("Standard_NC6s_v3", datetime.date(2026, 12, 7), "2025-09-30"),
    "T4 never": Retirement("Standard_NC4as_T4_v3", datetime.date(2030, 1, 1), None),
}


@pytest.mark.parametrize("name", RETIREMENTS)
def test_a_size_is_retired_from_its_date_on(name: str) -> None:
    case = RETIREMENTS[name]
    said = (VM_SIZES[case.size].retired_on(case.day), skus.retired(case.size, case.day))
    assert said == (case.retired, case.retired is not None)
