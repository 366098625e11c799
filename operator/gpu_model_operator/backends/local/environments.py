"""Serving environments for the local backend: one virtual environment per environment hash.

The conda file is honoured as far as a virtual environment can honour it: its pip dependencies, plus the
Azure ML inference server. What a virtual environment cannot honour (conda packages, another Python) comes
back as warnings the user sees as events, never silently dropped. Environments live apart from the
operator's own, because the inference server's pins (Flask, gunicorn, pydantic) may conflict with the
operator's, and so a user's dependency can never break the operator.

A build runs as its own detached process (``python -m gpu_model_operator.backends.local.environments build DIR``):
it survives the operator dying, never blocks the event loop, and leaves a ``ready`` or ``failed`` marker
that a restarted operator picks up. ``build.lock`` (the builder's pid) stops a second build of the same
hash; a lock whose builder died is taken over. Checking and starting happen under an advisory lock on the
``envs`` directory, so two callers (threads or operator processes) can never both start a build.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from .processes import alive, spawn_detached

#: What replaces ``azureml-defaults`` locally: the same server Azure ML runs in its inference images.
INFERENCE_SERVER = "azureml-inference-server-http~=1.5"
#: Pip packages that bring the serving stack on Azure ML; locally the inference server replaces them.
REPLACED = frozenset({"azureml-defaults", "azureml-inference-server-http"})
#: Conda packages a virtual environment has anyway.
CONDA_IGNORED = frozenset({"python", "pip"})
BUILDER_MODULE = "gpu_model_operator.backends.local.environments"
LOCK, READY, FAILED, LOG = "build.lock", "ready", "failed", "build.log"

EnvState = Literal["building", "ready", "failed", "missing"]

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_VERSION_CLAUSE = re.compile(r"^(==|>=|<=|!=|~=|=|>|<)?\s*(\d+(?:\.\d+)*)(?:\.\*)?$")


@dataclass(frozen=True)
class CondaEnv:
    """A conda file as the local backend reads it."""

    #: Normalised pip requirement lines (options such as ``--extra-index-url`` kept as written).
    pip: tuple[str, ...]
    #: The Python the file asks for, as written after the name (``3.11``, ``>=3.9``), or None.
    python: str | None
    #: What the local backend cannot honour, for the user.
    warnings: tuple[str, ...]
    #: What the local backend does differently on purpose; worth a log line, not a warning.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvStatus:
    state: EnvState
    path: Path
    hash: str
    warnings: tuple[str, ...] = ()
    message: str = ""
    notes: tuple[str, ...] = ()

    @property
    def bin(self) -> Path:
        return self.path / "venv" / "bin"


def _normalise_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def normalise_requirement(line: str) -> tuple[str | None, str]:
    """(normalised project name or None, the line to install): the same requirement always reads the same,
    whatever its case, separators or spacing, so the environment hash does not change with formatting."""
    text = " ".join(line.split())
    if not text or text.startswith("-") or "://" in text or "@" in text or text.startswith((".", "/")):
        return None, text  # pip options, URLs and paths: kept as written
    match = _NAME.match(text)
    if match is None:
        return None, text
    name = _normalise_name(match.group(0))
    rest = text[match.end() :]
    spec, sep, marker = rest.partition(";")
    return name, name + spec.replace(" ", "") + (f"; {marker.strip()}" if sep else "")


def _clause_satisfied(op: str, want: tuple[int, ...], have: tuple[int, int]) -> bool | None:
    """One comparison on major.minor; None where major.minor cannot tell (">3.11" with 3.11.x)."""
    mine = have[: len(want)]
    if op in ("=", "=="):
        return mine == want
    if op == "!=":
        return mine != want
    if op == ">=":
        return have >= want
    if op == "<=":
        return mine <= want
    if op == "<":
        return mine < want
    if op == ">":
        return None if mine == want else have > want
    if op == "~=" and len(want) == 2:
        return have >= want and have[0] == want[0]
    return None


def _python_satisfied(spec: str, running: str) -> bool | None:
    """Whether Python ``running`` ("3.11") satisfies a conda version spec ("3.11", "=3.11.5=h12_0",
    ">=3.9,<3.12", "3.11.* *_cpython"), on major.minor; None when this check cannot tell, and then the
    user gets no warning: better silent than wrong."""
    major, minor = (int(p) for p in running.split(".")[:2])
    spec = spec.strip()
    words = spec.split()
    if len(words) == 2 and not re.match(r"^[<>=!~,]", words[1]):
        spec = words[0]  # conda's "version build" form
    build = re.match(r"^(=?=?\d[\d.*]*)=[^=]+$", spec)
    if build is not None:
        spec = build.group(1)  # conda's "version=build" form
    results: list[bool | None] = []
    for clause in spec.replace(" ", "").split(","):
        match = _VERSION_CLAUSE.match(clause)
        if match is None:
            return None
        want = tuple(int(p) for p in match.group(2).split(".")[:2])
        results.append(_clause_satisfied(match.group(1) or "=", want, (major, minor)))
    if False in results:
        return False
    return None if None in results else True


def parse_conda(text: str, running_python: str | None = None) -> CondaEnv:
    """The pip dependencies of a conda file, and what the local backend cannot honour, in words.

    Raises ValueError with a message for the user when the file is not a conda environment file.
    """
    running = running_python or f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"the conda file is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies") or [], list):
        raise ValueError("the conda file must be a mapping with a 'dependencies' list")
    pip: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []
    python: str | None = None
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            reqs = dep.get("pip")
            if not isinstance(reqs, list):
                raise ValueError(f"the conda file's dependency {dep!r} is not a 'pip:' list")
            for req in reqs:
                name, line = normalise_requirement(str(req))
                if name in REPLACED:
                    notes.append(f"pip package '{line}' is replaced by {INFERENCE_SERVER}, which serves locally")
                elif line and line not in pip:
                    pip.append(line)
            continue
        raw = " ".join(str(dep).split())
        body = raw.split("::", 1)[1] if "::" in raw else raw  # "conda-forge::numpy": channel-qualified
        match = _NAME.match(body)
        name = _normalise_name(match.group(0)) if match else body
        if name == "python":
            spec = body[len("python") :].strip()
            python = (spec[1:] if spec.startswith("=") and not spec.startswith("==") else spec) or None
            if python is not None and _python_satisfied(python, running) is False:
                warnings.append(
                    f"the conda file asks for python {python}; the local backend serves with python {running}"
                )
        elif name not in CONDA_IGNORED:
            warnings.append(f"conda package '{raw}' is not installed by the local backend; add it under pip:")
    return CondaEnv(tuple(pip), python, tuple(warnings), tuple(notes))


def env_hash(env: CondaEnv, python_version: str) -> str:
    """sha256 over the normalised pip dependencies, the serving Python's version and the server's pin.

    Requirements are sorted (their order does not change what gets installed); pip options keep their
    order (it can matter for index options).
    """
    options = [line for line in env.pip if line.startswith("-")]
    requirements = sorted(line for line in env.pip if not line.startswith("-"))
    payload = json.dumps({"pip": options + requirements, "python": python_version, "server": INFERENCE_SERVER})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def python_version(python: str) -> str:
    """major.minor of an interpreter, asked once (the running one is not asked at all)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return out.strip()


