"""Detached processes for the local backend: started so they outlive the operator, known by pid and start time.

Each process is started through a short-lived shell that backgrounds it and exits, so it is re-parented
away from the operator: it survives an operator restart, and the operator never has to reap it (a dead
child nobody reaps would still look alive). A process counts as ours only while its pid, its start time
and its command line all match the record, so a recycled pid is never adopted or killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from ..base import TransientBackendError

STOP_SECONDS = 10.0


def spawn_detached(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
    """Start ``args`` in its own session with output to ``log``; return its pid."""
    launcher = 'exec "$@" >> "$LOG_FILE" 2>&1 < /dev/null &\necho $!'
    out = subprocess.run(
        ["/bin/sh", "-c", launcher, "sh", *args],
        env={**env, "LOG_FILE": str(log)}, cwd=cwd, capture_output=True, text=True, check=True,
        start_new_session=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def alive(pid: int, marker: str = "") -> bool:
    """``pid`` runs (a zombie does not count) and its command line contains ``marker``."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and marker in _cmdline(pid)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def free_port(avoid: set[int]) -> int:
    """A port the kernel says is free on loopback, and not one a stopped process of ours has reserved."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise TransientBackendError("no free port on 127.0.0.1")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, process group, start time in ticks since boot) from /proc/<pid>/stat; None if no such pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), fields[19]


def _live(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running(record: dict[str, Any], *markers: str) -> bool:
    """The recorded process still runs and is still the one we started: same pid and start time (a
    recycled pid has another), and its command line names the program."""
    pid = int(record.get("pid") or 0)
    stat = _stat(pid) if pid > 0 else None
    if stat is None or stat[0] in ("Z", "X") or stat[2] != record.get("start_time"):
        return False
    return any(m in _cmdline(pid) for m in markers)


def spawn(args: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> dict[str, Any]:
    pid = spawn_detached(args, env, log_path, cwd=cwd)
    stat = _stat(pid)
    return {
        "pid": pid,
        "pgid": stat[1] if stat else None,
        "start_time": stat[2] if stat else None,
        "started_at": now(),
    }


def _processes(records: list[dict[str, Any]], owner: str, *markers: str) -> set[int]:
    """Every process of these records: each recorded one still ours, and any other in their process groups
    whose command line names ``owner`` (the service's directory): gunicorn's workers, orphans included."""
    pids = {int(r["pid"]) for r in records if running(r, *markers)}
    groups = {int(r["pgid"]) for r in records if r.get("pgid")}
    for entry in Path("/proc").iterdir() if groups else ():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat and stat[1] in groups and stat[0] not in ("Z", "X") and owner in _cmdline(int(entry.name)):
            pids.add(int(entry.name))
    return pids


def stop(records: list[dict[str, Any]], owner: str, *markers: str) -> None:
    """SIGTERM, then SIGKILL at the deadline; already gone is success. Signals go to the processes found,
    one by one, never to a whole group: a recycled group id can never take a signal meant for us."""
    pids = _processes(records, owner, *markers)
    for sig, seconds in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5.0)):
        pids = {p for p in pids if _live(p)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + seconds
        while any(_live(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
