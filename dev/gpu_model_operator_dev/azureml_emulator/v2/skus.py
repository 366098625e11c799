"""The VM sizes managed online deployments run on: vCPUs, memory, GPUs, quota family, the 20% reserve, retirement.

Why a table: four Azure rules need it.

- A managed deployment's ``instance_type`` must be on the "Managed online endpoints SKU list"
  (MicrosoftDocs/azure-ai-docs, articles/machine-learning/reference-managed-online-endpoints-vm-sku-list.md at
  commit 1d987e37c168d7ef6eaeb8441da7967a197aac00): :data:`SKU_LIST` is that table's rows, family, GPUs, cores and
  the "Skip 20% Reservation" column as written there (the page writes some family names with spaces, "standard
  NCASv3_T4 Family"; the usages API and the VM size list name them without, ``standardNCASv3_T4Family``).
- The quota check charges ``ceil(1.2 * instances) * vCPUs`` to the size's family, except for the sizes whose row
  says "Skip 20% Reservation", which are charged ``instances * vCPUs`` (includes/quota-allocation-online-
  deployment.md, commit efb1e2632aab66138c4170f2e719a29cab49de56: "reserves 20% ... on some VM SKUs ... There are
  certain VM SKUs that are exempted from extra quota reservation").
- A size retired by Azure can no longer be deployed even though the SKU list still has its row (NCv2, NCv3):
  :data:`RETIREMENTS` is MicrosoftDocs/azure-compute-docs, articles/virtual-machines/sizes/retirement/
  retired-sizes-list.md (commit 0bdc5d34816015bdd15b875af50762d68a532ff1) and the NC24rs_v3 migration guide;
  a size is refused from its date on (see :func:`retired`).
- Memory is the VM size pages' (GiB); the SKU list does not give it.

Fractional-GPU sizes (NV6/12/18ads_A10_v5: 1/6, 1/3, 1/2 of an A10) are listed with ``gpus=0`` and their fraction in
``gpu_fraction``: a whole-GPU count would be wrong for them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class VmSku:
    name: str
    vcpus: int
    memory_gb: float
    gpus: int
    family: str
    #: On the managed online SKU list (every row of :data:`SKU_LIST`; other sizes exist for compute clusters).
    managed_online: bool = True
    #: "Skip 20% Reservation": quota for the instances alone.
    skip_reserve: bool = False
    #: For sizes with part of a GPU: the fraction as the SKU list writes it ("1/6").
    gpu_fraction: str | None = None

    @property
    def retires(self) -> str | None:
        return RETIREMENTS.get(self.name.lower())

    @property
    def retired(self) -> bool:
        return retired(self.name, today())


def today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()


#: Lower-case size -> the date Azure retires it (retired-sizes-list.md; NC24rs_v3's own migration guide says
#: 2025-03-31). Sizes not on the managed list are here too, so that the emulator's VM size list leaves them out.
RETIREMENTS: dict[str, str] = {
    **dict.fromkeys(("standard_nc6s_v2", "standard_nc12s_v2", "standard_nc24s_v2"), "2023-09-06"),
    **dict.fromkeys(("standard_nc6s_v3", "standard_nc12s_v3", "standard_nc24s_v3"), "2025-09-30"),
    "standard_nc24rs_v3": "2025-03-31",
    **dict.fromkeys(("standard_nv12s_v3", "standard_nv24s_v3", "standard_nv48s_v3"), "2026-09-30"),
}


def retired(name: str, day: datetime.date) -> bool:
    date = RETIREMENTS.get(name.lower())
    return date is not None and datetime.date.fromisoformat(date) <= day


def _cpu(family: str, prefix: str, suffix: str, cores: tuple[int, ...], gib_per_core: float) -> list[VmSku]:
    return [VmSku(f"Standard_{prefix}{c}{suffix}", c, gib_per_core * c, 0, family) for c in cores]


def _sizes() -> list[VmSku]:
    """The SKU list's rows (CPU ones first, as the page orders them by family)."""
    cpu = [
        *_cpu("standardDASv4Family", "D", "as_v4", (2, 4, 8, 16, 32, 48, 64, 96), 4),
        *_cpu("standardDAv4Family", "D", "a_v4", (2, 4, 8, 16, 32, 48, 64, 96), 4),
        *(
            VmSku(f"Standard_DS{i}_v2", c, m, 0, "standardDSv2Family")
            for i, c, m in ((1, 1, 3.5), (2, 2, 7), (3, 4, 14), (4, 8, 28), (5, 16, 56))
        ),
        *_cpu("standardESv3Family", "E", "s_v3", (2, 4, 8, 16, 32, 48, 64), 8),
        *_cpu("standardFSv2Family", "F", "s_v2", (2, 4, 8, 16, 32, 48, 64, 72), 2),
        *_cpu("standardFXMDVSFamily", "FX", "mds", (4, 12, 24, 36, 48), 21),
        *_cpu("standardLASv3Family", "L", "as_v3", (8, 16, 32, 48, 64, 80), 8),
        *_cpu("standardLSv2Family", "L", "s_v2", (8, 16, 32, 48, 64, 80), 8),
        *_cpu("standardLSv3Family", "L", "s_v3", (8, 16, 32, 48, 64, 80), 8),
    ]
    a100, h100 = "standardNCADSA100v4Family", "standardNCADSH100v5Family"
    gpu = [
        VmSku("Standard_NC24ads_A100_v4", 24, 220, 1, a100, skip_reserve=True),
        VmSku("Standard_NC48ads_A100_v4", 48, 440, 2, a100, skip_reserve=True),
        VmSku("Standard_NC96ads_A100_v4", 96, 880, 4, a100, skip_reserve=True),
        VmSku("Standard_NC4as_T4_v3", 4, 28, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC8as_T4_v3", 8, 56, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC16as_T4_v3", 16, 110, 1, "standardNCASv3_T4Family"),
        VmSku("Standard_NC64as_T4_v3", 64, 440, 4, "standardNCASv3_T4Family"),
        VmSku("Standard_NC6s_v2", 6, 112, 1, "standardNCSv2Family"),
        VmSku("Standard_NC12s_v2", 12, 224, 2, "standardNCSv2Family"),
        VmSku("Standard_NC24s_v2", 24, 448, 4, "standardNCSv2Family"),
        VmSku("Standard_NC6s_v3", 6, 112, 1, "standardNCSv3Family"),
        VmSku("Standard_NC12s_v3", 12, 224, 2, "standardNCSv3Family"),
        VmSku("Standard_NC24s_v3", 24, 448, 4, "standardNCSv3Family"),
        VmSku("Standard_NC40ads_H100_v5", 40, 320, 1, h100, skip_reserve=True),
        VmSku("Standard_NC80adis_H100_v5", 80, 640, 2, h100, skip_reserve=True),
        VmSku("Standard_ND96amsr_A100_v4", 96, 1900, 8, "standardNDAMSv4_A100Family", skip_reserve=True),
        VmSku("Standard_ND96asr_v4", 96, 900, 8, "standardNDASv4_A100Family", skip_reserve=True),
        VmSku("Standard_ND40rs_v2", 40, 672, 8, "standardNDSv2Family", skip_reserve=True),
        VmSku("Standard_ND96is_H100_v5", 96, 1900, 8, "standardNDv5H100Family", skip_reserve=True),
        VmSku("Standard_ND96isr_H100_v5", 96, 1900, 8, "standardNDv5H100Family", skip_reserve=True),
        VmSku("Standard_NV6ads_A10_v5", 6, 55, 0, "standardNVADSA10v5Family", gpu_fraction="1/6"),
        VmSku("Standard_NV12ads_A10_v5", 12, 110, 0, "standardNVADSA10v5Family", gpu_fraction="1/3"),
        VmSku("Standard_NV18ads_A10_v5", 18, 220, 0, "standardNVADSA10v5Family", gpu_fraction="1/2"),
        VmSku("Standard_NV36ads_A10_v5", 36, 440, 1, "standardNVADSA10v5Family"),
        VmSku("Standard_NV36adms_A10_v5", 36, 880, 1, "standardNVADSA10v5Family"),
        VmSku("Standard_NV72ads_A10_v5", 72, 880, 2, "standardNVADSA10v5Family"),
    ]
    # Sizes that exist but are not on the managed online list: refused for managed deployments with their own
    # message (old samples and compute clusters use them).
    others = [
        VmSku("Standard_ND96isr_H200_v5", 96, 1850, 8, "standardNDISRH200V5Family", managed_online=False),
        VmSku("Standard_NV12s_v3", 12, 112, 1, "standardNVSv3Family", managed_online=False),
        VmSku("Standard_NV24s_v3", 24, 224, 2, "standardNVSv3Family", managed_online=False),
        VmSku("Standard_NV48s_v3", 48, 448, 4, "standardNVSv3Family", managed_online=False),
    ]
    return cpu + gpu + others


#: Lower-case size name -> size (Azure compares VM size names case-insensitively).
SKUS: dict[str, VmSku] = {s.name.lower(): s for s in _sizes()}
#: The managed online SKU list, as the page has it.
SKU_LIST: list[VmSku] = [s for s in SKUS.values() if s.managed_online]

#: Families whose usages the quota API lists, in a stable order.
FAMILIES: list[str] = sorted({s.family for s in SKUS.values()})

#: Default per-region vCPU limits of a pay-as-you-go subscription for the emulated families. How-to-manage-quotas:
#: "Dedicated cores per region have a default limit of 24 to 300 ... Specialized VM families like NCasT4_v3,
#: NC_A100_v4, or NDv2 series start with a default of zero cores. GPUs also default to zero cores." The emulator
#: starts the T4 and A100 families above zero so that the demos run; tests and demos set the rest.
DEFAULT_FAMILY_LIMITS: dict[str, int] = {
    **{f: 100 for f in FAMILIES if not any(s.gpus or s.gpu_fraction for s in SKUS.values() if s.family == f)},
    "standardNCASv3_T4Family": 24,
    "standardNCADSA100v4Family": 48,
}


def sku(name: str | None) -> VmSku | None:
    return SKUS.get((name or "").lower())
