"""Run by test_azureml_reads.py in a process pointed at the emulator (azureml reads its cloud at import).

For each hot read and each way Azure can refuse it, the same fault is armed twice: once for the SDK's own call
(what the backend made before), once for ``reads``; both failures go through ``errors.classify``. Then the
objects both return for the same resources are compared. Prints ``RESULT {...}``: every case, each side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from gpu_model_operator.backends.azureml.errors import classify, none_if_not_found
from gpu_model_operator.backends.azureml.reads import Reads
from gpu_model_operator.backends.azureml.sdk import (
    AksWebservice,
    ComputeTarget,
    ServicePrincipalAuthentication,
    Webservice,
    Workspace,
)
from gpu_model_operator_dev.azureml_emulator import EmulatorClient

SUB, RG, WS = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After": {"action": "status", "status": 429, "retry_after": 7},
    "503": {"action": "status", "status": 503},
    "500": {"action": "status", "status": 500},
    "403": {"action": "status", "status": 403},
    "400": {"action": "status", "status": 400},
    "connection reset": {"action": "reset"},
}
ATTRIBUTES = {
    "service": ("name", "state", "scoring_uri", "auth_enabled", "tags", "num_replicas", "compute_name", "error"),
    "compute": ("name", "provisioning_state", "agent_count", "agent_vm_size", "tags", "description", "is_attached"),
}


def outcome(call: Any, area: str) -> dict[str, Any]:
    try:
        value = call()
    except Exception as exc:
        error = classify(exc, "reading", area=area, credential="the service principal in Secret sp")
        reason = getattr(error, "reason", None)
        return {
            "error": type(error).__name__,
            "reason": reason,
            "retry_after": getattr(error, "retry_after", None),
            "text": str(error),
        }
    return {"value": type(value).__name__ if value is not None else None}


def main() -> int:
    admin = EmulatorClient(sys.argv[1], Path(sys.argv[2]))
    client_id, secret = sys.argv[3], sys.argv[4]
    auth = ServicePrincipalAuthentication("adfs", client_id, secret)
    ws = Workspace.get(WS, auth=auth, subscription_id=SUB, resource_group=RG)
    reads = Reads(2, 30.0)
    pairs = {
        "service": (
            "/services/svc-a$",
            "service",
            lambda: none_if_not_found(lambda: Webservice(ws, "svc-a"))(),
            lambda: reads.service(ws, auth, "svc-a"),
        ),
        "compute": (
            "/computes/gpu-a$",
            "compute",
            lambda: none_if_not_found(lambda: ComputeTarget(ws, "gpu-a"))(),
            lambda: reads.compute(ws, auth, "gpu-a"),
        ),
        "listing": (
            "/services$",
            "service",
            lambda: AksWebservice.list(ws, compute_type="AKS"),
            lambda: reads.aks_services(ws, auth),
        ),
        "keys": (
            "/services/svc-a/listkeys$",
            "service",
            lambda: Webservice(ws, "svc-a").get_keys(),
            lambda: reads.keys(ws, auth, "svc-a"),
        ),
    }
    cases: list[dict[str, Any]] = []
    for read, (path, area, sdk, ours) in pairs.items():
        for fault, rule in FAULTS.items():
            sides = []
            for call in (sdk, ours):
                admin.clear_faults()
                admin.add_fault(**rule, path=path, times=1)
                sides.append(outcome(call, area))
            cases.append({"read": read, "fault": fault, "sdk": sides[0], "reads": sides[1]})
    admin.clear_faults()
    for read, (_, area, sdk, ours) in pairs.items():
        cases.append({"read": read, "fault": None, "sdk": outcome(sdk, area), "reads": outcome(ours, area)})
    missing = {
        "service": (
            none_if_not_found(lambda: Webservice(ws, "nope"))(),
            reads.service(ws, auth, "nope"),
        ),
        "compute": (
            none_if_not_found(lambda: ComputeTarget(ws, "nope"))(),
            reads.compute(ws, auth, "nope"),
        ),
    }
    same: dict[str, Any] = {}
    for kind, (sdk_object, our_object) in (
        ("service", (Webservice(ws, "svc-a"), reads.service(ws, auth, "svc-a"))),
        ("compute", (ComputeTarget(ws, "gpu-a"), reads.compute(ws, auth, "gpu-a"))),
    ):
        same[kind] = {
            "types": [type(sdk_object).__name__, type(our_object).__name__],
            "differ": [a for a in ATTRIBUTES[kind] if getattr(sdk_object, a) != getattr(our_object, a)],
        }
    listed = sorted(s.name for s in AksWebservice.list(ws, compute_type="AKS"))
    same["listing"] = {"sdk": listed, "reads": sorted(s.name for s in reads.aks_services(ws, auth))}
    same["keys"] = {"equal": Webservice(ws, "svc-a").get_keys() == reads.keys(ws, auth, "svc-a")}
    result = {"cases": cases, "missing": {k: [v is None for v in pair] for k, pair in missing.items()}, "same": same}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
