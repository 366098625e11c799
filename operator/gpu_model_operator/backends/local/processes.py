"""Detached processes for the local backend: started so they outlive the operator, known by pid, creation time
and command line (psutil), stopped with everything they started.

Each process is started through a short-lived shell that backgrounds it and exits, so it is re-parented
away from the operator: it survives an operator restart, and the operator never has to reap it (a dead
child nobody reaps would still look alive). A process counts as ours only while its pid, its creation time
and its command line all match the record, so a recycled pid is never adopted or killed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from ..base import TransientBackendError
from .state import ProcessRecord

STOP_SECONDS = 10.0
#: psutil's creation time is the boot time plus the process's start in clock ticks; the boot time it reads
#: can move by a second when the clock is adjusted. A recycled pid within this window that also carries
#: the marker in its command line is not a practical risk.
SAME_START = 2.0


def spawn_detached(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
    """Start ``args`` in its own session with output to ``log``; return its pid."""
    launcher = 'exec "$@" >> "$LOG_FILE" 2>&1 < /dev/null &\necho $!'
    out = subprocess.run(
        ["/bin/sh", "-c", launcher, "sh", *args],
        env={**env, "LOG_FILE": str(log)}, cwd=cwd, capture_output=True, text=True, check=True,
        start_new_session=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def spawn(args: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> ProcessRecord:
    pid = spawn_detached(args, env, log_path, cwd=cwd)
    record = ProcessRecord(pid=pid, started_at=now())
    with contextlib.suppress(psutil.Error, OSError):
        record.create_time = psutil.Process(pid).create_time()
        record.pgid = os.getpgid(pid)
    return record


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _live(proc: psutil.Process) -> bool:
    """Still running, or still holding what it had open. A zombie left for its reaper does not count, except
    while its other threads are still exiting: a killed multi-threaded process shows a zombie leader as soon as
    its first thread is done, and its sockets close only with its last thread."""
    try:
        if not proc.is_running():
            return False
        return proc.status() != psutil.STATUS_ZOMBIE or len(os.listdir(f"/proc/{proc.pid}/task")) > 1
    except (psutil.Error, OSError):
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def alive(pid: int, marker: str = "") -> bool:
    """``pid`` runs (a zombie does not count) and its command line contains ``marker``."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return False
    return _live(proc) and marker in _cmdline(proc)


def _ours(record: ProcessRecord, *markers: str) -> psutil.Process | None:
    """The recorded process while it is still the one we started: same pid and creation time (a recycled pid
    has another), and its command line names the program."""
    if record.pid <= 0 or record.create_time is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        same = abs(proc.create_time() - record.create_time) < SAME_START
    except psutil.Error:
        return None
    return proc if same and _live(proc) and any(m in _cmdline(proc) for m in markers) else None


def running(record: ProcessRecord, *markers: str) -> bool:
    return _ours(record, *markers) is not None


def _belongs(proc: psutil.Process, owner: str) -> bool:
    """Started for the service whose directory is ``owner``: its command line names the directory, or (where
    setproctitle renamed a gunicorn worker) its entry script, which lives there, is in its environment."""
    if owner in _cmdline(proc):
        return True
    try:
        return proc.environ().get("AZUREML_ENTRY_SCRIPT", "").startswith(owner)
    except psutil.Error:
        return False


def _processes(records: Iterable[ProcessRecord], owner: str, *markers: str) -> list[psutil.Process]:
    """Every process of these records: each recorded one still ours with its descendants, and any other in
    their process groups that belongs to ``owner``: gunicorn's workers, orphans of a dead master included."""
    records = list(records)
    found: dict[int, psutil.Process] = {}
    for record in records:
        proc = _ours(record, *markers)
        if proc is not None:
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                found.update((child.pid, child) for child in proc.children(recursive=True))
    groups = {r.pgid for r in records if r.pgid}
    for proc in psutil.process_iter() if groups else ():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.pid not in found and os.getpgid(proc.pid) in groups and _live(proc) and _belongs(proc, owner):
                found[proc.pid] = proc
    return list(found.values())


def stop(records: Iterable[ProcessRecord], owner: str, *markers: str) -> None:
    """SIGTERM, then SIGKILL at the deadline; already gone is success. Signals go to the processes found,
    one by one, never to a whole group: a recycled group id can never take a signal meant for us."""
    procs = _processes(records, owner, *markers)
    for send, seconds in ((psutil.Process.terminate, STOP_SECONDS), (psutil.Process.kill, 5.0)):
        procs = [p for p in procs if _live(p)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                send(proc)
        deadline = time.monotonic() + seconds
        while any(_live(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)


def free_port(avoid: set[int]) -> int:
    """A port the kernel says is free on loopback, and not one a stopped process of ours has reserved."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise TransientBackendError("no free port on 127.0.0.1")


def port_usable(port: int) -> bool:
    """The replicas of a service can bind ``port`` on loopback: free, or held only by sockets that let this
    user share it (SO_REUSEPORT, as the service's own replicas hold it); False when another program, or
    another user, holds it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
