"""Fault injection, configured at run time through ``POST /_emulator/faults``.

Why: the operator must tell transient failures (throttling with Retry-After, 5xx, dropped connections, slow
answers) from permanent ones (quota, a failed deployment) and must not hot-loop on either. Tests arm a rule,
drive the operator, then count the calls in ``GET /_emulator/calls``.

A rule is JSON, e.g. ``{"action": "status", "status": 429, "retry_after": 3, "method": "GET",
"path": "/services/", "times": 2}``. HTTP actions act on matching requests before any handler runs:

- ``status``: answer ``status`` (default 503) with an Azure-style error body, ``Retry-After`` if
  ``retry_after`` is set (429 defaults to 1 second);
- ``reset``: drop the TCP connection without an answer;
- ``delay``: wait ``delay_s`` seconds, then answer normally.

Resource actions change what the emulated cloud does, matched on the resource ``name`` (regex):

- ``operation_failed``: the next create/update/delete operation of a ``target`` (``service`` or ``compute``)
  ends ``op_state`` (Failed, or Cancelled / TimedOut) with ``code``/``message``;
- ``compute_quota``: a compute create fails with a core-quota error (``sync: true``: the PUT itself answers
  400; otherwise the async operation fails, as AKS provisioning does);
- ``compute_stuck``: a compute create never leaves ``Creating``.

``times`` limits how many matches a rule takes (default: unlimited); ``probability`` applies it to a
fraction of matches (seeded, so runs repeat).
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

HTTP_ACTIONS = frozenset({"status", "reset", "delay"})
RESOURCE_ACTIONS = frozenset({"operation_failed", "compute_quota", "compute_stuck"})

_DEFAULT_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "AuthorizationFailed",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class FaultRule:
    """One armed fault. Regexes are searched (``re.search``), the method is matched whole, case-insensitively."""

    action: str
    method: str = ".*"
    path: str = ".*"
    host: str = ".*"
    status: int = 503
    retry_after: float | None = None
    body: Any = None
    delay_s: float = 0.0
    times: int | None = None
    probability: float = 1.0
    target: str = "service"
    name: str = ".*"
    code: str | None = None
    message: str | None = None
    sync: bool = False
    op_state: str = "Failed"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        """Build a rule from the admin API's JSON, refusing unknown keys and actions early."""
        known = set(cls.__dataclass_fields__) - {"id", "hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        rule = cls(**data)
        if rule.action not in HTTP_ACTIONS | RESOURCE_ACTIONS:
            raise ValueError(f"unknown fault action {rule.action!r}")
        if rule.target not in ("service", "compute"):
            raise ValueError("target must be 'service' or 'compute'")
        if rule.op_state not in ("Failed", "Cancelled", "TimedOut"):
            raise ValueError("op_state must be Failed, Cancelled or TimedOut")
        if rule.action == "status" and rule.status == 429 and rule.retry_after is None:
            rule.retry_after = 1
        for pattern in (rule.method, rule.path, rule.host, rule.name):
            re.compile(pattern)
        return rule

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def error_body(self) -> dict[str, Any]:
        """Azure answers carry both shapes: ARM's ``{"error": {...}}`` and the MMS top-level fields."""
        if self.body is not None:
            return self.body if isinstance(self.body, dict) else {"message": str(self.body)}
        code = self.code or _DEFAULT_CODES.get(self.status, "Error")
        message = self.message or f"Injected fault: HTTP {self.status} {code}."
        return {
            "code": code,
            "statusCode": self.status,
            "message": message,
            "error": {"code": code, "message": message},
        }


class FaultInjector:
    """Thread-safe set of rules; the server and the emulated resources both consult it."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self, seed: int | None = None) -> None:
        with self._lock:
            self._rules.clear()
            if seed is not None:
                self._random.seed(seed)

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def _take(self, rule: FaultRule) -> bool:
        """Count a match against the rule's budget and roll its probability (caller holds the lock)."""
        if rule.exhausted:
            return False
        if rule.probability < 1.0 and self._random.random() >= rule.probability:
            return False
        rule.hits += 1
        return True

    def match_http(self, method: str, host: str, path: str) -> FaultRule | None:
        """The first live HTTP rule matching this request, counted as used."""
        with self._lock:
            for rule in self._rules:
                if rule.action not in HTTP_ACTIONS:
                    continue
                if not re.fullmatch(rule.method, method, re.IGNORECASE):
                    continue
                if not re.search(rule.path, path) or not re.search(rule.host, host):
                    continue
                if self._take(rule):
                    return rule
        return None

    def match_resource(self, actions: set[str], target: str, name: str) -> FaultRule | None:
        """The first live resource rule of one of ``actions`` for this target and resource name."""
        with self._lock:
            for rule in self._rules:
                if rule.action not in actions:
                    continue
                if rule.action == "operation_failed" and rule.target != target:
                    continue
                if not re.search(rule.name, name):
                    continue
                if self._take(rule):
                    return rule
        return None
