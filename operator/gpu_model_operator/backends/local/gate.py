"""The gunicorn configuration of every local replica: the service's scoring port and its key check, in-process.

The inference server (``azmlinfsrv``) is gunicorn serving a Flask app. The backend copies this file's text
into the service directory and points gunicorn at it (``GUNICORN_CMD_ARGS=--config ...``), so it runs in the
serving environment, where nothing of the operator's package is installed: standard library only.

What it does there:

- Every listener is on 127.0.0.1. The replica's own port (``SERVER_PORT``) serves the operator's health check
  of that replica; the service's port (``GMO_SERVICE_PORT``) is shared by every replica of the service with
  SO_REUSEPORT, and the kernel spreads connections over them: no proxy, no extra hop. A worker binds the
  service's port only once the user's ``init()`` has returned (``post_worker_init``), so no request waits on a
  replica that is still loading; each worker holds its own socket, so a replica that dies takes its socket
  with it and never the port. Linux lets only sockets of the same user join such a port.
- ``KeyGate`` wraps the inference server's WSGI app: it serves the routes an Azure ML service on AKS has,
  ``POST /api/v1/service/<name>/score`` and the health route ``GET /api/v1/service/<name>/``, and answers 401
  unless ``Authorization: Bearer <primary or secondary key>`` (compared in constant time with both keys), on
  every listener, so nothing on the machine can score without a key. The key is removed before the user's
  code sees the request. Name, auth and keys come from ``GMO_ACCESS_FILE``, re-read when it changes (a stat
  per request), so a rename or new keys take effect without a restart.
- A worker that stops serves what the kernel had already queued on its socket before closing it (Linux
  resets connections still queued on a closed listener), so a scale-down loses at most what arrives in the
  moment between its last accept and the close.
- The replica stops by itself when its entry script disappears (the service directory was removed behind
  the operator's back), rather than hold a GPU nothing records any more. Gunicorn's per-user control socket
  is off, or replicas would fight over one path.
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

control_socket_disable = True

PREFIX = "/api/v1/service/"
Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


def _json(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    body = json.dumps({"message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def authorized(header: str, keys: list[str]) -> bool:
    """``Bearer <primary or secondary key>``, compared in constant time against every key."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not keys:
        return False
    given = token.strip().encode()
    ok = False
    for key in keys:  # no short cut: the time taken does not say which key nearly matched
        ok |= hmac.compare_digest(given, key.encode())
    return ok


class KeyGate:
    """The AKS-shaped routes and the key check around the inference server's app."""

    def __init__(self, app: App, access_file: str) -> None:
        self.app = app
        self.access_file = access_file
        self._seen: tuple[int, int, int] | None = None
        self._access: dict[str, Any] | None = None

    def access(self) -> dict[str, Any] | None:
        """The access file, re-read when it changed; the last good one while it is gone or unreadable."""
        try:
            st = os.stat(self.access_file)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen != self._seen:
                with open(self.access_file) as f:
                    self._access = json.load(f)
                self._seen = seen
        except (OSError, ValueError):
            pass
        return self._access

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        access = self.access()
        if access is None:
            return _json(start_response, "503 Service Unavailable", "the service's access file cannot be read")
        path = environ.get("PATH_INFO", "")
        name, _, rest = path[len(PREFIX) :].partition("/") if path.startswith(PREFIX) else ("", "", "")
        if name != access["service"] or rest not in ("", "score"):
            return _json(start_response, "404 Not Found", f"no route {path!r} here")
        if access["auth_enabled"] and not authorized(environ.get("HTTP_AUTHORIZATION", ""), access["keys"]):
            message = "missing or invalid key: send 'Authorization: Bearer <primary or secondary key>'"
            return _json(start_response, "401 Unauthorized", message)
        environ.pop("HTTP_AUTHORIZATION", None)
        environ["PATH_INFO"] = "/score" if rest else "/"
        return self.app(environ, start_response)


def listen(port: int) -> socket.socket:
    """The service's port on loopback, shared with the service's other replicas."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


# ---- gunicorn's hooks -----------------------------------------------------------------------------------


def on_starting(server: Any) -> None:
    """Master: the replica's own port on loopback only (the inference server would bind 0.0.0.0)."""
    server.cfg.set("bind", ["127.0.0.1:" + os.environ["SERVER_PORT"]])


def when_ready(server: Any) -> None:
    """Master: stop when the entry script is gone."""

    def watch() -> None:
        while os.path.exists(os.environ["AZUREML_ENTRY_SCRIPT"]):
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def post_worker_init(worker: Any) -> None:
    """Worker, after the app (and the user's ``init()``) loaded: the key check around it, then the service's
    port. A port held by another program stops the replica with a message that says so; the operator then
    moves the service to another port."""
    worker.wsgi = KeyGate(worker.wsgi, os.environ["GMO_ACCESS_FILE"])
    port = int(os.environ["GMO_SERVICE_PORT"])
    try:
        shared = listen(port)
    except OSError as exc:
        print(f"the service port 127.0.0.1:{port} is held by another program: {exc}", file=sys.stderr, flush=True)
        os.kill(worker.ppid, signal.SIGTERM)
        sys.exit(3)  # gunicorn's "worker failed to boot": the master stops too
    worker.gmo_shared = shared
    worker.sockets.append(shared)
    worker.wait_fds = [*worker.sockets, worker.PIPE[0]]


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, stopping: serve what is queued on the service's socket, then close it."""
    shared = getattr(worker, "gmo_shared", None)
    if shared is None:
        return
    shared.setblocking(False)
    while type(worker).__name__ == "SyncWorker":  # the inference server's worker class; others just close
        try:
            client, addr = shared.accept()
        except OSError as exc:
            if exc.errno == errno.ECONNABORTED:
                continue
            break  # nothing queued any more (EAGAIN), or the socket is unusable
        client.setblocking(True)
        worker.handle(shared, client, addr)
    shared.close()
