"""The life of a replica under leader election: standing by until it holds the lease, then leading.

``leader.py`` holds the protocol; this module is the process around it: who this replica is, the Kubernetes
client the elector uses, the probe that answers while kopf does not run yet, the signals that end a wait, and
the hard exit that ends a leader which lost its lease.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from .leader import KubeLease, LeaderElector
from .settings import LeaderElectionSettings

log = logging.getLogger(__name__)

#: The exit status of a process that stops because it lost the lease (EX_TEMPFAIL: restart me, nothing broke).
LOST_LEADERSHIP_EXIT = 75
#: Where a pod finds its namespace when the downward API did not give POD_NAMESPACE.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _exit_hard(level: int, message: str, *args: object) -> NoReturn:
    """Stop every thread of the process at once (those still calling the cloud included). A timer ends it even
    if writing the log line blocks."""
    threading.Timer(1.0, os._exit, (LOST_LEADERSHIP_EXIT,)).start()
    log.log(level, message, *args)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(LOST_LEADERSHIP_EXIT)


def exit_now(reason: str) -> NoReturn:
    """What a leader does when it loses the lease: stop every thread of the process at once."""
    _exit_hard(
        logging.CRITICAL, "leader election: lost the lease (%s); exiting now so that no two replicas act", reason
    )


def exit_keeping_lease() -> NoReturn:
    """What a leader stopping gracefully does when calls to the cloud are still running at the drain deadline:
    exit at once, those calls' threads with it, without releasing the lease. A standby takes it when it expires
    (its lease duration after the last renewal), so no instant has two writers."""
    _exit_hard(
        logging.WARNING,
        "leader election: calls to the cloud were still running at the end of the graceful stop; exiting without "
        "releasing the lease, which a standby takes when it expires",
    )


def own_identity() -> str:
    """The pod's name (POD_NAME, from the downward API) or the host name, and a random suffix: a container
    restarted in the same pod is a new candidate, never mistaken for the holder it was before its crash."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:10]}"


def own_namespace() -> str | None:
    """The pod's namespace: POD_NAMESPACE (downward API), else the one its ServiceAccount token was issued in."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    return None


def lease_api_client(timeout: float) -> Any:
    """A client of its own (in-cluster, else the kubeconfig), without urllib3's retries: a renewal is retried
    by the elector every period, never by the transport past its deadline."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = False
    return client.ApiClient(configuration)


class StandbyProbe:
    """``/healthz`` while standing by. kopf's endpoint exists only once kopf runs, and a standby must not be
    restarted by its liveness probe, nor kept out of a rolling update by its readiness probe, for being a
    standby. It answers 200 while the election loop turns (503 if it stopped attempting), and says who leads.
    """

    def __init__(self, port: int, elector: LeaderElector) -> None:
        elector_ = elector
        stale_after = max(30.0, 10 * elector.timing.retry_period)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                last = elector_.last_attempt
                alive = last is None or time.monotonic() - last < stale_after
                body = json.dumps({"leader": elector_.leading, "holder": elector_.holder}).encode()
                self.send_response(404 if self.path != "/healthz" else 200 if alive else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes are not news
                pass

        self._server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="standby", daemon=True)

    def __enter__(self) -> StandbyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Frees the port for kopf's own endpoint."""
        self._server.shutdown()
        self._server.server_close()


class StopSignal:
    """SIGTERM and SIGINT, caught from the start of the wait for the lease until kopf sets its own handlers.

    While standing by, a signal ends the wait (a standby has nothing to finish). Once leading, kopf must stop
    gracefully, finish what is in flight and let the lease be released; a signal that came before kopf could
    hear it is passed on to kopf by ``cli.operator_until``."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def _caught(self, signum: int, frame: object) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def handed_over(self) -> bool:
        """Has someone else (kopf's event loop) taken the signals since?"""
        return bool(signal.getsignal(signal.SIGTERM) != self._caught)

    def __enter__(self) -> StopSignal:
        self._previous = {sig: signal.signal(sig, self._caught) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def leadership(
    settings: LeaderElectionSettings, health_port: int, on_change: Callable[[bool], None]
) -> Iterator[StopSignal | None]:
    """Stand by until this process holds the lease, then keep it (exiting the process at once if it is lost)
    and yield the :class:`StopSignal` that must end the work; the lease is released when the block ends. Yields
    None when a signal came while standing by: there is nothing to do."""
    if not settings.lease_namespace:
        raise ValueError("leader election needs the lease's namespace (--lease-namespace or POD_NAMESPACE)")
    timeout = max(1.0, settings.retry_period)
    store = KubeLease(lease_api_client(timeout), settings.lease_namespace, settings.lease_name, timeout)
    elector = LeaderElector(store, own_identity(), settings, on_change=on_change)
    log.info("leader election: standing by for lease %s/%s as %s", store.namespace, store.name, elector.identity)
    with StopSignal() as stop:
        with StandbyProbe(health_port, elector) if health_port else contextlib.nullcontext():
            leading = elector.acquire(stop.event)
        if not leading:
            yield None
            return
        elector.keep(on_lost=exit_now)
        try:
            yield stop
        finally:
            elector.release()
