"""How the suite runs in parallel (pytest-xdist, ``make test``: ``-n 4 --dist loadgroup``), and what stays safe.

The e2e tests mostly wait (on an operator's poll, an emulated Azure operation, a process starting), so a 2-core
machine runs several at once. What they share, and how each is kept apart:

- the control plane: each worker is a process of its own with its own session, so it starts its own etcd and
  kube-apiserver (``tests/conftest.py``'s session fixture); the operators of a module watch all namespaces of
  their worker's apiserver only;
- ports: every one is the kernel's choice on loopback (``free_port``), never a fixed number;
- the emulator, the operators, the serving processes: one per module, on the worker that runs the module;
- files: each worker has its own base temporary directory (``popen-gwN`` under the session's);
- the tool caches: one build of a tool at a time on the machine (``controlplane.run_build`` holds a lock).

A file is the unit of scheduling (its module-scoped operator and emulator are started once), marked with the
``xdist_group`` of its path; files that must not overlap each other share one group, ``MEASURES``. Files are
handed out longest first (``LONGEST``), so that a long file does not start last and keep one worker busy while
the others are idle.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TypedDict

import pytest

from gpu_model_operator_dev.controlplane import ControlPlane
from tests import secrets_seen

#: The files that measure times (the leader's takeover, its renew deadline, calls per window): one group, so
#: that none of them runs beside another of them.
MEASURES = "measures"
MEASURING_FILES = frozenset({"tests/e2e/test_leader_election.py", "tests/e2e/test_convergence.py"})

#: Seconds each of the longest files took (``pytest --durations=0``, summed per file, on a 2-core machine); a
#: file not named here counts as ``DEFAULT_SECONDS`` of its directory. Only the order matters: longest first.
LONGEST: dict[str, float] = {}
DEFAULT_SECONDS = {"tests/e2e": 60.0, "tests/integration": 10.0, "tests/unit": 1.0}


def worker() -> str:
    """This process's pytest-xdist worker id (``gw0``, ...), or ``""`` when the suite runs in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def session_dir(factory: pytest.TempPathFactory) -> Path:
    """The session's base temporary directory, the same for every worker (theirs are directories in it)."""
    base = factory.getbasetemp()
    return base.parent if worker() else base


def group_of(item: pytest.Item) -> str:
    """The xdist group of a test: its file's path, or ``MEASURES`` for a file that measures."""
    path = item.nodeid.split("::", 1)[0]
    return MEASURES if path in MEASURING_FILES else path


def seconds_of(group: str) -> float:
    """How long a group is expected to take: the sum over its files."""
    files = MEASURING_FILES if group == MEASURES else {group}
    return sum(LONGEST.get(f, DEFAULT_SECONDS.get(str(Path(f).parent), 1.0)) for f in files)


def schedule(items: list[pytest.Item]) -> None:
    """Marks every test with its group and orders the collection longest group first, the tests of a file in
    their order, audits (``@pytest.mark.audit``) after everything else (xdist hands groups out in this order)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item)))
    position = {id(item): n for n, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[bool, float, int]:
        audit = item.get_closest_marker("audit") is not None
        return audit, -seconds_of(group_of(item)), position[id(item)]

    items.sort(key=key)


# What a worker leaves for the audit of the whole session, which runs on one worker after the others have ended.


class Evidence(TypedDict):
    """What the secrets-hygiene audit reads from a control plane."""

    #: The values of the secret keys its Secrets held (``secrets_seen``), by key.
    secrets: dict[str, list[str]]
    #: ``kubectl get events -A -o json``.
    events: str
    #: ``kubectl get gmd -A -o json``.
    gpumodeldeployments: str


def evidence(cp: ControlPlane) -> Evidence:
    """This worker's control plane's evidence, read now."""
    return Evidence(
        secrets={key: sorted(found) for key, found in secrets_seen.values().items()},
        events=cp.kubectl("get", "events", "-A", "-o", "json").stdout,
        gpumodeldeployments=cp.kubectl("get", "gmd", "-A", "-o", "json").stdout,
    )


def _evidence_dir(factory: pytest.TempPathFactory) -> Path:
    path = session_dir(factory) / "evidence"
    path.mkdir(exist_ok=True)
    return path


def started(factory: pytest.TempPathFactory) -> None:
    """This worker has begun its tests (the audit waits for every worker that began to end)."""
    if worker():
        (_evidence_dir(factory) / f"{worker()}.started").touch()


def ended(factory: pytest.TempPathFactory) -> None:
    """This worker has ended its tests and torn down its fixtures, its control plane's evidence saved."""
    if worker():
        (_evidence_dir(factory) / f"{worker()}.ended").touch()


def save_evidence(factory: pytest.TempPathFactory, saved: Evidence) -> None:
    """What this worker's control plane held, saved before it stops, for an audit on another worker."""
    if worker():
        (_evidence_dir(factory) / f"{worker()}.json").write_text(json.dumps(saved))


def other_workers_evidence(factory: pytest.TempPathFactory, timeout: float) -> list[Evidence]:
    """Waits until every other worker that began has ended (polled, with a deadline), then returns what each
    saved. Deadlock-free because an audit is the last group handed out: the others have nothing left to wait for."""
    if not worker():
        return []
    folder = _evidence_dir(factory)

    def running() -> list[str]:
        began = {p.stem for p in folder.glob("*.started")} - {worker()}
        return sorted(w for w in began if not (folder / f"{w}.ended").exists())

    deadline = time.monotonic() + timeout
    while running():
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {running()} did not end in {timeout}s")
        time.sleep(1)
    saved: list[Evidence] = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.stem != worker()]
    return saved
