"""AKS compute targets: create, attach, update, delete, each an ARM async operation.

Why: ``ComputeTarget.create`` / ``attach`` / ``delete`` PUT or DELETE on ARM and then poll the
``Azure-AsyncOperation`` URL; ``AksCompute(ws, name)`` reads the compute back from the workspace API. The
emulator keeps one record per compute and moves its ``provisioningState`` with the operation, including the
failures the operator must survive (quota, a cluster that never finishes, a failed provisioning).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from .aks import AksCluster, provisioning_refusal, size_refusal, version_refusal
from .gpu import gpus_per_vm
from .resources import Compute, ErrorBody, Operation, WsKey
from .v2.rules import name_problem

if TYPE_CHECKING:
    from .faults import FaultRule
    from .state import EmulatorState

#: What the SDK sends when ``provisioning_configuration()`` leaves them out (Azure's documented defaults).
DEFAULT_VM_SIZE = "Standard_D3_v2"
DEFAULT_AGENT_COUNT = 3
BUSY_STATES = ("Creating", "Updating", "Deleting")


def arm_error(code: str, message: str) -> ErrorBody:
    return {"error": {"code": code, "message": message}}


def quota_error(compute: Compute) -> ErrorBody:
    """The message ARM gives when a GPU family's core quota is too small for the requested nodes."""
    family = "standardNCFamily" if gpus_per_vm(compute.vm_size) else "standardDv2Family"
    cores = 6 * max(gpus_per_vm(compute.vm_size), 1) * compute.agent_count
    return {
        "code": "QuotaExceeded",
        "statusCode": 400,
        "message": (
            f"Operation could not be completed as it results in exceeding approved {family} Cores quota. "
            f"Additional details - Deployment Model: Resource Manager, Location: {compute.location}, "
            f"Current Limit: 0, Current Usage: 0, Additional Required: {cores}, (Minimum) New Limit "
            f"Required: {cores}. Submit a request for Quota increase."
        ),
    }


def _rule_error(rule: FaultRule, default_code: str, default_message: str) -> ErrorBody:
    return {"code": rule.code or default_code, "statusCode": 400, "message": rule.message or default_message}


def _fail_state(rule: FaultRule | None) -> str:
    return rule.op_state if rule is not None and rule.action == "operation_failed" else "Failed"


