"""A TCP relay on loopback that a test can cut, to put a network partition between one process and the apiserver.

``cut()`` black-holes the relay: nothing more is forwarded on any connection, old or new, and none is closed,
as when a route is lost (no reset, no refusal: the client learns of it only from its own timeouts, the hardest
case for a leader that must notice it can no longer renew). TLS passes through untouched, so the client still
verifies the apiserver's certificate (issued for 127.0.0.1).
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut, self._closed = threading.Event(), threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def cut(self) -> None:
        """From now on nothing passes, either way, on any connection."""
        self._cut.set()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            if self._cut.is_set():
                continue  # accepted (the kernel would anyway) and never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._keep(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if self._cut.is_set():
                self._closed.wait(0.2)  # bytes stay unread in the kernel's buffers: a black hole
                continue
            try:
                readable, _, _ = select.select([src], [], [], 0.2)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
