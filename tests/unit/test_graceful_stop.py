"""A graceful stop (SIGTERM) hands the lease over only once no write to Azure is still running.

kopf cancels its handlers on SIGTERM, but a thread of the SDK pool cannot be cancelled: a PUT or a Model.deploy
already sent runs on for up to its timeout. The cleanup handler closes the backends, each of which waits for its
calls in flight (bounded); the lease is released only if they all ended, else the process exits keeping it, and
a standby takes it when it expires. Unit level: the real backends' pools and the real elector, on a fake lease.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gpu_model_operator.backends.azureml.backend import AzureMLBackend
from gpu_model_operator.backends.azureml_v2.backend import AzureMLV2Backend
from gpu_model_operator.backends.base import Backend, DeploymentInputs
from gpu_model_operator.handlers import DRAINED, close_backends, nothing_in_flight
from gpu_model_operator.leader import LeaderElector
from gpu_model_operator.models import AzureMLSpec, AzureMLV2Spec
from gpu_model_operator.settings import LeaderElectionSettings
from tests.unit.test_leader import FakeLease

TIMING = LeaderElectionSettings(enabled=True, lease_duration=15, renew_deadline=10, retry_period=2)
WORKSPACE = {"subscriptionId": "sub", "resourceGroup": "rg", "name": "ws1"}
SOURCE = {"configMapRef": {"name": "src"}, "condaFile": "env.yml"}
#: A backend, the inputs of one resource, and the call its writes to Azure go through.
Made = tuple[Backend[Any], DeploymentInputs[Any], Callable[..., Awaitable[Any]]]


def v1() -> Made:
    spec = AzureMLSpec.model_validate(
        {
            "backend": "azureml",
            "workspace": {**WORKSPACE, "credentialsSecretRef": {"name": "sp"}},
            "compute": {"name": "gpu-cluster", "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 1}},
            "model": {"name": "fraud", "version": 1},
            "source": SOURCE,
            "service": {"name": "fraud-svc", "replicas": 1},
        }
    )
    creds = {"tenantId": "t", "clientId": "c", "clientSecret": "s"}
    backend = AzureMLBackend(workers=2)
    return backend, DeploymentInputs("ml", "fraud", "u", 1, spec, "", "", creds), backend._call


def v2() -> Made:
    spec = AzureMLV2Spec.model_validate(
        {
            "backend": "azureml-v2",
            "workspace": {**WORKSPACE, "workloadIdentity": {"clientId": "c", "tenantId": "t"}},
            "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
            "model": {"name": "fraud", "version": 1},
            "source": SOURCE,
            "service": {"name": "fraud-ep", "replicas": 1},
        }
    )
    backend = AzureMLV2Backend(workers=2)
    inputs = DeploymentInputs("ml", "fraud", "u", 1, spec, "", "", {"tenantId": "t", "clientId": "c"})
    return backend, inputs, backend._session.call


@dataclass(frozen=True)
class Azure:
    """One Azure backend, by how it is built."""

    make: Callable[[], Made]


BACKENDS: dict[str, Azure] = {"azureml": Azure(v1), "azureml-v2": Azure(v2)}


class Write:
    """A write to Azure (an ARM PUT, a Model.deploy) that runs until released: seconds long in real life."""

    def __init__(self) -> None:
        self.started, self.go = threading.Event(), threading.Event()
        self.ended_at: float | None = None

    def __call__(self) -> None:
        self.started.set()
        self.go.wait(30)
        self.ended_at = time.monotonic()


async def write_cancelled_by_kopf(
    call: Callable[..., Awaitable[Any]], inputs: DeploymentInputs[Any], write: Write
) -> None:
    """The write sent by a handler, which kopf then cancels on SIGTERM: its thread keeps running."""
    task = asyncio.ensure_future(call(inputs, "creating deployment gmo-x", "deployment", write, 300))
    assert await asyncio.to_thread(write.started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def leading_elector() -> tuple[LeaderElector, FakeLease]:
    lease = FakeLease()
    elector = LeaderElector(lease, "a_1", TIMING)
    assert elector.try_acquire_or_renew()
    return elector, lease


@pytest.mark.parametrize("name", BACKENDS)
def test_the_lease_is_released_only_after_the_write_in_flight_has_ended(name: str) -> None:
    backend, inputs, call = BACKENDS[name].make()
    elector, lease = leading_elector()
    write = Write()

    async def graceful_stop() -> tuple[float, bool]:
        await write_cancelled_by_kopf(call, inputs, write)
        closing = asyncio.ensure_future(close_backends([backend], timeout=20))  # the cleanup handler
        await asyncio.sleep(0.5)
        assert not closing.done(), "the backend closed while its write was still running"
        assert lease.record is not None and lease.record.holder == "a_1"
        write.go.set()
        drained = await closing
        return time.monotonic(), drained

    closed_at, drained = asyncio.run(graceful_stop())
    assert drained and nothing_in_flight({"controller": object(), DRAINED: drained})
    assert write.ended_at is not None and write.ended_at <= closed_at
    elector.release()  # what leadership() does once kopf has stopped, the drain done
    assert lease.record is not None and lease.record.holder is None


@pytest.mark.parametrize("name", BACKENDS)
def test_a_write_outlasting_the_deadline_keeps_the_lease(name: str) -> None:
    """Past the drain deadline the lease is not released: the process exits (the write's thread with it) and a
    standby waits for the lease to expire."""
    backend, inputs, call = BACKENDS[name].make()
    write = Write()

    async def graceful_stop() -> bool:
        await write_cancelled_by_kopf(call, inputs, write)
        started = time.monotonic()
        drained = await close_backends([backend], timeout=0.3)
        assert time.monotonic() - started < 5, "the deadline bounds the wait"
        return drained

    try:
        drained = asyncio.run(graceful_stop())
        assert write.ended_at is None and not drained
        assert not nothing_in_flight({"controller": object(), DRAINED: drained})
    finally:
        write.go.set()


def test_a_stop_with_nothing_in_flight_hands_over_at_once() -> None:
    backend, _, _ = v2()
    started = time.monotonic()
    assert asyncio.run(close_backends([backend], timeout=20))
    assert time.monotonic() - started < 1
    assert nothing_in_flight({"controller": object(), DRAINED: True})
    assert nothing_in_flight({})  # kopf stopped before any backend was built: nothing could write
    assert not nothing_in_flight({"controller": object()})  # the cleanup did not finish: unknown is not safe
