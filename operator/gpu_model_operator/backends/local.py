"""The local backend: the user's entry script served on this machine by the Azure ML inference server.

Compute is this machine's GPUs. Each replica is its own ``azmlinfsrv`` process pinned to its own GPU(s)
with ``CUDA_VISIBLE_DEVICES``, behind one scoring URL per service (``local_router``) that checks the keys.
Everything about a service is in ``<state_dir>/services/<namespace>.<name>/state.json``, so a restarted
operator re-adopts the running processes instead of starting duplicates, and deletion finds every one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ..models import GpuModelDeploymentSpec
from . import procs
from .base import (
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
)
from .gpus import GpuInventory, discover
from .local_env import ensure_environment

SERVER = "azmlinfsrv"
ROUTER = "gpu_model_operator.backends.local_router"
_EXCEPTION_LINE = re.compile(r"\b\w+(Error|Exception)\b: ")


def _free_port() -> int:
    from ..operator_process import free_port

    return free_port()


class LocalBackend:
    name = "local"

    def __init__(self, state_dir: Path, declared_gpus: int | None = None, python: str = sys.executable) -> None:
        self.state_dir = state_dir
        self.python = python
        self.declared_gpus = declared_gpus
        self._inventory: GpuInventory | None = None
        self._alloc_lock = asyncio.Lock()  # GPU allocation across services is one critical section

    # ---- state files -------------------------------------------------------------------------------

    def _dir(self, inputs: DeploymentInputs) -> Path:
        return self.state_dir / "services" / f"{inputs.namespace}.{inputs.name}"

    def _load(self, inputs: DeploymentInputs) -> dict[str, Any] | None:
        path = self._dir(inputs) / "state.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _save(self, inputs: DeploymentInputs, state: dict[str, Any]) -> None:
        path = self._dir(inputs) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)  # atomic: a crash never leaves half a state file

    def _all_states(self) -> list[dict[str, Any]]:
        root = self.state_dir / "services"
        return [json.loads(p.read_text()) for p in sorted(root.glob("*/state.json"))] if root.exists() else []

    @property
    def inventory(self) -> GpuInventory:
        if self._inventory is None:
            self._inventory = discover(self.declared_gpus)
        return self._inventory

    # ---- compute: this machine ---------------------------------------------------------------------

    async def observe_compute(self, inputs: DeploymentInputs) -> ObservedCompute:
        inv = await asyncio.to_thread(lambda: self.inventory)
        message = f"GPUs from {inv.source}"
        return ObservedCompute("local", ComputeState.READY, inv.count, cpu_only=inv.count == 0, message=message)

    async def create_compute(self, inputs: DeploymentInputs) -> None:
        """This machine exists already."""

    async def delete_compute(self, inputs: DeploymentInputs) -> None:
        """This machine is never deleted."""

    async def services_on_compute(self, inputs: DeploymentInputs) -> list[ServiceOnCompute]:
        found = []
        for state in await asyncio.to_thread(self._all_states):
            on_gpu = [r for r in state["replicas"] if r["gpus"]]
            found.append(ServiceOnCompute(state["service"], len(on_gpu), state["gpuCores"], state["owner"]))
        return found

    # ---- service ---------------------------------------------------------------------------------------

    async def observe_service(self, inputs: DeploymentInputs) -> ObservedService:
        state = await asyncio.to_thread(self._load, inputs)
        name = inputs.spec.service.name
        if state is None:
            return ObservedService(name, ServiceState.ABSENT)
        uri = f"http://127.0.0.1:{state['router']['port']}/api/v1/service/{name}/score"
        base = {"scoring_uri": uri, "fingerprint": state["fingerprint"], "owner": state["owner"]}
        env = await asyncio.to_thread(ensure_environment, self.state_dir, state["conda"], self.python)
        if env.state == "building":
            return ObservedService(name, ServiceState.TRANSITIONING, 0, message="building the environment", **base)
        if env.state == "failed":
            return ObservedService(
                name, ServiceState.FAILED, 0, message=f"environment build failed: {env.message}", **base
            )
        replicas = state["replicas"]
        live = [r for r in replicas if procs.alive(r["pid"], SERVER)]
        for r in replicas:
            if r not in live and "Worker failed to boot" in _read(r["log"]):
                return ObservedService(name, ServiceState.FAILED, len(live), message=_failure(r["log"]), **base)
        if not procs.alive(state["router"]["pid"], ROUTER):
            return ObservedService(name, ServiceState.UNHEALTHY, 0, message="the scoring router is not running", **base)
        answering = await asyncio.gather(*(_answers(r["port"]) for r in live))
        if len(live) < len(replicas) or len(live) < state["desiredReplicas"]:
            dead = len(replicas) - len(live)
            message = f"{dead} replica(s) stopped" if dead else "replicas are not started yet"
            return ObservedService(name, ServiceState.UNHEALTHY, sum(answering), message=message, **base)
        if not all(answering):
            return ObservedService(name, ServiceState.TRANSITIONING, len(live), message="replicas are starting", **base)
        return ObservedService(name, ServiceState.HEALTHY, len(live), **base)

    async def deploy_service(self, inputs: DeploymentInputs, replicas: int) -> list[str]:
        env = await asyncio.to_thread(ensure_environment, self.state_dir, inputs.conda_spec, self.python)
        async with self._alloc_lock:
            state = await asyncio.to_thread(self._load, inputs)
            if state is not None and state["fingerprint"] != inputs.fingerprint:
                await asyncio.to_thread(procs.terminate, [r["pid"] for r in state["replicas"]], SERVER)
                state["replicas"] = []
            state = state or self._new_state(inputs)
            state.update(self._spec_fields(inputs.spec), fingerprint=inputs.fingerprint, conda=inputs.conda_spec)
            state["modelDir"] = _model_dir(inputs.spec)
            service_dir = self._dir(inputs)
            (service_dir / inputs.spec.source.entry_script).write_text(inputs.entry_script)
            state["entryScript"] = str(service_dir / inputs.spec.source.entry_script)
            state["desiredReplicas"] = replicas
            await self._converge(inputs, state, ready=env.state == "ready")
        return list(env.warnings)

    async def scale_service(self, inputs: DeploymentInputs, replicas: int) -> None:
        async with self._alloc_lock:
            state = await asyncio.to_thread(self._load, inputs)
            if state is None:
                raise PermanentBackendError(f"service {inputs.spec.service.name} does not exist to scale")
            state["desiredReplicas"] = replicas
            await self._converge(inputs, state, ready=True)

    def _new_state(self, inputs: DeploymentInputs) -> dict[str, Any]:
        self._dir(inputs).mkdir(parents=True, exist_ok=True)
        return {
            "owner": inputs.owner,
            "service": inputs.spec.service.name,
            "keys": [secrets.token_urlsafe(24), secrets.token_urlsafe(24)],
            "replicas": [],
            "router": {"pid": 0, "port": _free_port()},
        }

    @staticmethod
    def _spec_fields(spec: GpuModelDeploymentSpec) -> dict[str, Any]:
        svc = spec.service
        return {
            "gpuCores": svc.gpu_cores,
            "authEnabled": svc.auth_enabled,
            "timeoutMs": svc.scoring_timeout_ms,
            "cpuFallback": spec.local.allow_cpu_fallback,
        }

    async def _converge(self, inputs: DeploymentInputs, state: dict[str, Any], *, ready: bool) -> None:
        """Make the processes match ``desiredReplicas``: restart dead ones, add or stop the difference."""
        state["replicas"] = [r for r in state["replicas"] if procs.alive(r["pid"], SERVER)]
        extra = state["replicas"][state["desiredReplicas"] :]
        await asyncio.to_thread(procs.terminate, [r["pid"] for r in extra], SERVER)
        state["replicas"] = state["replicas"][: state["desiredReplicas"]]
        if ready:
            env = await asyncio.to_thread(ensure_environment, self.state_dir, state["conda"], self.python)
            while len(state["replicas"]) < state["desiredReplicas"]:
                state["replicas"].append(self._start_replica(inputs, state, env.path / "venv" / "bin"))
        self._write_router_config(inputs, state)
        if not procs.alive(state["router"]["pid"], ROUTER):
            config = self._dir(inputs) / "router.json"
            args = [sys.executable, "-m", ROUTER, "--config", str(config)]
            state["router"]["pid"] = procs.spawn_detached(args, dict(os.environ), self._dir(inputs) / "router.log")
        self._save(inputs, state)

    def _start_replica(self, inputs: DeploymentInputs, state: dict[str, Any], venv_bin: Path) -> dict[str, Any]:
        gpus = self._allocate(state)
        index = max((r["index"] for r in state["replicas"]), default=-1) + 1
        port, health_port = _free_port(), _free_port()
        log = self._dir(inputs) / f"replica-{index}.log"
        log.write_text("")
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "AZUREML_MODEL_DIR": state["modelDir"],
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        args = [
            str(venv_bin / SERVER), "--entry_script", state["entryScript"], "--model_dir", state["modelDir"],
            "--port", str(port), "--health_port", str(health_port),
        ]  # fmt: skip
        pid = procs.spawn_detached(args, env, log, cwd=self._dir(inputs))
        return {"index": index, "pid": pid, "port": port, "gpus": gpus, "log": str(log)}

    def _allocate(self, state: dict[str, Any]) -> list[int]:
        """Free GPU indices for one replica; a GPU is never shared, across all local services."""
        if self.inventory.count == 0:
            if not state["cpuFallback"]:
                raise PermanentBackendError("no GPU on this machine and spec.local.allowCpuFallback is false")
            return []
        used = {g for s in self._all_states() if s["owner"] != state["owner"] for r in s["replicas"] for g in r["gpus"]}
        used |= {g for r in state["replicas"] for g in r["gpus"]}
        free = [g for g in self.inventory.indices if g not in used]
        if len(free) < state["gpuCores"]:
            raise PermanentBackendError(f"no free GPU for another replica (in use: {sorted(used)})")
        return free[: state["gpuCores"]]

    def _write_router_config(self, inputs: DeploymentInputs, state: dict[str, Any]) -> None:
        config = {
            "service": state["service"],
            "port": state["router"]["port"],
            "authEnabled": state["authEnabled"],
            "keys": state["keys"],
            "timeoutMs": state["timeoutMs"],
            "replicaPorts": [r["port"] for r in state["replicas"]],
        }
        path = self._dir(inputs) / "router.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(path)

    async def delete_service(self, inputs: DeploymentInputs) -> None:
        state = await asyncio.to_thread(self._load, inputs)
        if state is not None:
            await asyncio.to_thread(procs.terminate, [r["pid"] for r in state["replicas"]], SERVER)
            await asyncio.to_thread(procs.terminate, [state["router"]["pid"]], ROUTER)
        await asyncio.to_thread(shutil.rmtree, self._dir(inputs), True)

    async def get_keys(self, inputs: DeploymentInputs) -> tuple[str, str] | None:
        state = await asyncio.to_thread(self._load, inputs)
        if state is None or not state["authEnabled"]:
            return None
        return state["keys"][0], state["keys"][1]

    async def probe(self, inputs: DeploymentInputs) -> ProbeResult:
        state = await asyncio.to_thread(self._load, inputs)
        if state is None:
            return ProbeResult(False, "the service does not exist")
        url = f"http://127.0.0.1:{state['router']['port']}/api/v1/service/{state['service']}/"
        headers = {"Authorization": f"Bearer {state['keys'][0]}"}
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as resp:
                text = (await resp.text())[:200]
                return ProbeResult(resp.status == 200, f"GET {url} answered {resp.status} {text.strip()}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return ProbeResult(False, f"GET {url} failed: {exc or type(exc).__name__}")

    async def close(self) -> None:
        """Serving outlives the operator on purpose: nothing to stop here."""


def _model_dir(spec: GpuModelDeploymentSpec) -> str:
    path = Path(spec.model.path or "")
    if not path.exists():
        raise PermanentBackendError(f"model path {path} does not exist on the operator's machine (spec.model.path)")
    return str(path if path.is_dir() else path.parent)


async def _answers(port: int) -> bool:
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"http://127.0.0.1:{port}/") as resp:
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _failure(log: str) -> str:
    """The exception the entry script raised, as the inference server logged it."""
    lines = _read(log).splitlines()
    errors = [ln.strip() for ln in lines if _EXCEPTION_LINE.search(ln)]
    # The server wraps the script's exception; the user's own one is what says what to fix.
    errors = [e for e in errors if "UserScriptException" not in e] or errors
    if errors:
        return f"the entry script failed in init(): {errors[-1]}"
    return "the inference server exited: " + " | ".join(ln.strip() for ln in lines[-5:])
