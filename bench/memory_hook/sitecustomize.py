"""Loaded by Python at start-up when this folder is on PYTHONPATH (``memory_profile.py`` puts it there for the
operator process only): with GMO_BENCH_MEMORY=<path>, SIGUSR2 starts tracing allocations (tracemalloc; from the
start it slows the imports past the operator's health check) and SIGUSR1 writes the snapshot to <path> and
glibc's own account of its heap (``mallinfo2``) to <path>.json."""

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


def _rss_kb() -> int:
    with open("/proc/self/status") as proc:
        return next(int(line.split()[1]) for line in proc if line.startswith("VmRSS:"))


def _bodies() -> dict[str, object]:
    """How many GpuModelDeployment bodies (decoded watch events) are alive, and what holds them."""
    import gc
    from collections import Counter

    gc.collect()
    bodies = [o for o in gc.get_objects() if type(o) is dict and o.get("kind") == "GpuModelDeployment"]
    holders: Counter[str] = Counter()
    for body in bodies[:200]:
        for ref in gc.get_referrers(body):
            if ref is bodies:
                continue
            name = type(ref).__qualname__
            if isinstance(ref, dict):
                keys = [k for k, v in ref.items() if v is body][:1]
                name = f"dict[{keys[0]!r}]" if keys else "dict"
            holders[name] += 1
    census: Counter[str] = Counter()
    numbers: Counter[str] = Counter()
    for o in gc.get_objects():
        name = f"{type(o).__module__}.{type(o).__qualname__}"
        census[name] += sys.getsizeof(o)
        numbers[name] += 1
    top = {k: [numbers[k], v] for k, v in census.most_common(25)}
    return {"count": len(bodies), "holders_of_200": dict(holders.most_common(12)), "gc_census_bytes": top}


def _dump(path: str) -> None:
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(path)
    info = _MallInfo2()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    glibc = {name: getattr(info, name) for name, _ in _MallInfo2._fields_}
    report = {"mallinfo2": glibc, "rss_kb": _rss_kb(), "modules": len(sys.modules)}
    report.update(traced=tracemalloc.get_traced_memory()[0], threads=len(os.listdir("/proc/self/task")))
    report["bodies"] = _bodies()
    libc.malloc_trim(0)  # what glibc gives back when asked: the free pages inside its arenas
    report["rss_kb_after_malloc_trim"] = _rss_kb()
    with open(path + ".json", "w") as out:
        json.dump(report, out, indent=2)


if os.environ.get("GMO_BENCH_MEMORY"):

    def _start(signum: int, frame: FrameType | None) -> None:
        tracemalloc.start(int(os.environ.get("GMO_BENCH_MEMORY_FRAMES", "12")))

    signal.signal(signal.SIGUSR2, _start)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        _dump(os.environ["GMO_BENCH_MEMORY"])

    signal.signal(signal.SIGUSR1, _on_signal)
