"""Detached processes for the local backend: started so they outlive the operator, checked by pid.

Each process is started through a short-lived shell that backgrounds it and exits, so the process is
re-parented away from the operator: it survives an operator restart, and the operator never has to reap
it (a dead child that nobody reaps would still look alive to ``kill(pid, 0)``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


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
    """True when ``pid`` runs (not a zombie) and its command line contains ``marker``: a recycled pid that
    now belongs to another program is not ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def terminate(pids: list[int], marker: str = "", timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever is left at the deadline. Already gone is fine."""
    ours = [p for p in pids if alive(p, marker)]
    for pid in ours:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p, marker) for p in ours):
        time.sleep(0.05)
    for pid in ours:
        if alive(pid, marker):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
