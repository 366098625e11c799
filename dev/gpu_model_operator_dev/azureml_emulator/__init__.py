"""An Azure Machine Learning emulator for tests: the REST calls ``azureml-core`` 1.61 makes, over HTTPS.

The real SDK runs against it unpatched: it is pointed here through its own configuration (a custom cloud
from ``ARM_CLOUD_METADATA_URL``, a service principal on an ADFS-style authority, a CA bundle, a proxy for the
storage host names). See :meth:`Emulator.client_env` for the environment a client process needs, and
``python -m gpu_model_operator_dev.azureml_emulator --help`` to run it on its own.

Usage from pytest::

    with start_emulator() as emu:
        emu.configure(latencies={"service_create_s": 0})
        subprocess.run([sys.executable, "script.py"], env=emu.client_env(), check=True)
        assert any(c["path"].endswith("/listkeys") for c in emu.calls())

Why a background thread (not a subprocess): the SDK must run in its own process anyway (it reads the cloud
configuration when azureml is imported), so the emulator can stay in the test process, start in well under a
second, and let tests read and seed :attr:`Emulator.state` directly. Its event loop is private to the thread,
so it never meets the test's own loop. The admin helpers still go over HTTPS, exactly as a test talking to a
standalone emulator process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultInjector
from .resources import EmulatorConfig, Latencies
from .server import EmulatorServer
from .state import EmulatorState
from .v2.admin import V2AdminClient

__all__ = [
    "Emulator",
    "EmulatorClient",
    "EmulatorConfig",
    "Latencies",
    "live_emulators",
    "start_emulator",
    "take_violations",
]

#: The emulators running in this process (``start_emulator``), for audits across a test session.
_LIVE: list[Emulator] = []
#: What stopped emulators recorded outside Azure's contract and nobody took (see :func:`take_violations`).
_LEFT: list[dict[str, Any]] = []


def live_emulators() -> list[Emulator]:
    """The emulators this process runs now."""
    return list(_LIVE)


def take_violations() -> list[dict[str, Any]]:
    """Every exchange outside Azure's contract that the emulators of this process recorded (conformance mode), since
    the last call, including those of emulators that have stopped since: what a test session's audit reads."""
    found, _LEFT[:] = list(_LEFT), []
    for emulator in _LIVE:
        assert emulator.state is not None
        with emulator.state.lock:
            found += emulator.state.violations
            emulator.state.violations.clear()
    return found


@dataclass
class EmulatorClient:
    """Admin API client (``/_emulator/...``) for an emulator in this process or another one."""

    base_url: str
    ca_file: Path
    _context: ssl.SSLContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=str(self.ca_file))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._context)
        )
        try:
            with opener.open(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def calls(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/_emulator/calls")["calls"])

    def clear_calls(self) -> None:
        self.request("DELETE", "/_emulator/calls")

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Arm one fault rule (see :mod:`gpu_model_operator_dev.azureml_emulator.faults`); returns it with its id."""
        return dict(self.request("POST", "/_emulator/faults", rule)["rules"][0])

    def clear_faults(self) -> None:
        self.request("DELETE", "/_emulator/faults")

    def reset(self) -> None:
        self.request("POST", "/_emulator/reset", {})

    def configure(self, **settings: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/_emulator/config", settings))

    def seed(self, **items: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/_emulator/seed", items))

    def set_scoring(self, service: str, backend_url: str | None = None, response: Any = None) -> None:
        body: dict[str, Any] = {"backend_url": backend_url}
        if response is not None:
            body["response"] = response
        self.request("POST", f"/_emulator/services/{service}/scoring", body)

    def summary(self) -> dict[str, Any]:
        return dict(self.request("GET", "/_emulator/state"))

    def throttling(self) -> dict[str, Any]:
        """ARM's throttling: ``config``, the call counts (``calls``: surface, kind, bucket, calls, throttled) and the
        ``buckets`` with their tokens (see :mod:`gpu_model_operator_dev.azureml_emulator.throttling`)."""
        return dict(self.request("GET", "/_emulator/throttling"))

    def configure_throttling(self, **settings: Any) -> dict[str, Any]:
        """``enabled``, ``limits`` (``{"reads": {"size": 5, "refill_per_s": 1}}``, or ``"published"``),
        ``global_factor``, ``region``; the buckets start full."""
        return dict(self.request("POST", "/_emulator/throttling", settings))

    def clear_throttling_calls(self) -> None:
        self.request("DELETE", "/_emulator/throttling/calls")

    @property
    def v2(self) -> V2AdminClient:
        """The v2 (azure-ai-ml) admin calls: configuration, seeding, start failures, scoring, trace."""
        return V2AdminClient(self)


@dataclass
class Emulator(EmulatorClient):
    """A running emulator: its addresses, its files, the client environment and (in-process) its state."""

    proxy_url: str = ""
    state_dir: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    state: EmulatorState | None = None
    #: The additions an azure-ai-ml / azure-identity client needs (see ``EmulatorServer.client_env_v2``).
    env_v2: dict[str, str] = field(default_factory=dict)

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) plus what the SDK must see before import."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged

    def client_env_v2(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """:meth:`client_env` plus what azure-ai-ml and azure-identity need: the v2 cloud and the authority."""
        merged = self.client_env(base)
        merged.update(self.env_v2)
        return merged


@contextlib.contextmanager
def start_emulator(
    state_dir: Path | None = None,
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    proxy_port: int = 0,
    seed: int = 0,
) -> Iterator[Emulator]:
    """Run an emulator on a background thread for the duration of the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="azureml-emulator-")))
        state = EmulatorState(config or EmulatorConfig(), FaultInjector(seed))
        server = EmulatorServer(state, state_dir, host, port, proxy_port)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(server.stop())
            loop.close()

        thread = threading.Thread(target=run, name="azureml-emulator", daemon=True)
        thread.start()
        started.wait(30)
        if failure or not started.is_set():
            raise RuntimeError("the Azure ML emulator did not start") from (failure[0] if failure else None)
        assert server.certs is not None
        emulator = Emulator(
            base_url=state.base_url,
            ca_file=server.certs.ca_bundle,
            proxy_url=f"http://{host}:{server.proxy_port}",
            state_dir=state_dir,
            env=server.client_env(),
            state=state,
            env_v2=server.client_env_v2(),
        )
        _LIVE.append(emulator)
        try:
            yield emulator
        finally:
            _LIVE.remove(emulator)
            with state.lock:
                _LEFT.extend(state.violations)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
