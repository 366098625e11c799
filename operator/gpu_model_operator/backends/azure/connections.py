"""The signed-in clients of one backend: one per workspace and credential, made once and kept for the process's
life, so a token is fetched once and refreshed by the SDK, not at every call.

A changed Secret signs in again (the credential's digest is part of the :class:`~.calls.Scope`). The previous few
clients of a workspace are kept, as a rotated Secret reaches its resources one pass at a time; older ones are
closed. A sign-in that fails keeps nothing, so the next pass tries afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .calls import Scope

log = logging.getLogger(__name__)
C = TypeVar("C")


class Connections(Generic[C]):
    """Clients by scope; ``close`` ends one that is dropped (closing is tidiness: a failure is logged, no more)."""

    def __init__(self, close: Callable[[C], None], keep: int = 2) -> None:
        self._close = close
        self._keep = keep
        self._made: dict[Scope, C] = {}
        self._connecting = asyncio.Lock()

    async def get(self, scope: Scope, connect: Callable[[], Awaitable[C]]) -> C:
        """The client of ``scope``, made by ``connect`` (one sign-in at a time) where there is none yet."""
        found = self._made.get(scope)
        if found is not None:
            return found
        async with self._connecting:
            if scope not in self._made:
                made = await connect()
                older = [s for s in self._made if s.workspace_key == scope.workspace_key]
                for old in older[: max(0, len(older) - self._keep)]:
                    self._drop(self._made.pop(old))
                self._made[scope] = made
        return self._made[scope]

    def close(self) -> None:
        for made in self._made.values():
            self._drop(made)
        self._made.clear()

    def _drop(self, made: C) -> None:
        try:
            self._close(made)
        except Exception:  # closing a client is tidiness; a failure changes nothing
            log.debug("closing a client failed", exc_info=True)
