"""Conda files as the local backend reads them: pip dependencies kept, the rest reported, hashes stable."""

from __future__ import annotations

import pytest

from gpu_model_operator.backends.local_env import env_hash, parse_conda

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


def test_what_cannot_be_honoured_is_a_warning() -> None:
    env = parse_conda(EXAMPLE, running_python="3.12")
    assert any("conda package 'cudatoolkit=11.8'" in w for w in env.warnings)
    assert any("python 3.11" in w and "3.12" in w for w in env.warnings)


def test_hash_ignores_order_and_changes_with_content() -> None:
    a = parse_conda("dependencies:\n  - pip:\n      - numpy\n      - scipy\n")
    b = parse_conda("dependencies:\n  - pip:\n      - scipy\n      - numpy\n")
    c = parse_conda("dependencies:\n  - pip:\n      - numpy\n")
    assert env_hash(a, "py") == env_hash(b, "py") != env_hash(c, "py")


@pytest.mark.parametrize("text", ["dependencies: [", "- just a list", "dependencies: 3"])
def test_a_broken_conda_file_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="conda file"):
        parse_conda(text)
