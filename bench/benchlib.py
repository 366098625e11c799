"""What the benchmarks share: the Azure ML emulator as its own process, and the environment its clients need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpu_model_operator_dev.azureml_emulator import EmulatorClient

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "bench-operator", "bench-client-secret"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    admin: EmulatorClient
    env: dict[str, str]


@contextmanager
def emulator(state_dir: Path, latencies: dict[str, float]) -> Iterator[Emulator]:
    """The emulator as its own process, so its CPU is not the benchmark driver's GIL."""
    args = [sys.executable, "-m", "gpu_model_operator_dev.azureml_emulator", "--state-dir", str(state_dir)]
    args += ["--credential", f"{CLIENT_ID}={CLIENT_SECRET}"]
    args += [f"--latency={k}={v}" for k, v in latencies.items()]
    log = (state_dir / "emulator.log").open("w")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        admin = EmulatorClient(info["base_url"], Path(info["ca_bundle"]))
        yield Emulator(proc, admin, info["env"])
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def client_env(emu: Emulator, home: Path) -> dict[str, str]:
    """The SDK's environment, and MALLOC_ARENA_MAX as the operator's image sets it (see the Dockerfile)."""
    return {**os.environ, **emu.env, "HOME": str(home), "MALLOC_ARENA_MAX": "2"}