class ComputeStore:
    """Computes per workspace, plus the AKS clusters that exist outside Azure ML and can be attached."""

    def __init__(self, state: EmulatorState) -> None:
        self._s = state

    def seed_aks_cluster(
        self,
        resource_group: str,
        name: str,
        vm_size: str,
        agent_count: int,
        subscription_id: str | None = None,
        kubernetes_version: str | None = None,
    ) -> str:
        """Declare an existing AKS cluster that ``ComputeTarget.attach`` may attach; returns its resource id."""
        sub = subscription_id or self._s.config.subscription_id
        resource_id = (
            f"/subscriptions/{sub}/resourcegroups/{resource_group}/providers/"
            f"Microsoft.ContainerService/managedClusters/{name}"
        )
        with self._s.lock:
            self._s.aks_clusters[resource_id.lower()] = AksCluster(vm_size, agent_count, kubernetes_version)
        return resource_id

    def get(self, ws: WsKey, name: str) -> Compute | None:
        self._s.advance()
        with self._s.lock:
            # ARM resource names are case-insensitive (Azure's resource-name rules): one compute, any spelling.
            return self._s.computes.get(ws, {}).get(name.lower())

    def all(self, ws: WsKey) -> list[Compute]:
        self._s.advance()
        with self._s.lock:
            return list(self._s.computes.get(ws, {}).values())

    def put(self, ws: WsKey, name: str, body: dict[str, Any]) -> tuple[int, Compute | ErrorBody, Operation | None]:
        """Create, attach or update; returns (HTTP status, compute or error body, operation)."""
        props = body.get("properties") or {}
        if props.get("computeType") != "AKS":
            return (
                400,
                arm_error(
                    "BadRequest",
                    f"Compute type {props.get('computeType')!r} is not supported by the emulator (only AKS).",
                ),
                None,
            )
        with self._s.lock:
            existing = self.get(ws, name)
            if existing is not None:
                return self._update(ws, existing, props)
            problem = name_problem("compute", name)
            if problem is not None:
                # Azure ML's compute name rules (see v2/rules.py for the sources); the answer's code and wording
                # are the emulator's, the documentation gives neither.
                return 400, arm_error("BadRequest", problem), None
            if props.get("resourceId"):
                return self._attach(ws, name, body, props)
            return self._create(ws, name, body, props)

    def _new(self, ws: WsKey, name: str, body: dict[str, Any], props: dict[str, Any]) -> Compute:
        inner = props.get("properties") or {}
        location = props.get("computeLocation") or body.get("location") or self._s.workspaces[ws].location
        return Compute(
            name=name,
            location=location,
            vm_size=inner.get("agentVmSize") or DEFAULT_VM_SIZE,
            agent_count=int(inner.get("agentCount") or DEFAULT_AGENT_COUNT),
            cluster_purpose=inner.get("clusterPurpose") or "FastProd",
            load_balancer_type=inner.get("loadBalancerType") or "PublicIp",
            load_balancer_subnet=inner.get("loadBalancerSubnet"),
            tags=dict(body.get("tags") or {}),
            description=props.get("description"),
        )

    def _create(
        self, ws: WsKey, name: str, body: dict[str, Any], props: dict[str, Any]
    ) -> tuple[int, Compute | ErrorBody, Operation | None]:
        compute = self._new(ws, name, body, props)
        refusal = provisioning_refusal(compute.vm_size or DEFAULT_VM_SIZE, compute.agent_count, compute.cluster_purpose)
        if refusal is not None:
            return 400, arm_error("BadRequest", refusal), None
        sub, rg, _ = ws
        compute.resource_id = (
            f"/subscriptions/{sub}/resourcegroups/{rg}/providers/"
            f"Microsoft.ContainerService/managedClusters/{name}{uuid.uuid4().hex[:6]}"
        )
        rule = self._s.faults.match_resource({"compute_quota", "compute_stuck", "operation_failed"}, "compute", name)
        error: ErrorBody | None = None
        if rule is not None and rule.action == "compute_quota":
            error = quota_error(compute)
            if rule.sync:
                return 400, {"error": error}, None
        elif rule is not None and rule.action == "operation_failed":
            error = _rule_error(rule, "ProvisioningFailed", "Injected fault: AKS cluster provisioning failed.")
        stuck = rule is not None and rule.action == "compute_stuck"
        self._s.computes.setdefault(ws, {})[name.lower()] = compute
        op = self._s.start_operation(
            "compute",
            "Create",
            name,
            ws,
            self._s.config.latencies.compute_create_s,
            error=error,
            stuck=stuck,
            fail_state=_fail_state(rule),
        )
        op.on_success = lambda: self._settle(compute, "Succeeded", None)
        op.on_failure = lambda: self._settle(compute, "Failed", op.error)
        return 201, compute, op

    def _attach(
        self, ws: WsKey, name: str, body: dict[str, Any], props: dict[str, Any]
    ) -> tuple[int, Compute | ErrorBody, Operation | None]:
        compute = self._new(ws, name, body, props)
        compute.attached, compute.resource_id = True, str(props["resourceId"])
        known = self._s.aks_clusters.get(compute.resource_id.lower())
        error: ErrorBody | None = None
        if known is None:
            error = {
                "code": "ResourceNotFound",
                "statusCode": 404,
                "message": f"The Resource '{compute.resource_id}' was not found.",
            }
        else:
            compute.vm_size, compute.agent_count = known.vm_size, known.agent_count
            refusal = size_refusal(known.vm_size, known.agent_count, compute.cluster_purpose)
            if refusal is not None:  # see .aks: created or attached, the same minimum; the answer is the emulator's
                return 400, arm_error("BadRequest", refusal), None
            error = version_refusal(known.kubernetes_version, self._s.config.aks_supported_versions)
        rule = self._s.faults.match_resource({"operation_failed"}, "compute", name)
        if rule is not None:
            error = _rule_error(rule, "AttachFailed", "Injected fault: attaching the AKS cluster failed.")
        self._s.computes.setdefault(ws, {})[name.lower()] = compute
        op = self._s.start_operation(
            "compute",
            "Attach",
            name,
            ws,
            self._s.config.latencies.compute_update_s,
            error=error,
            fail_state=_fail_state(rule),
        )
        op.on_success = lambda: self._settle(compute, "Succeeded", None)
        op.on_failure = lambda: self._settle(compute, "Failed", op.error)
        return 201, compute, op

    def _update(
        self, ws: WsKey, compute: Compute, props: dict[str, Any]
    ) -> tuple[int, Compute | ErrorBody, Operation | None]:
        if compute.state in BUSY_STATES:
            return (
                409,
                arm_error(
                    "Conflict",
                    f"Compute {compute.name} is {compute.state}; retry when the running operation has finished.",
                ),
                None,
            )
        inner = props.get("properties") or {}
        previous = compute.agent_count
        if inner.get("agentCount"):
            compute.agent_count = int(inner["agentCount"])
        compute.state = "Updating"
        rule = self._s.faults.match_resource({"operation_failed"}, "compute", compute.name)
        error = _rule_error(rule, "UpdateFailed", "Injected fault: cluster update failed.") if rule else None
        op = self._s.start_operation(
            "compute",
            "Update",
            compute.name,
            ws,
            self._s.config.latencies.compute_update_s,
            error=error,
            fail_state=_fail_state(rule),
        )
        op.on_success = lambda: self._settle(compute, "Succeeded", None)

        def failed() -> None:
            compute.agent_count = previous
            self._settle(compute, "Failed", op.error)

        op.on_failure = failed
        return 200, compute, op

    def delete(self, ws: WsKey, name: str) -> Operation | None:
        """Start deleting (or detaching) a compute; None when there is no such compute."""
        with self._s.lock:
            compute = self.get(ws, name)
            if compute is None:
                return None
            previous = compute.state
            compute.state = "Deleting"
            rule = self._s.faults.match_resource({"operation_failed"}, "compute", name)
            error = _rule_error(rule, "DeleteFailed", "Injected fault: cluster deletion failed.") if rule else None
            op = self._s.start_operation(
                "compute",
                "Delete",
                name,
                ws,
                self._s.config.latencies.compute_delete_s,
                error=error,
                fail_state=_fail_state(rule),
            )

            def gone() -> None:
                self._s.computes.get(ws, {}).pop(name.lower(), None)

            def failed() -> None:
                self._settle(compute, previous, op.error)

            op.on_success, op.on_failure = gone, failed
            return op

    @staticmethod
    def _settle(compute: Compute, state: str, error: ErrorBody | None) -> None:
        compute.state = state
        compute.modified = time.time()
        compute.errors = [{"error": error}] if error else None
