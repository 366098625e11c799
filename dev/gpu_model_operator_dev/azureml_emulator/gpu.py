"""GPUs per AKS agent VM size, and the scheduling AKS applies to GPU replicas, node by node.

Why: a replica asking for ``nvidia.com/gpu: N`` runs on one node with N free GPUs, or stays Pending; the
emulator must refuse what a real cluster could not schedule, with the error Kubernetes gives ("Insufficient
nvidia.com/gpu"), placing pods the way the scheduler does (one node each, least allocated first) so that
fragmentation (2-GPU replicas on nodes that other services' 1-GPU replicas half fill) shows as it does on AKS.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

ErrorBody = dict[str, Any]

#: Azure's GPU VM sizes an AKS cluster for inference is built from: (GPUs, vCPUs) per VM, lower-case keys.
#: From the Azure VM size pages (NC, NCv2, NCv3, NCasT4_v3, NC A100 v4, NC H100 v5, ND, NDv2, ND A100 v4,
#: ND H100 v5, ND H200 v5, NV, NVv3, NVadsA10_v5) and the Dv2 general-purpose page.
VM_SIZES: dict[str, tuple[int, int]] = {
    "standard_nc6": (1, 6),
    "standard_nc12": (2, 12),
    "standard_nc24": (4, 24),
    "standard_nc24r": (4, 24),
    "standard_nc6s_v2": (1, 6),
    "standard_nc12s_v2": (2, 12),
    "standard_nc24s_v2": (4, 24),
    "standard_nc24rs_v2": (4, 24),
    "standard_nc6s_v3": (1, 6),
    "standard_nc12s_v3": (2, 12),
    "standard_nc24s_v3": (4, 24),
    "standard_nc24rs_v3": (4, 24),
    "standard_nc4as_t4_v3": (1, 4),
    "standard_nc8as_t4_v3": (1, 8),
    "standard_nc16as_t4_v3": (1, 16),
    "standard_nc64as_t4_v3": (4, 64),
    "standard_nc24ads_a100_v4": (1, 24),
    "standard_nc48ads_a100_v4": (2, 48),
    "standard_nc96ads_a100_v4": (4, 96),
    "standard_nc40ads_h100_v5": (1, 40),
    "standard_nc80adis_h100_v5": (2, 80),
    "standard_nd6s": (1, 6),
    "standard_nd12s": (2, 12),
    "standard_nd24s": (4, 24),
    "standard_nd24rs": (4, 24),
    "standard_nd40rs_v2": (8, 40),
    "standard_nd96asr_v4": (8, 96),
    "standard_nd96amsr_a100_v4": (8, 96),
    "standard_nd96is_h100_v5": (8, 96),
    "standard_nd96isr_h100_v5": (8, 96),
    "standard_nd96isr_h200_v5": (8, 96),
    "standard_nv6": (1, 6),
    "standard_nv12": (2, 12),
    "standard_nv24": (4, 24),
    "standard_nv12s_v3": (1, 12),
    "standard_nv24s_v3": (2, 24),
    "standard_nv48s_v3": (4, 48),
    "standard_nv36ads_a10_v5": (1, 36),
    "standard_nv36adms_a10_v5": (1, 36),
    "standard_nv72ads_a10_v5": (2, 72),
    "standard_d3_v2": (0, 4),
    "standard_d4_v2": (0, 8),
}
#: GPUs per VM (kept for readers of the old name).
GPUS_PER_VM_SIZE: dict[str, int] = {name: gpus for name, (gpus, _) in VM_SIZES.items()}
#: Sizes Azure retires, with the date: from that date on no new VM of them can be created. From Azure's retired
#: sizes list (MicrosoftDocs/azure-compute-docs, articles/virtual-machines/sizes/retirement/retired-sizes-list.md,
#: commit 0bdc5d34816015bdd15b875af50762d68a532ff1) and the series' migration guides: the NC, NCv2, ND and NV series
#: on 2023-09-06, the NCv3 sizes NC6s/NC12s/NC24s_v3 on 2025-09-30, NC24rs_v3 on 2025-03-31 (its migration guide),
#: NVv3 on 2026-09-30 ("announced 04/15/26, planned retirement 09/30/26").
RETIRED: dict[str, str] = {
    **dict.fromkeys(
        (
            "standard_nc6", "standard_nc12", "standard_nc24", "standard_nc24r", "standard_nc6s_v2",
            "standard_nc12s_v2", "standard_nc24s_v2", "standard_nc24rs_v2", "standard_nd6s", "standard_nd12s",
            "standard_nd24s", "standard_nd24rs", "standard_nv6", "standard_nv12", "standard_nv24",
        ),
        "2023-09-06",
    ),
    **dict.fromkeys(("standard_nc6s_v3", "standard_nc12s_v3", "standard_nc24s_v3"), "2025-09-30"),
    "standard_nc24rs_v3": "2025-03-31",
    **dict.fromkeys(("standard_nv12s_v3", "standard_nv24s_v3", "standard_nv48s_v3"), "2026-09-30"),
}  # fmt: skip


def retired_on(vm_size: str) -> str | None:
    """The retirement date of ``vm_size`` if it has passed (UTC today), else None: an announced retirement takes
    effect on its date, not before."""
    date = RETIRED.get(vm_size.lower())
    today = datetime.datetime.now(datetime.timezone.utc).date()
    return date if date is not None and datetime.date.fromisoformat(date) <= today else None


#: The vCPUs an AKS cluster for Azure ML inference needs over all its nodes, by cluster purpose: production at least
#: 12, dev/test at least 2 (see :mod:`.aks` for the source and the nodes each purpose needs).
MIN_VCPUS = {"fastprod": 12, "devtest": 2}


def vcpus_per_vm(vm_size: str | None) -> int | None:
    entry = VM_SIZES.get((vm_size or "").lower())
    return entry[1] if entry else None


def gpus_per_vm(vm_size: str | None) -> int:
    """GPUs of one VM of this size; 0 for CPU-only or unknown sizes."""
    return VM_SIZES.get((vm_size or "").lower(), (0, 0))[0]


def least_allocated(free: list[int], pods: list[int]) -> list[int | None]:
    """Place pods asking for ``pods[i]`` GPUs on nodes with ``free[n]`` GPUs, as the Kubernetes scheduler does:
    a pod fits only on one node with enough free ``nvidia.com/gpu`` (NodeResourcesFit's filter), and among those
    the least allocated node wins (NodeResourcesFit's default scoring strategy, LeastAllocated; ties go to the
    first node). ``free`` is updated; returns each pod's node, or None for a pod that stays Pending."""
    placed: list[int | None] = []
    for gpus in pods:
        fits = [n for n, f in enumerate(free) if f >= gpus]
        node = max(fits, key=lambda n: (free[n], -n)) if fits else None
        if node is not None:
            free[node] -= gpus
        placed.append(node)
    return placed


#: Kubernetes Deployments roll out with RollingUpdate's defaults, maxSurge 25% (rounded up) and maxUnavailable
#: 25% (rounded down) ("Deployments", Kubernetes documentation): with fewer than 4 replicas none of the old pods
#: may stop before a new one is ready, so the new pods need GPUs of their own while the old ones hold theirs.
def rollout_surge(replicas: int) -> int:
    """New pods that must be scheduled beside all the old ones for a rolling update of ``replicas`` to start;
    0 when old pods may be stopped first (maxUnavailable >= 1)."""
    return 0 if replicas // 4 >= 1 else max(1, -(-replicas // 4))


@dataclass(frozen=True)
class Cluster:
    """An AKS compute's GPU nodes and what runs on them, in the order the pods were created."""

    compute_name: str
    vm_size: str | None
    agent_count: int
    #: GPUs of each pod already scheduled there (other services' replicas), oldest first.
    running: tuple[int, ...]

    def free_after_running(self) -> list[int]:
        free = [gpus_per_vm(self.vm_size)] * self.agent_count
        least_allocated(free, list(self.running))  # as they were scheduled; what did not fit holds nothing
        return free


def unschedulable_error(cluster: Cluster, replicas: int, gpus: int, *, surge_beside: int = 0) -> ErrorBody | None:
    """The error Azure ML reports when a deployment's replicas cannot all be scheduled (AKS keeps them Pending,
    the deployment times out and fails), or None when they fit. ``surge_beside``: old replicas of the same
    service that still hold their GPUs while the rollout's first new pods are placed."""
    if gpus <= 0:
        return None
    free = cluster.free_after_running()
    least_allocated(free, [gpus] * surge_beside)
    wanted = rollout_surge(surge_beside) if surge_beside else replicas
    pending = sum(node is None for node in least_allocated(free, [gpus] * wanted))
    if pending == 0:
        return None
    lacking = sum(f < gpus for f in free)
    scheduler = f"0/{cluster.agent_count} nodes are available: {lacking} Insufficient nvidia.com/gpu."
    what = "the rolling update's new replica(s)" if surge_beside else f"{replicas} replica(s)"
    detail = (
        f"{pending} of {what} x {gpus} GPU could not be placed on one node each; compute "
        f"'{cluster.compute_name}' has {cluster.agent_count} x {cluster.vm_size} with {gpus_per_vm(cluster.vm_size)} "
        f"GPU(s) per node, {sum(cluster.running)} held by other pods."
    )
    message = (
        "Couldn't Schedule because the kubernetes cluster didn't have available resources after trying "
        f"for 00:05:00. {scheduler} {detail}"
    )
    return {
        "code": "DeploymentFailed",
        "statusCode": 400,
        "message": f"Deployment Failed. InsufficientGPU: {scheduler}",
        "details": [{"code": "CouldNotScheduleReplicas", "message": message}],
    }
