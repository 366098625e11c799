"""Azure GPU VM sizes: whole NVIDIA GPUs and vCPUs per VM, and which sizes Azure has retired.

Why a table: the replica cap needs the GPUs of each node (a replica asks AKS for ``nvidia.com/gpu: N`` on one
node and a GPU is never shared), FastProd clusters need 12 vCPUs in all, and a retired size can no longer be
created. Only sizes whose VMs carry whole NVIDIA GPUs are listed: fractional-GPU sizes (NVv4's AMD
partitions, the small NVadsA10_v5 sizes) and CPU sizes have no entry. An unknown size is an error the user
must fix, never a guess: guessing low wastes a paid cluster, guessing high deploys replicas AKS cannot
schedule.

Retirement dates are Azure's migration guides': the NC, NCv2, ND and NV series on 2023-09-06; NC24rs_v3 on
2025-03-31 and the other NCv3 sizes on 2025-09-30. A retired size is still *known* (an attached or adopted
cluster of one is observed, and deleted or detached), but nothing new is created with it.
``crds/gpumodel.io_gpumodeldeployments.yaml`` repeats the retired sizes and the vCPUs in CEL rules so that
``kubectl apply`` refuses them; ``tests/unit/test_vm_sizes.py`` keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .. import conditions as c
from .base import PermanentBackendError

#: AKS's minimum vCPUs over all agent nodes for a cluster purpose (Azure ML v1, "Create and attach an Azure
#: Kubernetes Service cluster": production (FastProd) needs at least 12, dev/test at least 2).
MIN_VCPUS = {"FastProd": 12, "DevTest": 2}


@dataclass(frozen=True)
class VmSize:
    name: str
    gpus: int
    vcpus: int
    #: The date Azure retired the size (ISO), or None while it can be created.
    retired: str | None = None


_NC_RETIRED, _NC24RS_V3_RETIRED, _NCV3_RETIRED = "2023-09-06", "2025-03-31", "2025-09-30"
_TABLE = [
    # NC (K80), NCv2 (P100), ND (P40), NV (M60): retired
    VmSize("Standard_NC6", 1, 6, _NC_RETIRED),
    VmSize("Standard_NC12", 2, 12, _NC_RETIRED),
    VmSize("Standard_NC24", 4, 24, _NC_RETIRED),
    VmSize("Standard_NC24r", 4, 24, _NC_RETIRED),
    VmSize("Standard_NC6s_v2", 1, 6, _NC_RETIRED),
    VmSize("Standard_NC12s_v2", 2, 12, _NC_RETIRED),
    VmSize("Standard_NC24s_v2", 4, 24, _NC_RETIRED),
    VmSize("Standard_NC24rs_v2", 4, 24, _NC_RETIRED),
    VmSize("Standard_ND6s", 1, 6, _NC_RETIRED),
    VmSize("Standard_ND12s", 2, 12, _NC_RETIRED),
    VmSize("Standard_ND24s", 4, 24, _NC_RETIRED),
    VmSize("Standard_ND24rs", 4, 24, _NC_RETIRED),
    VmSize("Standard_NV6", 1, 6, _NC_RETIRED),
    VmSize("Standard_NV12", 2, 12, _NC_RETIRED),
    VmSize("Standard_NV24", 4, 24, _NC_RETIRED),
    # NCv3 (V100): retired
    VmSize("Standard_NC6s_v3", 1, 6, _NCV3_RETIRED),
    VmSize("Standard_NC12s_v3", 2, 12, _NCV3_RETIRED),
    VmSize("Standard_NC24s_v3", 4, 24, _NCV3_RETIRED),
    VmSize("Standard_NC24rs_v3", 4, 24, _NC24RS_V3_RETIRED),
    # NCasT4_v3 (T4)
    VmSize("Standard_NC4as_T4_v3", 1, 4),
    VmSize("Standard_NC8as_T4_v3", 1, 8),
    VmSize("Standard_NC16as_T4_v3", 1, 16),
    VmSize("Standard_NC64as_T4_v3", 4, 64),
    # NC A100 v4
    VmSize("Standard_NC24ads_A100_v4", 1, 24),
    VmSize("Standard_NC48ads_A100_v4", 2, 48),
    VmSize("Standard_NC96ads_A100_v4", 4, 96),
    # NC H100 v5
    VmSize("Standard_NC40ads_H100_v5", 1, 40),
    VmSize("Standard_NC80adis_H100_v5", 2, 80),
    # NDv2 (V100), ND A100 v4, NDm A100 v4, ND H100 v5, ND H200 v5
    VmSize("Standard_ND40rs_v2", 8, 40),
    VmSize("Standard_ND96asr_v4", 8, 96),
    VmSize("Standard_ND96amsr_A100_v4", 8, 96),
    VmSize("Standard_ND96isr_H100_v5", 8, 96),
    VmSize("Standard_ND96isr_H200_v5", 8, 96),
    # NVv3 (M60), NVadsA10_v5 whole-GPU sizes (A10)
    VmSize("Standard_NV12s_v3", 1, 12),
    VmSize("Standard_NV24s_v3", 2, 24),
    VmSize("Standard_NV48s_v3", 4, 48),
    VmSize("Standard_NV36ads_A10_v5", 1, 36),
    VmSize("Standard_NV36adms_A10_v5", 1, 36),
    VmSize("Standard_NV72ads_A10_v5", 2, 72),
]

#: Every known size by its canonical name (read-only).
VM_SIZES: Mapping[str, VmSize] = MappingProxyType({size.name: size for size in _TABLE})
#: GPUs per VM by the size's canonical name (read-only).
GPUS_PER_VM_SIZE: Mapping[str, int] = MappingProxyType({size.name: size.gpus for size in _TABLE})
_BY_LOWER = {size.name.lower(): size for size in _TABLE}
CURRENT = [size.name for size in _TABLE if size.retired is None]


def vm_size(name: str | None) -> VmSize:
    """The size called ``name`` (Azure names are case-insensitive); raises for a size not in the table."""
    size = _BY_LOWER.get((name or "").strip().lower())
    if size is None:
        raise PermanentBackendError(
            f"unknown GPU VM size {name or '(none)'}; current sizes: {', '.join(CURRENT)}", reason=c.INVALID_VM_SIZE
        )
    return size


def gpus_per_vm(name: str | None) -> int:
    """GPUs of one VM of size ``name``; raises for a size not in the table."""
    return vm_size(name).gpus


def check_provisionable(name: str, agent_count: int, cluster_purpose: str) -> VmSize:
    """Refuse, before anything is created, what Azure would refuse: a retired or unknown size, or too few vCPUs
    for the cluster purpose. Returns the size."""
    size = vm_size(name)
    if size.retired:
        raise PermanentBackendError(
            f"VM size {size.name} was retired by Azure on {size.retired} and can no longer be created; "
            f"choose a current size, e.g. {', '.join(CURRENT[:3])}",
            reason=c.INVALID_VM_SIZE,
        )
    need = MIN_VCPUS.get(cluster_purpose, 0)
    if agent_count * size.vcpus < need:
        raise PermanentBackendError(
            f"clusterPurpose {cluster_purpose} needs at least {need} vCPUs in all, and {agent_count} x {size.name} "
            f"have {agent_count * size.vcpus}; raise agentCount, choose a larger size, or use DevTest",
            reason=c.INVALID_SPEC,
        )
    return size
