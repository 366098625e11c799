"""Azure Monitor's metrics of online endpoints: what scoring counted, served at ``{endpoint id}/providers/
Microsoft.Insights/metrics`` (the Metrics List operation), ARM-authenticated as every route under ``/subscriptions``.

What Azure documents, and the emulator does:

- the metric: ``RequestsPerMinute`` of ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``, "the number
  of requests sent to online endpoint within a minute", unit Count, aggregation Average, dimensions ``deployment``,
  ``statusCode``, ``statusCodeClass``, ``modelStatusCode``, grain PT1M (Azure Monitor's supported-metrics page for
  the resource type, MicrosoftDocs/azure-monitor-docs, supported-metrics/microsoft-machinelearningservices-
  workspaces-onlineendpoints-metrics.md). Each minute has one sample, its count: Average, Total, Minimum and Maximum
  of a minute are that count, and Count is 1;
- the request and its answer: Azure Monitor's REST specification, Microsoft.Insights stable 2023-10-01
  (metrics_API.json: ``timespan`` "start/end", ``interval``, ``metricnames``, ``aggregation``, ``$filter`` "A eq 'a1'
  and B eq '*'" splitting by B, ``top`` series (10 by default, "valid only if $filter is specified");
  the ``Response``: ``cost``, ``timespan``, ``interval``, ``namespace``, ``resourceregion`` and ``value``, a metric
  with ``timeseries`` of ``metadatavalues`` and ``data``, as its GetMetric example answers);
- mirrored requests count as the deployment's that answered them (how-to-safely-rollout-online-endpoints: mirroring
  lets you "gather metrics and logging without impacting your clients").

Where the documentation is silent, the emulator's choice, said here: a request refused before a deployment was chosen
(401, 404) is not counted (which ``deployment`` value Azure gives it is not documented); ``statusCodeClass`` values
are ``2xx``..``5xx``, as other Azure resource types' ``StatusCodeClass`` filters are written (``'5xx'``); a minute is
in a timespan when it overlaps it (how Azure aligns a timespan that does not fall on the grain is not documented);
the default timespan is the last hour; only the PT1M grain and api-version 2023-10-01 are modelled (other grains and
versions are refused with a 400 whose wording is the emulator's); minutes without requests carry a timestamp and no
value, as a Count metric's empty minutes do in Azure's answers.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..resources import WsKey
from .routes import WS, arm_errors, workspace_key
from .store_errors import ArmError

if TYPE_CHECKING:
    from ..state import EmulatorState

METRICS_API = "2023-10-01"
NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS = "RequestsPerMinute"
DIMENSIONS = ("deployment", "statusCode", "statusCodeClass", "modelStatusCode")
AGGREGATIONS = ("average", "total", "minimum", "maximum", "count")
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


@dataclass
class RequestLog:
    """Requests that reached a deployment, per endpoint, minute and dimension values."""

    counts: Counter[tuple[WsKey, str, int, tuple[str, str, str, str]]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ws: WsKey, endpoint: str, deployment: str, status: int, model_status: int | None = None) -> None:
        minute = int(time.time() // 60 * 60)
        dims = (deployment, str(status), f"{status // 100}xx", str(model_status) if model_status else "")
        with self.lock:
            self.counts[(ws, endpoint.lower(), minute, dims)] += 1

    def minutes(self, ws: WsKey, endpoint: str) -> dict[int, list[tuple[tuple[str, str, str, str], int]]]:
        found: dict[int, list[tuple[tuple[str, str, str, str], int]]] = {}
        with self.lock:
            for (w, e, minute, dims), n in self.counts.items():
                if w == ws and e == endpoint.lower():
                    found.setdefault(minute, []).append((dims, n))
        return found


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise _bad(f"Invalid timespan: {text}") from exc


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _filter(text: str) -> dict[str, set[str]]:
    """``$filter`` as dimension -> values (``*``: split by it, any value); names as the metric defines them."""
    wanted: dict[str, set[str]] = {}
    names = {d.lower(): d for d in DIMENSIONS}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        for alternative in re.split(r"\s+or\s+", part, flags=re.IGNORECASE):
            found = _CLAUSE.match(alternative)
            if found is None or found[1].lower() not in names:
                raise _bad(f"Invalid $filter: {text} (dimensions of {REQUESTS}: {', '.join(DIMENSIONS)})")
            wanted.setdefault(names[found[1].lower()], set()).add(found[2].lower())
    return wanted


def _series(
    minutes: dict[int, list[tuple[tuple[str, str, str, str], int]]], wanted: dict[str, set[str]], span: list[int]
) -> dict[tuple[str, ...], Counter[int]]:
    """Counts per minute of each combination of the filtered dimensions' values (the others summed)."""
    split = [d for d in DIMENSIONS if d in wanted]
    series: dict[tuple[str, ...], Counter[int]] = {}
    for minute in span:
        for dims, n in minutes.get(minute, []):
            values = dict(zip(DIMENSIONS, dims, strict=True))
            if any("*" not in wanted[d] and values[d].lower() not in wanted[d] for d in split):
                continue
            series.setdefault(tuple(values[d] for d in split), Counter())[minute] += n
    return series


