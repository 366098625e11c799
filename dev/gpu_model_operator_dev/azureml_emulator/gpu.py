"""GPUs per AKS agent VM size, and the scheduling check AKS applies to GPU replicas.

Why: the operator caps replicas at the GPUs of the compute target; the emulator must refuse what a real
cluster could not schedule, with the error Kubernetes gives ("Insufficient nvidia.com/gpu"), so tests see the
same failure the operator will meet on Azure.
"""

from __future__ import annotations

from dataclasses import dataclass

#: GPUs per VM for the Azure GPU sizes an AKS cluster for inference is usually built from (lower-case keys).
GPUS_PER_VM_SIZE: dict[str, int] = {
    "standard_nc6": 1,
    "standard_nc12": 2,
    "standard_nc24": 4,
    "standard_nc24r": 4,
    "standard_nc6s_v2": 1,
    "standard_nc12s_v2": 2,
    "standard_nc24s_v2": 4,
    "standard_nc6s_v3": 1,
    "standard_nc12s_v3": 2,
    "standard_nc24s_v3": 4,
    "standard_nc4as_t4_v3": 1,
    "standard_nc8as_t4_v3": 1,
    "standard_nc16as_t4_v3": 1,
    "standard_nc64as_t4_v3": 4,
    "standard_nc24ads_a100_v4": 1,
    "standard_nc48ads_a100_v4": 2,
    "standard_nc96ads_a100_v4": 4,
    "standard_nd6s": 1,
    "standard_nd12s": 2,
    "standard_nd24s": 4,
    "standard_nd40rs_v2": 8,
    "standard_nd96asr_v4": 8,
    "standard_nv6": 1,
    "standard_nv12": 2,
    "standard_nv24": 4,
}


def gpus_per_vm(vm_size: str | None) -> int:
    """GPUs of one VM of this size; 0 for CPU-only or unknown sizes."""
    return GPUS_PER_VM_SIZE.get((vm_size or "").lower(), 0)


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
