"""Who holds the GPUs of a compute, and who uses it: the one place both are worked out.

Three sources, each with its blind spot, combined per owner by taking the most any of them shows:

- the resources' own status, indexed by the handlers (kopf's index follows the cluster: a resource that is gone,
  its finalizer stripped by hand even, is gone from it);
- what this process decided moments ago, before that status was written and before the backend lists it (so two
  passes, one after the other, cannot take the same GPU); kept only as long as the backend's listing may lag;
- the backend's listing of the services on the compute (someone else's services, and ours after a restart).

Owners are told apart by their full tag (namespace/name/uid): a resource of the same name with another uid is
someone else. A service tagged before tags carried the uid counts under the resource of that namespace/name, so
its GPUs are not held twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from .backends.base import ServiceOnCompute, is_legacy_tag_of, owner_name
from .inputs import Holding


class GpuLedger:
    def __init__(self, listing_age: float) -> None:
        #: How stale the backend's listing may be: a decision older than that shows in it by now.
        self.listing_age = listing_age
        self._just_decided: defaultdict[str, dict[str, tuple[Holding, float]]] = defaultdict(dict)
        #: The last listing of each scope (monotonic time, services), and the locks that make the resources polling
        #: together share one listing instead of each making their own.
        self._listings: dict[str, tuple[float, list[ServiceOnCompute]]] = {}
        self._listing_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def listed(
        self,
        scope: str | None,
        compute: str,
        fetch: Callable[[], Awaitable[list[ServiceOnCompute]]],
        *,
        fresh: bool = False,
    ) -> list[ServiceOnCompute]:
        """The services on ``compute`` from the backend's listing of ``scope`` (azureml lists a whole workspace),
        shared by every resource of the scope for ``listing_age`` seconds: N deployments converging together cost
        one listing per poll, not N listings of N services. Deciding to delete a compute asks ``fresh``. The
        operator's own deployments are counted from its own records too (``other_pods``), so an old listing
        cannot hand out a GPU twice. A ``scope`` of None shares nothing: it is read each time."""
        if scope is None:
            return [s for s in await fetch() if s.compute in ("", compute.lower())]
        async with self._listing_locks[scope]:
            taken, found = self._listings.get(scope, (-float("inf"), []))
            if fresh or time.monotonic() - taken > self.listing_age:
                found = await fetch()
                self._listings[scope] = (time.monotonic(), found)
        return [s for s in found if s.compute in ("", compute.lower())]

    def remember(self, key: str, holding: Holding) -> None:
        """What a pass just decided for its resource on compute ``key``."""
        self._just_decided[key][holding.owner] = (holding, time.monotonic())

    def other_pods(
        self, key: str, owner: str, service: str, holdings: Iterable[Holding], listed: Iterable[ServiceOnCompute]
    ) -> tuple[int, ...]:
        """The GPUs of each replica the other users of compute ``key`` hold, per owner the most any source shows.
        ``service`` is this resource's service name (an untagged service of that name is its own, after a
        restart); ``listed`` the backend's listing of the compute."""
        holdings = list(holdings)
        held: dict[str, tuple[int, ...]] = {h.owner: _pods(h.replicas, h.gpu_cores) for h in holdings}
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
        canon = _by_name(holdings)
        listed_by: defaultdict[str, tuple[int, ...]] = defaultdict(tuple)
        for svc in listed:
            if _is_mine(svc, owner, service):
                continue
            listed_by[_holder(svc, canon)] += _pods(svc.replicas, svc.gpu_cores)
        for holder, pods in listed_by.items():
            held[holder] = max(held.get(holder, ()), pods, key=sum)
        held.pop(owner, None)
        return tuple(cores for pods in held.values() for cores in pods)


def users(owner: str, holdings: Iterable[Holding], listed: Iterable[ServiceOnCompute]) -> set[str]:
    """Who still uses a compute, for deciding whether to delete it: the other resources that have a service on it
    and are not being deleted themselves, and the services on it not being deleted. So when every user of a
    shared compute is deleted at once, the last one out deletes it, however the deletions interleave."""
    holdings = list(holdings)
    canon = _by_name(holdings)
    found = {h.owner for h in holdings if h.uses and not h.deleting}
    found |= {_holder(s, canon) for s in listed if not s.deleting and not is_legacy_tag_of(s.owner, owner)}
    found.discard(owner)
    return found


def _is_mine(svc: ServiceOnCompute, owner: str, service: str) -> bool:
    """This resource's own service: its tag, or its name with no tag or a tag from before tags carried the uid.
    A resource of this namespace and name with another uid (an earlier one, another cluster's) is someone else."""
    if svc.owner == owner:
        return True
    return svc.name == service and (svc.owner is None or is_legacy_tag_of(svc.owner, owner))


def _by_name(holdings: Iterable[Holding]) -> dict[str, str]:
    """namespace/name -> the owner tag of each resource that holds GPUs here, to count a service tagged before tags
    carried the uid under its resource, not as a second holder of the same GPUs."""
    return {owner_name(h.owner): h.owner for h in holdings}


def _holder(svc: ServiceOnCompute, by_name: dict[str, str]) -> str:
    """Whose a listed service's GPUs are: its owner tag (one from before uids, the resource's of that name), or
    the service's own when it has no tag."""
    if svc.owner is None:
        return f"service:{svc.name}"
    return by_name.get(svc.owner, svc.owner) if svc.owner.count("/") == 1 else svc.owner


def _pods(replicas: int, gpu_cores: int) -> tuple[int, ...]:
    """The GPUs of each replica."""
    return (gpu_cores,) * replicas
