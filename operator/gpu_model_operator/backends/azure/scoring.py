"""The services' scoring keys and Azure ML tokens, as the Azure backends keep them for their probes and Secrets.

Keys are read once and kept: a key changes only when someone regenerates it. Read again after a probe was refused
with them (401 or 403: the primary rotated behind the operator's back), so the next probe carries the new ones; and
when asked ``fresh`` (the resync) once they are older than the refresh interval (a secondary key regenerated, which
no probe notices, reaches the Secret within it). Not at every resync: a listKeys is an ARM write, and with the
state's one read it would double a converged resource's calls.

A token is kept until Azure's refresh time for it (``refreshAfterTimeUtc``: how-to-authenticate-online-endpoint,
"Token refresh time is returned in the refreshAfterTimeUtc field"), then asked for again; and forgotten after a
probe was refused with it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timezone

from ...keys import ScoringToken

Keys = tuple[str, str]
#: What a service answers to a request whose key it does not take.
REFUSED = (401, 403)


#: Seconds after which a resync reads the keys again (``--keys-refresh-seconds``).
KEYS_REFRESH_SECONDS = 3600.0


class ScoringKeys:
    """Primary and secondary key per service (by a key of the backend's choosing: workspace scope and name), with
    when they were read (``clock``: monotonic seconds)."""

    def __init__(
        self, refresh_seconds: float = KEYS_REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keys: dict[Hashable, tuple[Keys, float]] = {}
        self.refresh_seconds, self._clock = refresh_seconds, clock

    async def get(self, service: Hashable, read: Callable[[], Awaitable[Keys]], *, fresh: bool = False) -> Keys:
        """The keys held, read where there are none, or ``fresh`` and older than the refresh interval."""
        held = self._keys.get(service)
        if held is None or (fresh and self._clock() - held[1] >= self.refresh_seconds):
            held = self._keys[service] = (await read(), self._clock())
        return held[0]

    def answered(self, service: Hashable, status: int) -> None:
        """What the service answered a probe that carried its keys: a refusal drops them."""
        if status in REFUSED:
            self.forget(service)

    def forget(self, service: Hashable) -> None:
        self._keys.pop(service, None)


class ScoringTokens:
    """An Azure ML token per endpoint (by a key of the backend's choosing), until its refresh time."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._tokens: dict[Hashable, ScoringToken] = {}
        self._clock = clock

    async def get(self, service: Hashable, read: Callable[[], Awaitable[ScoringToken]]) -> ScoringToken:
        held = self._tokens.get(service)
        if held is None or held.due(self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")):
            held = self._tokens[service] = await read()
        return held

    def answered(self, service: Hashable, status: int) -> None:
        """What the service answered a probe that carried its token: a refusal drops it."""
        if status in REFUSED:
            self.forget(service)

    def forget(self, service: Hashable) -> None:
        self._tokens.pop(service, None)
