"""Where the operator's resident memory goes once N resources have converged on the azureml backend.

The operator runs as in convergence.py, with tracemalloc on from the moment it is up, its imports done
(``memory_hook/sitecustomize.py``, for that process only; it slows it down, so N is modest). Once all are Ready
and a settle time has passed, it writes a snapshot and glibc's ``mallinfo2``. The report splits the RSS into:
what Python allocated since start-up and still holds, by owner (the package whose code made the allocation:
kopf, kubernetes, azureml, the operator...), what glibc keeps free in its arenas (fragmentation: freed memory
not given back), and the rest (the imports, the interpreter, shared libraries, thread stacks, C allocations).

Run: .venv/bin/python bench/memory_profile.py --n 500
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import convergence
from benchlib import ROOT, emulator

from gpu_model_operator_dev.operator_process import OperatorProcess

HOOK = Path(__file__).resolve().parent / "memory_hook"


def owner(trace: tracemalloc.Traceback) -> str:
    """Imports, or the package of the innermost frame in a package (site-packages, the operator, the stdlib)."""
    names = [f.filename for f in trace]
    if any("importlib._bootstrap" in n for n in names):
        return "imports after start-up (modules, classes, constants)"
    for name in reversed(names):  # tracemalloc keeps the most recent frame last
        if "site-packages/" in name:
            return name.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        if "/gpu_model_operator/" in name:
            return "gpu_model_operator"
    return "stdlib / interpreter (" + names[-1].rsplit("/", 1)[-1] + ")"


def report(snapshot_path: Path, n: int) -> dict[str, object]:
    glibc = json.loads(Path(f"{snapshot_path}.json").read_text())
    rss, info, mb = glibc["rss_kb"] * 1024, glibc["mallinfo2"], 1 << 20
    print(
        f"\nN = {n}: RSS {rss / mb:.0f} MB ({glibc['rss_kb_after_malloc_trim'] / 1024:.0f} MB after malloc_trim); "
        f"glibc: {info['arena'] / mb:.0f} MB in arenas, of which {info['uordblks'] / mb:.0f} MB in use and "
        f"{info['fordblks'] / mb:.0f} MB free but kept; {info['hblkhd'] / mb:.0f} MB in mmapped blocks; "
        f"{glibc['threads']} threads, {glibc['modules']} modules"
    )
    print(f"GpuModelDeployment bodies alive: {glibc['bodies']}")
    if not snapshot_path.exists():
        return {"n": n, "glibc": glibc}
    snapshot = tracemalloc.Snapshot.load(str(snapshot_path))
    groups: Counter[str] = Counter()
    for stat in snapshot.statistics("traceback"):
        groups[owner(stat.traceback)] += stat.size
    traced = sum(groups.values())
    print(f"Python objects allocated since start-up and still held (tracemalloc): {traced / mb:.0f} MB")
    print("\nPython allocations by owner:")
    for name, size in groups.most_common(14):
        print(f"  {size / mb:8.1f} MB  {name}")
    print("\nlargest allocation sites (outside imports):")
    lines = Counter[str]()
    for stat in snapshot.statistics("traceback"):
        if owner(stat.traceback).startswith("imports"):
            continue
        frame = next((f for f in reversed(stat.traceback) if "site-packages" in f.filename), stat.traceback[-1])
        lines[f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"] += stat.size
    for where, size in lines.most_common(15):
        print(f"  {size / mb:8.1f} MB  {where}")
    return {"n": n, "traced": traced, "groups": dict(groups), "glibc": glibc}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--settle", type=float, default=30.0, help="seconds after all are Ready before the snapshot")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--no-trace", action="store_true", help="glibc's figures only, at full speed (no tracemalloc)")
    p.add_argument("--workdir", type=Path)
    for name, default in (("compute-seconds", 10.0), ("service-seconds", 5.0), ("poll-seconds", 2.0)):
        p.add_argument(f"--{name}", type=float, default=default)
    p.add_argument("--resync-seconds", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args()
    latencies = {"compute_create_s": args.compute_seconds, "service_create_s": args.service_seconds}
    with tempfile.TemporaryDirectory(prefix="gmo-mem-") as tmp:
        work = Path(args.workdir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        snapshot = work / "operator.tracemalloc"
        env = {"PYTHONPATH": str(HOOK), "GMO_BENCH_MEMORY": str(snapshot), "GMO_BENCH_MEMORY_FRAMES": str(args.frames)}

        def start(op: OperatorProcess) -> None:
            assert op.proc is not None
            if not args.no_trace:
                op.proc.send_signal(signal.SIGUSR2)

        def take(op: OperatorProcess) -> None:
            assert op.proc is not None
            time.sleep(args.settle)
            op.proc.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 600
            while not Path(f"{snapshot}.json").exists() and time.monotonic() < deadline:
                time.sleep(1)

        with emulator(work, latencies) as emu:
            convergence.converge(emu, work, "v1", args.n, args, 0, env=env, on_started=start, on_converged=take)
        result = report(snapshot, args.n)
    out = ROOT / "bench" / "results" / f"memory-{args.n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
