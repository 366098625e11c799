"""A CONNECT-only HTTPS proxy that sends the fake storage host names to the emulator.

Why: the SDK rebuilds blob URLs as ``https://<account>.blob.<storage suffix>`` (default port 443), a name no
resolver knows. Clients set ``HTTPS_PROXY`` to this proxy (with ``NO_PROXY`` covering 127.0.0.1), so requests
tunnels those hosts here; the proxy connects every allowed tunnel to the emulator's TLS port, whose
certificate covers the fake names. Any other host is refused with 403 and logged, so a call that would leave
the machine for real Azure shows up in the call log instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any


class ConnectProxy:
    """Tunnels CONNECT requests for allowed host suffixes to ``target``; records each CONNECT."""

    def __init__(
        self, target_host: str, target_port: int, allowed_suffixes: list[str], record: Callable[[dict[str, Any]], None]
    ) -> None:
        self._target = (target_host, target_port)
        self._suffixes = [s.lower().lstrip(".") for s in allowed_suffixes]
        self._record = record
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def allowed(self, host: str) -> bool:
        host = host.lower()
        return host in ("127.0.0.1", "localhost") or any(host == s or host.endswith("." + s) for s in self._suffixes)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode("latin-1").strip()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        parts = request_line.split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        target = parts[1]
        host = target.rsplit(":", 1)[0].strip("[]")
        ok = self.allowed(host)
        self._record(
            {
                "t": time.time(),
                "method": "CONNECT",
                "host": target,
                "path": "",
                "query": {},
                "status": 200 if ok else 403,
            }
        )
        if not ok:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
