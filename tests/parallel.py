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
handed out longest first, so that a long file does not start last and keep one worker busy while the others are
idle: by the seconds each file took in the last run on this machine (pytest's cache, ``FILE_SECONDS``), else by
its number of tests times a typical test's seconds in its directory (a clean clone, as CI has).
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

#: The pytest cache key of the seconds each file took in the last run (set up, call and tear down, summed).
FILE_SECONDS = "gpu-model-operator/file-seconds"
#: A typical test's seconds by directory, for a file the cache does not know; only the order matters.
TEST_SECONDS = {"tests/e2e": 20.0, "tests/integration": 2.0, "tests/unit": 0.05}


def worker() -> str:
    """This process's pytest-xdist worker id (``gw0``, ...), or ``""`` when the suite runs in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def session_dir(factory: pytest.TempPathFactory) -> Path:
    """The session's base temporary directory, the same for every worker (theirs are directories in it)."""
    base = factory.getbasetemp()
    return base.parent if worker() else base


def file_of(nodeid: str) -> str:
    """The test's file, relative to the repository (the start of its node id)."""
    return nodeid.split("::", 1)[0]


def group_of(item: pytest.Item) -> str:
    """The xdist group of a test: its file's path, or ``MEASURES`` for a file that measures."""
    path = file_of(item.nodeid)
    return MEASURES if path in MEASURING_FILES else path


def schedule(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test with its group and orders the collection longest group first, the tests of a file in
    their order, audits (``@pytest.mark.audit``) after everything else (xdist hands groups out in this order).
    Every worker reads the same cache, so every worker collects the same order, as xdist requires."""
    cache = getattr(config, "cache", None)
    measured: dict[str, float] = cache.get(FILE_SECONDS, {}) if cache is not None else {}
    guessed: dict[str, float] = {}
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group_of(item)))
        path = file_of(item.nodeid)
        guessed[path] = guessed.get(path, 0.0) + TEST_SECONDS.get(str(Path(path).parent), 1.0)
    group_seconds: dict[str, float] = {}
    for path, guess in guessed.items():
        group = MEASURES if path in MEASURING_FILES else path
        group_seconds[group] = group_seconds.get(group, 0.0) + measured.get(path, guess)
    position = {id(item): n for n, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[bool, float, int]:
        audit = item.get_closest_marker("audit") is not None
        return audit, -group_seconds[group_of(item)], position[id(item)]

    items.sort(key=key)


class Timings:
    """The seconds each file takes, summed from the test reports (in the controller under xdist: every worker's
    reports reach it), kept in pytest's cache for the next run's order; files not run this time keep theirs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, report: pytest.TestReport) -> None:
        path = file_of(report.nodeid)
        self.seconds[path] = self.seconds.get(path, 0.0) + report.duration

    def save(self, config: pytest.Config) -> None:
        cache = getattr(config, "cache", None)
        if cache is None or worker() or not self.seconds:
            return
        known: dict[str, float] = cache.get(FILE_SECONDS, {})
        cache.set(FILE_SECONDS, {**known, **{path: round(s, 1) for path, s in self.seconds.items()}})


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
