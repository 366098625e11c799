"""Conda files as the local backend reads them: pip dependencies kept, what a venv cannot honour reported
as warnings, the serving stack replaced (said as a note, not a warning), and hashes that change with what
gets installed and with nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpu_model_operator.backends.local.environments import (
    INFERENCE_SERVER,
    env_hash,
    normalise_requirement,
    parse_conda,
)
from gpu_model_operator.backends.local.gpus import discover, parse_nvidia_smi

EXAMPLE = """
name: digits-env
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip
  - cudatoolkit=11.8
  - pip:
      - azureml-defaults
      - numpy>=1.26
"""


def test_pip_dependencies_are_kept_and_the_serving_stack_replaced() -> None:
    env = parse_conda(EXAMPLE, running_python="3.11")
    assert env.pip == ("numpy>=1.26",)
    assert env.python == "3.11"
    assert env.warnings == (
        "conda package 'cudatoolkit=11.8' is not installed by the local backend; add it under pip:",
    )
    assert len(env.notes) == 1 and "azureml-defaults" in env.notes[0] and INFERENCE_SERVER in env.notes[0]
    server = parse_conda("dependencies:\n  - pip:\n      - azureml-inference-server-http==1.2.0\n")
    assert server.pip == () and server.warnings == () and server.notes


def test_python_and_pip_are_not_conda_packages_to_warn_about() -> None:
    env = parse_conda("dependencies:\n  - python=3.11\n  - pip=24.0\n  - pip: []\n", running_python="3.11")
    assert env.warnings == () and env.pip == ()


def test_another_python_is_a_warning() -> None:
    env = parse_conda(EXAMPLE, running_python="3.12")
    assert any("python 3.11" in w and "3.12" in w for w in env.warnings)


def asks(python: str, running: str = "3.11") -> tuple[str]:
    """The one warning a conda file's python that the running one does not satisfy gives."""
    return (f"the conda file asks for python {python}; the local backend serves with python {running}",)


@dataclass(frozen=True)
class PythonCase:
    spec: str
    running: str
    warnings: tuple[str, ...] = ()


PYTHONS: dict[str, PythonCase] = {
    "the same minor": PythonCase("python=3.11", "3.11"),
    "a patch release": PythonCase("python=3.11.5", "3.11"),
    "pip's equals": PythonCase("python==3.11", "3.11"),
    "a minor wildcard": PythonCase("python=3.11.*", "3.11"),
    "a patch release with a build string": PythonCase("python=3.11.5=h955ad1f_0", "3.11"),
    "conda's match spec with a build glob": PythonCase("python 3.11.* *_cpython", "3.11"),
    "a range that holds it": PythonCase("python>=3.9,<3.12", "3.11"),
    "a lower bound below it": PythonCase("python>=3.9", "3.12"),
    "a major only": PythonCase("python=3", "3.11"),
    "another minor from a channel": PythonCase("conda-forge::python=3.10", "3.11", asks("3.10")),
    "another minor": PythonCase("python=3.10", "3.11", asks("3.10")),
    "an upper bound below it": PythonCase("python<3.11", "3.11", asks("<3.11")),
    "a lower bound above it": PythonCase("python>=3.12", "3.11", asks(">=3.12")),
    "no version": PythonCase("python", "3.11"),
}


@pytest.mark.parametrize("name", PYTHONS)
def test_python_versions_are_compared_on_major_minor(name: str) -> None:
    case = PYTHONS[name]
    env = parse_conda(f"dependencies:\n  - {case.spec}\n", running_python=case.running)
    assert env.warnings == case.warnings


def test_requirements_are_normalised() -> None:
    assert normalise_requirement("  NumPy >= 1.26 ") == ("numpy", "numpy>=1.26")
    assert normalise_requirement("scikit_learn[alldeps]==1.4") == ("scikit-learn", "scikit-learn[alldeps]==1.4")
    marker = "pywin32 >= 300; sys_platform == 'win32'"
    assert normalise_requirement(marker) == ("pywin32", "pywin32>=300; sys_platform == 'win32'")
    assert normalise_requirement("--extra-index-url  https://example.invalid/simple") == (
        None,
        "--extra-index-url https://example.invalid/simple",
    )
    assert normalise_requirement("pkg @ https://example.invalid/pkg.whl")[0] is None


def test_hash_ignores_order_case_and_spacing_and_changes_with_content() -> None:
    a = parse_conda("dependencies:\n  - pip:\n      - numpy\n      - SciPy >= 1.0\n")
    b = parse_conda("dependencies:\n  - pip:\n      - scipy>=1.0\n      - numpy\n      - numpy\n")
    c = parse_conda("dependencies:\n  - pip:\n      - numpy\n")
    d = parse_conda("dependencies:\n  - pip:\n      - numpy\n      - azureml-defaults\n")
    assert env_hash(a, "3.11") == env_hash(b, "3.11") != env_hash(c, "3.11")
    assert env_hash(c, "3.11") == env_hash(d, "3.11"), "the replaced serving stack does not change the env"
    assert env_hash(c, "3.11") != env_hash(c, "3.12"), "another Python is another environment"
    assert env_hash(c, "3.11") == env_hash(parse_conda("dependencies:\n  - pip:\n      - numpy\n"), "3.11")


def test_conda_only_files_and_empty_pip_lists_are_fine() -> None:
    assert parse_conda("dependencies:\n  - pip\n  - pip: []\n").pip == ()
    assert parse_conda("name: x\n").pip == ()


@dataclass(frozen=True)
class BrokenCase:
    text: str
    #: The error's first line (YAML's own report follows it on the next lines).
    error: str


BROKEN: dict[str, BrokenCase] = {
    "not YAML": BrokenCase("dependencies: [", "the conda file is not valid YAML: while parsing a flow node"),
    "a list, not a mapping": BrokenCase("- just a list", "the conda file must be a mapping with a 'dependencies' list"),
    "dependencies not a list": BrokenCase(
        "dependencies: 3", "the conda file must be a mapping with a 'dependencies' list"
    ),
    "pip not a list": BrokenCase(
        "dependencies:\n  - pip: numpy\n", "the conda file's dependency {'pip': 'numpy'} is not a 'pip:' list"
    ),
}


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_conda_file_is_a_clear_error(name: str) -> None:
    case = BROKEN[name]
    with pytest.raises(ValueError) as raised:
        parse_conda(case.text)
    assert str(raised.value).splitlines()[0] == case.error


def test_declared_gpus_replace_discovery_and_say_so() -> None:
    inv = discover(declared_gpus=2)
    assert (inv.count, inv.indices, inv.source) == (2, (0, 1), "declared")
    assert discover(declared_gpus=0).count == 0
    with pytest.raises(ValueError):
        discover(declared_gpus=-1)
    assert discover().source in ("nvml", "nvidia-smi", "none")


def test_nvidia_smi_output_is_parsed_and_errors_are_not_gpus() -> None:
    inv = parse_nvidia_smi("0, GPU-aaa\n1, GPU-bbb\n")
    assert inv is not None and inv.indices == (0, 1) and inv.uuids == ("GPU-aaa", "GPU-bbb")
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver.\n") is None
