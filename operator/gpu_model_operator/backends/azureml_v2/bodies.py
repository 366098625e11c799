"""What goes over the wire, in Azure's REST shape: the operator's tags and whose an endpoint is by them, the
bodies the backend sends (an endpoint, a deployment, an endpoint sent back whole), the deployment names, and
Azure's answers read into the contract's snapshot (:mod:`..endpoint`). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ... import conditions as c
from ...models import AzureMLV2Spec, KubernetesEndpointCompute, OnlineDeploymentSettings, ProbeSettings
from ..azure.failures import error_line
from ..base import is_legacy_tag_of, same_name
from ..endpoint import FINGERPRINT_TAG as FINGERPRINT_TAG
from ..endpoint import MANAGED_BY as MANAGED_BY
from ..endpoint import MANAGER as MANAGER
from ..endpoint import OWNER_TAG as OWNER_TAG
from ..endpoint import (
    DeploymentSnapshot,
    EndpointSnapshot,
    RequestCounts,
)
from .session import Inputs

#: The operator's tags (MANAGED_BY, OWNER_TAG, FINGERPRINT_TAG) are the contract's (:mod:`..endpoint`): ARM tag names
#: may not contain "/" (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources, "Limitations"),
#: so these differ from the v1 services' tags.
#: What Azure sets on an endpoint and ignores or refuses in a PUT: the ARM envelope and the server's properties.
READ_ONLY = ("id", "name", "type", "systemData", "etag")
READ_ONLY_PROPERTIES = ("provisioningState", "scoringUri", "swaggerUri")


def fingerprint(inputs: Inputs) -> str:
    """What a deployment runs; another value is another deployment (a blue/green rollout). Replicas are not in it
    (a scale is done in place), nor what online deployments do not take (cpuCores, memoryGb: the instance type
    decides). The probes and request settings are in it only where they differ from Azure's defaults, so that a
    deployment made before they were fields keeps its name (and is not rolled out again for nothing)."""
    spec = inputs.spec
    compute = spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        instance_type = "kubernetes:" + compute.kubernetes.instance_type.lower()
    else:
        instance_type = "managed:" + compute.managed.instance_type.lower()
    parts: dict[str, Any] = {
        "entry": inputs.entry_script,
        "entryName": spec.source.entry_script,
        "conda": inputs.conda_spec,
        "image": spec.environment.base_image,
        "model": [spec.model.name, spec.model.version],
        "instanceType": instance_type,
        "timeoutMs": spec.request_timeout_ms,
    }
    changed = _not_defaults(spec.deployment)
    if changed:
        parts["deployment"] = changed
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _not_defaults(settings: OnlineDeploymentSettings) -> dict[str, Any]:
    """The probes' and request settings' fields that differ from Azure's defaults (the request timeout apart: it is
    ``timeoutMs``)."""
    given = settings.model_dump(mode="json", exclude={"request_settings": {"request_timeout_ms"}})
    defaults = OnlineDeploymentSettings().model_dump(mode="json", exclude={"request_settings": {"request_timeout_ms"}})
    return {
        f"{part}.{name}": value
        for part, fields in given.items()
        for name, value in fields.items()
        if defaults[part][name] != value
    }


def probe_settings(probe: ProbeSettings) -> dict[str, Any]:
    """A probe in Azure's REST shape (ProbeSettings: durations in ISO 8601, thresholds as integers)."""
    return {
        "initialDelay": f"PT{probe.initial_delay_seconds}S",
        "period": f"PT{probe.period_seconds}S",
        "timeout": f"PT{probe.timeout_seconds}S",
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def request_settings(spec: AzureMLV2Spec) -> dict[str, Any]:
    """The request settings in Azure's REST shape (OnlineRequestSettings: durations in ISO 8601)."""
    given = spec.deployment.request_settings
    return {
        "requestTimeout": f"PT{spec.request_timeout_ms / 1000:g}S",
        "maxConcurrentRequestsPerInstance": given.max_concurrent_requests_per_instance,
        "maxQueueWait": f"PT{given.max_queue_wait_ms / 1000:g}S",
    }


def deployment_name(inputs: Inputs) -> str:
    """The deployment the inputs map to. Azure's deployment names: 3-32 characters, a letter first, letters, digits
    and dashes."""
    return f"gmo-{fingerprint(inputs)[:10]}"


def digest(*parts: str) -> str:
    """An asset version named after its content, so creating it again changes nothing."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def tags(owner: str, existing: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**dict(existing or {}), MANAGED_BY: MANAGER, OWNER_TAG: owner}


def owner_of(endpoint: Mapping[str, Any]) -> str | None:
    """The owner tag ("namespace/name/uid" of a GpuModelDeployment) of an endpoint, or None (not the operator's)."""
    found = endpoint.get("tags") or {}
    owner = found.get(OWNER_TAG) if found.get(MANAGED_BY) == MANAGER else None
    return str(owner) if owner else None


def not_ours(inputs: Inputs, endpoint: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """None when the operator may write to the endpoint: its tags name this resource, or they name none (or an
    earlier resource of this namespace and name) and the user asked to take it over. Otherwise the condition reason
    to refuse with and whose it is. Another resource's endpoint is never written to, take-over or not (the core
    reports the conflict)."""
    owner = owner_of(endpoint)
    if owner == inputs.owner or is_legacy_tag_of(owner, inputs.owner):
        return None  # a tag from before tags carried the uid: the core decided from this resource's own record
    if inputs.take_over and (owner is None or same_name(owner, inputs.owner)):
        return None
    return (c.SERVICE_EXISTS if owner is None else c.SERVICE_CONFLICT), owner


def new_endpoint(inputs: Inputs, location: str, workspace_id: str) -> dict[str, Any]:
    """An endpoint with the spec's auth mode (keys or Azure ML tokens), the operator's tags and no traffic yet."""
    props: dict[str, Any] = {"authMode": inputs.spec.service.auth_mode.value, "traffic": {}}
    compute = inputs.spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        props["compute"] = f"{workspace_id}/computes/{compute.kubernetes.compute_name}"
    return {
        "location": location,
        "tags": tags(inputs.owner),
        "identity": {"type": "SystemAssigned"},
        "properties": props,
    }


def endpoint_update(
    endpoint: Mapping[str, Any],
    owner: str,
    traffic: Mapping[str, int] | None,
    mirror: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The PUT body that changes an endpoint's traffic split and mirrored traffic (or sends a failed endpoint
    again): the endpoint as read, whole, with the split (None: as read), the mirrored traffic (None: as read) and
    the operator's tags. ARM's PUT replaces the resource, so anything left out goes back to Azure's default: a
    private endpoint (``publicNetworkAccess: Disabled``) would turn public, mirrored traffic stop, a user-assigned
    identity be dropped. What another tool set comes back as it was read. Only what the server owns is left out
    (the identity's principal and tenant among it)."""
    body = {k: v for k, v in endpoint.items() if k not in READ_ONLY and v is not None}
    props = {k: v for k, v in _props(endpoint).items() if k not in READ_ONLY_PROPERTIES and v is not None}
    current = {str(k): int(v) for k, v in (props.get("traffic") or {}).items() if int(v)}
    props["traffic"] = dict(traffic) if traffic is not None else current
    if mirror is not None:
        props["mirrorTraffic"] = dict(mirror)
    body["properties"] = props
    body["tags"] = tags(owner, endpoint.get("tags"))
    identity = dict(endpoint.get("identity") or {})
    if identity:
        identity = {k: v for k, v in identity.items() if k not in ("principalId", "tenantId")}
        if identity.get("userAssignedIdentities"):
            identity["userAssignedIdentities"] = {key: {} for key in identity["userAssignedIdentities"]}
        body["identity"] = identity
    return body


def new_deployment(inputs: Inputs, location: str, model: str, env: str, code: str, replicas: int) -> dict[str, Any]:
    """An online deployment in Azure's REST shape (OnlineDeploymentProperties, ``sku.capacity`` instances), with
    the spec's probes and request settings (ProbeSettings, OnlineRequestSettings), Azure's defaults where unset."""
    spec, compute = inputs.spec, inputs.spec.compute
    if isinstance(compute, KubernetesEndpointCompute):
        kind, instance_type = "Kubernetes", compute.kubernetes.instance_type
    else:
        kind, instance_type = "Managed", compute.managed.instance_type
    return {
        "location": location,
        "tags": {MANAGED_BY: MANAGER, OWNER_TAG: inputs.owner, FINGERPRINT_TAG: fingerprint(inputs)},
        "sku": {"name": "Default", "capacity": replicas},
        "properties": {
            "endpointComputeType": kind,
            "instanceType": instance_type,
            "model": model,
            "environmentId": env,
            "codeConfiguration": {"codeId": code, "scoringScript": spec.source.entry_script},
            "requestSettings": request_settings(spec),
            "livenessProbe": probe_settings(spec.deployment.liveness_probe),
            "readinessProbe": probe_settings(spec.deployment.readiness_probe),
        },
    }


# ---- Azure's answers as the contract's snapshot ------------------------------------------------------------------


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return resource.get("properties") or {}


def snapshot(endpoint: Mapping[str, Any], deployments: list[dict[str, Any]], desired: str) -> EndpointSnapshot:
    props = _props(endpoint)
    return EndpointSnapshot(
        name=str(endpoint.get("name")),
        state=str(props.get("provisioningState") or "Succeeded"),
        owner=owner_of(endpoint),
        scoring_uri=props.get("scoringUri"),
        traffic={str(k): int(v) for k, v in (props.get("traffic") or {}).items()},
        deployments=tuple(deployment_snapshot(d) for d in deployments),
        error=error_line(props.get("error")) if props.get("error") else "",
        desired=desired,
        mirror={str(k): int(v) for k, v in (props.get("mirrorTraffic") or {}).items()},
    )


def deployment_snapshot(deployment: Mapping[str, Any]) -> DeploymentSnapshot:
    props, sku = _props(deployment), deployment.get("sku") or {}
    error = props.get("error") or props.get("provisioningErrors")
    return DeploymentSnapshot(
        name=str(deployment.get("name")),
        state=str(props.get("provisioningState") or "Succeeded"),
        instance_count=int(sku.get("capacity") or 1),
        instance_type=props.get("instanceType"),
        error=error_line(error) if error else "",
        tags={str(k): str(v) for k, v in (deployment.get("tags") or {}).items()},
    )


def request_counts(deployment: str, metrics: Mapping[str, Any]) -> RequestCounts:
    """Azure Monitor's answer to a ``RequestsPerMinute`` query split by status code (the Metrics List response:
    ``value[].timeseries[]``, each series' dimension values in ``metadatavalues``, its points in ``data``; Azure
    Monitor's REST specification, Microsoft.Insights 2023-10-01, metrics_API.json and its GetMetric example) as
    requests per status code. Each point is a minute's ``average``, the aggregation the metric is published with
    (supported-metrics, onlineEndpoints: "Requests Per Minute ... Count, Average, PT1M"): a minute's count. The
    dimension's name is compared in any case: the example answers ``tier`` to a filter on ``Tier``."""
    counts: dict[str, float] = {}
    for metric in metrics.get("value") or []:
        for series in metric.get("timeseries") or []:
            dims = {str(m["name"]["value"]).lower(): str(m.get("value")) for m in series.get("metadatavalues") or []}
            code = dims.get("statuscode") or dims.get("statuscodeclass") or "unknown"
            total = sum(float(point.get("average") or 0) for point in series.get("data") or [])
            counts[code] = counts.get(code, 0.0) + total
    return RequestCounts(deployment, {code: round(n) for code, n in counts.items() if round(n)})


def compute_of(endpoint: Mapping[str, Any]) -> str:
    """The compute (ARM id, lower case) a Kubernetes endpoint runs on; "" for a managed one."""
    return str(_props(endpoint).get("compute") or "").lower()


def instance_type_gpus(instance_type: Mapping[str, object]) -> int:
    """``nvidia.com/gpu`` one instance of a Kubernetes instance type requests (requests, else limits)."""
    resources = instance_type.get("resources")
    if not isinstance(resources, Mapping):
        return 0
    for part in ("requests", "limits"):
        values = resources.get(part)
        if isinstance(values, Mapping) and values.get("nvidia.com/gpu") is not None:
            try:
                return int(float(str(values["nvidia.com/gpu"])))
            except ValueError:
                return 0
    return 0
