"""Azure Resource Manager's request throttling: token buckets per region, subscription, principal and kind.

Why: at real scale the calls an operator makes are its speed. ARM gives each caller a bucket of tokens per kind
of request and answers 429 once it is empty; an emulator with unlimited calls measures the CPU of the machine
instead. The source of every rule below is "Understand how Azure Resource Manager throttles requests"
(learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling, its section on
regional throttling and the token bucket algorithm, the limits Microsoft moved subscriptions to from 2024), unless
another is named:

- "The token bucket represents the maximum number of requests that you can send for each second. When you reach
  the maximum number of requests, the refill rate determines how quickly tokens become available in the bucket."
  Its table: subscription reads 250 refilled at 25 per second, deletes 200 at 10, writes 200 at 10; the tenant's
  the same (:data:`PUBLISHED`). Free and trial subscriptions may have lower limits: a test sets any sizes and rates.
- The subscription limits apply per subscription, per service principal and per operation type; a global
  subscription limit of 15 times a principal's, per operation type, applies across all principals; a request is
  throttled when the global, the principal's or the tenant's limit is exceeded. The principal is the token's object
  id (``oid``), the "actor" ARM names in its 429. The global bucket is 15 times the size and the refill rate; the
  document gives the factor for the limit, ARM's answers agree on the size (a first read answers
  ``x-ms-ratelimit-remaining-subscription-reads: 249`` and ``...-global-reads: 3749``, e.g. a Terraform azapi
  provider debug log posted publicly, 2025-09-02), and nothing published gives the global refill rate.
- "The new throttling limits are applied per region rather than per instance of Azure Resource Manager": the
  region of the ARM front end that serves the caller (ARM's ``x-ms-routing-request-id: EASTUS2:...``), the
  caller's and not the resource's. One emulator is one such region (:attr:`ThrottlingConfig.region`, default its
  location).
- Tenant requests (those without a subscription id, such as listing subscriptions) count against the tenant's
  buckets, per tenant and principal.
- "The response includes a Retry-After value, which specifies the number of seconds your application should wait
  (or sleep) before sending the next request. If you send a request before the retry value has elapsed, your
  request isn't processed and a new retry value is returned": a refused request takes no token, and its
  Retry-After is the whole seconds until every empty bucket it needs holds a token again (rounded up: never short).
- "Read requests return a value in the header for the number of remaining read requests. Write requests include a
  value for the number of remaining write requests": every ARM answer (a success, an error of the resource
  provider, a 429) carries the tokens left of its own kind after it, ``x-ms-ratelimit-remaining-subscription-
  {reads,writes,deletes}`` (the document's table) and ``...-subscription-global-{kind}`` (ARM's answers, above);
  tenant requests the documented ``x-ms-ratelimit-remaining-tenant-{reads,writes}`` (none is documented for tenant
  deletes, so none is sent).
- Kinds: a GET or HEAD is a read, a DELETE a delete, any other method a write, POST actions included: the
  document's guide to compute throttling reads ``x-ms-ratelimit-remaining-subscription-reads`` "for GET requests
  and ``x-ms-ratelimit-remaining-subscription-writes`` response headers for non-GET requests". So an endpoint's
  ``listKeys`` takes a write token.

Where the emulator chooses: the Azure Updates announcement of the token buckets ("Public Preview: Modernizing Azure
Resource Manager Throttling", 2024-03-13) adds tokens "every second"; the emulator adds them continuously at the
same rate, up to the size, which a Retry-After in whole seconds covers either way. The 429's body is the
``SubscriptionRequestsThrottled`` error ARM's answers carry ("Number of 'read' requests for subscription '...'
actor '...' exceeded. Please try again after '10' seconds."); nothing published shows a tenant bucket's 429, so
the emulator answers those with the same message and the generic ``TooManyRequests`` code.

Which calls are ARM's: those under ``/subscriptions``, ``/tenants`` and ``/providers`` (``management.azure.com``).
The v1 SDK's model management, workspace, artifact and discovery services are on the workspace's regional Azure ML
host, not ARM; ARM's document does not cover them and Azure ML's documentation publishes no request limits for
them, so they are not throttled here. Sign-in, scoring and storage are not ARM either.

Off by default (the emulator's tests drive the SDKs at full speed); on through ``POST /_emulator/throttling`` or
``--arm-throttling``. Counting is always on: every call by surface and kind, for the benchmarks.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import auth

if TYPE_CHECKING:
    from .state import EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: ARM's bucket per kind of request, and the kind a call of each counted kind takes.
BUCKETS = ("reads", "writes", "deletes")
BUCKET_OF = {"read": "reads", "write": "writes", "keys": "writes", "delete": "deletes"}
_SINGULAR = {"reads": "read", "writes": "write", "deletes": "delete"}
GLOBAL_FACTOR = 15.0


@dataclass(frozen=True)
class Limit:
    """A bucket's size (tokens) and refill rate (tokens per second)."""

    size: float
    refill_per_s: float


