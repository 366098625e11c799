"""Azure GPU VM sizes: whole NVIDIA GPUs and vCPUs per VM, which sizes Azure has retired (and when), and which
a managed online deployment may run on.

Why a table: the replica cap needs the GPUs of each node (a replica asks AKS for ``nvidia.com/gpu: N`` on one
node and a GPU is never shared), FastProd clusters need 12 vCPUs in all, a retired size can no longer be
created, and a managed online endpoint takes only the sizes of Azure's managed SKU list, some of them without the
20% upgrade reserve on quota. Only sizes whose VMs carry whole NVIDIA GPUs are listed: fractional-GPU sizes
(NVv4's AMD partitions, the small NVadsA10_v5 sizes) and CPU sizes have no entry. An unknown size is an error the
user must fix, never a guess: guessing low wastes a paid cluster, guessing high deploys replicas AKS cannot
schedule.

Retirement dates (learn.microsoft.com/azure/virtual-machines/sizes/retirement/retired-sizes-list, and the
series' migration guides): the NC, NCv2, ND and NV series on 2023-09-06; NC24rs_v3 on 2025-03-31 ("Migrate your
Standard_NC24rs_v3 virtual machine size by March 31, 2025"); the other NCv3 sizes on 2025-09-30; NVv3 on
2026-09-30 (announced 2026-04-15). A size is retired from its date on (:attr:`VmSize.retired` compares with
today), so an announced retirement takes effect by itself. A retired size is still *known* (an attached or
adopted cluster of one is observed, and deleted or detached), but nothing new is created with it.

Managed online deployments (learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-
list, the "Managed online endpoints SKU list"): ``managed`` marks the whole-GPU sizes of that list, and
``skip_reserve`` those whose row says "Skip 20% Reservation" (NC A100 v4, NCads H100 v5, ND A100 v4, NDm A100 v4,
NDv2, ND H100 v5): every other size needs quota for ``ceil(1.2 * instances)`` instances
(includes/quota-allocation-online-deployment.md). ND H200 v5 and the NVv3 sizes are not on that list.

``crds/gpumodel.io_gpumodeldeployments.yaml`` repeats the retired sizes, the vCPUs, the GPUs and the managed sizes in
CEL rules so that ``kubectl apply`` refuses what Azure would; ``tests/unit/test_vm_sizes.py`` keeps the CRD, this
table and the emulator's SKU list in step.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .. import conditions as c
from .base import PermanentBackendError

#: AKS's minimum vCPUs over all agent nodes for a cluster purpose (Azure ML v1, "Create and attach an Azure
#: Kubernetes Service cluster": production (FastProd) needs at least 12, dev/test at least 2).
MIN_VCPUS = {"FastProd": 12, "DevTest": 2}
#: AKS's minimum nodes for a cluster purpose, whether Azure ML creates the cluster or attaches it (the same page,
#: MicrosoftDocs/azure-ai-docs articles/machine-learning/v1/how-to-create-attach-kubernetes.md at commit
#: 31c0eaf68efd248f21a69c8e608f859bd48c98e8: "if the cluster is used for production, then it must contain at least
#: 3 nodes. For a dev-test cluster, it must contain at least 1 node"). Both rules hold: 1 x Standard_NC24ads_A100_v4
#: has 24 vCPUs and is still too small for FastProd.
MIN_NODES = {"FastProd": 3, "DevTest": 1}


def today() -> datetime.date:
    """The date retirements are compared with (UTC, as Azure's retirement dates are)."""
    return datetime.datetime.now(datetime.timezone.utc).date()


@dataclass(frozen=True)
class VmSize:
    name: str
    gpus: int
    vcpus: int
    #: The date Azure retires (or retired) the size (ISO), or None when no retirement is announced.
    retires: str | None = None
    #: On Azure's managed online endpoints SKU list: a managed online deployment may run on it.
    managed: bool = False
    #: The SKU list's "Skip 20% Reservation": quota for the instances alone, no upgrade reserve.
    skip_reserve: bool = False

    @property
    def retired(self) -> str | None:
        """The retirement date once it has passed (nothing new can be created), else None."""
        return self.retired_on(today())

    def retired_on(self, day: datetime.date) -> str | None:
        return self.retires if self.retires is not None and datetime.date.fromisoformat(self.retires) <= day else None


_NC_RETIRED, _NC24RS_V3_RETIRED, _NCV3_RETIRED, _NVV3_RETIRES = "2023-09-06", "2025-03-31", "2025-09-30", "2026-09-30"
_TABLE = [
    # NC (K80), NCv2 (P100), ND (P40), NV (M60): retired
    VmSize("Standard_NC6", 1, 6, _NC_RETIRED),
    VmSize("Standard_NC12", 2, 12, _NC_RETIRED),
    VmSize("Standard_NC24", 4, 24, _NC_RETIRED),
    VmSize("Standard_NC24r", 4, 24, _NC_RETIRED),
    VmSize("Standard_NC6s_v2", 1, 6, _NC_RETIRED, managed=True),
    VmSize("Standard_NC12s_v2", 2, 12, _NC_RETIRED, managed=True),
    VmSize("Standard_NC24s_v2", 4, 24, _NC_RETIRED, managed=True),
    VmSize("Standard_NC24rs_v2", 4, 24, _NC_RETIRED),
    VmSize("Standard_ND6s", 1, 6, _NC_RETIRED),
    VmSize("Standard_ND12s", 2, 12, _NC_RETIRED),
    VmSize("Standard_ND24s", 4, 24, _NC_RETIRED),
    VmSize("Standard_ND24rs", 4, 24, _NC_RETIRED),
    VmSize("Standard_NV6", 1, 6, _NC_RETIRED),
    VmSize("Standard_NV12", 2, 12, _NC_RETIRED),
    VmSize("Standard_NV24", 4, 24, _NC_RETIRED),
    # NCv3 (V100): retired
    VmSize("Standard_NC6s_v3", 1, 6, _NCV3_RETIRED, managed=True),
    VmSize("Standard_NC12s_v3", 2, 12, _NCV3_RETIRED, managed=True),
    VmSize("Standard_NC24s_v3", 4, 24, _NCV3_RETIRED, managed=True),
    VmSize("Standard_NC24rs_v3", 4, 24, _NC24RS_V3_RETIRED),
    # NCasT4_v3 (T4)
    VmSize("Standard_NC4as_T4_v3", 1, 4, managed=True),
    VmSize("Standard_NC8as_T4_v3", 1, 8, managed=True),
    VmSize("Standard_NC16as_T4_v3", 1, 16, managed=True),
    VmSize("Standard_NC64as_T4_v3", 4, 64, managed=True),
    # NC A100 v4
    VmSize("Standard_NC24ads_A100_v4", 1, 24, managed=True, skip_reserve=True),
    VmSize("Standard_NC48ads_A100_v4", 2, 48, managed=True, skip_reserve=True),
    VmSize("Standard_NC96ads_A100_v4", 4, 96, managed=True, skip_reserve=True),
    # NC H100 v5
    VmSize("Standard_NC40ads_H100_v5", 1, 40, managed=True, skip_reserve=True),
    VmSize("Standard_NC80adis_H100_v5", 2, 80, managed=True, skip_reserve=True),
    # NDv2 (V100), ND A100 v4, NDm A100 v4, ND H100 v5, ND H200 v5
    VmSize("Standard_ND40rs_v2", 8, 40, managed=True, skip_reserve=True),
    VmSize("Standard_ND96asr_v4", 8, 96, managed=True, skip_reserve=True),
    VmSize("Standard_ND96amsr_A100_v4", 8, 96, managed=True, skip_reserve=True),
    VmSize("Standard_ND96is_H100_v5", 8, 96, managed=True, skip_reserve=True),
    VmSize("Standard_ND96isr_H100_v5", 8, 96, managed=True, skip_reserve=True),
    VmSize("Standard_ND96isr_H200_v5", 8, 96),
    # NVv3 (M60): retired on 2026-09-30; NVadsA10_v5 whole-GPU sizes (A10)
    VmSize("Standard_NV12s_v3", 1, 12, _NVV3_RETIRES),
    VmSize("Standard_NV24s_v3", 2, 24, _NVV3_RETIRES),
    VmSize("Standard_NV48s_v3", 4, 48, _NVV3_RETIRES),
    VmSize("Standard_NV36ads_A10_v5", 1, 36, managed=True),
    VmSize("Standard_NV36adms_A10_v5", 1, 36, managed=True),
    VmSize("Standard_NV72ads_A10_v5", 2, 72, managed=True),
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
    """Refuse, before anything is created, what Azure would refuse: a retired or unknown size, or too few nodes or
    vCPUs for the cluster purpose. Returns the size."""
    size = vm_size(name)
    if size.retired:
        raise PermanentBackendError(
            f"VM size {size.name} was retired by Azure on {size.retired} and can no longer be created; "
            f"choose a current size, e.g. {', '.join(CURRENT[:3])}",
            reason=c.INVALID_VM_SIZE,
        )
    nodes = MIN_NODES.get(cluster_purpose, 1)
    if agent_count < nodes:
        raise PermanentBackendError(
            f"clusterPurpose {cluster_purpose} needs at least {nodes} nodes, and agentCount is {agent_count}; raise "
            "agentCount or use DevTest",
            reason=c.INVALID_SPEC,
        )
    need = MIN_VCPUS.get(cluster_purpose, 0)
    if agent_count * size.vcpus < need:
        raise PermanentBackendError(
            f"clusterPurpose {cluster_purpose} needs at least {need} vCPUs in all, and {agent_count} x {size.name} "
            f"have {agent_count * size.vcpus}; raise agentCount, choose a larger size, or use DevTest",
            reason=c.INVALID_SPEC,
        )
    return size
