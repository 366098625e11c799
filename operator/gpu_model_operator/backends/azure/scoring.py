"""The services' scoring keys and Azure ML tokens, as the Azure backends keep them for their probes and Secrets.

Keys are read once and kept: a key changes only when someone regenerates it. Read again when asked ``fresh`` (the
resync, so keys regenerated at Azure reach the Secret within one interval) and after a probe was refused with them
(401 or 403: rotated behind the operator's back), so the next probe carries the new ones.

A token is kept until Azure's refresh time for it (``refreshAfterTimeUtc``: how-to-authenticate-online-endpoint,
"Token refresh time is returned in the refreshAfterTimeUtc field"), then asked for again; and forgotten after a
probe was refused with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timezone

from ...keys import ScoringToken

Keys = tuple[str, str]
#: What a service answers to a request whose key it does not take.
REFUSED = (401, 403)


class ScoringKeys:
    """Primary and secondary key per service (by a key of the backend's choosing: workspace scope and name)."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, Keys] = {}

    async def get(self, service: Hashable, read: Callable[[], Awaitable[Keys]], *, fresh: bool = False) -> Keys:
        if fresh or service not in self._keys:
            self._keys[service] = await read()
        return self._keys[service]

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
