"""GPUs per Azure VM size: the table behind the replica cap on AKS, and its refusal to guess."""

from __future__ import annotations

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.backends.base import PermanentBackendError
from gpu_model_operator.backends.vm_sizes import GPUS_PER_VM_SIZE, gpus_per_vm


@pytest.mark.parametrize(
    ("vm_size", "gpus"),
    [
        ("Standard_NC6", 1),
        ("Standard_NC12", 2),
        ("Standard_NC24", 4),
        ("Standard_NC24r", 4),
        ("Standard_NC6s_v2", 1),
        ("Standard_NC24rs_v2", 4),
        ("Standard_NC6s_v3", 1),
        ("Standard_NC12s_v3", 2),
        ("Standard_NC24s_v3", 4),
        ("Standard_NC24rs_v3", 4),
        ("Standard_NC4as_T4_v3", 1),
        ("Standard_NC8as_T4_v3", 1),
        ("Standard_NC16as_T4_v3", 1),
        ("Standard_NC64as_T4_v3", 4),
        ("Standard_NC24ads_A100_v4", 1),
        ("Standard_NC48ads_A100_v4", 2),
        ("Standard_NC96ads_A100_v4", 4),
        ("Standard_ND6s", 1),
        ("Standard_ND12s", 2),
        ("Standard_ND24s", 4),
        ("Standard_ND24rs", 4),
        ("Standard_ND40rs_v2", 8),
        ("Standard_ND96asr_v4", 8),
        ("Standard_ND96amsr_A100_v4", 8),
        ("Standard_NV6", 1),
        ("Standard_NV12", 2),
        ("Standard_NV24", 4),
    ],
)
def test_gpus_per_vm(vm_size: str, gpus: int) -> None:
    assert gpus_per_vm(vm_size) == gpus


@pytest.mark.parametrize("spelling", ["standard_nc6s_v3", "STANDARD_NC6S_V3", " Standard_NC6s_v3 "])
def test_lookup_ignores_case(spelling: str) -> None:
    assert gpus_per_vm(spelling) == 1


@pytest.mark.parametrize("vm_size", ["Standard_D3_v2", "Standard_NV4as_v4", "Standard_NC6s_v9", "NC6", "", None])
def test_unknown_sizes_are_refused_never_guessed(vm_size: str | None) -> None:
    with pytest.raises(PermanentBackendError) as raised:
        gpus_per_vm(vm_size)
    assert raised.value.reason == c.INVALID_VM_SIZE
    assert raised.value.message.startswith(f"unknown GPU VM size {vm_size or '(none)'}; known: Standard_NC6, ")
    assert "Standard_ND96amsr_A100_v4" in raised.value.message


def test_every_size_has_whole_gpus_and_a_canonical_name() -> None:
    assert all(gpus in (1, 2, 4, 8) for gpus in GPUS_PER_VM_SIZE.values())
    assert all(name.startswith("Standard_") for name in GPUS_PER_VM_SIZE)
    assert len({name.lower() for name in GPUS_PER_VM_SIZE}) == len(GPUS_PER_VM_SIZE)
