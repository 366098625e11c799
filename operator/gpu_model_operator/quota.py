"""A managed online endpoint's quota as Azure charges it, and the GPUs of a Kubernetes compute's instances. Pure
arithmetic, apart from the rollout's decisions (:mod:`.rollout`) that use it.

Azure ML holds back a share beside a managed deployment's instances for upgrades (20% for most sizes: ten instances
need quota for twelve; learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Azure Machine Learning
online endpoints and batch endpoints"; Azure's refusal of one 4-vCPU instance asks for 8 vCPUs). The share is
per size (:class:`~.backends.endpoint.QuotaReading` carries it), read by the backend from its size table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .backends.endpoint import EndpointSnapshot, QuotaReading


def charge(instances: int, vcpus: int, reserve: float) -> int:
    """vCPUs of a family's quota that ``instances`` managed instances hold, with Azure's upgrade reserve."""
    return math.ceil(instances * (1 + reserve) - 1e-9) * vcpus if instances > 0 else 0


def instances_within(free_vcpus: int, vcpus: int, reserve: float) -> int:
    """The most managed instances of ``vcpus`` each whose charge fits in ``free_vcpus``."""
    if vcpus <= 0 or free_vcpus <= 0:
        return 0
    n = int(free_vcpus // (vcpus * (1 + reserve))) + 1
    while n > 0 and charge(n, vcpus, reserve) > free_vcpus:
        n -= 1
    return n


def own_charge(endpoint: EndpointSnapshot | None, quota: QuotaReading) -> int:
    """vCPUs of the family the endpoint's own deployments hold: all but those deleting or failed to start (a failed
    update of a serving deployment still holds its instances). Azure's usage counts them with everyone else's."""
    if endpoint is None:
        return 0
    total = 0
    for d in endpoint.deployments:
        holds = not d.failed or endpoint.share(d.name) > 0
        same_family = (d.instance_type or quota.instance_type).lower() == quota.instance_type.lower()
        if holds and d.state.lower() != "deleting" and same_family:
            total += charge(d.instance_count, quota.vcpus, quota.reserve)
    return total


def managed_instances(quota: QuotaReading, endpoint: EndpointSnapshot | None) -> tuple[int, str]:
    """Instances this resource may run in all: the family's limit less what everything else holds (Azure's usage
    less this endpoint's own share), and the cap in words."""
    others = max(0, quota.used - own_charge(endpoint, quota))
    instances = instances_within(quota.limit - others, quota.vcpus, quota.reserve)
    reserve = f", plus Azure's {quota.reserve:.0%} reserve" if quota.reserve else ""
    message = (
        f"quota {quota.family}: {quota.limit} vCPUs, {others} held elsewhere; {instances} x {quota.instance_type} fit "
        f"({quota.vcpus} vCPUs each{reserve})"
    )
    return instances, message


def managed_room(quota: QuotaReading, live: int = 0, shrunk_to: int | None = None) -> int:
    """Instances a new deployment can start with beside everything that holds the family's quota now; with
    ``shrunk_to``, after the live deployment of ``live`` instances is scaled down to that many first. The reserve
    is charged per deployment, so halving one frees less than half of what it holds."""
    freed = 0
    if shrunk_to is not None:
        freed = charge(live, quota.vcpus, quota.reserve) - charge(shrunk_to, quota.vcpus, quota.reserve)
    return instances_within(quota.limit - quota.used + freed, quota.vcpus, quota.reserve)


def kubernetes_gpus(node_gpus: Sequence[int], gpus_per_instance: int) -> int:
    """GPUs instances can use: per node, whole instances only (an instance's GPUs are on one node)."""
    if gpus_per_instance <= 0:
        return 0
    return sum(n // gpus_per_instance * gpus_per_instance for n in node_gpus)
