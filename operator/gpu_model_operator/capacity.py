"""How many replicas can actually be scheduled: the GPU cap, node by node. Pure functions.

A replica asks for ``gpuCores`` GPUs and gets them on one node, or stays Pending; a GPU is never shared. So the
cap is not ``floor(free GPUs / gpuCores)`` over the whole cluster: two nodes with one free GPU each run no
two-GPU replica. The other services' replicas are placed first, in the order the backend lists them, the way
the Kubernetes scheduler places pods (on a node with room, the least allocated first: NodeResourcesFit's
default scoring), which is also how they fragment the nodes; then ours, one by one, until one does not fit.

The placement of the others is an estimate: the operator sees how many replicas each service has, not on which
node each runs. Where the real cluster differs, the backend refuses the deployment or the scale and the operator
reports it (ServiceFailed, ScaleFailed) instead of retrying it at every poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def least_allocated(free: list[int], pods: Sequence[int]) -> int:
    """Place pods needing ``pods[i]`` GPUs on nodes with ``free[n]`` free GPUs (updated in place): each on the
    node with the most free GPUs that fits it. Returns how many were placed, in order, until the first that did
    not fit (the ones after it are not placed either: replicas of one service are alike)."""
    for placed, gpus in enumerate(pods):
        fits = [n for n, f in enumerate(free) if f >= gpus]
        if not fits:
            return placed
        node = max(fits, key=lambda n: (free[n], -n))
        free[node] -= gpus
    return len(pods)


def place_others(free: list[int], pods: Sequence[int]) -> None:
    """The other services' replicas, each where the scheduler would put it; one that fits nowhere stays Pending
    and holds nothing (it does not stop the next from being placed: they may be smaller)."""
    for gpus in pods:
        least_allocated(free, [gpus])


def rollout_surge(replicas: int) -> int:
    """Replicas a rolling update must start beside all the old ones before any old one may stop: Kubernetes'
    RollingUpdate defaults are maxSurge 25% (rounded up) and maxUnavailable 25% (rounded down), so under 4
    replicas no old one stops first; 0 from 4 replicas on."""
    return 0 if replicas // 4 >= 1 else max(1, -(-replicas // 4))


@dataclass(frozen=True)
class Capacity:
    effective: int
    cpu_fallback: bool
    message: str  # empty when nothing is capped


def capped_replicas(
    requested: int,
    gpu_cores: int,
    node_gpus: Sequence[int],
    other_pods: Sequence[int],
    *,
    cpu_only: bool,
    allow_cpu: bool,
) -> Capacity:
    """Replicas never share a GPU and never span nodes: effective = how many of ``requested`` replicas of
    ``gpu_cores`` GPUs fit on the nodes after the other services' replicas (``other_pods``: GPUs of each)."""
    if cpu_only:
        if allow_cpu:
            return Capacity(requested, True, "")
        return Capacity(
            0,
            False,
            "no GPU found on this machine; set spec.local.allowCpuFallback: true to serve on CPU",
        )
    largest = max(node_gpus, default=0)
    if gpu_cores > largest:
        return Capacity(
            0,
            False,
            f"each replica needs {gpu_cores} GPUs on one node, and no node of the compute has more than {largest}",
        )
    free = list(node_gpus)
    place_others(free, other_pods)
    fits = least_allocated(free, [gpu_cores] * requested)
    if fits == requested:
        return Capacity(requested, False, "")
    return Capacity(fits, False, _capped_message(requested, gpu_cores, node_gpus, other_pods, fits))


def _capped_message(requested: int, gpu_cores: int, node_gpus: Sequence[int], others: Sequence[int], fits: int) -> str:
    nodes = len(node_gpus)
    sizes = sorted(set(node_gpus))
    per_node = f"{sizes[0]} GPU(s)" if len(sizes) == 1 else f"{'/'.join(map(str, sizes))} GPUs"
    held = f", {sum(others)} held by other services" if others else ""
    return (
        f"{requested} replicas requested but the compute has {sum(node_gpus)} GPUs ({nodes} node(s) of "
        f"{per_node}{held}); replicas of {gpu_cores} GPU(s), each on one node, allow {fits}"
    )


def rollout_fits(
    replicas: int, gpu_cores: int, node_gpus: Sequence[int], other_pods: Sequence[int], running: int
) -> bool:
    """Whether a rolling update of ``running`` replicas can start: its first new replicas must fit beside every
    old one (and every other service's) when fewer than 4 run (see ``rollout_surge``)."""
    surge = rollout_surge(running) if running else 0
    if not surge:
        return True
    free = list(node_gpus)
    place_others(free, other_pods)
    least_allocated(free, [gpu_cores] * running)
    return least_allocated(free, [gpu_cores] * min(surge, replicas)) == min(surge, replicas)
