"""GPU discovery for the local backend: NVML first, then ``nvidia-smi``, else none.

NVML is asked first because it needs no child process and answers in milliseconds; ``nvidia-smi`` covers
machines where the NVML library is present only for the driver's own tools. A machine with neither has no
GPU as far as the operator is concerned, and the controller then serves on CPU only where the spec opts in.

The "declared GPU inventory (testing)" setting replaces discovery with N pretend GPUs, so the GPU cap and
the per-replica pinning can be exercised on machines without one. It is reported as ``source="declared"``
everywhere (status included), so nobody mistakes it for the real thing.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

GpuSource = Literal["nvml", "nvidia-smi", "declared", "none"]


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs replicas may be pinned to, by the index ``CUDA_VISIBLE_DEVICES`` takes."""

    indices: tuple[int, ...]
    source: GpuSource
    #: GPU UUIDs in the order of ``indices`` where the source knows them (not for "declared" or "none").
    uuids: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.indices)


def _nvml() -> GpuInventory | None:
    """NVML's view, or None when there is no driver or no library (not an error: just no NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        uuids: list[str] = []
        for index in range(count):
            raw = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(index))
            uuids.append(raw.decode() if isinstance(raw, bytes) else str(raw))
        return GpuInventory(tuple(range(count)), "nvml", tuple(uuids))
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _nvidia_smi() -> GpuInventory | None:
    """``nvidia-smi``'s view, or None when it is missing, fails or prints something unexpected."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> GpuInventory | None:
    """Rows of ``index, uuid``; None when a row is not of that shape (a driver error message, say)."""
    indices: list[int] = []
    uuids: list[str] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        index, _, uuid = (part.strip() for part in line.partition(","))
        if not index.isdigit():
            return None
        indices.append(int(index))
        uuids.append(uuid)
    return GpuInventory(tuple(indices), "nvidia-smi", tuple(uuids))


def discover(declared_gpus: int | None = None) -> GpuInventory:
    """This machine's GPUs; ``declared_gpus`` (testing) short-cuts discovery with indices 0..N-1."""
    if declared_gpus is not None:
        if declared_gpus < 0:
            raise ValueError(f"the declared GPU inventory must be 0 or more, not {declared_gpus}")
        return GpuInventory(tuple(range(declared_gpus)), "declared")
    return _nvml() or _nvidia_smi() or GpuInventory((), "none")
