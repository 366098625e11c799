"""A per-resource budget of backend calls, so one resource cannot spend a subscription's Azure quota.

Azure Resource Manager throttles reads and writes per principal and subscription, for every deployment the
operator manages together. A resource that keeps failing, or a bug that polls too often, must not starve the
others: each resource may spend at most ``limit`` backend calls in any window of ``window_seconds`` (the resync
interval); past that its next pass waits until the oldest call leaves the window. Deletion is never held
back: stopping what bills always goes first.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class CallBudget:
    """Sliding-window counts of backend calls per resource ("namespace/name"); ``limit`` 0 means no limit."""

    def __init__(self, limit: int, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window_seconds, clock
        self._calls: defaultdict[str, deque[float]] = defaultdict(deque)

    def _trim(self, owner: str, now: float) -> deque[float]:
        calls = self._calls[owner]
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        return calls

    def spend(self, owner: str) -> None:
        if self.limit:
            now = self._clock()
            self._trim(owner, now).append(now)

    def spent(self, owner: str) -> int:
        return len(self._trim(owner, self._clock()))

    def wait_seconds(self, owner: str) -> float:
        """0 while calls are left; else the seconds until the oldest call in the window expires."""
        if not self.limit:
            return 0.0
        now = self._clock()
        calls = self._trim(owner, now)
        if len(calls) < self.limit:
            return 0.0
        return max(0.0, calls[len(calls) - self.limit] + self.window - now)

    def forget(self, owner: str) -> None:
        self._calls.pop(owner, None)
