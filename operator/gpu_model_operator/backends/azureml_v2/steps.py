"""The rollout steps the core decides, carried out on Azure: one write each (a PUT, a PATCH or a DELETE sent with
``polling=False``), after the endpoint is read again at the write and found to be this resource's by its tags.

Why read at the write: the core decided on the snapshot of its pass and on its own record of having created the
endpoint, and the endpoint may have been deleted and made again outside the operator since; a write to it would
change what the operator did not create. The refusal is transient: the next pass observes the endpoint and the
core decides what it means (ServiceExists, ServiceNameConflict).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ... import conditions as c
from ..base import PermanentBackendError, TransientBackendError
from ..endpoint import RolloutStep, StepKind
from . import arm, bodies
from .session import WRITE_TIMEOUT, Inputs, Session, Workspace, WsKey

log = logging.getLogger(__name__)


class Steps:
    """The executor, and the registered model versions' ids (which Azure never changes: read once)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._models: dict[tuple[WsKey, str, int], str] = {}

    async def take(self, inputs: Inputs, ws: Workspace, step: RolloutStep) -> str | None:
        """Take the step; the URL of the operation Azure started, where it answered with one (a deployment's)."""
        name = inputs.spec.service.name
        doing = f"rollout step {step.kind.value} {step.deployment}".strip()
        log.info("%s/%s: %s", inputs.namespace, inputs.name, doing)
        endpoint = await self._session.call(
            inputs, f"reading endpoint {name}", "endpoint", lambda: arm.get_endpoint(ws, name)
        )
        if step.kind == StepKind.CREATE_ENDPOINT:
            if endpoint is not None:
                raise _appeared(inputs, endpoint, doing)
            await self.model(inputs, ws)  # a model that is not there creates nothing, not an empty endpoint
            body = bodies.new_endpoint(inputs, ws.location, ws.arm_id)
            await self._write(inputs, f"creating endpoint {name}", lambda: arm.put_endpoint(ws, name, body))
            return None
        if endpoint is None:
            raise TransientBackendError(f"not taking {doing}: endpoint {name} is gone; the next pass observes it")
        _require_ours(inputs, endpoint, doing)
        return await self._writes[step.kind](self, inputs, ws, endpoint, step)

    async def _repair(self, inputs: Inputs, ws: Workspace, endpoint: dict[str, Any], step: RolloutStep) -> None:
        name = inputs.spec.service.name
        body = bodies.endpoint_update(endpoint, inputs.owner, None)
        await self._write(inputs, f"updating endpoint {name}", lambda: arm.put_endpoint(ws, name, body))

    async def _traffic(self, inputs: Inputs, ws: Workspace, endpoint: dict[str, Any], step: RolloutStep) -> None:
        """The traffic split and mirrored traffic the step says (ShiftTraffic, MirrorTraffic, RollBack), the endpoint
        sent back whole; a step that gives no split keeps it as read now (a ShiftTraffic without one: all of it to
        the step's deployment), after the tags the step records on its deployment, where it has any."""
        name = inputs.spec.service.name
        if step.tags is not None:
            # A RollBack's verdict goes on the deployment before its traffic goes back (the status may be lost).
            tags = dict(step.tags)
            what = f"recording on deployment {step.deployment} of endpoint {name}: {step.mark}"
            await self._write(inputs, what, lambda: arm.tag_deployment(ws, name, step.deployment, tags))
        traffic = step.traffic
        if traffic is None and step.kind == StepKind.SHIFT_TRAFFIC:
            traffic = {step.deployment: 100}
        body = bodies.endpoint_update(endpoint, inputs.owner, traffic, step.mirror)
        split = ", ".join(f"{k} {v}%" for k, v in (traffic or {}).items()) or "as it is"
        mirrored = (
            "as it is" if step.mirror is None else ", ".join(f"{k} {v}%" for k, v in step.mirror.items()) or "none"
        )
        what = f"setting the traffic of endpoint {name}: {split}, mirrored: {mirrored}"
        await self._write(inputs, what, lambda: arm.put_endpoint(ws, name, body))

    async def _create(self, inputs: Inputs, ws: Workspace, endpoint: dict[str, Any], step: RolloutStep) -> str | None:
        """The inputs' deployment, after its model, environment and code versions."""
        spec, name = inputs.spec, inputs.spec.service.name
        model = await self.model(inputs, ws)
        image, conda = spec.environment.base_image, inputs.conda_spec
        version = bodies.digest(image, conda)
        env = await self._write(
            inputs,
            f"creating environment {name}-env",
            lambda: arm.ensure_environment(ws, f"{name}-env", version, image, conda),
        )
        script, filename = inputs.entry_script, spec.source.entry_script
        code_version = bodies.digest(filename, script)
        code = await self._write(
            inputs,
            f"uploading the entry script of {name}",
            lambda: arm.ensure_code(ws, f"{name}-code", code_version, filename, script),
        )
        body = bodies.new_deployment(inputs, ws.location, model, env, code, step.replicas)
        what = f"creating deployment {step.deployment} of endpoint {name}"
        operation: str | None = await self._write(
            inputs, what, lambda: arm.put_deployment(ws, name, step.deployment, body)
        )
        return operation

    async def _scale(self, inputs: Inputs, ws: Workspace, endpoint: dict[str, Any], step: RolloutStep) -> None:
        """A PATCH of the instance count, and of the tags where the step records (or clears) a failed rollout."""
        name = inputs.spec.service.name
        noted = "" if step.mark is None else f", recording: {step.mark}" if step.mark else ", clearing its record"
        what = f"scaling deployment {step.deployment} of endpoint {name} to {step.replicas} instance(s){noted}"
        tags = dict(step.tags) if step.tags is not None else None
        await self._write(inputs, what, lambda: arm.scale_deployment(ws, name, step.deployment, step.replicas, tags))

    async def _delete(self, inputs: Inputs, ws: Workspace, endpoint: dict[str, Any], step: RolloutStep) -> None:
        name = inputs.spec.service.name
        what = f"deleting deployment {step.deployment} of endpoint {name}"
        await self._write(inputs, what, lambda: arm.delete_deployment(ws, name, step.deployment))

    _writes: dict[
        StepKind, Callable[[Steps, Inputs, Workspace, dict[str, Any], RolloutStep], Awaitable[str | None]]
    ] = {
        StepKind.REPAIR_ENDPOINT: _repair,
        StepKind.MIRROR_TRAFFIC: _traffic,
        StepKind.SHIFT_TRAFFIC: _traffic,
        StepKind.ROLL_BACK: _traffic,
        StepKind.CREATE_DEPLOYMENT: _create,
        StepKind.MAKE_ROOM: _scale,
        StepKind.GIVE_BACK: _scale,
        StepKind.SCALE: _scale,
        StepKind.CLEAR_RECORD: _scale,
        StepKind.DELETE_DEPLOYMENT: _delete,
    }

    async def _write(self, inputs: Inputs, what: str, fn: Callable[[], Any]) -> Any:
        return await self._session.call(inputs, what, "deployment", fn, WRITE_TIMEOUT)

    async def model(self, inputs: Inputs, ws: Workspace) -> str:
        """The ARM id of the spec's registered model version; ModelNotFound when the workspace has none."""
        name, version = inputs.spec.model.name, inputs.spec.model.version
        key = (self._session.key(inputs), name, version)
        if key not in self._models:
            found = await self._session.call(
                inputs, f"reading model {name}:{version}", "model", lambda: arm.model_id(ws, name, version)
            )
            if found is None:
                message = (
                    f"model {name} version {version} is not registered in workspace {ws.name}: register it "
                    "(az ml model create) or fix spec.model"
                )
                raise PermanentBackendError(message, reason=c.MODEL_NOT_FOUND)
            self._models[key] = found
        return self._models[key]


def _require_ours(inputs: Inputs, endpoint: dict[str, Any], doing: str) -> None:
    refusal = bodies.not_ours(inputs, endpoint)
    if refusal is not None:
        reason, owner = refusal
        raise TransientBackendError(
            f"not taking {doing}: endpoint {inputs.spec.service.name} is not tagged as this resource's "
            f"({bodies.OWNER_TAG}: {owner or 'none'}), so nothing of it was changed; annotate the resource "
            "gpumodel.io/take-over=true to let the operator redeploy it, or choose another spec.service.name",
            reason=reason,
        )


def _appeared(inputs: Inputs, endpoint: dict[str, Any], doing: str) -> TransientBackendError:
    """A create would replace an endpoint made since the observation (a PUT replaces): never."""
    message = (
        f"not taking {doing}: endpoint {inputs.spec.service.name} appeared meanwhile ({bodies.OWNER_TAG}: "
        f"{bodies.owner_of(endpoint) or 'none'}); the next pass observes it"
    )
    refused = bodies.not_ours(inputs, endpoint)
    return TransientBackendError(message, reason=refused[0]) if refused else TransientBackendError(message)
