"""Who holds the GPUs of a compute, and who uses it: the one place both are worked out.

Three sources, each with its blind spot, combined per owner by taking the most any of them shows:

- the resources' own status, indexed by the handlers (kopf's index follows the cluster: a resource that is gone,
  its finalizer stripped by hand even, is gone from it);
- what this process decided moments ago, before that status was written and before the backend lists it (so two
  passes, one after the other, cannot take the same GPU); kept only as long as the backend's listing may lag;
- the backend's listing of the services on the compute (someone else's services, and ours after a restart).

Owners are told apart by namespace/name here, not by uid: a service tagged before tags carried the uid must count
as its resource's own, not as a stranger's holding the same GPUs twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from .backends.base import ServiceOnCompute, owner_name
from .inputs import Holding


class GpuLedger:
    def __init__(self, listing_age: float) -> None:
        #: How stale the backend's listing may be: a decision older than that shows in it by now.
        self.listing_age = listing_age
        self._just_decided: defaultdict[str, dict[str, tuple[Holding, float]]] = defaultdict(dict)

    def remember(self, key: str, holding: Holding) -> None:
        """What a pass just decided for its resource on compute ``key``."""
        self._just_decided[key][owner_name(holding.owner)] = (holding, time.monotonic())

    def other_pods(
        self, key: str, owner: str, service: str, holdings: Iterable[Holding], listed: Iterable[ServiceOnCompute]
    ) -> tuple[int, ...]:
        """The GPUs of each replica the other users of compute ``key`` hold, per owner the most any source shows.
        ``service`` is this resource's service name (an untagged service of that name is its own, after a
        restart); ``listed`` the backend's listing of the compute."""
        me = owner_name(owner)
        held: dict[str, tuple[int, ...]] = {owner_name(h.owner): _pods(h.replicas, h.gpu_cores) for h in holdings}
        horizon = time.monotonic() - self.listing_age - 5.0
        recent = self._just_decided[key]
        for other, (holding, when) in list(recent.items()):
            if when < horizon or other not in held:
                # The listing shows it by now, or it never started; or the resource is gone from the cluster.
                del recent[other]
            else:
                held[other] = max(held[other], _pods(holding.replicas, holding.gpu_cores), key=sum)
        # One owner may list several services on a compute (azureml-v2's blue and green deployments during a
        # rollout): they all hold GPUs at once.
        listed_by: defaultdict[str, tuple[int, ...]] = defaultdict(tuple)
        for svc in listed:
            if (svc.owner is not None and owner_name(svc.owner) == me) or (svc.owner is None and svc.name == service):
                continue
            listed_by[owner_name(svc.owner) if svc.owner else f"service:{svc.name}"] += _pods(
                svc.replicas, svc.gpu_cores
            )
        for holder, pods in listed_by.items():
            held[holder] = max(held.get(holder, ()), pods, key=sum)
        held.pop(me, None)
        return tuple(cores for pods in held.values() for cores in pods)


def users(owner: str, holdings: Iterable[Holding], listed: Iterable[ServiceOnCompute]) -> set[str]:
    """Who still uses a compute, for deciding whether to delete it: the other resources that have a service on it
    and are not being deleted themselves, and the services on it not being deleted. So when every user of a
    shared compute is deleted at once, the last one out deletes it, however the deletions interleave."""
    found = {owner_name(h.owner) for h in holdings if h.uses and not h.deleting}
    found |= {owner_name(s.owner) if s.owner else f"service:{s.name}" for s in listed if not s.deleting}
    found.discard(owner_name(owner))
    return found


def _pods(replicas: int, gpu_cores: int) -> tuple[int, ...]:
    """The GPUs of each replica."""
    return (gpu_cores,) * replicas
