"""Whole NVIDIA GPUs per Azure VM size, for the replica cap on an AKS compute (nodes x GPUs per node).

Only sizes whose VMs carry whole GPUs are listed: a replica asks AKS for ``nvidia.com/gpu: N`` and a GPU is
never shared, so fractional-GPU sizes (NVv4's AMD partitions, the small NVadsA10_v5 sizes) and CPU sizes
have no entry. An unknown size is an error the user must fix, never a guess: guessing low wastes a paid
cluster, guessing high deploys replicas AKS cannot schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .. import conditions as c
from .base import PermanentBackendError

_SIZES: dict[str, int] = {
    # NC (K80)
    "Standard_NC6": 1,
    "Standard_NC12": 2,
    "Standard_NC24": 4,
    "Standard_NC24r": 4,
    # NCv2 (P100)
    "Standard_NC6s_v2": 1,
    "Standard_NC12s_v2": 2,
    "Standard_NC24s_v2": 4,
    "Standard_NC24rs_v2": 4,
    # NCv3 (V100)
    "Standard_NC6s_v3": 1,
    "Standard_NC12s_v3": 2,
    "Standard_NC24s_v3": 4,
    "Standard_NC24rs_v3": 4,
    # NCasT4_v3 (T4)
    "Standard_NC4as_T4_v3": 1,
    "Standard_NC8as_T4_v3": 1,
    "Standard_NC16as_T4_v3": 1,
    "Standard_NC64as_T4_v3": 4,
    # NC A100 v4
    "Standard_NC24ads_A100_v4": 1,
    "Standard_NC48ads_A100_v4": 2,
    "Standard_NC96ads_A100_v4": 4,
    # NC H100 v5
    "Standard_NC40ads_H100_v5": 1,
    "Standard_NC80adis_H100_v5": 2,
    # ND (P40), NDv2 (V100), ND A100 v4, ND H100 v5
    "Standard_ND6s": 1,
    "Standard_ND12s": 2,
    "Standard_ND24s": 4,
    "Standard_ND24rs": 4,
    "Standard_ND40rs_v2": 8,
    "Standard_ND96asr_v4": 8,
    "Standard_ND96amsr_A100_v4": 8,
    "Standard_ND96isr_H100_v5": 8,
    # NV (M60), NVv3 (M60), NVadsA10_v5 whole-GPU sizes (A10)
    "Standard_NV6": 1,
    "Standard_NV12": 2,
    "Standard_NV24": 4,
    "Standard_NV12s_v3": 1,
    "Standard_NV24s_v3": 2,
    "Standard_NV48s_v3": 4,
    "Standard_NV36ads_A10_v5": 1,
    "Standard_NV36adms_A10_v5": 1,
    "Standard_NV72ads_A10_v5": 2,
}

#: GPUs per VM by the size's canonical name (read-only).
GPUS_PER_VM_SIZE: Mapping[str, int] = MappingProxyType(_SIZES)
_BY_LOWER = {name.lower(): gpus for name, gpus in _SIZES.items()}


def gpus_per_vm(vm_size: str | None) -> int:
    """GPUs of one VM of ``vm_size`` (Azure names are case-insensitive); raises for a size not in the table."""
    gpus = _BY_LOWER.get((vm_size or "").strip().lower())
    if gpus is None:
        raise PermanentBackendError(
            f"unknown GPU VM size {vm_size or '(none)'}; known: {', '.join(_SIZES)}", reason=c.INVALID_VM_SIZE
        )
    return gpus
