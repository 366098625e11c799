"""One typed wrapper around every backend: each operation counted against its resource's call budget, timed, and
its errors counted by kind, in the metrics. Applied where the backends are built (the controller), so no backend
knows of either, and the wrapper is a ``Backend`` of the same spec like any other (crossplane's typed external
client, not a ``__getattr__`` proxy: a new operation in the contract that this class lacks is a type error, not a
silent pass).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Generic, TypeVar

from . import metrics
from .backends.base import (
    Backend,
    BackendError,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    SpecT,
)
from .backends.endpoint import RequestCounts, RolloutStep
from .budget import CallBudget
from .keys import ScoringToken

T = TypeVar("T")


class InstrumentedBackend(Generic[SpecT]):
    def __init__(self, backend: Backend[SpecT], budget: CallBudget) -> None:
        self._backend, self._budget = backend, budget
        self.name = backend.name

    async def _run(self, operation: str, inputs: DeploymentInputs[SpecT], call: Awaitable[T]) -> T:
        self._budget.spend(inputs.owner)
        start = time.perf_counter()
        try:
            return await call
        except BackendError as exc:
            kind = "permanent" if isinstance(exc, PermanentBackendError) else "transient"
            metrics.BACKEND_ERRORS.labels(backend=self.name, operation=operation, kind=kind).inc()
            raise
        except Exception:
            metrics.BACKEND_ERRORS.labels(backend=self.name, operation=operation, kind="unexpected").inc()
            raise
        finally:
            metrics.BACKEND_CALLS.labels(backend=self.name, operation=operation).observe(time.perf_counter() - start)

    async def observe_compute(self, inputs: DeploymentInputs[SpecT]) -> ObservedCompute:
        return await self._run("observe_compute", inputs, self._backend.observe_compute(inputs))

    async def create_compute(self, inputs: DeploymentInputs[SpecT]) -> None:
        await self._run("create_compute", inputs, self._backend.create_compute(inputs))

    async def delete_compute(self, inputs: DeploymentInputs[SpecT]) -> None:
        await self._run("delete_compute", inputs, self._backend.delete_compute(inputs))

    async def services_on_compute(self, inputs: DeploymentInputs[SpecT]) -> list[ServiceOnCompute]:
        return await self._run("services_on_compute", inputs, self._backend.services_on_compute(inputs))

    async def observe_service(self, inputs: DeploymentInputs[SpecT]) -> ObservedService:
        return await self._run("observe_service", inputs, self._backend.observe_service(inputs))

    async def deploy_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> list[str]:
        return await self._run("deploy_service", inputs, self._backend.deploy_service(inputs, replicas))

    async def scale_service(self, inputs: DeploymentInputs[SpecT], replicas: int) -> None:
        await self._run("scale_service", inputs, self._backend.scale_service(inputs, replicas))

    async def delete_service(self, inputs: DeploymentInputs[SpecT]) -> None:
        await self._run("delete_service", inputs, self._backend.delete_service(inputs))

    async def get_keys(self, inputs: DeploymentInputs[SpecT], *, fresh: bool = False) -> tuple[str, str] | None:
        return await self._run("get_keys", inputs, self._backend.get_keys(inputs, fresh=fresh))

    async def get_token(self, inputs: DeploymentInputs[SpecT]) -> ScoringToken | None:
        return await self._run("get_token", inputs, self._backend.get_token(inputs))

    async def probe(
        self, inputs: DeploymentInputs[SpecT], service: ObservedService, deployment: str | None = None
    ) -> ProbeResult:
        return await self._run("probe", inputs, self._backend.probe(inputs, service, deployment))

    async def request_metrics(
        self, inputs: DeploymentInputs[SpecT], deployment: str, start: str, end: str
    ) -> RequestCounts | None:
        call = self._backend.request_metrics(inputs, deployment, start, end)
        return await self._run("request_metrics", inputs, call)

    async def take_step(self, inputs: DeploymentInputs[SpecT], step: RolloutStep) -> str | None:
        return await self._run("take_step", inputs, self._backend.take_step(inputs, step))

    async def close(self, timeout: float = 0.0) -> bool:
        return await self._backend.close(timeout)
