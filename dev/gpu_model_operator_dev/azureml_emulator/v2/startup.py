"""How a deployment's container starts when its model takes time to load: its liveness and readiness probes try
while ``init()`` runs, and fail until it has returned.

Azure's rules, from the deployment's ProbeSettings (MicrosoftDocs/azure-ai-docs,
articles/machine-learning/reference-yaml-deployment-managed-online.md at commit
ecec4d11a6d9eb39da3b41f3ceef9b6de0b2203c, "ProbeSettings"): a probe first tries ``initial_delay`` seconds after the
container started, then every ``period`` seconds; "When a probe fails, the system will try failure_threshold times
before giving up. Giving up in the case of a liveness probe means the container will be restarted. In the case of a
readiness probe the container will be marked Unready"; ``success_threshold`` successes in a row make it pass. And
what Azure reports then (articles/machine-learning/how-to-troubleshoot-online-endpoints.md at commit
112100ce80671708ca6b2f7ea53c2f08d05706e6, "ERROR: ResourceNotReady"): "Container initialization takes too long, so
the readiness or liveness probe fails beyond the failure threshold. In this case, adjust probe settings to allow a
longer time to initialize the container."

The emulator's own choices, where the documentation is silent: a try made while the model loads fails (the
inference server answers no route before ``init()`` has returned), one made after succeeds at once; the deployment's
operation fails (ResourceNotReady) when the first probe gives up, as a container restarted by its liveness probe
loads again and gives up again; its error's wording is the emulator's. A model with no load time starts as before,
with no probe timing at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import isodate

#: Azure's defaults (the same page's ProbeSettings table): initial delay 10 s, period 10 s, timeout 2 s, success
#: threshold 1, failure threshold 30.
DEFAULTS = {
    "initialDelay": "PT10S",
    "period": "PT10S",
    "timeout": "PT2S",
    "successThreshold": 1,
    "failureThreshold": 30,
}


@dataclass(frozen=True)
class Probe:
    """One probe's timing, in seconds."""

    initial_delay: float
    period: float
    success: int
    failure: int

    @staticmethod
    def of(settings: Mapping[str, Any] | None) -> Probe:
        """A probe from a deployment's ProbeSettings (ISO 8601 durations), Azure's defaults where unset."""
        given = {**DEFAULTS, **{k: v for k, v in dict(settings or {}).items() if v is not None}}
        return Probe(
            initial_delay=seconds(given["initialDelay"]),
            period=max(seconds(given["period"]), 1.0),
            success=max(int(given["successThreshold"]), 1),
            failure=max(int(given["failureThreshold"]), 1),
        )

    def tries_before(self, load: float) -> int:
        """How many tries fail: those made before the model has loaded."""
        return 0 if load <= self.initial_delay else math.ceil((load - self.initial_delay) / self.period)

    def at(self, index: int) -> float:
        return self.initial_delay + index * self.period

    def gives_up(self, load: float) -> float | None:
        """When the ``failure``-th failure in a row comes, if it comes before the model has loaded."""
        return self.at(self.failure - 1) if self.tries_before(load) >= self.failure else None

    def passes(self, load: float) -> float:
        """When the ``success``-th success in a row comes (the probe does not give up first)."""
        return self.at(self.tries_before(load) + self.success - 1)


@dataclass(frozen=True)
class Startup:
    """From the container's start: when it is Ready, or when it was given up and why."""

    seconds: float
    failure: str | None = None


def seconds(duration: Any) -> float:
    """An ISO 8601 duration (``PT10S``) or a number of seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    return float(isodate.parse_duration(str(duration)).total_seconds())


def startup(load: float, props: Mapping[str, Any]) -> Startup:
    """How the container of a deployment with these properties starts a model that loads for ``load`` seconds: the
    first probe to give up ends it, else it is Ready once its readiness probe passes."""
    liveness, readiness = Probe.of(props.get("livenessProbe")), Probe.of(props.get("readinessProbe"))
    given_up = [
        (when, name, probe, outcome)
        for name, probe, outcome in (
            ("liveness", liveness, "the container was restarted while the model was loading"),
            ("readiness", readiness, "the container was marked Unready"),
        )
        if (when := probe.gives_up(load)) is not None
    ]
    if not given_up:
        return Startup(readiness.passes(load))
    when, name, probe, outcome = min(given_up, key=lambda found: found[0])
    why = (
        f"The {name} probe failed {probe.failure} times in a row (initial delay {probe.initial_delay:g}s, period "
        f"{probe.period:g}s; the last try {when:g}s after the container started) while the model was still loading "
        f"({load:g}s): {outcome}. Adjust the probe settings to allow a longer time to initialize the container. "
        "Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-resourcenotready"
    )
    return Startup(when, why)
