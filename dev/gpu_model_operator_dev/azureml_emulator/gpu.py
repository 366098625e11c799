"""GPUs per AKS agent VM size, and the scheduling check AKS applies to GPU replicas.

Why: the operator caps replicas at the GPUs of the compute target; the emulator must refuse what a real
cluster could not schedule, with the error Kubernetes gives ("Insufficient nvidia.com/gpu"), so tests see the
same failure the operator will meet on Azure.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "standard_nd40rs_v2": (8, 40),
    "standard_nd96asr_v4": (8, 96),
    "standard_nd96amsr_a100_v4": (8, 96),
    "standard_nd96isr_h100_v5": (8, 96),
    "standard_nd96isr_h200_v5": (8, 96),
    "standard_nv6": (1, 6),
    "standard_nv12": (2, 12),
    "standard_nv24": (4, 24),
    "standard_nv12s_v3": (1, 12),
    "standard_nv36ads_a10_v5": (1, 36),
    "standard_nv72ads_a10_v5": (2, 72),
    "standard_d3_v2": (0, 4),
    "standard_d4_v2": (0, 8),
}
#: GPUs per VM (kept for readers of the old name).
GPUS_PER_VM_SIZE: dict[str, int] = {name: gpus for name, (gpus, _) in VM_SIZES.items()}
#: Sizes Azure has retired, with the date: no new VM of them can be created. From Azure's migration guides: the
#: NC, NCv2, ND and NV series on 2023-09-06 ("NV series retirement", "Migrate your NC/NCv2/ND series"), the NCv3
#: sizes NC6s/NC12s/NC24s_v3 on 2025-09-30 ("NCv3 and NC6s NC12s NC24s retirement") and NC24rs_v3 on 2025-03-31.
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
}  # fmt: skip
#: The vCPUs an AKS cluster for Azure ML inference needs over all its nodes, by cluster purpose. From "Create and
#: attach an Azure Kubernetes Service cluster" (v1): production clusters need at least 12 virtual CPUs, dev/test
#: clusters at least 2; ARM refuses the compute PUT otherwise.
MIN_VCPUS = {"fastprod": 12, "devtest": 2}


def vcpus_per_vm(vm_size: str | None) -> int | None:
    entry = VM_SIZES.get((vm_size or "").lower())
    return entry[1] if entry else None


def provisioning_refusal(vm_size: str, agent_count: int, cluster_purpose: str | None) -> str | None:
    """Why ARM refuses to create this AKS compute, or None: a retired size, or too few vCPUs for the purpose."""
    retired = RETIRED.get(vm_size.lower())
    if retired:
        return (
            f"The VM size '{vm_size}' is not available: it was retired on {retired}. "
            "Choose a different VM size for the agent pool."
        )
    vcpus = vcpus_per_vm(vm_size)
    need = MIN_VCPUS.get((cluster_purpose or "FastProd").lower(), 0)
    if vcpus is not None and vcpus * agent_count < need:
        return (
            f"An AKS cluster with cluster purpose '{cluster_purpose or 'FastProd'}' must have at least {need} "
            f"virtual CPUs in total; {agent_count} x {vm_size} provide {vcpus * agent_count}."
        )
    return None


def gpus_per_vm(vm_size: str | None) -> int:
    """GPUs of one VM of this size; 0 for CPU-only or unknown sizes."""
    return VM_SIZES.get((vm_size or "").lower(), (0, 0))[0]


@dataclass(frozen=True)
class GpuRequest:
    """What a deployment or scale asks of a cluster."""

    compute_name: str
    vm_size: str | None
    agent_count: int
    replicas: int
    gpu_per_replica: int
    #: GPUs already held by the other services on the same compute.
    held_by_others: int

    @property
    def cluster_gpus(self) -> int:
        return gpus_per_vm(self.vm_size) * self.agent_count

    @property
    def requested(self) -> int:
        return self.replicas * self.gpu_per_replica

    @property
    def free(self) -> int:
        return max(self.cluster_gpus - self.held_by_others, 0)


def insufficient_gpu_error(req: GpuRequest) -> dict[str, object] | None:
    """The error body Azure ML reports when replicas cannot be scheduled for lack of GPUs, or None if they fit."""
    if req.gpu_per_replica <= 0 or req.requested <= req.free:
        return None
    per_node = gpus_per_vm(req.vm_size)
    nodes = req.agent_count
    scheduler = (
        f"0/{nodes} nodes are available: {nodes} Insufficient nvidia.com/gpu."
        if per_node < req.gpu_per_replica or req.free == 0
        else f"{req.free} of {req.requested} GPU(s) available: Insufficient nvidia.com/gpu."
    )
    detail = (
        f"Requested {req.replicas} replica(s) x {req.gpu_per_replica} GPU = {req.requested} GPU(s); "
        f"compute '{req.compute_name}' has {req.cluster_gpus} GPU(s) ({nodes} x {req.vm_size} with "
        f"{per_node} GPU each), {req.held_by_others} held by other services, {req.free} free."
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
