"""The installation's price table, read from a file (a ConfigMap mounted into the operator's pod) and read again
when the file changes: the kubelet replaces a mounted ConfigMap's files in place when the ConfigMap is edited, so
new prices apply from the next pass without a restart. A file that stops being readable keeps the last table read
(said once in the log, without its content)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .prices import DEFAULT, PriceTable, PriceTableError, parse_price_table

log = logging.getLogger(__name__)


class PriceFile:
    """The table of ``path``, or the shipped default when there is no path."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._seen: tuple[int, int] | None = None
        self._table = DEFAULT if path is None else read_price_table(path)
        if path is not None:
            self._seen = _stamp(path)

    def table(self) -> PriceTable:
        """The table as the file says now (read again only when it changed)."""
        if self._path is None:
            return self._table
        try:
            stamp = _stamp(self._path)
            if stamp != self._seen:
                self._seen = stamp
                self._table = read_price_table(self._path)
                log.info("price table %s read again: %s", self._path, self._table.described)
        except (OSError, PriceTableError) as exc:
            log.warning("price table %s cannot be read (%s): the last one read stays in use", self._path, exc)
        return self._table


def read_price_table(path: Path) -> PriceTable:
    """The table in ``path``; raises :class:`PriceTableError` (or OSError) when it cannot be used."""
    try:
        return parse_price_table(path.read_text())
    except PriceTableError as exc:
        raise PriceTableError(f"price table {path}: {exc}") from exc


def _stamp(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_mtime_ns, found.st_ino
