"""Fixtures of the end-to-end tests: the trained example model and the operator as a real process.

The operator runs with a declared GPU inventory of 2 (its testing setting), so the GPU cap and pinning are
exercised on machines without a GPU. One operator per test module; the modules of one pytest-xdist worker run one
after another, each worker against its own control plane (``tests/parallel.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator.backends.local.backend import stop_all
from gpu_model_operator_dev.digits_model import TrainedModel, train
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import azure, azure_operator, emu, no_faults  # noqa: F401 (fixtures)
from tests.e2e.azure_v2_harness import v2, v2_emu  # noqa: F401 (fixtures)
from tests.e2e.harness import Deployment


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("state")
    yield path
    # A safety net for a failed test: no serving process may outlive the module that started it.
    for state_file in path.glob("services/*/state.json"):
        stop_all(state_file.parent)


@pytest.fixture(scope="module")
def operator(
    control_plane: Any, state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("logs") / "operator.log"
    args = [
        "--backend",
        "local",
        "--all-namespaces",
        "--poll-seconds",
        "1",
        "--resync-seconds",
        "5",
        "--declared-gpus",
        "2",
    ]
    with OperatorProcess(control_plane.kubeconfig, [], state_dir, log, extra_args=args) as op:
        yield op


@pytest.fixture
def deployment(control_plane: Any, namespace: str, model: TrainedModel, operator: OperatorProcess) -> Deployment:
    return Deployment(control_plane, namespace, model, operator)
