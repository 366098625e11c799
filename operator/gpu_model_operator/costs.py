"""What a resource runs costs per hour: an estimate, from what a pass observed and the price table. Pure functions.

What is counted, and why:

- azureml-v2 on managed instances: every instance of every deployment of the endpoint, at its instance type's
  price, as Azure shows them (a rollout's two deployments both bill while they exist), once the endpoint is the
  operator's;
- azureml-v2 on a Kubernetes compute: nothing: the attached cluster's nodes are its owner's, and bill whatever runs;
- azureml: the nodes of an AKS cluster the operator created (its tag, or the status's record of creating or taking
  it over): they bill whatever runs on them, so the whole cluster, on each resource that records it as created; a
  cluster found or attached is not counted;
- local: nothing (the operator's own machine).

Not counted anywhere: disks, networking, storage, the workspace, reservations or discounts. It is not a bill.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backends.base import ComputeState, ObservedCompute
from .backends.endpoint import EndpointSnapshot
from .models import (
    AzureMLSpec,
    AzureMLV2Spec,
    CostItem,
    CostStatus,
    GpuModelDeploymentSpec,
    KubernetesEndpointCompute,
    Ownership,
    ProvisionedCompute,
)
from .prices import PriceTable


@dataclass(frozen=True)
class Running:
    """VMs of one size that a resource runs, and what they are."""

    size: str
    count: int
    what: str


def running(
    spec: GpuModelDeploymentSpec, compute: ObservedCompute, endpoint: EndpointSnapshot | None, ownership: Ownership
) -> tuple[list[Running], str]:
    """The VMs the resource runs that bill to it, and what is counted (or why nothing is)."""
    if isinstance(spec, AzureMLV2Spec):
        if isinstance(spec.compute, KubernetesEndpointCompute):
            return [], "a Kubernetes compute's nodes are its owner's: not counted"
        if endpoint is None or not ownership.service_created:
            return [], "no endpoint of the operator's: nothing counted"
        found = [
            Running(d.instance_type or spec.compute.managed.instance_type, d.instance_count, f"deployment {d.name}")
            for d in endpoint.deployments
        ]
        return found, "the instances of the endpoint's deployments"
    if isinstance(spec, AzureMLSpec):
        if compute.state == ComputeState.ABSENT:
            return [], "no AKS cluster yet"
        # Its tag says it while it is being created; the status records it (or a take-over) once it is ready.
        ours = ownership.compute_created or compute.created_by_operator
        if not isinstance(spec.compute, ProvisionedCompute) or not ours:
            return [], "the AKS cluster was not created by the operator: its nodes are not counted"
        provision = spec.compute.provision
        nodes = len(compute.node_gpus) or provision.agent_count
        what = f"nodes of AKS cluster {spec.compute.name}"
        return [Running(provision.vm_size, nodes, what)], "the nodes of the AKS cluster the operator created"
    return [], "this machine: not priced"


def estimate(found: list[Running], counted: str, table: PriceTable) -> CostStatus:
    """The cost per hour of ``found`` at the table's prices; None as the total when a size has no price (said)."""
    items = [CostItem(size=r.size, count=r.count, unit_price=table.price(r.size), what=r.what) for r in found]
    return _priced(items, counted, table)


def repriced(cost: CostStatus | None, table: PriceTable) -> CostStatus | None:
    """The same VMs at the table's prices now: a resync that finds nothing else changed still shows new prices."""
    if cost is None:
        return None
    items = [item.model_copy(update={"unit_price": table.price(item.size)}) for item in cost.items]
    return _priced(items, cost.counted, table)


def _priced(items: list[CostItem], counted: str, table: PriceTable) -> CostStatus:
    missing = sorted({item.size for item in items if item.unit_price is None})
    total = None if missing else round(sum(item.count * (item.unit_price or 0.0) for item in items), 4)
    message = (
        f"the price table has no price for {', '.join(missing)}: add it (README, What it costs)" if missing else ""
    )
    return CostStatus(
        per_hour=total, currency=table.currency, items=items, prices=table.described, counted=counted, message=message
    )
