"""The v2 surface's memory and Azure's rules: online endpoints and deployments, Kubernetes computes, quota,
keys, versioned assets. Long-running operations reuse :meth:`EmulatorState.start_operation` (scope ``v2``), so
they settle on reads like the v1 ones and freeze when nothing is read.

Each rule says where it comes from: a Microsoft Learn page, an error body users have posted from real Azure,
or what the ``azure-ai-ml`` SDK sends and expects. Errors are raised as :class:`ArmError` and rendered in ARM's
shape (``{"error": {"code", "message", "details"}}``), which the SDK turns into ``HttpResponseError`` with the
code and message in its text.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..resources import ErrorBody, Operation, WsKey
from . import quota, rules, startup
from .model import (
    AssetVersion,
    KubeNode,
    KubernetesCompute,
    OnlineDeployment,
    OnlineEndpoint,
    V2Config,
)
from .monitor import RequestLog
from .store_errors import PROVIDER, ArmError, conflict, inferencing_client_error, not_found

if TYPE_CHECKING:
    from ..state import EmulatorState

BUSY = ("Creating", "Updating", "Deleting")
#: An endpoint's properties the server sets, whatever a PUT sends.
SERVER_OWNED = ("provisioningState", "scoringUri", "swaggerUri")
#: Endpoint properties an api-version's model does not have (its specification file's OnlineEndpoint): a PUT at that
#: version cannot express them, so the emulator keeps their current values rather than resetting them. Whether Azure
#: does is not documented (the ARM contract says a PUT replaces the resource, and says nothing of properties the
#: request's version does not know); resetting a private endpoint to public because an older client updated its
#: traffic would be a security change no client asked for.
UNKNOWN_TO_VERSION: dict[str, tuple[str, ...]] = {"2022-02-01-preview": ("publicNetworkAccess",)}

#: The default instance type the Azure ML extension creates when a cluster defines none: requests 100m CPU and
#: 2Gi, limits 2 CPUs and 2Gi, no GPU
#: (learn.microsoft.com/azure/machine-learning/how-to-manage-kubernetes-instance-types).
DEFAULT_INSTANCE_TYPE = {
    "nodeSelector": None,
    "resources": {"requests": {"cpu": "100m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
}


#: What Azure fills in for settings a deployment leaves out (reference-yaml-deployment-managed-online: request
#: timeout 5000 ms, 1 concurrent request per instance, 500 ms queue wait; probes 10 s initial delay and period,
#: 2 s timeout, success 1, failure 30; default scale settings). The SDK's entities read them back.
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "scaleSettings": {"scaleType": "Default"},
    "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1, "maxQueueWait": "PT0.5S"},
    "livenessProbe": {
        "failureThreshold": 30,
        "successThreshold": 1,
        "timeout": "PT2S",
        "period": "PT10S",
        "initialDelay": "PT10S",
    },
    "readinessProbe": {
        "failureThreshold": 30,
        "successThreshold": 1,
        "timeout": "PT2S",
        "period": "PT10S",
        "initialDelay": "PT10S",
    },
    "appInsightsEnabled": False,
    "egressPublicNetworkAccess": "Enabled",
    "environmentVariables": {},
    "properties": {},
}


def with_defaults(props: dict[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEPLOYMENT_DEFAULTS.items()}
    merged.update({k: v for k, v in props.items() if v is not None})
    return merged


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity (``"100m"``, ``"2"``, ``"2Gi"``) as a number (CPUs, or bytes for memory)."""
    text = str(value or "0").strip()
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def instance_gpus(instance_type: dict[str, Any]) -> int:
    """GPUs one instance of this type requests (``nvidia.com/gpu`` in requests, else in limits)."""
    resources = instance_type.get("resources") or {}
    for part in ("requests", "limits"):
        value = (resources.get(part) or {}).get("nvidia.com/gpu")
        if value is not None:
            return int(parse_quantity(value))
    return 0


@dataclass(frozen=True)
class Failure:
    """How a deployment's start failed: the operation's error, its documented reason, and the container's console
    (for a crash after start)."""

    error: ErrorBody
    reason: rules.FailureReason
    console: list[str]