#: "Subscription | reads | 250 | 25", "deletes | 200 | 10", "writes | 200 | 10" (tenant: the same).
PUBLISHED = {"reads": Limit(250.0, 25.0), "writes": Limit(200.0, 10.0), "deletes": Limit(200.0, 10.0)}


@dataclass
class ThrottlingConfig:
    """Whether ARM's buckets apply, and their sizes; survives ``POST /_emulator/reset``, as the configuration does."""

    enabled: bool = False
    limits: dict[str, Limit] = field(default_factory=lambda: dict(PUBLISHED))
    #: The global subscription bucket, per kind, is this many times a principal's (size and refill).
    global_factor: float = GLOBAL_FACTOR
    #: The ARM region serving the calls ("" : the emulator's location).
    region: str = ""


def parse_config(body: Mapping[str, Any], current: ThrottlingConfig) -> ThrottlingConfig:
    """``current`` changed by what ``body`` names: ``enabled``, ``limits`` (``{kind: {size, refill_per_s}}``),
    ``global_factor``, ``region``; ``"limits": "published"`` puts ARM's back. Raises ValueError on anything else."""
    unknown = set(body) - {"enabled", "limits", "global_factor", "region"}
    if unknown:
        raise ValueError(f"unknown throttling settings {sorted(unknown)}")
    limits = dict(current.limits)
    given = body.get("limits", {})
    if given == "published":
        limits, given = dict(PUBLISHED), {}
    for kind, value in (given or {}).items():
        if kind not in BUCKETS:
            raise ValueError(f"unknown bucket {kind!r}; known: {', '.join(BUCKETS)}")
        limit = Limit(float(value["size"]), float(value["refill_per_s"]))
        if limit.size < 1 or limit.refill_per_s <= 0:
            raise ValueError(f"{kind}: a bucket holds at least 1 token and refills at a positive rate")
        limits[kind] = limit
    factor = float(body.get("global_factor", current.global_factor))
    if factor < 1:
        raise ValueError("global_factor: the global bucket is at least a principal's")
    enabled = body.get("enabled", current.enabled)
    if not isinstance(enabled, bool):
        raise ValueError("enabled: true or false")
    return ThrottlingConfig(enabled, limits, factor, str(body.get("region", current.region)))


class TokenBucket:
    """Tokens refilled continuously at ``refill_per_s`` up to ``size``; full when made."""

    def __init__(self, limit: Limit, now: float) -> None:
        self.size, self.rate = limit.size, limit.refill_per_s
        self.tokens, self.stamp = limit.size, now

    def level(self, now: float) -> float:
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def wait_for_one(self, now: float) -> float:
        """Seconds until the bucket holds one token."""
        return max(0.0, (1.0 - self.level(now)) / self.rate)


@dataclass(frozen=True)
class Scope:
    """Whose buckets a call takes from: a subscription's (and its global one) or a tenant's, per principal."""

    level: str  # "subscription" or "tenant"
    owner: str  # the subscription id or the tenant id, lower case
    principal: str


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    headers: dict[str, str]
    retry_after_s: int = 0


