"""Serving environments for the local backend: one virtual environment per environment hash.

The conda file is honoured as far as a virtual environment can honour it (its pip dependencies, plus the
Azure ML inference server); what it cannot honour (conda packages, another Python) comes back as warnings
for the user. Environments live apart from the operator's own, because the inference server's pins may
conflict with the operator's. Builds run detached, so they survive an operator restart and never block it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .procs import alive, spawn_detached

INFERENCE_SERVER = "azureml-inference-server-http~=1.5"
#: Pip packages that on Azure ML bring the serving stack; locally the inference server replaces them.
REPLACED = {"azureml-defaults", "azureml-inference-server-http"}
CONDA_IGNORED = {"python", "pip"}


@dataclass(frozen=True)
class CondaEnv:
    pip: tuple[str, ...]
    python: str | None
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class EnvStatus:
    state: str  # "building" | "ready" | "failed"
    path: Path
    hash: str
    warnings: tuple[str, ...] = field(default=())
    message: str = ""

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"


def _requirement_name(req: str) -> str:
    for sep in "=<>!~[; ":
        req = req.split(sep, 1)[0]
    return req.strip().lower().replace("_", "-")


def parse_conda(text: str, running_python: str | None = None) -> CondaEnv:
    """The pip dependencies of a conda file, and what the local backend cannot honour, in words."""
    running = running_python or f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"the conda file is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies", []), list):
        raise ValueError("the conda file must be a mapping with a 'dependencies' list")
    pip: list[str] = []
    warnings: list[str] = []
    python = None
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            for req in dep["pip"]:
                if _requirement_name(str(req)) not in REPLACED:
                    pip.append(str(req).strip())
            continue
        name = _requirement_name(str(dep))
        if name == "python":
            python = str(dep).split("=", 1)[1].lstrip("=") if "=" in str(dep) else None
            if python and not f"{python}.".startswith(f"{running}."):
                warnings.append(
                    f"the conda file asks for python {python}; the local backend serves with python {running}"
                )
        elif name not in CONDA_IGNORED:
            warnings.append(f"conda package '{dep}' is not installed by the local backend; list it under pip: instead")
    return CondaEnv(tuple(pip), python, tuple(warnings))


def env_hash(env: CondaEnv, python: str) -> str:
    payload = json.dumps({"pip": sorted(env.pip), "python": python, "server": INFERENCE_SERVER})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _uv() -> str:
    import uv

    return str(uv.find_uv_bin())


def ensure_environment(state_dir: Path, conda_text: str, python: str = sys.executable) -> EnvStatus:
    """Start the build if needed and return at once: building, ready or failed (with the log's tail)."""
    env = parse_conda(conda_text)
    digest = env_hash(env, python)
    path = state_dir / "envs" / digest
    if (path / "ready").exists():
        return EnvStatus("ready", path, digest, env.warnings)
    if (path / "failed").exists():
        return EnvStatus("failed", path, digest, env.warnings, (path / "failed").read_text()[-2000:])
    lock = path / "build.lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and alive(pid):
            return EnvStatus("building", path, digest, env.warnings, "installing the pip dependencies")
        lock.unlink(missing_ok=True)  # a stale lock: its builder died (for example with the machine)
    _start_build(path, env, python)
    return EnvStatus("building", path, digest, env.warnings, "installing the pip dependencies")


def _start_build(path: Path, env: CondaEnv, python: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    venv = path / "venv"
    uv = shlex.quote(_uv())
    packages = " ".join(shlex.quote(p) for p in (INFERENCE_SERVER, *env.pip))
    script = f"""
set -u
cd {shlex.quote(str(path))}
echo $$ > build.lock
trap 'rm -f build.lock' EXIT
rm -rf venv
if {uv} venv --quiet --python {shlex.quote(python)} {shlex.quote(str(venv))} >> build.log 2>&1 \\
   && {uv} pip install --quiet --python {shlex.quote(str(venv / "bin" / "python"))} {packages} >> build.log 2>&1; then
  touch ready
else
  tail -c 2000 build.log > failed
fi
"""
    (path / "build.sh").write_text(script)
    # Hold the lock with our own pid until the builder writes its own, so no second build starts meanwhile.
    (path / "build.lock").write_text(str(os.getpid()))
    spawn_detached(["/bin/sh", str(path / "build.sh")], dict(os.environ), path / "build.log")
