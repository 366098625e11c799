"""GPU discovery for the local backend: NVML first, then nvidia-smi, else none.

An explicit "declared GPU inventory" setting replaces discovery for tests on machines without a GPU; it is
named as such everywhere so nobody mistakes it for the real thing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInventory:
    indices: tuple[int, ...]
    source: str  # "nvml" | "nvidia-smi" | "declared" | "none"

    @property
    def count(self) -> int:
        return len(self.indices)


def _nvml() -> GpuInventory | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: not an error, just no NVML
        return None
    try:
        return GpuInventory(tuple(range(pynvml.nvmlDeviceGetCount())), "nvml")
    finally:
        pynvml.nvmlShutdown()


def _nvidia_smi() -> GpuInventory | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return None
    return GpuInventory(tuple(int(line) for line in out.split() if line.strip().isdigit()), "nvidia-smi")


def discover(declared: int | None = None) -> GpuInventory:
    if declared is not None:
        return GpuInventory(tuple(range(declared)), "declared")
    return _nvml() or _nvidia_smi() or GpuInventory((), "none")
