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
#: The tenant of the v2 backend's service principal (azure-identity wants a tenant id; the v1 SDK signs in as "adfs").
TENANT = "00000000-0000-0000-0000-0000000000aa"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    admin: EmulatorClient
    #: What an azureml-core (v1) client process needs, and what an azure-ai-ml (v2) one needs instead.
    env: dict[str, str]
    env_v2: dict[str, str]


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
        yield Emulator(proc, admin, info["env"], info["env_v2"])
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def client_env(emu: Emulator, home: Path, v2: bool = False) -> dict[str, str]:
    """The SDK's environment (azureml-core's, or with ``v2`` azure-ai-ml's), and MALLOC_ARENA_MAX as the operator's
    image sets it (see the Dockerfile)."""
    return {**os.environ, **(emu.env_v2 if v2 else emu.env), "HOME": str(home), "MALLOC_ARENA_MAX": "2"}