class Throttling:
    """The buckets and the call counts of one emulator; thread-safe (the test thread reads while the loop serves)."""

    def __init__(self, config: ThrottlingConfig | None = None) -> None:
        self.config = config or ThrottlingConfig()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def configure(self, body: Mapping[str, Any]) -> ThrottlingConfig:
        """New settings; the buckets start full under them (a change of sizes is a new cloud, as after reset)."""
        with self._lock:
            self.config = parse_config(body, self.config)
            self._buckets.clear()
            return self.config

    def reset(self) -> None:
        """Full buckets and no counts; the configuration stays."""
        with self._lock:
            self._buckets.clear()
            self._counts.clear()

    def clear_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def count(self, surface: str, kind: str, outcome: str) -> None:
        with self._lock:
            self._counts[(surface, kind, outcome)] += 1

    def _bucket(self, key: tuple[str, ...], limit: Limit, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(limit, now)
        return bucket

    def take(self, scope: Scope, kind: str, region: str, now: float | None = None) -> Verdict:
        """One token of ``kind`` from each bucket ``scope`` answers to, or none and a 429's Retry-After."""
        now = time.monotonic() if now is None else now
        with self._lock:
            limit, factor = self.config.limits[kind], self.config.global_factor
            own = self._bucket((region, scope.level, scope.owner, scope.principal, kind), limit, now)
            pairs = [(f"x-ms-ratelimit-remaining-{scope.level}-{kind}", own)]
            if scope.level == "subscription":
                scaled = Limit(limit.size * factor, limit.refill_per_s * factor)
                shared = self._bucket((region, scope.level, scope.owner, "", kind), scaled, now)
                pairs.append((f"x-ms-ratelimit-remaining-subscription-global-{kind}", shared))
            waits = [b.wait_for_one(now) for _, b in pairs]
            admitted = max(waits) == 0.0
            if admitted:
                for _, bucket in pairs:
                    bucket.tokens -= 1
            headers = {
                name: str(int(bucket.tokens))
                for name, bucket in pairs
                if not (scope.level == "tenant" and kind == "deletes")
            }
            return Verdict(admitted, headers, 0 if admitted else max(1, math.ceil(max(waits))))

    def snapshot(self) -> dict[str, Any]:
        """The configuration, the counts (``[{surface, kind, bucket, calls, throttled}]``) and every bucket's level."""
        now = time.monotonic()
        with self._lock:
            rows: dict[tuple[str, str], dict[str, Any]] = {}
            for (surface, kind, outcome), n in sorted(self._counts.items()):
                row = rows.setdefault(
                    (surface, kind),
                    {
                        "surface": surface,
                        "kind": kind,
                        "bucket": BUCKET_OF.get(kind) if surface == "arm" else None,
                        "calls": 0,
                        "throttled": 0,
                    },
                )
                row["calls"] += n
                row["throttled"] += n if outcome == "throttled" else 0
            buckets = [
                {
                    "region": key[0],
                    "level": key[1],
                    "owner": key[2],
                    "principal": key[3] or None,
                    "kind": key[4],
                    "size": b.size,
                    "refill_per_s": b.rate,
                    "tokens": b.level(now),
                }
                for key, b in sorted(self._buckets.items())
            ]
            return {"config": dataclasses.asdict(self.config), "calls": list(rows.values()), "buckets": buckets}


# -- which calls are ARM's, and of which kind ---------------------------------------------------------------------

_ARM_PREFIXES = ("/subscriptions", "/tenants", "/providers/")
_AUTH_MARKS = ("/oauth2/", "/.well-known/", "/common/discovery/", "/metadata/")
_SCORING_PREFIXES = ("/api/v1/service/", "/api/v1/endpoint/")


def classify(method: str, host: str, path: str, storage_suffix: str, scoring_suffix: str) -> tuple[str, str]:
    """(surface, kind) of a call. Surfaces: ``arm``; ``workspace`` (the v1 SDK's Azure ML services on the regional
    host: model management, workspace API, artifacts, discovery); ``auth``; ``scoring``; ``storage``. Kinds:
    ``probe`` (scoring), ``auth``, ``keys`` (a listKeys), else ``read``, ``write`` or ``delete`` by method."""
    name = host.split(":")[0].lower()
    if name.endswith("." + scoring_suffix) or path.startswith(_SCORING_PREFIXES):
        return "scoring", "probe"
    if any(mark in path for mark in _AUTH_MARKS):
        return "auth", "auth"
    if name.endswith("." + storage_suffix):
        surface = "storage"
    elif path == "/subscriptions" or path.startswith(_ARM_PREFIXES):
        surface = "arm"
    else:
        surface = "workspace"
    if method == "POST" and path.lower().endswith("/listkeys"):
        return surface, "keys"
    if method in ("GET", "HEAD"):
        return surface, "read"
    return surface, "delete" if method == "DELETE" else "write"


def scope_of(request: web.Request, signing_key: bytes) -> Scope | None:
    """The buckets of an ARM call: its subscription's (from the path) or its tenant's, for the token's principal;
    None when the token is missing or not this emulator's (the bearer check answers 401 before ARM counts)."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    try:
        claims = auth.token_claims(signing_key, header[7:].strip())
    except auth.TokenRejected:
        return None
    principal = str(claims.get("oid") or claims.get("appid") or claims.get("sub") or "")
    parts = request.path.split("/")
    if len(parts) > 2 and parts[1].lower() == "subscriptions" and parts[2]:
        return Scope("subscription", parts[2].lower(), principal)
    return Scope("tenant", str(claims.get("tid", "")).lower(), principal)


def throttled(scope: Scope, kind: str, verdict: Verdict) -> web.Response:
    """ARM's 429: ``SubscriptionRequestsThrottled`` naming the kind, the subscription (or tenant) and the actor."""
    message = (
        f"Number of '{_SINGULAR[kind]}' requests for {scope.level} '{scope.owner}' actor '{scope.principal}' "
        f"exceeded. Please try again after '{verdict.retry_after_s}' seconds."
    )
    code = "SubscriptionRequestsThrottled" if scope.level == "subscription" else "TooManyRequests"
    headers = {**verdict.headers, "Retry-After": str(verdict.retry_after_s)}
    return web.json_response({"error": {"code": code, "message": message}}, status=429, headers=headers)


def middleware(state: EmulatorState, scoring_suffix: str) -> Middleware:
    """Counts every call; throttles ARM's when enabled and adds the remaining-requests headers to their answers."""

    @web.middleware
    async def arm_throttling(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await handler(request)
        throttling = state.throttling
        surface, kind = classify(
            request.method, request.host, request.path, state.config.storage_suffix, scoring_suffix
        )
        scope = scope_of(request, state.signing_key) if surface == "arm" and throttling.config.enabled else None
        if scope is None:
            throttling.count(surface, kind, "answered")
            return await handler(request)
        bucket = BUCKET_OF[kind]
        verdict = throttling.take(scope, bucket, throttling.config.region or state.config.location.lower())
        throttling.count(surface, kind, "answered" if verdict.admitted else "throttled")
        if not verdict.admitted:
            return throttled(scope, bucket, verdict)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # an error raised by a route is an answer too, and carries the headers
            exc.headers.update(verdict.headers)
            raise
        response.headers.update(verdict.headers)
        return response

    return arm_throttling


def admin_routes(state: EmulatorState) -> list[web.RouteDef]:
    """``GET /_emulator/throttling`` (configuration, counts, buckets), ``POST`` (settings), ``DELETE
    /_emulator/throttling/calls`` (zero the counts, as ``DELETE /_emulator/calls`` empties the log)."""

    async def get(request: web.Request) -> web.Response:
        return web.json_response(state.throttling.snapshot())

    async def post(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected an object")
            state.throttling.configure(body)
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": f"bad throttling settings: {exc}"}, status=400)
        return web.json_response(state.throttling.snapshot())

    async def clear(request: web.Request) -> web.Response:
        state.throttling.clear_counts()
        return web.json_response(state.throttling.snapshot())

    return [
        web.get("/_emulator/throttling", get),
        web.post("/_emulator/throttling", post),
        web.delete("/_emulator/throttling/calls", clear),
    ]
