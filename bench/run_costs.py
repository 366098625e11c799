"""What one convergence cost: the Azure calls by kind (from the emulator's own counts), the lower bound ARM's token
buckets put on that many calls, and the writes the operator made to the API server (from its own metrics).

Why apart from convergence.py: these are the figures the limits are judged by, computed the same way for every
run (limits on or off), and each one from the party that answered the calls rather than from the operator.

- Calls by kind: ``GET /_emulator/throttling`` counts every call the emulator answered by surface (``arm``, the v1
  services on the workspace's regional host, scoring, storage, sign-in) and kind (read, write, delete, keys: a
  listKeys, probe: a scoring request, auth), with the calls ARM's buckets refused.
- The lower bound: ARM refills each bucket at its rate whatever else happens, so a run whose ARM calls of one kind
  admitted A past a full bucket of S needs at least (A - S) / refill seconds; the run's bound is the largest over
  reads, writes and deletes (they refill side by side), at ARM's published sizes whether the run had the limits
  on or not (off: what the same calls would have cost). Refused calls take no token and are not counted in A.
- API server writes: ``apiserver_request_total`` of the kube-apiserver's ``/metrics`` for the mutating verbs, before
  the apply and once all are Ready, on what the operator writes: its resources (kopf's finalizer and annotations),
  their status, Events and Secrets; what the driver's apply made (the resources themselves, the service principal's
  Secret) is taken off.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gpu_model_operator_dev.azureml_emulator.throttling import PUBLISHED, Limit
from gpu_model_operator_dev.controlplane import ControlPlane

#: The kinds a resource's calls are reported by; the first three are ARM's buckets on its surface.
KINDS = ("read", "write", "delete", "keys", "probe", "auth")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})
#: (group, resource, subresource) of what the operator writes, by the name the report gives them.
OPERATOR_WRITES = {
    ("gpumodel.io", "gpumodeldeployments", ""): "object",
    ("gpumodel.io", "gpumodeldeployments", "status"): "status",
    ("", "events", ""): "events",
    ("events.k8s.io", "events", ""): "events",
    ("", "secrets", ""): "secrets",
}
WriteKey = tuple[str, str, str, str]  # group, resource, subresource, verb


def azure_calls(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The emulator's count rows summed: ``by_kind`` (every surface), ``arm`` (per bucket: calls, throttled),
    ``calls`` and ``throttled`` in all."""
    by_kind: Counter[str] = Counter()
    arm = {bucket: {"calls": 0, "throttled": 0} for bucket in PUBLISHED}
    for row in rows:
        by_kind[row["kind"]] += row["calls"]
        if row["bucket"]:
            arm[row["bucket"]]["calls"] += row["calls"]
            arm[row["bucket"]]["throttled"] += row["throttled"]
    return {
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "arm": arm,
        "calls": sum(by_kind.values()),
        "throttled": sum(b["throttled"] for b in arm.values()),
    }


def lower_bound(arm: dict[str, dict[str, int]], limits: dict[str, Limit] | None = None) -> dict[str, float]:
    """Seconds ARM's buckets need for the admitted calls, per bucket, and ``all``: the largest."""
    limits = limits or PUBLISHED
    seconds = {
        bucket: max(0.0, counts["calls"] - counts["throttled"] - limits[bucket].size) / limits[bucket].refill_per_s
        for bucket, counts in arm.items()
    }
    return {**seconds, "all": max(seconds.values(), default=0.0)}


def apiserver_writes(cp: ControlPlane) -> Counter[WriteKey]:
    """The API server's count of mutating requests so far, by group, resource, subresource and verb."""
    text = cp.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[WriteKey] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":  # the parser drops the counter's _total from the family name
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("verb") in MUTATING:
                key = (labels.get("group", ""), labels["resource"], labels.get("subresource", ""), labels["verb"])
                counts[key] += int(sample.value)
    return counts


def operator_writes(before: Counter[WriteKey], after: Counter[WriteKey], n: int) -> dict[str, Any]:
    """The operator's writes between the two counts: in all, per resource, and per resource by what they wrote."""
    by_what: Counter[str] = Counter()
    for key, value in (after - before).items():
        what = OPERATOR_WRITES.get(key[:3])
        if what is not None and not (what == "object" and key[3] == "POST"):  # the driver creates the resources
            by_what[what] += value
    by_what["secrets"] -= 1  # the driver's service principal Secret, applied with the resources
    total = sum(by_what.values())
    return {
        "total": total,
        "per_resource": total / n,
        "per_resource_by_what": {k: by_what.get(k, 0) / n for k in ("object", "status", "events", "secrets")},
    }


def per_resource(calls: dict[str, Any], n: int) -> dict[str, float]:
    return {kind: count / n for kind, count in calls["by_kind"].items()}


def table(head: list[str], lines: list[list[str]]) -> None:
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    for line in [head, *lines]:
        print("  ".join(f"{f:>{w}}" for f, w in zip(line, widths, strict=True)))


def _limits_row(r: dict[str, Any]) -> list[str]:
    bound, azure = r["bound"], r["azure"]
    return [
        str(r["n"]),
        r["target"],
        "on" if r["limits"] else "off",
        f"{r['seconds']:.1f}",
        f"{bound['all']:.1f}",
        "/".join(f"{bound[k]:.0f}" for k in PUBLISHED),
        f"{r['seconds'] / bound['all']:.2f}" if bound["all"] else "-",
        str(azure["throttled"]),
        f"{100 * azure['throttled'] / max(1, azure['calls']):.2f}",
        f"{r['apiserver']['per_resource']:.1f}",
        f"{r['rss_mb_converged']:.0f}",
        "{:.1f}-{:.1f}".format(*r["load_average"]),
    ]


def _calls_row(r: dict[str, Any]) -> list[str]:
    return [
        str(r["n"]),
        r["target"],
        "on" if r["limits"] else "off",
        *(f"{v:.1f}" for v in per_resource(r["azure"], r["n"]).values()),
        "/".join(str(r["azure"]["arm"][k]["calls"]) for k in PUBLISHED),
        *(f"{v:.1f}" for v in r["apiserver"]["per_resource_by_what"].values()),
    ]


def print_tables(rows: list[dict[str, Any]]) -> None:
    """ARM's limits: time against the bound, throttled calls, API server writes and RSS; then the calls per resource
    by kind."""
    if not rows:
        return
    print("\nARM's limits (reads 250 at 25/s, writes and deletes 200 at 10/s per subscription and principal): time")
    print("to all Ready; the bound the run's ARM calls put on it at those rates (the largest of reads, writes and")
    print("deletes); their ratio; the calls ARM refused; API server writes per resource; operator RSS; load average")
    head = ["N", "target", "limits", "all Ready s", "bound s", "r/w/d s", "ratio", "throttled", "% calls"]
    table([*head, "API writes/res", "RSS MB", "load avg"], [_limits_row(r) for r in rows])
    print("\nAzure calls per resource by kind, apply to all Ready (reads/writes/deletes on every surface; keys: a")
    print("listKeys, which ARM counts as a write; probes: scoring requests), the ARM calls per bucket in all, and the")
    print("API server writes per resource by what (object: kopf's finalizer and annotations)")
    head = ["N", "target", "limits", *KINDS, "ARM r/w/d", "object", "status", "events", "secrets"]
    table(head, [_calls_row(r) for r in rows])
