"""The scoring probe of an online endpoint: a real scoring request, as a client sends it, over kept-alive connections.

Why a module of its own: Ready means a client can score, so the probe is the backend's most frequent call at the
steady state (one per resource per resync), and each endpoint is its own host (``<name>.<region>.inference.ml.
azure.com``): with a new ``requests.post`` each time, every probe opened a new TCP and TLS connection. One session,
whose pools keep a connection per endpoint host (the most recent :data:`HOSTS` of them), and whose connections share
one loaded CA context (:class:`~..azure.tls.SharedContextAdapter`), makes a resync's probe a request on a warm
connection. Nothing is retried here: the verdict is the core's (:mod:`gpu_model_operator.canary`).
"""

from __future__ import annotations

import socket
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from urllib3.connection import HTTPConnection
from urllib3.util.retry import Retry

from ..azure.tls import SharedContextAdapter
from ..base import ProbeResult

#: Endpoint hosts whose connections are kept (least recently probed dropped first).
HOSTS = 256
#: TCP keepalives on the kept connections, well inside the idle timeout of Azure's load balancers and NAT gateway
#: (4 minutes by default, after which an idle flow is dropped without a word: "Load Balancer TCP Idle timeout",
#: which advises TCP keepalives), so a connection kept between two resyncs is still there for the next probe.
KEEPALIVE = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *[
        (socket.IPPROTO_TCP, getattr(socket, name), value)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 30))
        if hasattr(socket, name)  # Linux's names; elsewhere the system's keepalive times
    ],
]


class _KeptAlive(SharedContextAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options, *KEEPALIVE]
        super().init_poolmanager(*args, **kwargs)


class Prober:
    def __init__(self, workers: int) -> None:
        self._http = requests.Session()
        self._http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # nothing shared between endpoints
        retry = Retry(0, read=False, redirect=0, status_forcelist=(), respect_retry_after_header=False)
        adapter = _KeptAlive(pool_connections=HOSTS, pool_maxsize=max(1, workers), max_retries=retry)
        self._http.mount("https://", adapter)
        self._http.mount("http://", adapter)

    def post(self, uri: str, body: str | None, headers: dict[str, str], timeout: float) -> requests.Response:
        """The scoring request (blocking: the backend runs it in its pool); the body "{}" when none is given."""
        return self._http.post(uri, data=(body or "{}").encode(), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()


def verdict(uri: str, to: str, body: str | None, response: Any) -> ProbeResult:
    """Ready means a client can score: only a 2xx passes. Azure's 424 is the model's run() failing (its status in
    ms-azureml-model-error-statuscode), which a client sees as a failed request, so it never passes, with a probe
    request or without (then the body is "{}", which a model that needs its input refuses)."""
    if 200 <= response.status_code < 300:
        return ProbeResult(True, f"POST {uri}{to} answered {response.status_code}", response.status_code)
    hint = ""
    if response.status_code == 424:
        model = response.headers.get("ms-azureml-model-error-statuscode")
        hint = f": the model's run() failed{f' with {model}' if model else ''}" + (
            ""
            if body
            else " on the probe's default body {}; set spec.rollout.probeRequest to a request the model answers"
        )
    text = f"POST {uri}{to} answered {response.status_code}{hint} {response.text[:200].strip()}"
    return ProbeResult(False, text.rstrip(), response.status_code)