def metrics(state: EmulatorState, ws: WsKey, endpoint: str, query: Any) -> dict[str, Any]:
    """The Metrics List answer for the endpoint, as the module says."""
    found = state.v2.require_endpoint(ws, endpoint)
    names = [n.strip() for n in str(query.get("metricnames") or REQUESTS).split(",") if n.strip()]
    if [n.lower() for n in names] != [REQUESTS.lower()]:
        raise _bad(f"Failed to find metric configuration for metrics {', '.join(names)}; valid metrics: {REQUESTS}")
    namespace = query.get("metricnamespace")
    if namespace and namespace.lower() != NAMESPACE.lower():
        raise _bad(f"Invalid metric namespace {namespace} for {NAMESPACE}")
    if (query.get("interval") or "PT1M").upper() != "PT1M":
        raise _bad(f"The emulator serves {REQUESTS} at its own grain, PT1M, only; not {query.get('interval')}")
    aggregations = [a.strip().lower() for a in str(query.get("aggregation") or "average").split(",") if a.strip()]
    if not set(aggregations) <= set(AGGREGATIONS):
        raise _bad(f"Invalid aggregation {query.get('aggregation')}: one of {', '.join(AGGREGATIONS)}")
    now = time.time()
    start, end = (_time(t) for t in str(query.get("timespan") or f"{_iso(now - 3600)}/{_iso(now)}").split("/", 1))
    span = list(range(int(start // 60 * 60), int(end), 60)) if end > start else []
    wanted = _filter(str(query.get("$filter") or ""))
    top = int(query.get("top") or 10)
    series = _series(state.v2.request_log.minutes(ws, endpoint), wanted, span)
    ranked = sorted(series.items(), key=lambda item: -sum(item[1].values()))[:top]
    split = [d for d in DIMENSIONS if d in wanted]
    arm_id = f"{state.v2.workspace_arm_id(ws)}/onlineEndpoints/{found.name}"
    return {
        "cost": len(span),
        "timespan": f"{_iso(start)}/{_iso(end)}",
        "interval": "PT1M",
        "namespace": NAMESPACE,
        "resourceregion": found.location,
        "value": [
            {
                "id": f"{arm_id}/providers/Microsoft.Insights/metrics/{REQUESTS}",
                "type": "Microsoft.Insights/metrics",
                "name": {"value": REQUESTS, "localizedValue": "Requests Per Minute"},
                "displayDescription": "The number of requests sent to online endpoint within a minute",
                "unit": "Count",
                "timeseries": [
                    {
                        "metadatavalues": [
                            {"name": {"value": d.lower(), "localizedValue": d}, "value": v}
                            for d, v in zip(split, values, strict=True)
                        ],
                        "data": [_point(minute, counts[minute], aggregations) for minute in span],
                    }
                    for values, counts in ranked
                ],
                "errorCode": "Success",
            }
        ],
    }


def _point(minute: int, n: int, aggregations: list[str]) -> dict[str, Any]:
    point: dict[str, Any] = {"timeStamp": _iso(minute)}
    if n:
        point.update({a: (1.0 if a == "count" else float(n)) for a in aggregations})
    return point


def routes(state: EmulatorState) -> list[web.RouteDef]:
    @arm_errors
    async def list_metrics(request: web.Request) -> web.Response:
        ws = workspace_key(state, request)
        version = request.query.get("api-version")
        if not version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if version != METRICS_API:
            raise _bad(f"The emulator models Azure Monitor's metrics at api-version {METRICS_API}, not {version}")
        return web.json_response(metrics(state, ws, request.match_info["e"], request.query))

    return [web.get(WS + "/onlineEndpoints/{e}/providers/Microsoft.Insights/metrics", list_metrics)]