class V2Store:
    """Every v2 resource of the emulated cloud; all methods take the state's lock and settle due operations."""

    def __init__(self, state: EmulatorState) -> None:
        self._s = state
        self.endpoints: dict[WsKey, dict[str, OnlineEndpoint]] = {}
        self.deployments: dict[tuple[WsKey, str], dict[str, OnlineDeployment]] = {}
        self.kube_computes: dict[WsKey, dict[str, KubernetesCompute]] = {}
        #: Clusters that exist outside Azure ML (resource id, lower case) and may be attached.
        self.kube_clusters: dict[str, KubernetesCompute] = {}
        self.assets: dict[tuple[WsKey, str], dict[str, dict[str, AssetVersion]]] = {}
        #: Blob metadata (``x-ms-meta-*``) by ``<container>/<blob>``: the SDK marks finished uploads with it.
        self.blob_metadata: dict[str, dict[str, str]] = {}
        #: Injected start failures: ``{"deployment": regex, "endpoint": regex, "code", "message", "times"}``.
        self.start_failures: list[dict[str, Any]] = []
        #: Requests with their JSON bodies, when ``V2Config.record_trace`` is on (see :mod:`.overlay`).
        self.trace: list[dict[str, Any]] = []
        self.rng = random.Random(self.config.traffic_seed)
        self.quota = quota.Quota(self)
        #: Names Azure holds after an endpoint's deletion, until a time: managed ones by (region, name), Kubernetes
        #: ones by (cluster resource id, name); see :mod:`.rules`.
        self.held_names: dict[tuple[str, str], float] = {}
        #: What scoring answered, per deployment, status and minute: Azure Monitor's ``RequestsPerMinute``.
        self.request_log = RequestLog()
        #: Seconds a registered model takes to load in a deployment's container, by (workspace, name, version) in
        #: lower case, as seeded: the probes fail meanwhile (:mod:`.startup`).
        self.load_seconds: dict[tuple[WsKey, str, str], float] = {}

    @property
    def config(self) -> V2Config:
        return self._s.v2_config

    # -- helpers ------------------------------------------------------------------------------------------

    def _workspace_location(self, ws: WsKey) -> str:
        found = self._s.workspaces.get(ws)
        return found.location if found is not None else self._s.config.location

    workspace_location = _workspace_location

    def workspaces(self) -> list[WsKey]:
        return list(self._s.workspaces)

    def workspace_arm_id(self, ws: WsKey) -> str:
        found = self._s.workspaces.get(ws)
        sub, rg, name = (found.subscription_id, found.resource_group, found.name) if found else ws
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}/workspaces/{name}"

    def subscription_name(self, ws: WsKey) -> str:
        found = self._s.workspaces.get(ws)
        return found.subscription_id if found is not None else ws[0]

    def usage_rows(self, subscription: str, location: str) -> list[dict[str, Any]]:
        self._s.advance()
        with self._s.lock:
            return self.quota.rows(subscription, location)

    def _start(
        self,
        op_type: str,
        target: str,
        ws: WsKey,
        latency_s: float,
        error: ErrorBody | None = None,
        scope: str = "v2",
    ) -> Operation:
        """An operation polled at ``mfeOperationsStatus`` (scope ``v2``) or, for computes, at the v1
        ``computeOperationsStatus`` route (scope ``compute``), where ARM's compute operations live."""
        return self._s.start_operation(scope, op_type, target, ws, latency_s, error=error)

    # -- endpoints ----------------------------------------------------------------------------------------

    def endpoint(self, ws: WsKey, name: str) -> OnlineEndpoint | None:
        """ARM resource names are case-insensitive (learn.microsoft.com/azure/azure-resource-manager/management/
        resource-name-rules: "resource names are case-insensitive unless noted")."""
        self._s.advance()
        with self._s.lock:
            return self.endpoints.get(ws, {}).get(name.lower())

    def list_endpoints(self, ws: WsKey) -> list[OnlineEndpoint]:
        self._s.advance()
        with self._s.lock:
            return list(self.endpoints.get(ws, {}).values())

    def require_endpoint(self, ws: WsKey, name: str) -> OnlineEndpoint:
        found = self.endpoint(ws, name)
        if found is None:
            raise not_found("workspaces/onlineEndpoints", name, f"workspace '{ws[2]}'")
        return found

    def _deployments_of(self, ws: WsKey, endpoint: str) -> dict[str, OnlineDeployment]:
        return self.deployments.setdefault((ws, endpoint.lower()), {})

    def _validate_traffic(self, ws: WsKey, endpoint: str, traffic: Any, mirror: bool = False) -> dict[str, int]:
        """Traffic must name existing deployments and its percentages sum to 100, or to 0 for no traffic at all
        (learn.microsoft.com/azure/machine-learning/concept-endpoints-online: "the sum of traffic allocation across
        all deployments must be 100% (or 0%)"); mirror traffic is capped at 50%
        (how-to-safely-rollout-online-endpoints). Azure answers 400 otherwise.
        """
        if not traffic:
            return {}
        if not isinstance(traffic, dict):
            raise ArmError(400, "BadArgument", "Traffic must be a map of deployment names to percentages.")
        known = {d.lower(): d for d in self._deployments_of(ws, endpoint)}
        values: dict[str, int] = {}
        for name, value in traffic.items():
            if str(name).lower() not in known:
                raise ArmError(
                    400,
                    "BadArgument",
                    f"Deployment '{name}' in {'mirror traffic' if mirror else 'traffic'} does not exist on "
                    f"endpoint '{endpoint}'.",
                )
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                raise ArmError(400, "BadArgument", f"Traffic for deployment '{name}' must be an integer 0-100.")
            values[self._deployments_of(ws, endpoint)[str(name).lower()].name] = value
        total = sum(values.values())
        if mirror and total > 50:
            raise ArmError(400, "BadArgument", f"Mirror traffic must not exceed 50%, got {total}%.")
        if not mirror and total not in (0, 100):
            raise ArmError(
                400,
                "BadArgument",
                f"The sum of traffic values must be 0 or 100; it is {total} ({json.dumps(values)}).",
            )
        return values

    def _check_new_endpoint_name(self, ws: WsKey, name: str, compute: str | None) -> None:
        """Whether a new endpoint may take ``name`` (see :mod:`.rules` for each answer's source): a valid name; not
        held after a deletion; unique in the region for a managed endpoint, whose name is its scoring host
        ``<name>.<region>.inference.ml.azure.com`` ("The endpoint name must be unique in the Azure region",
        how-to-deploy-online-endpoints); unique on its cluster for a Kubernetes one ("endpoint name must be unique per
        cluster", whatever workspace attached it)."""
        problem = rules.name_problem("endpoint", name)
        if problem is not None:  # the answer's wording is the emulator's (the SDK checks the same rule itself)
            raise rules.validation_problem("name", problem)
        now = time.time()
        self.held_names = {k: until for k, until in self.held_names.items() if until > now}
        if compute:
            cluster = self._require_kube_compute_by_id(ws, compute).resource_id.lower()
            for other_ws, endpoints in self.endpoints.items():
                found = endpoints.get(name.lower())
                if found is not None and found.compute and self._cluster_of(found) == cluster:
                    raise rules.exists_in_cluster(name, other_ws[2], other_ws[1])
            if (cluster, name.lower()) in self.held_names:
                raise rules.exists_in_cluster(name, ws[2], ws[1])
            return
        region = self._workspace_location(ws).lower()
        if (region, name.lower()) in self.held_names:
            raise rules.held_after_deletion(name)
        for other_ws, endpoints in self.endpoints.items():
            found = endpoints.get(name.lower())
            if found is not None and not found.compute and self._workspace_location(other_ws).lower() == region:
                raise rules.region_clash(name)

    def _cluster_of(self, endpoint: OnlineEndpoint) -> str:
        """The resource id (lower case) of the cluster a Kubernetes endpoint's compute attached."""
        name = str(endpoint.compute or "").rstrip("/").rsplit("/", 1)[-1].lower()
        compute = self.kube_computes.get(endpoint.ws, {}).get(name)
        return compute.resource_id.lower() if compute is not None else ""

    def hold_name(self, endpoint: OnlineEndpoint, seconds: float) -> None:
        """Hold a deleted endpoint's name: in its region (managed) or on its cluster (Kubernetes)."""
        scope = self._cluster_of(endpoint) if endpoint.compute else endpoint.location.lower()
        if seconds > 0 and scope:
            self.held_names[(scope, endpoint.name.lower())] = time.time() + seconds

    def put_endpoint(
        self, ws: WsKey, name: str, body: dict[str, Any], api_version: str = ""
    ) -> tuple[int, OnlineEndpoint, Operation]:
        """Create (201) or update (200) an endpoint; both are long-running operations."""
        self._s.advance()
        props = dict(body.get("properties") or {})
        with self._s.lock:
            existing = self.endpoints.get(ws, {}).get(name.lower())
            if existing is not None:
                unknown = UNKNOWN_TO_VERSION.get(api_version, ())
                kept = {k: existing.props[k] for k in unknown if k in existing.props and k not in props}
                return self._update_endpoint(ws, existing, {**props, **kept}, body, replace=True)
            self._check_new_endpoint_name(ws, name, str(props["compute"]) if props.get("compute") else None)
            auth_mode = str(props.get("authMode") or "")
            if auth_mode.lower() not in ("key", "amltoken", "aadtoken"):
                raise ArmError(
                    400, "BadArgument", f"Invalid authMode '{auth_mode}': expected Key, AMLToken or AADToken."
                )
            if props.get("compute"):
                self._require_kube_compute_by_id(ws, str(props["compute"]))
            # A new endpoint has no deployments yet, so any non-zero traffic names a missing one.
            self._validate_traffic(ws, name, {k: v for k, v in (props.get("traffic") or {}).items() if v})
            endpoint = OnlineEndpoint(
                ws=ws,
                name=name,
                location=self._workspace_location(ws),
                props=props,
                identity=self._endpoint_identity(body.get("identity")),
                tags=dict(body.get("tags") or {}),
                kind=body.get("kind") or ("K8S" if props.get("compute") else "Managed"),
            )
            endpoint.props["traffic"] = {}
            self.endpoints.setdefault(ws, {})[name.lower()] = endpoint
            op = self._start("Create", name, ws, self.config.latencies.endpoint_create_s)

            def created() -> None:
                endpoint.state, endpoint.modified = "Succeeded", time.time()

            def failed() -> None:
                endpoint.state = "Failed"

            op.on_success, op.on_failure = created, failed
            return 201, endpoint, op

    @staticmethod
    def _endpoint_identity(identity: Any) -> dict[str, Any]:
        """Endpoints get a system-assigned identity unless told otherwise (the SDK's default)."""
        given = dict(identity or {}) or {"type": "SystemAssigned"}
        if "SystemAssigned" in str(given.get("type")):
            given.setdefault("principalId", str(uuid.uuid4()))
            given.setdefault("tenantId", "00000000-0000-0000-0000-0000000000aa")
        return given

    def _update_endpoint(
        self, ws: WsKey, endpoint: OnlineEndpoint, props: dict[str, Any], body: dict[str, Any], *, replace: bool
    ) -> tuple[int, OnlineEndpoint, Operation]:
        """A PUT (``replace``) or a PATCH of an existing endpoint.

        ARM's PUT replaces the resource: what the body leaves out goes back to its default (no traffic, no mirrored
        traffic, public network access, no description or tags, a system-assigned identity), as the REST
        reference's "Create Or Update" and ARM's resource provider contract ("PUT ... replaces") say. What the server
        owns stays: the provisioning state, scoring URI, keys, the kind, and the compute and authMode, which
        cannot be changed (left out, they are kept; changed, Azure refuses). A PATCH changes what it names.
        """
        if endpoint.state in BUSY:
            raise conflict(f"Endpoint '{endpoint.name}'", endpoint.state)
        if props.get("compute") and str(props["compute"]).lower() != str(endpoint.compute or "").lower():
            raise ArmError(400, "BadArgument", "The compute of an endpoint cannot be changed.")
        if props.get("authMode") and str(props["authMode"]).lower() != str(endpoint.props.get("authMode")).lower():
            raise ArmError(400, "BadArgument", "The authMode of an existing endpoint cannot be changed.")
        traffic = self._validate_traffic(ws, endpoint.name, props.get("traffic")) if "traffic" in props else None
        mirror = (
            self._validate_traffic(ws, endpoint.name, props.get("mirrorTraffic"), mirror=True)
            if "mirrorTraffic" in props
            else None
        )
        after = (
            (traffic or {}, mirror or {})
            if replace
            else (
                traffic if traffic is not None else endpoint.traffic,
                mirror if mirror is not None else dict(endpoint.props.get("mirrorTraffic") or {}),
            )
        )
        rules.check_mirror(endpoint.name, endpoint.compute, *after)
        identity = self._replaced_identity(endpoint.identity, body.get("identity")) if replace else None
        endpoint.state = "Updating"
        op = self._start("Update", endpoint.name, ws, self.config.latencies.endpoint_update_s)

        def updated() -> None:
            # The traffic split changes when the update operation completes, not when it is accepted.
            if replace:
                kept = {k: endpoint.props[k] for k in ("authMode", "compute") if endpoint.props.get(k)}
                sent = {k: v for k, v in props.items() if k not in SERVER_OWNED}
                endpoint.props = {**sent, **kept, "traffic": traffic or {}, "mirrorTraffic": mirror or {}}
                endpoint.tags = dict(body.get("tags") or {})
                endpoint.identity = identity
            else:
                for key in ("description", "properties", "publicNetworkAccess"):
                    if key in props:
                        endpoint.props[key] = props[key]
                if traffic is not None:
                    endpoint.props["traffic"] = traffic
                if mirror is not None:
                    endpoint.props["mirrorTraffic"] = mirror
                if "tags" in body:
                    endpoint.tags = dict(body.get("tags") or {})
            endpoint.state, endpoint.modified = "Succeeded", time.time()

        def failed() -> None:
            endpoint.state = "Failed"

        op.on_success, op.on_failure = updated, failed
        return 200, endpoint, op

    def _replaced_identity(self, current: dict[str, Any] | None, given: Any) -> dict[str, Any]:
        """The identity a PUT sets; a system-assigned one that stays keeps its principal (Azure's, not the
        caller's)."""
        identity = self._endpoint_identity(given)
        if "SystemAssigned" in str(identity.get("type")) and "SystemAssigned" in str((current or {}).get("type")):
            for key in ("principalId", "tenantId"):
                if (current or {}).get(key):
                    identity[key] = (current or {})[key]
        return identity

    def patch_endpoint(self, ws: WsKey, name: str, body: dict[str, Any]) -> tuple[OnlineEndpoint, Operation]:
        """PATCH takes tags, identity and (in newer API versions) properties; an LRO answered 202."""
        endpoint = self.require_endpoint(ws, name)
        with self._s.lock:
            _, _, op = self._update_endpoint(ws, endpoint, dict(body.get("properties") or {}), body, replace=False)
            if body.get("identity"):
                endpoint.identity = self._endpoint_identity(body["identity"])
            return endpoint, op

    def delete_endpoint(self, ws: WsKey, name: str) -> Operation | None:
        """Deleting an endpoint deletes its deployments with it (how-to-deploy-online-endpoints, "Delete the
        endpoint and the deployment")."""
        self._s.advance()
        with self._s.lock:
            endpoint = self.endpoints.get(ws, {}).get(name.lower())
            if endpoint is None:
                return None
            if endpoint.state == "Deleting":
                raise conflict(f"Endpoint '{endpoint.name}'", endpoint.state)
            endpoint.state = "Deleting"
            for deployment in self._deployments_of(ws, name).values():
                deployment.state, deployment.serving = "Deleting", False
            op = self._start("Delete", endpoint.name, ws, self.config.latencies.endpoint_delete_s)

            def gone() -> None:
                self.hold_name(endpoint, self.config.endpoint_name_hold_s)
                self.endpoints.get(ws, {}).pop(name.lower(), None)
                self.deployments.pop((ws, name.lower()), None)

            op.on_success = gone
            return op

    # -- keys and tokens ----------------------------------------------------------------------------------

    def list_keys(self, ws: WsKey, name: str) -> dict[str, str]:
        endpoint = self.require_endpoint(ws, name)
        if str(endpoint.props.get("authMode")).lower() != "key":
            raise ArmError(400, "BadArgument", f"Endpoint '{endpoint.name}' does not use key authentication.")
        return {"primaryKey": endpoint.primary_key, "secondaryKey": endpoint.secondary_key}

    def regenerate_key(self, ws: WsKey, name: str, body: dict[str, Any]) -> Operation:
        """``regenerateKeys`` is an LRO (202 + Location); the new key is what scoring accepts once it completes.

        ``keyValue`` is "the value the key is set to" (the REST reference), but the SDK always sends the key's
        *current* value (``_regenerate_online_keys``), and users see fresh keys after ``begin_regenerate_keys``;
        so a value equal to the current key (or none) draws a new random key, any other value becomes the key.
        """
        endpoint = self.require_endpoint(ws, name)
        key_type = str(body.get("keyType") or "")
        if key_type.lower() not in ("primary", "secondary"):
            raise ArmError(400, "BadArgument", f"Invalid keyType '{key_type}': expected Primary or Secondary.")
        if str(endpoint.props.get("authMode")).lower() != "key":
            raise ArmError(400, "BadArgument", f"Endpoint '{endpoint.name}' does not use key authentication.")
        with self._s.lock:
            if endpoint.state in BUSY:
                raise conflict(f"Endpoint '{endpoint.name}'", endpoint.state)
            attr = "primary_key" if key_type.lower() == "primary" else "secondary_key"
            given = body.get("keyValue")
            new_key = str(given) if given and given != getattr(endpoint, attr) else secrets.token_urlsafe(32)
            op = self._start("RegenerateKeys", endpoint.name, ws, self.config.latencies.keys_regenerate_s)

            def regenerated() -> None:
                setattr(endpoint, attr, new_key)
                endpoint.modified = time.time()

            op.on_success = regenerated
            return op

    def aml_token(self, ws: WsKey, name: str) -> dict[str, Any]:
        """``POST .../token`` for ``authMode: AMLToken`` endpoints (EndpointAuthToken: accessToken, expiryTimeUtc,
        refreshAfterTimeUtc, tokenType; the times in seconds since the epoch, as the REST specification's int64 and
        azure-ai-ml's ``AccessToken`` read them). The REST reference says only that "'Key' doesn't expire but
        'AMLToken' does", and how-to-authenticate-online-endpoint that the answer carries its expiry and refresh times:
        the lifetime is the emulator's (``V2Config.aml_token_lifetime_s``, an hour by default), the refresh time half
        of it."""
        from ..auth import mint_token

        endpoint = self.require_endpoint(ws, name)
        if str(endpoint.props.get("authMode")).lower() != "amltoken":
            raise ArmError(400, "BadArgument", f"Endpoint '{endpoint.name}' does not use AML token authentication.")
        now, lifetime = int(time.time()), int(self.config.aml_token_lifetime_s)
        claims = {"aud": self.endpoint_audience(endpoint), "iat": now, "nbf": now, "exp": now + lifetime}
        return {
            "accessToken": mint_token(self._s.signing_key, claims),
            "expiryTimeUtc": now + lifetime,
            "refreshAfterTimeUtc": now + lifetime // 2,
            "tokenType": "Bearer",
        }

    @staticmethod
    def endpoint_audience(endpoint: OnlineEndpoint) -> str:
        return f"aml-endpoint:{endpoint.ws[0]}/{endpoint.ws[1]}/{endpoint.ws[2]}/{endpoint.name.lower()}"

    # -- deployments ----------------------------------------------------------------------------------------

    def deployment(self, ws: WsKey, endpoint: str, name: str) -> OnlineDeployment | None:
        self._s.advance()
        with self._s.lock:
            return self._deployments_of(ws, endpoint).get(name.lower())

    def list_deployments(self, ws: WsKey, endpoint: str) -> list[OnlineDeployment]:
        self.require_endpoint(ws, endpoint)
        with self._s.lock:
            return list(self._deployments_of(ws, endpoint).values())

    def require_deployment(self, ws: WsKey, endpoint: str, name: str) -> OnlineDeployment:
        self.require_endpoint(ws, endpoint)
        found = self.deployment(ws, endpoint, name)
        if found is None:
            raise not_found(f"workspaces/onlineEndpoints/{endpoint}/deployments", name, f"workspace '{ws[2]}'")
        return found

    def put_deployment(
        self, ws: WsKey, endpoint_name: str, name: str, body: dict[str, Any]
    ) -> tuple[int, OnlineDeployment, Operation]:
        """Create (201) or update (200) a deployment after Azure's synchronous validation; placement, start-up and
        scheduling happen in the operation, as they do on Azure (a crashed container fails the operation)."""
        endpoint = self.require_endpoint(ws, endpoint_name)
        props = with_defaults(dict(body.get("properties") or {}))
        sku_body = dict(body.get("sku") or {"name": "Default", "capacity": 1})
        with self._s.lock:
            if endpoint.state in ("Creating", "Deleting", "Failed"):
                raise conflict(f"Endpoint '{endpoint.name}'", endpoint.state)
            compute_type = str(props.get("endpointComputeType") or "")
            self._check_compute_type(endpoint, compute_type)
            capacity = sku_body.get("capacity", 1)
            if not isinstance(capacity, int) or capacity < 1:
                raise ArmError(400, "BadArgument", f"Instance count must be a positive integer, got {capacity!r}.")
            self._check_assets(ws, props)
            existing = self._deployments_of(ws, endpoint.name).get(name.lower())
            if existing is not None and existing.state in BUSY:
                raise conflict(f"Deployment '{existing.name}'", existing.state)
            if existing is None:
                self._check_deployment_name(endpoint, name)
            if compute_type.lower() == "managed":
                if int(capacity) > self.config.max_instances:
                    # "Number of instances per deployment: 50" (how-to-manage-quotas); the refusal's wording is
                    # the emulator's, Azure's is not documented.
                    raise inferencing_client_error(
                        "InstanceCount",
                        f"The instance count {capacity} exceeds the limit of {self.config.max_instances} instances "
                        "per deployment of a managed online endpoint; request a limit increase from Azure support.",
                    )
                self.quota.check(ws, props, int(capacity), existing)
            else:
                self._check_kube_instance_type(ws, endpoint, props)
                self._kube_resources(ws, endpoint, props)
            if existing is None:
                return self._create_deployment(ws, endpoint, name, props, sku_body, body)
            return self._update_deployment(ws, endpoint, existing, props, sku_body, body)

    def _check_deployment_name(self, endpoint: OnlineEndpoint, name: str) -> None:
        """A deployment's name follows the endpoint's rule, and on Kubernetes "the endpoint name plus deployment
        name must be 6-62 characters in total length" (how-to-manage-quotas); the wording is the emulator's."""
        problem = rules.name_problem("deployment", name)
        low, high = rules.KUBERNETES_NAMES_LENGTH
        if problem is None and endpoint.compute and not low <= len(endpoint.name) + len(name) <= high:
            problem = f"The endpoint name plus the deployment name must be {low} to {high} characters in total length."
        if problem is not None:
            raise rules.validation_problem("name", problem, "InferencingClientCreateDeploymentFailed")

    def _check_compute_type(self, endpoint: OnlineEndpoint, compute_type: str) -> None:
        """Managed deployments go on managed endpoints, Kubernetes ones on endpoints with a compute
        (concept-endpoints-online: the endpoint's compute type fixes its deployments')."""
        if compute_type.lower() not in ("managed", "kubernetes"):
            raise ArmError(
                400, "BadArgument", f"Invalid endpointComputeType '{compute_type}': expected Managed or Kubernetes."
            )
        wanted = "kubernetes" if endpoint.compute else "managed"
        if compute_type.lower() != wanted:
            raise ArmError(
                400,
                "BadArgument",
                f"A {compute_type} deployment cannot be added to endpoint '{endpoint.name}', whose compute type is "
                f"{'Kubernetes' if endpoint.compute else 'Managed'}.",
            )

    def _check_assets(self, ws: WsKey, props: dict[str, Any]) -> None:
        """Model, environment and code referenced by workspace ARM id must exist (the deployment pulls them)."""
        refs = [
            ("models", props.get("model")),
            ("environments", props.get("environmentId")),
            ("codes", (props.get("codeConfiguration") or {}).get("codeId")),
        ]
        for kind, ref in refs:
            if not ref or "/workspaces/" not in str(ref):
                continue
            match = re.search(rf"/{kind}/([^/]+)/versions/([^/]+)$", str(ref), re.IGNORECASE)
            if match is None or self.asset(ws, kind, match.group(1), match.group(2)) is None:
                raise ArmError(400, "BadArgument", f"The asset '{ref}' referenced by the deployment was not found.")

    def _check_kube_instance_type(self, ws: WsKey, endpoint: OnlineEndpoint, props: dict[str, Any]) -> None:
        """A Kubernetes deployment's instance type must be one the compute defines (instance types are custom
        resources in the cluster; how-to-manage-kubernetes-instance-types: an unknown name fails validation)."""
        compute = self._require_kube_compute_by_id(ws, str(endpoint.compute))
        name = str(props.get("instanceType") or compute.default_instance_type)
        if name.lower() not in {n.lower() for n in self.instance_types(compute)}:
            raise inferencing_client_error(
                "InstanceType",
                f"Instance type '{name}' is not defined on compute '{compute.name}'. Defined instance types: "
                f"{', '.join(sorted(self.instance_types(compute)))}.",
            )

    def _kube_resources(self, ws: WsKey, endpoint: OnlineEndpoint, props: dict[str, Any]) -> None:
        """A Kubernetes deployment runs with its instance type's requests and limits (the instance type replaces
        per-deployment resources, how-to-manage-kubernetes-instance-types); the resource shows them as
        ``containerResourceRequirements``, which the SDK's ``KubernetesOnlineDeployment`` reads."""
        compute = self._require_kube_compute_by_id(ws, str(endpoint.compute))
        props["instanceType"] = str(props.get("instanceType") or compute.default_instance_type)
        types = {k.lower(): v for k, v in self.instance_types(compute).items()}
        resources = dict(types.get(props["instanceType"].lower(), {}).get("resources") or {})

        def settings(part: str) -> dict[str, Any]:
            """ContainerResourceSettings: cpu, memory and gpu as strings (Kubernetes quantities), or null."""
            given = dict(resources.get(part) or {})
            found = {"cpu": given.get("cpu"), "memory": given.get("memory"), "gpu": given.get("nvidia.com/gpu")}
            return {k: None if v is None else str(v) for k, v in found.items()}

        if not props.get("containerResourceRequirements"):
            props["containerResourceRequirements"] = {
                "containerResourceRequests": settings("requests"),
                "containerResourceLimits": settings("limits"),
            }

    def _start_outcome(self, deployment: OnlineDeployment, endpoint: OnlineEndpoint) -> Failure | None:
        """How the start of ``deployment`` fails, or None: an injected failure (``fail_start``: its documented code,
        :mod:`.rules`), else (Kubernetes) instances that no node can schedule."""
        for rule in self.start_failures:
            if rule.get("times") is not None and int(rule["times"]) <= 0:
                continue
            if not re.search(str(rule.get("deployment", ".*")), deployment.name):
                continue
            if not re.search(str(rule.get("endpoint", ".*")), endpoint.name):
                continue
            if rule.get("times") is not None:
                rule["times"] = int(rule["times"]) - 1
            reason = rules.reason(rule.get("code"))
            error: ErrorBody = {"code": reason.code, "message": str(rule.get("message") or reason.message)}
            console = rules.console_lines(rule) if reason.container_started else []
            return Failure(error, reason, console)
        if deployment.compute_type.lower() == "kubernetes":
            unschedulable = self._schedule(deployment, endpoint)
            if unschedulable is not None:
                return Failure(unschedulable, rules.reason("OutOfQuota"), [])
        started = self._startup(deployment)
        if started is not None and started.failure is not None:
            # The container ran (its console shows the model loading) and a probe gave up: ResourceNotReady.
            reason = rules.reason("ResourceNotReady")
            console = ["Azure ML Inferencing HTTP server v1.3.0", "Initializing logger", "Loading the model: init()"]
            return Failure({"code": reason.code, "message": started.failure}, reason, console)
        return None

    def model_load_seconds(self, ws: WsKey, model: Any) -> float:
        """How long the model a deployment names (by ARM id) takes to load, as seeded (0: at once)."""
        match = re.search(r"/models/([^/]+)/versions/([^/]+)$", str(model or ""), re.IGNORECASE)
        if match is None:
            return 0.0
        return self.load_seconds.get((ws, match.group(1).lower(), match.group(2).lower()), 0.0)

    def _startup(self, deployment: OnlineDeployment) -> startup.Startup | None:
        """How the deployment's container starts its model against its probes (:mod:`.startup`); None for a model
        that loads at once."""
        load = self.model_load_seconds(deployment.ws, deployment.props.get("model"))
        return startup.startup(load, deployment.props) if load > 0 else None

    def _startup_delay(self, deployment: OnlineDeployment) -> float:
        """Real seconds the container's start adds to the deployment's operation: until Ready or given up, on the
        emulator's clock of containers (``V2Config.container_clock`` of their seconds per real second)."""
        started = self._startup(deployment)
        return started.seconds / max(self.config.container_clock, 1e-9) if started is not None else 0.0

    def _settle(self, deployment: OnlineDeployment, op: Operation, failure: Failure | None) -> None:
        """The end of a deployment's operation: its state, what runs, and the operation's status. A failure's reason
        is in the operation's status only (``Azure-AsyncOperation``), never in the deployment's own document, which
        says Failed (or Canceled) and no more (how-to-troubleshoot-online-endpoints: "Deployment operation status
        can report the following common deployment errors")."""
        deployment.modified = time.time()
        if failure is None:
            deployment.state, deployment.serving, deployment.error, deployment.started = "Succeeded", True, None, True
            deployment.console = []
            return
        deployment.state, deployment.error = failure.reason.status, failure.error
        deployment.started = failure.reason.container_started
        deployment.console = failure.console
        op.error = failure.error
        op.state = "Cancelled" if failure.reason.status == "Canceled" else "Failed"

    def _create_deployment(
        self,
        ws: WsKey,
        endpoint: OnlineEndpoint,
        name: str,
        props: dict[str, Any],
        sku_body: dict[str, Any],
        body: dict[str, Any],
    ) -> tuple[int, OnlineDeployment, Operation]:
        deployment = OnlineDeployment(
            ws=ws,
            endpoint=endpoint.name,
            name=name,
            location=self._workspace_location(ws),
            props=props,
            sku=sku_body,
            kind=body.get("kind") or props.get("endpointComputeType"),
            tags=dict(body.get("tags") or {}),
        )
        self._deployments_of(ws, endpoint.name)[name.lower()] = deployment
        latency = self.config.latencies.deployment_create_s + self._startup_delay(deployment)
        op = self._start("Create", f"{endpoint.name}/{name}", ws, latency)

        def settle() -> None:
            failure = self._start_outcome(deployment, endpoint)
            self._settle(deployment, op, failure)
            if failure is not None:
                deployment.placement = []

        op.on_success = settle
        return 201, deployment, op

    def _update_deployment(
        self,
        ws: WsKey,
        endpoint: OnlineEndpoint,
        deployment: OnlineDeployment,
        props: dict[str, Any],
        sku_body: dict[str, Any],
        body: dict[str, Any],
    ) -> tuple[int, OnlineDeployment, Operation]:
        if str(props.get("endpointComputeType")).lower() != deployment.compute_type.lower():
            raise ArmError(400, "BadArgument", "The endpointComputeType of a deployment cannot be changed.")
        previous = (dict(deployment.props), dict(deployment.sku), list(deployment.placement), deployment.serving)
        deployment.props, deployment.sku = props, sku_body
        if "tags" in body:
            deployment.tags = dict(body.get("tags") or {})
        deployment.state = "Updating"
        latency = self.config.latencies.deployment_update_s + self._startup_delay(deployment)
        op = self._start("Update", f"{endpoint.name}/{deployment.name}", ws, latency)

        def settle() -> None:
            failure = self._start_outcome(deployment, endpoint)
            serving = deployment.serving
            self._settle(deployment, op, failure)
            if failure is not None:
                # A failed update leaves the old instances serving with the old settings; the deployment says so.
                deployment.props, deployment.sku, deployment.placement, deployment.serving = previous
                deployment.started = deployment.started or serving

        op.on_success = settle
        return 200, deployment, op

    def patch_deployment(
        self, ws: WsKey, endpoint_name: str, name: str, body: dict[str, Any]
    ) -> tuple[OnlineDeployment, Operation]:
        """PATCH merges ``sku``, ``tags`` and ``properties`` into the deployment, then runs as a PUT would."""
        deployment = self.require_deployment(ws, endpoint_name, name)
        with self._s.lock:
            merged = {
                "properties": {**deployment.props, **dict(body.get("properties") or {})},
                "sku": {**deployment.sku, **dict(body.get("sku") or {})},
                "tags": body.get("tags", deployment.tags),
                "kind": deployment.kind,
            }
        _, found, op = self.put_deployment(ws, endpoint_name, name, merged)
        return found, op

    def delete_deployment(self, ws: WsKey, endpoint_name: str, name: str) -> Operation | None:
        """A deployment that still takes live or mirrored traffic cannot be deleted: Azure answers 400 and asks to
        move its traffic first (how-to-safely-rollout-online-endpoints: set traffic to 0%, then delete)."""
        endpoint = self.require_endpoint(ws, endpoint_name)
        self._s.advance()
        with self._s.lock:
            deployment = self._deployments_of(ws, endpoint.name).get(name.lower())
            if deployment is None:
                return None
            for kind, split in (("traffic", endpoint.traffic), ("mirror traffic", endpoint.props.get("mirrorTraffic"))):
                share = {k.lower(): int(v) for k, v in (split or {}).items()}.get(name.lower(), 0)
                if share > 0:
                    raise ArmError(
                        400,
                        "BadArgument",
                        f"Deployment '{deployment.name}' has {share}% of endpoint '{endpoint.name}' {kind}; set its "
                        "traffic to 0% before deleting it.",
                    )
            if deployment.state == "Deleting":
                raise conflict(f"Deployment '{deployment.name}'", deployment.state)
            deployment.state, deployment.serving = "Deleting", False
            op = self._start(
                "Delete", f"{endpoint.name}/{deployment.name}", ws, self.config.latencies.deployment_delete_s
            )

            def gone() -> None:
                self._deployments_of(ws, endpoint.name).pop(name.lower(), None)

            op.on_success = gone
            return op

    def logs(self, ws: WsKey, endpoint_name: str, name: str, container: str | None, tail: int | None) -> str:
        """``getLogs``: a container's console once it runs; before it starts (or for a deployment that failed
        before it started: an image build, quota, capacity, a canceled operation, unschedulable instances) only "a
        message to try again later" (how-to-troubleshoot-online-endpoints, "Get container logs": "If the specified
        container is up and running, you see its console output. Otherwise, you get a message to try again
        later."). A container that crashed shows what it printed, never the operation's error."""
        d = self.require_deployment(ws, endpoint_name, name)
        if container and container.lower() == "storageinitializer":
            lines = [
                "Starting storage initializer",
                f"Downloading model {d.props.get('model')}",
                f"Downloading code {(d.props.get('codeConfiguration') or {}).get('codeId')}",
                "Storage initializer finished",
            ]
        elif not d.started:
            return rules.NOT_STARTED.format(deployment=d.name)
        elif d.console:
            lines = list(d.console)
        else:
            script = (d.props.get("codeConfiguration") or {}).get("scoringScript", "score.py")
            lines = [
                "Azure ML Inferencing HTTP server v1.3.0",
                f"Entry script: {script}",
                f"Instance type: {d.instance_type}, instances: {d.instance_count}",
            ]
            if d.placement:
                lines.append(f"Scheduled on nodes: {', '.join(d.placement)}")
            if d.serving:
                lines.append("Listening on 0.0.0.0:5001; Booting worker; init() done")
        if tail:
            lines = lines[-int(tail) :]
        return "\n".join(lines) + "\n"

    # -- scoring --------------------------------------------------------------------------------------------

    def endpoint_by_host(self, host: str) -> OnlineEndpoint | None:
        """The managed endpoint behind ``<name>.<region>.inference.ml.azure.com``."""
        labels = host.split(":")[0].lower().split(".")
        if len(labels) < 3:
            return None
        name, region = labels[0], labels[1]
        self._s.advance()
        with self._s.lock:
            for ws, endpoints in self.endpoints.items():
                found = endpoints.get(name)
                if found is not None and not found.compute and self._workspace_location(ws).lower() == region:
                    return found
        return None

    def kube_endpoint(self, name: str) -> OnlineEndpoint | None:
        """A Kubernetes endpoint by name (the inference router serves ``/api/v1/endpoint/<name>/...``)."""
        self._s.advance()
        with self._s.lock:
            for endpoints in self.endpoints.values():
                found = endpoints.get(name.lower())
                if found is not None and found.compute:
                    return found
        return None

    def route(self, endpoint: OnlineEndpoint, header: str | None) -> tuple[OnlineDeployment | None, str | None]:
        """Pick the deployment for one request: the ``azureml-model-deployment`` header if given (it bypasses the
        traffic split, how-to-safely-rollout-online-endpoints), else a draw weighted by ``traffic``. Returns the
        deployment or a reason why none (for a 404)."""
        with self._s.lock:
            deployments = self._deployments_of(endpoint.ws, endpoint.name)
            if header:
                chosen = deployments.get(header.lower())
                return (chosen, None) if chosen is not None else (None, f"Deployment '{header}' not found.")
            weights = [(deployments.get(k.lower()), v) for k, v in endpoint.traffic.items() if v > 0]
            live = [(d, v) for d, v in weights if d is not None]
            if not live:
                return None, "The endpoint doesn't have any valid deployment with positive weight."
            pick = self.rng.uniform(0, sum(v for _, v in live))
            for deployment, weight in live:
                pick -= weight
                if pick <= 0:
                    return deployment, None
            return live[-1][0], None

    # -- Kubernetes computes --------------------------------------------------------------------------------

    def instance_types(self, compute: KubernetesCompute) -> dict[str, dict[str, Any]]:
        """The compute's instance types; the extension's default one when the cluster defines none."""
        return dict(compute.instance_types) or {compute.default_instance_type: dict(DEFAULT_INSTANCE_TYPE)}

    def seed_kube_cluster(
        self,
        resource_id: str,
        nodes: list[KubeNode],
        instance_types: dict[str, dict[str, Any]] | None = None,
        default_instance_type: str | None = None,
    ) -> str:
        """Declare a cluster (AKS or Arc) with the Azure ML extension that a Kubernetes compute may attach."""
        with self._s.lock:
            self.kube_clusters[resource_id.lower()] = KubernetesCompute(
                ws=("", "", ""),
                name=resource_id.rsplit("/", 1)[-1],
                location=self._s.config.location,
                resource_id=resource_id,
                instance_types=dict(instance_types or {}),
                default_instance_type=default_instance_type or "defaultinstancetype",
                nodes=list(nodes),
                state="Succeeded",
            )
        return resource_id

    def kube_compute(self, ws: WsKey, name: str) -> KubernetesCompute | None:
        self._s.advance()
        with self._s.lock:
            return self.kube_computes.get(ws, {}).get(name.lower())

    def list_kube_computes(self, ws: WsKey) -> list[KubernetesCompute]:
        self._s.advance()
        with self._s.lock:
            return list(self.kube_computes.get(ws, {}).values())

    def _require_kube_compute_by_id(self, ws: WsKey, compute_id: str) -> KubernetesCompute:
        """A Kubernetes endpoint names its compute by ARM id (the SDK turns ``compute: k8s`` into one)."""
        name = compute_id.rstrip("/").rsplit("/", 1)[-1]
        compute = self.kube_computes.get(ws, {}).get(name.lower())
        if compute is None:
            raise ArmError(400, "BadArgument", f"Compute '{compute_id}' is not a Kubernetes compute of this workspace.")
        if compute.state != "Succeeded":
            raise ArmError(400, "BadArgument", f"Compute '{compute.name}' is {compute.state}, not Succeeded.")
        return compute

    def attach_kube_compute(
        self, ws: WsKey, name: str, body: dict[str, Any]
    ) -> tuple[int, KubernetesCompute, Operation]:
        """PUT of a ``Kubernetes`` compute: attach the cluster named by ``resourceId`` (an LRO, like v1 computes).
        Instance types come from the request if it carries them, else from the cluster."""
        props = dict(body.get("properties") or {})
        inner = dict(props.get("properties") or {})
        self._s.advance()
        with self._s.lock:
            existing = self.kube_computes.get(ws, {}).get(name.lower())
            if existing is not None and existing.state in BUSY:
                raise conflict(f"Compute '{existing.name}'", existing.state)
            problem = rules.name_problem("compute", name) if existing is None else None
            if problem is not None:  # the rules' sources in .rules; the answer's code and wording are the emulator's
                raise ArmError(400, "BadRequest", problem)
            resource_id = str(props.get("resourceId") or (existing.resource_id if existing else ""))
            cluster = self.kube_clusters.get(resource_id.lower())
            compute = existing or KubernetesCompute(
                ws=ws,
                name=name,
                location=str(body.get("location") or self._workspace_location(ws)),
                resource_id=resource_id,
            )
            compute.namespace = str(inner.get("namespace") or compute.namespace)
            compute.description = props.get("description", compute.description)
            compute.identity = body.get("identity") or compute.identity
            if cluster is not None:
                compute.nodes = [KubeNode(n.name, n.gpus, dict(n.labels)) for n in cluster.nodes]
                compute.instance_types = dict(cluster.instance_types)
                compute.default_instance_type = cluster.default_instance_type
            if inner.get("instanceTypes"):
                compute.instance_types = dict(inner["instanceTypes"])
            if inner.get("defaultInstanceType"):
                compute.default_instance_type = str(inner["defaultInstanceType"])
            error: ErrorBody | None = None
            if cluster is None:
                error = {
                    "code": "ResourceNotFound",
                    "message": f"The Kubernetes cluster '{resource_id}' was not found or has no Azure Machine "
                    "Learning extension.",
                }
            compute.state = "Updating" if existing else "Creating"
            self.kube_computes.setdefault(ws, {})[name.lower()] = compute
            op = self._start("Attach", name, ws, self.config.latencies.compute_attach_s, error=error, scope="compute")

            def settle(state: str) -> None:
                compute.state, compute.modified = state, time.time()

            op.on_success, op.on_failure = (lambda: settle("Succeeded")), (lambda: settle("Failed"))
            return (200 if existing else 201), compute, op

    def detach_kube_compute(self, ws: WsKey, name: str) -> Operation | None:
        self._s.advance()
        with self._s.lock:
            compute = self.kube_computes.get(ws, {}).get(name.lower())
            if compute is None:
                return None
            compute.state = "Deleting"
            op = self._start("Detach", name, ws, self.config.latencies.compute_delete_s, scope="compute")

            def gone() -> None:
                self.kube_computes.get(ws, {}).pop(name.lower(), None)

            op.on_success = gone
            return op

    def free_gpus(self, compute: KubernetesCompute, exclude: OnlineDeployment | None = None) -> dict[str, int]:
        """Free GPUs per node: the node's GPUs less those held by the other deployments placed on it."""
        free = {n.name: n.gpus for n in compute.nodes}
        for (ws, _), deployments in self.deployments.items():
            if ws != compute.ws:
                continue
            for d in deployments.values():
                if d is exclude or not d.placement or d.state == "Deleting":
                    continue
                gpus = instance_gpus(self.instance_types(compute).get(str(d.instance_type), {}))
                for node in d.placement:
                    if node in free:
                        free[node] -= gpus
        return free

    def _schedule(self, deployment: OnlineDeployment, endpoint: OnlineEndpoint) -> ErrorBody | None:
        """Place each instance on one node with enough free GPUs whose labels match the instance type's node
        selector, as the Kubernetes scheduler does (a pod's GPUs come from a single node); the error is the
        scheduler's "0/N nodes are available: N Insufficient nvidia.com/gpu" inside the extension's
        "Couldn't Schedule" message, as in the v1 emulator."""
        compute = self.kube_computes.get(deployment.ws, {}).get(str(endpoint.compute).rsplit("/", 1)[-1].lower())
        if compute is None:
            return {"code": "ResourceNotFound", "message": f"Compute of endpoint '{endpoint.name}' not found."}
        types = {k.lower(): v for k, v in self.instance_types(compute).items()}
        instance_type = types.get(str(deployment.instance_type).lower(), {})
        need = instance_gpus(instance_type)
        selector = dict(instance_type.get("nodeSelector") or {})
        free = self.free_gpus(compute, exclude=deployment)
        eligible = [n for n in compute.nodes if all(n.labels.get(k) == v for k, v in selector.items())]
        placement: list[str] = []
        for _ in range(deployment.instance_count):
            node = next((n for n in eligible if free[n.name] >= need), None)
            if node is None:
                break
            free[node.name] -= need
            placement.append(node.name)
        if len(placement) == deployment.instance_count:
            deployment.placement = placement
            return None
        total = len(compute.nodes)
        reasons = [f"{total - len(eligible)} node(s) didn't match Pod's node affinity/selector"] if selector else []
        short = sum(1 for n in eligible if free[n.name] < need)
        if short:
            reasons.append(f"{short} Insufficient nvidia.com/gpu")
        scheduler = f"0/{total} nodes are available: {', '.join(reasons) or 'no nodes'}."
        # how-to-troubleshoot-online-endpoints, "Kubernetes quota": "The error message typically indicates the resource
        # insufficiency in the cluster, for example OutOfQuota: Kubernetes unschedulable. Details:0/1 nodes are
        # available: 1 Too many pods..."; the counts after it are the emulator's.
        return {
            "code": "OutOfQuota",
            "message": (
                f"Kubernetes unschedulable. Details:{scheduler} Requested {deployment.instance_count} instance(s) of "
                f"'{deployment.instance_type}' with {need} GPU each; {len(placement)} could be placed; "
                f"free GPUs per node: {json.dumps(free)}."
            ),
            "details": [{"code": "PodUnschedulable", "message": scheduler}],
        }

    # -- versioned assets -----------------------------------------------------------------------------------

    def asset(self, ws: WsKey, kind: str, name: str, version: str) -> AssetVersion | None:
        with self._s.lock:
            return self.assets.get((ws, kind.lower()), {}).get(name.lower(), {}).get(version.lower())

    def asset_versions(self, ws: WsKey, kind: str, name: str) -> list[AssetVersion]:
        with self._s.lock:
            return list(self.assets.get((ws, kind.lower()), {}).get(name.lower(), {}).values())

    def asset_names(self, ws: WsKey, kind: str) -> list[str]:
        with self._s.lock:
            found = self.assets.get((ws, kind.lower()), {})
            return [next(iter(v.values())).name for v in found.values() if v]

    def put_asset(
        self, ws: WsKey, kind: str, name: str, version: str, props: dict[str, Any]
    ) -> tuple[int, AssetVersion]:
        """Create a version (201) or update its mutable fields (200). Azure keeps a version's content immutable:
        changing a model's or code's path is refused (the SDK maps that answer to ``AssetPathException``)."""
        with self._s.lock:
            versions = self.assets.setdefault((ws, kind.lower()), {}).setdefault(name.lower(), {})
            existing = versions.get(version.lower())
            if existing is not None:
                for key in ("modelUri", "codeUri", "image", "condaFile"):
                    if key in props and key in existing.props and props[key] != existing.props[key]:
                        raise ArmError(
                            409,
                            "UserError",
                            f"The {kind[:-1]} version {name}:{version} already exists with a different {key}; "
                            "asset versions are immutable.",
                        )
                existing.props.update({k: props[k] for k in ("description", "tags", "properties") if k in props})
                existing.modified = time.time()
                return 200, existing
            # The property dictionary holds strings (ResourceBase.properties in the specification); azure-ai-ml sends
            # a code version's "hash_version" as a number (see contract.conformance.TOLERATED), kept as its text.
            if isinstance(props.get("properties"), dict):
                props["properties"] = {k: None if v is None else str(v) for k, v in props["properties"].items()}
            created = AssetVersion(kind=kind.lower(), name=name, version=version, props=props)
            versions[version.lower()] = created
            return 201, created

    def delete_asset(self, ws: WsKey, kind: str, name: str, version: str) -> bool:
        with self._s.lock:
            return self.assets.get((ws, kind.lower()), {}).get(name.lower(), {}).pop(version.lower(), None) is not None
