"""One read for everyone who asks for the same thing while it is under way ("single flight").

Why: a thousand resources in one workspace poll together, and what some passes read is the workspace's or the
region's, not the resource's (a quota family's usage). Under ARM's buckets each read waits for its token; every
pass that asks while one such read waits or runs shares its answer (or its failure) instead of queueing another.
Nothing is kept once the read has answered: the next pass reads afresh, so no pass decides on an older reading
than it would have read itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedReads(Generic[T]):
    """Reads in flight by key; ``shared`` counts the answers that were shared rather than read."""

    def __init__(self) -> None:
        self._in_flight: dict[Hashable, asyncio.Future[T]] = {}
        self.shared = 0

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The answer of the read under way for ``key``, or of a new one. The read runs as a task of its own that
        every reader awaits shielded: a reader cancelled (its pass drained or given up) leaves the read, and the
        others sharing it, alone."""
        found = self._in_flight.get(key)
        if found is not None:
            self.shared += 1
        else:
            found = self._in_flight[key] = asyncio.ensure_future(read())
            found.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(found)

    def _done(self, key: Hashable, done: asyncio.Future[T]) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every reader was cancelled
