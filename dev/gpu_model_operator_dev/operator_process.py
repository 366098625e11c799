"""Run the operator as a child process against a given kubeconfig: for the demo and end-to-end tests.

A real process, not an in-process kopf runner, so tests can kill it at any point (as a node would) and
start it again, and so its logs are exactly what a user would read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespaces: list[str],
        state_dir: Path,
        log_path: Path,
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig, self.namespaces, self.state_dir, self.log_path = kubeconfig, namespaces, state_dir, log_path
        self.extra_args = extra_args or []
        self.env = env or {}
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> OperatorProcess:
        """Starts the process and polls its health endpoint until ``timeout``: generous, because the test suite
        runs in parallel (pytest-xdist) and several workers start an operator, importing the Azure SDKs, at the
        same moment on a 2-core machine (60 s was seen to pass before the first health answer)."""
        args = [sys.executable, "-m", "gpu_model_operator", "run", "--state-dir", str(self.state_dir)]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        args += ["--health-port", str(self.health_port), "--metrics-port", str(self.metrics_port), *self.extra_args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the operator did not become healthy in {timeout}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up, as when its node dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
