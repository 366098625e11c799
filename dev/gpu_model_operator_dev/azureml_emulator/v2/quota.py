"""Managed online deployments' quota: what a deployment holds, what each scope (subscription, workspace, compute) has
used of its VM family's vCPUs and may use, the refusal of a deployment that does not fit, and the usage rows.

Sources:

- What a deployment holds: ``ceil(1.2 * instances) * vCPUs``, or ``instances * vCPUs`` for the SKU list's "Skip 20%
  Reservation" sizes (includes/quota-allocation-online-deployment.md; :mod:`.skus`).
- Scopes: the usages API lists, for one VM family, a subscription-wide row, one per workspace and one per compute,
  all with the same name, told apart by ``id`` and ``type`` (the specification's example for Usages_List,
  preview/2023-08-01-preview/examples/Usage/list.json at commit f5ec61419fff5b65e7a5f6a38782172d07b14ec4; the rows
  were added by Azure/azure-rest-api-specs#6055, "usages by VM family, Workspace & Compute"). The example's rows come
  subscription first, then the workspaces', then the computes'; the emulator keeps that order.
- Workspace quota: "By default, all workspaces share the same quota as the subscription-level quota for VM families.
  However, you can set a maximum quota for individual VM families on workspaces ... You can't set a negative value or
  a value higher than the subscription-level quota." (how-to-manage-quotas, "Workspace-level quotas"). Managed
  online deployments draw on the same VM family quota ("shared between training clusters, compute instances, and
  managed online endpoint deployments"); whether a workspace's limit also binds them the documentation does not say:
  the emulator applies it, as it applies to everything else in the workspace, and says so in its refusal.
- Compute-scoped rows are compute clusters' (AmlCompute) use; the emulator has none of its own, tests seed them
  (``V2Config.compute_usages``) to stand for a training cluster holding the same family's vCPUs.
- The rows' ``name.value``: the emulator writes the family as the VM size list names it (``standardNCASv3_T4Family``)
  and the label in ``localizedValue``; the specification's example writes the label in both, the documentation does
  not say which the service answers today.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..resources import WsKey
from .skus import FAMILIES, VmSku, sku
from .store_errors import PROVIDER, inferencing_client_error

if TYPE_CHECKING:
    from .model import OnlineDeployment
    from .store import V2Store

SKU_LIST_URL = "https://learn.microsoft.com/azure/machine-learning/reference-managed-online-endpoints-vm-sku-list"


def charge(size: VmSku, instances: int, reserve: float) -> int:
    """vCPUs a managed deployment of ``instances`` holds (see the module's sources). A single Standard_DS3_v2 needs
    8 ("Additional needed: 8" in MicrosoftLearning/mslearn-azure-ml#30), ten need quota for twelve, ten
    NC24ads_A100_v4 need 240 vCPUs, not 288."""
    if size.skip_reserve:
        return instances * size.vcpus
    return math.ceil(instances * (1 + reserve) - 1e-9) * size.vcpus


class Quota:
    """The quota reads and checks of one :class:`.store.V2Store` (called with the state's lock held)."""

    def __init__(self, store: V2Store) -> None:
        self._v2 = store

    def _location(self, ws: WsKey) -> str:
        return self._v2.workspace_location(ws).lower()

    def used(self, subscription: str, location: str, family: str, ws: WsKey | None, exclude: Any = None) -> int:
        """vCPUs of ``family`` held in ``location``: by the subscription's managed deployments and compute clusters,
        or (``ws``) by that workspace's."""
        total = 0
        for (dws, _), deployments in self._v2.deployments.items():
            if dws[0] != subscription.lower() or self._location(dws) != location.lower() or (ws and dws != ws):
                continue
            for d in deployments.values():
                size = sku(d.instance_type)
                if d is exclude or d.compute_type.lower() != "managed" or size is None or size.family != family:
                    continue
                if d.serving or d.state in ("Creating", "Updating"):
                    total += charge(size, d.instance_count, self._v2.config.quota_reserve)
        for row in self._cluster_rows(subscription, location):
            if row["family"] == family and (ws is None or row["ws"] == ws):
                total += int(row["vcpus"])
        return total

    def limits(self, ws: WsKey, family: str) -> tuple[int, int]:
        """(the subscription's limit, the workspace's) for ``family``; the workspace's defaults to, and never
        exceeds, the subscription's."""
        config = self._v2.config
        subscription = int(config.family_limits.get(family, 0))
        workspace = config.workspace_limits.get("/".join(ws), {}).get(family)
        return subscription, min(subscription, int(workspace)) if workspace is not None else subscription

    def check(self, ws: WsKey, props: dict[str, Any], instances: int, existing: OnlineDeployment | None) -> None:
        """Refuse a managed deployment whose instance type is not on the SKU list, is retired, or whose family's
        quota (the subscription's, or its workspace's) cannot hold it: Azure's synchronous validation answers."""
        name = str(props.get("instanceType") or "")
        size = sku(name)
        if not name:
            raise inferencing_client_error("InstanceType", "The instance type of a managed deployment is required.")
        if size is None or not size.managed_online:
            raise inferencing_client_error(
                "VmSize",
                f"The instance type {name} is not supported for managed online endpoints. See the supported SKU "
                f"list: {SKU_LIST_URL}",
            )
        if size.retired:  # the wording is the emulator's; Azure's own is not documented
            raise inferencing_client_error(
                "VmSize",
                f"The instance type {size.name} was retired on {size.retires} and can no longer be deployed. Choose "
                f"a current size from {SKU_LIST_URL}",
            )
        needed = charge(size, instances, self._v2.config.quota_reserve)
        location = self._location(ws)
        sub_limit, ws_limit = self.limits(ws, size.family)
        sub_used = self.used(ws[0], location, size.family, None, existing)
        ws_used = self.used(ws[0], location, size.family, ws, existing)
        subscription = self._v2.subscription_name(ws)
        if sub_used + needed > sub_limit:
            where, used, limit = f"SubscriptionId {subscription}", sub_used, sub_limit
        elif ws_used + needed > ws_limit:  # the workspace's wording is the emulator's
            where, used, limit = f"workspace {ws[2]} of SubscriptionId {subscription}", ws_used, ws_limit
        else:
            return
        raise inferencing_client_error(
            "VmSize",
            f"Not enough quota available for {size.name} in {where}. Current usage/limit: {used}/{limit}. Additional "
            "needed: "
            f"{needed} Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-outofquota",
        )

    def _cluster_rows(self, subscription: str, location: str) -> list[dict[str, Any]]:
        """The seeded compute clusters' use (``V2Config.compute_usages``) in this subscription and region."""
        found = []
        for item in self._v2.config.compute_usages:
            ws: WsKey = tuple(str(p).lower() for p in str(item["workspace"]).split("/"))  # type: ignore[assignment]
            if ws[0] == subscription.lower() and self._location(ws) == location.lower():
                found.append({**item, "ws": ws})
        return found

    def rows(self, subscription: str, location: str) -> list[dict[str, Any]]:
        """The usages API's rows: the regional total, then per family the subscription's row, each workspace's in
        the region and each compute cluster's (see the module's sources)."""
        sub, loc = subscription, location.lower()
        workspaces = [ws for ws in self._v2.workspaces() if ws[0] == sub.lower() and self._location(ws) == loc]
        family_rows = []
        for family in FAMILIES:
            sub_limit = int(self._v2.config.family_limits.get(family, 0))
            family_rows.append(_row(f"/subscriptions/{sub}/usages/{family}", "vmFamily", family,
                                    self.used(sub, loc, family, None), sub_limit, loc))  # fmt: skip
            for ws in workspaces:
                ws_id = self._v2.workspace_arm_id(ws)
                family_rows.append(_row(f"{ws_id}/usages/{family}", "workspaces", family,
                                        self.used(sub, loc, family, ws), self.limits(ws, family)[1], loc))  # fmt: skip
            for cluster in self._cluster_rows(sub, loc):
                if cluster["family"] == family:
                    ws_id = self._v2.workspace_arm_id(cluster["ws"])
                    family_rows.append(_row(f"{ws_id}/computes/{cluster['compute']}/usages/{family}",
                                            "workspaces/computes", family, int(cluster["vcpus"]),
                                            self.limits(cluster["ws"], family)[1], loc))  # fmt: skip
        subscription_rows = [r for r in family_rows if r["type"].endswith("/vmFamily/usages")]
        total = {
            "id": f"/subscriptions/{sub}/usages",
            "amlWorkspaceLocation": loc,
            "type": f"{PROVIDER}/dedicatedCores/usages",
            "unit": "Count",
            "currentValue": sum(int(r["currentValue"]) for r in subscription_rows),
            "limit": sum(int(r["limit"]) for r in subscription_rows),
            "name": {"value": "Total Cluster Dedicated Regional vCPUs", "localizedValue": "Total Cluster Dedicated "
                     "Regional vCPUs"},
        }  # fmt: skip
        return [total, *family_rows]


def _row(row_id: str, scope: str, family: str, used: int, limit: int, location: str) -> dict[str, Any]:
    core = family.removeprefix("standard").removesuffix("Family")
    return {
        "id": row_id,
        "amlWorkspaceLocation": location,
        "type": f"{PROVIDER}/{scope}/usages",
        "unit": "Count",
        "currentValue": used,
        "limit": limit,
        "name": {"value": family, "localizedValue": f"Standard {core} Family Cluster Dedicated vCPUs"},
    }
