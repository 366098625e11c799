"""Loaded by Python at start-up when this folder is on PYTHONPATH (``memory_profile.py`` puts it there for the
operator process only): with GMO_BENCH_MEMORY=<path>, traces allocations (tracemalloc) and, on SIGUSR1, writes
the snapshot to <path> and glibc's own account of its heap (``mallinfo2``) to <path>.json."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import tracemalloc
from types import FrameType


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _dump(path: str) -> None:
    tracemalloc.take_snapshot().dump(path)
    info = _MallInfo2()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        pass
    with open("/proc/self/status") as proc:
        status = {k: v for k, v in (line.split(":", 1) for line in proc) if k.startswith("Vm")}
    glibc = {name: getattr(info, name) for name, _ in _MallInfo2._fields_}
    modules = len(sys.modules)
    traced, peak = tracemalloc.get_traced_memory()
    report = {"mallinfo2": glibc, "status": {k: v.strip() for k, v in status.items()}, "modules": modules}
    report.update(traced=traced, traced_peak=peak, threads=len(os.listdir("/proc/self/task")))
    with open(path + ".json", "w") as out:
        json.dump(report, out, indent=2)


if os.environ.get("GMO_BENCH_MEMORY"):
    tracemalloc.start(int(os.environ.get("GMO_BENCH_MEMORY_FRAMES", "12")))

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        _dump(os.environ["GMO_BENCH_MEMORY"])

    signal.signal(signal.SIGUSR1, _on_signal)
