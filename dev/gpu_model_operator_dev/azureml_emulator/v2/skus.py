"""The VM sizes managed online deployments run on: vCPUs, memory, GPUs, quota family, retirement.

Why a table: three Azure rules need it. A managed deployment's ``instance_type`` must be in the documented
"Managed online endpoints SKU list"
(learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list); sizes retired by
Azure are refused even though old samples still name them (NCv3 and NDv2 retired on 2025-09-30, NCv1/NCv2/ND/NV
earlier: learn.microsoft.com/azure/virtual-machines/sizes/retirement/retired-sizes-list);
and the quota check charges ``vCPUs x instances`` to the size's *family* (the names the usages API reports, e.g.
``standardNCASv3_T4Family``; learn.microsoft.com/azure/machine-learning/how-to-manage-quotas). The figures are
the VM size pages' (vCPU, GiB, GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VmSku:
    name: str
    vcpus: int
    memory_gb: float
    gpus: int
    family: str
    #: Refused by Azure: the size is retired (its message says so).
    retired: bool = False
    #: Listed for managed online deployments (some sizes exist for compute clusters only).
    managed_online: bool = True


def _sizes() -> list[VmSku]:
    cpu = [
        # General purpose DSv2, compute optimised FSv2, DASv4, memory optimised ESv3: the CPU part of the list.
        *(
            VmSku(f"Standard_DS{i}_v2", c, m, 0, "standardDSv2Family")
            for i, c, m in ((1, 1, 3.5), (2, 2, 7), (3, 4, 14), (4, 8, 28), (5, 16, 56))
        ),
        *(VmSku(f"Standard_F{c}s_v2", c, 2.0 * c, 0, "standardFSv2Family") for c in (2, 4, 8, 16, 32, 48, 64, 72)),
        *(VmSku(f"Standard_D{c}as_v4", c, 4.0 * c, 0, "standardDASv4Family") for c in (2, 4, 8, 16, 32, 48, 64, 96)),
        *(VmSku(f"Standard_E{c}s_v3", c, 8.0 * c, 0, "standardESv3Family") for c in (2, 4, 8, 16, 32, 48, 64)),
    ]
    gpu = [
        VmSku("Standard_NC4as_T4_v3", 4, 28, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC8as_T4_v3", 8, 56, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC16as_T4_v3", 16, 110, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC64as_T4_v3", 64, 440, 4, "standardNCASv3_T4Family"),
        VmSku("Standard_NC24ads_A100_v4", 24, 220, 1, "standardNCADSA100v4Family"),
        VmSku("Standard_NC48ads_A100_v4", 48, 440, 2, "standardNCADSA100v4Family"),
        VmSku("Standard_NC96ads_A100_v4", 96, 880, 4, "standardNCADSA100v4Family"),
        VmSku("Standard_NC40ads_H100_v5", 40, 320, 1, "standardNCadsH100v5Family"),
        VmSku("Standard_NC80adis_H100_v5", 80, 640, 2, "standardNCadsH100v5Family"),
        VmSku("Standard_ND96asr_v4", 96, 900, 8, "standardNDASv4_A100Family"),
        VmSku("Standard_ND96amsr_A100_v4", 96, 1900, 8, "standardNDAMSv4_A100Family"),
        VmSku("Standard_ND96isr_H100_v5", 96, 1900, 8, "standardNDSH100v5Family"),
        # Retired: still in old samples (the v1 GPU guide used Standard_NC6), refused now.
        VmSku("Standard_NC6s_v3", 6, 112, 1, "standardNCSv3Family", retired=True),
        VmSku("Standard_NC12s_v3", 12, 224, 2, "standardNCSv3Family", retired=True),
        VmSku("Standard_NC24s_v3", 24, 448, 4, "standardNCSv3Family", retired=True),
        VmSku("Standard_ND40rs_v2", 40, 672, 8, "standardNDSv2Family", retired=True),
        VmSku("Standard_NC6", 6, 56, 1, "standardNCFamily", retired=True),
        VmSku("Standard_NC12", 12, 112, 2, "standardNCFamily", retired=True),
        VmSku("Standard_NC24", 24, 224, 4, "standardNCFamily", retired=True),
        VmSku("Standard_NC6s_v2", 6, 112, 1, "standardNCSv2Family", retired=True),
        VmSku("Standard_ND6s", 6, 112, 1, "standardNDSFamily", retired=True),
        VmSku("Standard_NV6", 6, 56, 1, "standardNVFamily", retired=True),
    ]
    return cpu + gpu


#: Lower-case size name -> size (Azure compares VM size names case-insensitively).
SKUS: dict[str, VmSku] = {s.name.lower(): s for s in _sizes()}

#: Families whose usages the quota API lists, in a stable order.
FAMILIES: list[str] = sorted({s.family for s in SKUS.values()})

#: Default per-region vCPU limits of a pay-as-you-go subscription for the emulated families: CPU families get a
#: few dozen cores, GPU families a little (Azure's defaults are small and most GPU families start at 0; tests
#: and demos raise them with the admin API).
DEFAULT_FAMILY_LIMITS: dict[str, int] = {
    **{f: 100 for f in ("standardDSv2Family", "standardFSv2Family", "standardDASv4Family", "standardESv3Family")},
    "standardNCASv3_T4Family": 24,
    "standardNCADSA100v4Family": 48,
}


def sku(name: str | None) -> VmSku | None:
    return SKUS.get((name or "").lower())
