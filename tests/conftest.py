"""Shared fixtures: one real control plane per test session (per pytest-xdist worker), a fresh namespace per test.

The session's control plane runs no controller-manager, so namespace deletion never finishes and ownerReferences
are never garbage-collected: tests use a fresh namespace each and never wait on either. A module that needs a
namespace really deleted starts the controller manager for itself (``ControlPlane.start_controller_manager``).
How the suite runs in parallel, and what keeps that safe: ``tests/parallel.py``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from gpu_model_operator_dev.azureml_emulator import take_violations
from gpu_model_operator_dev.azureml_emulator.contract.conformance import Violation
from gpu_model_operator_dev.controlplane import ControlPlane
from tests import parallel, secrets_seen

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def worker_span(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Marks when this worker began and ended its tests (set up first, torn down last), for the session's audit."""
    parallel.started(tmp_path_factory)
    yield
    parallel.ended(tmp_path_factory)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as cp:
        cp.install_crds(ROOT / "crds")
        stop = threading.Event()
        # kubernetes.config is unannotated, here and below.
        api: client.ApiClient = config.new_client_from_config(config_file=str(cp.kubeconfig))  # type: ignore[no-untyped-call]
        recorder = secrets_seen.start_recording(api, stop)
        yield cp
        stop.set()
        recorder.join(10)
        if parallel.worker():
            parallel.save_evidence(tmp_path_factory, parallel.evidence(cp))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each file is one xdist group, handed out longest first; audits of what the whole session left behind
    (``@pytest.mark.audit``) run after every other test (``tests/parallel.py``)."""
    parallel.schedule(config, items)


_timings = parallel.Timings()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _timings.add(report)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "audit: runs after every other test and inspects what they left")
    # Every emulator this session starts holds its ARM exchanges to Azure's published contract and records what does
    # not conform (the azure_contract fixture below fails the test it happened in).
    os.environ["AZUREML_EMULATOR_CONFORMANCE"] = "1"


def _contract_failures() -> list[str]:
    return [Violation(**v).line() for v in take_violations()]


@pytest.fixture(autouse=True)
def azure_contract() -> Iterator[None]:
    """Fails a test during which a backend, an SDK or a test sent Azure something outside its published REST
    contract, or the emulator answered outside it (the emulator's conformance mode records both; the schemas are
    ``gpu_model_operator_dev/azureml_emulator/contract/schemas``). What a module's emulator recorded while the
    module's fixtures were set up is reported by its first test."""
    yield
    found = _contract_failures()
    if found:
        pytest.fail("exchanges outside Azure's REST contract:\n" + "\n".join(found), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """What emulators recorded after the last test that used them (a module's teardown) fails the session."""
    _timings.save(session.config)
    found = _contract_failures()
    if found:
        print("\nexchanges outside Azure's REST contract after the tests that made them:\n" + "\n".join(found))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    # The resources go first, while the module's operator still runs: a namespace is never really deleted here (no
    # controller manager), and what a test left would otherwise stay for the worker's later files to see (GPUs a
    # local service still holds, a Failed resource in the phase gauges).
    control_plane.kubectl("delete", "gpumodeldeployments", "--all", "-n", name, "--wait=false", check=False)
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    return api