@contextlib.contextmanager
def _mutex(directory: Path) -> Iterator[None]:
    """An advisory lock on a directory: released by the kernel if its holder dies, so never stale."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def _builder_pid(path: Path) -> int | None:
    """The pid in ``build.lock`` when that process is really this directory's builder and still runs."""
    try:
        pid = int((path / LOCK).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and alive(pid, f"{BUILDER_MODULE} build {path}") else None


class Environments:
    """The serving environments under ``<state_dir>/envs``, built with ``python`` (the serving Python)."""

    def __init__(self, state_dir: Path, python: str = sys.executable) -> None:
        self.root = state_dir / "envs"
        self.python = python

    @property
    def version(self) -> str:
        return python_version(self.python)

    def ensure_environment(self, conda_text: str, *, retry_failed: bool = False) -> EnvStatus:
        """Start the build if needed and return at once: building, ready, or failed with the log's tail.

        A failed build stays failed (no rebuild loop) unless ``retry_failed``: a deploy, which the user
        caused, retries it; a scale or a repair does not. Raises ValueError for a broken conda file.
        """
        env = parse_conda(conda_text, running_python=self.version)
        digest = env_hash(env, self.version)
        with _mutex(self.root):
            status = self.observe(digest, env.warnings, env.notes)
            if status.state == "ready" or status.state == "building":
                return status
            if status.state == "failed" and not retry_failed:
                return status
            self._start(self.root / digest, env)
        return EnvStatus("building", self.root / digest, digest, env.warnings, "build started", env.notes)

    def observe(self, digest: str, warnings: tuple[str, ...] = (), notes: tuple[str, ...] = ()) -> EnvStatus:
        """What the markers say, starting nothing: ``missing`` means no build runs and none finished (never
        started, or its builder died, for example with the machine); ``ensure_environment`` restarts it."""
        path = self.root / digest
        if (path / READY).exists() and (path / "venv" / "bin" / "azmlinfsrv").exists():
            return EnvStatus("ready", path, digest, warnings, "", notes)
        if (path / FAILED).exists():
            return EnvStatus("failed", path, digest, warnings, _tail(path / FAILED), notes)
        if _builder_pid(path) is not None:
            last = _tail(path / LOG, 400).splitlines()
            progress = f": {last[-1].strip()}" if last else ""
            return EnvStatus("building", path, digest, warnings, f"installing the pip dependencies{progress}", notes)
        why = "its build was interrupted" if (path / LOCK).exists() else "it is not built"
        return EnvStatus("missing", path, digest, warnings, f"serving environment {digest}: {why}", notes)

    def _start(self, path: Path, env: CondaEnv) -> None:
        """Write the build's inputs and start the detached builder; the caller holds the mutex."""
        path.mkdir(parents=True, exist_ok=True)
        for marker in (READY, FAILED, LOCK):
            (path / marker).unlink(missing_ok=True)
        (path / "requirements.txt").write_text("\n".join([INFERENCE_SERVER, *env.pip]) + "\n")
        (path / "build.json").write_text(json.dumps({"python": self.python, "version": self.version}))
        with (path / LOG).open("a") as log:
            log.write(f"--- build started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        args = [sys.executable, "-m", BUILDER_MODULE, "build", str(path)]
        pid = spawn_detached(args, dict(os.environ), path / LOG, cwd=path)
        (path / LOCK).write_text(str(pid))


def _uv() -> str:
    import uv

    return str(uv.find_uv_bin())


def build(path: Path) -> bool:
    """The builder: run in its own detached process by ``Environments``; True when the venv is ready.

    Ends by writing ``ready`` or ``failed`` and removing the lock under the same mutex the starter holds,
    so nobody ever sees a finished build without its marker, or a lock without a builder.
    """
    started = time.monotonic()
    venv = path / "venv"
    config = json.loads((path / "build.json").read_text())
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    ok = False
    try:
        shutil.rmtree(venv, ignore_errors=True)
        uv = _uv()
        steps = [
            [uv, "venv", "--python", config["python"], str(venv)],
            [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "-r", str(path / "requirements.txt")],
        ]
        for step in steps:
            print("+", " ".join(step), flush=True)
            subprocess.run(step, env=env, cwd=path, check=True, stdin=subprocess.DEVNULL)
        if not (venv / "bin" / "azmlinfsrv").exists():
            raise RuntimeError("the install finished but the venv has no azmlinfsrv")
        ok = True
    except Exception as exc:  # everything ends up in the failed marker, for the user
        print(f"build failed: {exc}", flush=True)
    seconds = time.monotonic() - started
    with _mutex(path.parent):
        if ok:
            (path / READY).write_text(json.dumps({"seconds": round(seconds, 2)}))
        else:
            (path / FAILED).write_text(_tail(path / LOG))
        (path / LOCK).unlink(missing_ok=True)
    print(f"build {'succeeded' if ok else 'failed'} in {seconds:.1f}s", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one serving environment (run by the operator).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build").add_argument("path", type=Path)
    args = parser.parse_args(argv)
    return 0 if build(args.path) else 1


if __name__ == "__main__":
    sys.exit(main())
