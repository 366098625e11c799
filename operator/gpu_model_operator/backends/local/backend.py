"""The local backend: the user's own entry script served on this machine by the Azure ML inference server.

Compute is this machine and its GPUs. Each replica is its own ``azmlinfsrv`` process from the service's
serving environment (``environments``), pinned with ``CUDA_VISIBLE_DEVICES`` to GPUs no other replica of any
local service holds, behind one scoring URL per service (``router``) that checks the keys.

Everything about a service is in ``<state_dir>/services/<namespace>.<name>/state.json``, and every process
is detached (its own session), so serving outlives the operator: a restarted operator re-adopts what runs
instead of starting duplicates, and deletion finds every process. A process counts as ours only while its
pid, its start time and its command line all match the record, so a recycled pid is never adopted or
killed.

What calls what: ``observe_service`` only reads (files, /proc, health routes) and never starts a process,
not even an environment build. ``deploy_service`` and ``scale_service`` are idempotent convergers: each
restarts the build if it is missing, starts what is missing once the environment is ready, and stops what
is extra. While the environment builds, observe says TRANSITIONING; once it is ready with replicas still to
start (or some died), observe says UNHEALTHY with the replicas that run, and the controller's next pass
calls ``scale_service`` (or ``deploy_service``) again, which starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ... import conditions as c
from ...models import GpuModelDeploymentSpec
from ..base import (
    ComputeState,
    DeploymentInputs,
    ObservedCompute,
    ObservedService,
    PermanentBackendError,
    ProbeResult,
    ServiceOnCompute,
    ServiceState,
    TransientBackendError,
)
from . import logs as local_logs
from . import processes as procs
from .environments import Environments, EnvStatus
from .gpus import GpuInventory, discover
from .router import RouterConfig

log = logging.getLogger(__name__)

SERVER = "azmlinfsrv"
#: A replica's command line names the server, or gunicorn's master/worker where setproctitle renamed it.
REPLICA = (SERVER, "gunicorn")
ROUTER_MODULE = "gpu_model_operator.backends.local.router"
#: What any process of a local service shows in its command line (replicas, gunicorn workers, the router).
SERVING_PROCESSES = (*REPLICA, ROUTER_MODULE)
#: What the inference server logs once the user's init() returned.
INIT_DONE = "init has completed successfully"
#: Replicas listen on loopback only (the server itself would bind 0.0.0.0): the router is the only way
#: in, so the keys cannot be bypassed. Gunicorn's per-user control socket is off, or replicas would fight
#: over one path. A replica whose service directory was removed behind the operator's back stops by
#: itself rather than hold a GPU that nothing records any more.
GUNICORN_CONF = '''"""Written by the GPU Model Operator's local backend for its inference server replicas."""
import os
import signal
import threading
import time

control_socket_disable = True


def on_starting(server):
    server.cfg.set("bind", ["127.0.0.1:" + os.environ["SERVER_PORT"]])


def when_ready(server):
    def watch():
        while os.path.exists(os.environ["AZUREML_ENTRY_SCRIPT"]):
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
'''
#: The user's code gets the machine's basics, proxies, certificates and GPU/thread tuning, not the
#: operator's own settings or credentials.
PASS_ENV = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|TZ|TMPDIR|LD_LIBRARY_PATH|SSL_CERT_FILE|SSL_CERT_DIR"
    r"|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|XDG_CACHE_HOME|(?i:https?_proxy|no_proxy|all_proxy)"
    r"|LC_\w+|CUDA_\w+|NVIDIA_\w+|NCCL_\w+|OPENBLAS_\w+|OMP_\w+|MKL_\w+|HF_\w+|TORCH_\w+|TRANSFORMERS_\w+)$"
)


def _model_dir(spec: GpuModelDeploymentSpec) -> str:
    if not spec.model.path:
        raise PermanentBackendError(
            "the local backend serves a model from this machine: set spec.model.path", reason=c.INVALID_SPEC
        )
    path = Path(spec.model.path).expanduser().resolve()
    if not path.exists():
        raise PermanentBackendError(
            f"model path {path} does not exist on the operator's machine (spec.model.path)", reason=c.MODEL_NOT_FOUND
        )
    return str(path if path.is_dir() else path.parent)


def _private_dir(path: Path) -> None:
    """A directory only this user can enter: the services' directories hold their keys."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


async def _answers(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> str | None:
    """None when ``GET url`` answers 200, else what went wrong."""
    try:
        async with session.get(url, headers=headers) as resp:
            return None if resp.status == 200 else f"{resp.status} {(await resp.text())[:200].strip()}"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return str(exc) or type(exc).__name__


class LocalBackend:
    name = "local"

    def __init__(
        self, state_dir: Path, declared_gpus: int | None = None, python: str = sys.executable, host: str = "127.0.0.1"
    ) -> None:
        self.state_dir = Path(state_dir)
        self.declared_gpus = declared_gpus
        self.host = host
        self.envs = Environments(self.state_dir, python)
        self._inventory: GpuInventory | None = None
        #: Deploy, scale and delete of all services in turn: GPU and port allocation is one critical section.
        self._lock = asyncio.Lock()

    @property
    def inventory(self) -> GpuInventory:
        if self._inventory is None:
            self._inventory = discover(self.declared_gpus)
        return self._inventory

    # ---- state files ---------------------------------------------------------------------------------

    def _dir(self, inputs: DeploymentInputs) -> Path:
        return self.state_dir / "services" / f"{inputs.namespace}.{inputs.name}"

    def _load(self, inputs: DeploymentInputs) -> dict[str, Any] | None:
        path = self._dir(inputs) / "state.json"
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TransientBackendError(f"cannot read {path}: {exc}") from exc

    def _write(self, path: Path, text: str) -> None:
        """Atomically (a crash never leaves half a file, a reader never sees one), readable by this user only:
        the state and router files hold the scoring keys."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)  # O_CREAT's mode applies to a new file only
        tmp.replace(path)

    def _all_states(self) -> list[dict[str, Any]]:
        states = []
        for path in sorted((self.state_dir / "services").glob("*/state.json")):
            with contextlib.suppress(OSError, ValueError):
                states.append(json.loads(path.read_text()))
        return states

    def _uri(self, state: dict[str, Any], path: str = "score") -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{state['router']['port']}/api/v1/service/{state['service']}/{path}"

    # ---- compute: this machine -----------------------------------------------------------------------

    async def observe_compute(self, inputs: DeploymentInputs) -> ObservedCompute:
        inv = await asyncio.to_thread(lambda: self.inventory)
        nodes = (inv.count,) if inv.count else ()  # this machine is the one node
        return ObservedCompute(
            "local", ComputeState.READY, nodes, cpu_only=inv.count == 0, message=f"GPUs from {inv.source}"
        )

    async def create_compute(self, inputs: DeploymentInputs) -> None:
        """This machine exists already."""

    async def delete_compute(self, inputs: DeploymentInputs) -> None:
        """This machine is never deleted."""

    async def services_on_compute(self, inputs: DeploymentInputs, max_age: float = 0.0) -> list[ServiceOnCompute]:
        """Every local service with the GPUs it holds or is about to hold (its desired replicas)."""
        found = []
        on_gpu = (await asyncio.to_thread(lambda: self.inventory)).count > 0
        for state in await asyncio.to_thread(self._all_states):
            holding = sum(1 for r in state.get("replicas", []) if r.get("gpus"))
            replicas = max(holding, int(state.get("desired_replicas", 0)) if on_gpu else 0)
            found.append(ServiceOnCompute(state["service"], replicas, int(state["gpu_cores"]), state.get("owner")))
        return found

    # ---- service: observe (reads only) ---------------------------------------------------------------

    async def observe_service(self, inputs: DeploymentInputs) -> ObservedService:
        state = await asyncio.to_thread(self._load, inputs)
        name = inputs.spec.service.name
        if state is None:
            return ObservedService(name, ServiceState.ABSENT)
        # A renamed service needs a deploy (new route), though its fingerprint leaves the name out.
        fingerprint = state["fingerprint"] if state["service"] == name else None
        base: dict[str, Any] = {"scoring_uri": self._uri(state), "fingerprint": fingerprint, "owner": state["owner"]}
        env, live, router = await asyncio.to_thread(self._look, state)
        n = len(live)

        def seen(status: ServiceState, message: str = "") -> ObservedService:
            return ObservedService(name, status, n, message=message, **base)

        if env.state == "failed":
            return seen(ServiceState.FAILED, f"the serving environment failed to build: {env.message[-800:]}")
        if env.state == "building":
            return seen(ServiceState.TRANSITIONING, f"building the serving environment ({env.message})")
        if env.state == "missing":
            return seen(ServiceState.UNHEALTHY, f"{env.message}; the next deploy or scale builds it")
        dead = [r for r in state["replicas"] if r not in live]
        for r in dead:
            text = await asyncio.to_thread(local_logs.read, r["log"])
            failure = local_logs.failure_message(text, state["entry_script"]) if INIT_DONE not in text else None
            if failure is not None:
                return seen(ServiceState.FAILED, f"replica {r['index']}: {failure}")
        if not router:
            return seen(ServiceState.UNHEALTHY, "the scoring router is not running")
        if dead:
            why = "; ".join(f"replica {r['index']} exited: {local_logs.log_tail(r['log'])}" for r in dead)
            return seen(ServiceState.UNHEALTHY, why)
        if n < state["desired_replicas"]:
            return seen(ServiceState.UNHEALTHY, f"{state['desired_replicas'] - n} replica(s) to start")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            errors = await asyncio.gather(*(_answers(session, f"http://127.0.0.1:{r['port']}/") for r in live))
        waiting = [str(r["index"]) for r, e in zip(live, errors, strict=True) if e is not None]
        if waiting:
            return seen(ServiceState.TRANSITIONING, f"replica(s) {', '.join(waiting)} starting (init() runs)")
        return seen(ServiceState.HEALTHY)

    def _look(self, state: dict[str, Any]) -> tuple[EnvStatus, list[dict[str, Any]], bool]:
        env = self.envs.observe(state["env_hash"])
        live = [r for r in state["replicas"] if procs.running(r, *REPLICA)]
        return env, live, procs.running(state["router"], ROUTER_MODULE)

    # ---- service: converge (deploy, scale) -----------------------------------------------------------

    async def deploy_service(self, inputs: DeploymentInputs, replicas: int) -> list[str]:
        """Create, redeploy (new fingerprint: replicas replaced) or repair; returns the environment warnings."""
        async with self._lock:
            return await asyncio.to_thread(self._deploy, inputs, replicas)

    async def scale_service(self, inputs: DeploymentInputs, replicas: int) -> None:
        """Start or stop replicas to match (and restart dead ones); the router follows without a restart."""
        async with self._lock:
            await asyncio.to_thread(self._scale, inputs, replicas)

    def _environment(self, conda: str, *, retry_failed: bool) -> EnvStatus:
        try:
            env = self.envs.ensure_environment(conda, retry_failed=retry_failed)
        except ValueError as exc:
            raise PermanentBackendError(str(exc), reason=c.ENVIRONMENT_FAILED) from exc
        for note in env.notes:
            log.info("environment %s: %s", env.hash, note)
        return env

    def _deploy(self, inputs: DeploymentInputs, replicas: int) -> list[str]:
        spec = inputs.spec
        model_dir = _model_dir(spec)
        entry_name = Path(spec.source.entry_script).name
        if entry_name in ("", ".", ".."):
            raise PermanentBackendError(
                f"spec.source.entryScript {entry_name!r} is not a file name", reason=c.INVALID_SPEC
            )
        if self.inventory.count == 0 and not spec.local.allow_cpu_fallback:
            raise PermanentBackendError(
                "no GPU on this machine and spec.local.allowCpuFallback is false", reason=c.INSUFFICIENT_GPUS
            )
        env = self._environment(inputs.conda_spec, retry_failed=True)
        sdir = self._dir(inputs)
        _private_dir(self.state_dir)
        _private_dir(self.state_dir / "services")
        _private_dir(sdir)
        (sdir / "app").mkdir(exist_ok=True)
        state = self._load(inputs) or {
            "owner": inputs.owner,
            "keys": {"primary": secrets.token_urlsafe(32), "secondary": secrets.token_urlsafe(32)},
            "replicas": [],
            "router": {"pid": 0, "port": procs.free_port(self._ports_in_use())},
            "fingerprint": None,
        }
        if state["fingerprint"] != inputs.fingerprint and state["replicas"]:
            old, state["replicas"] = state["replicas"], []
            self._write_router_config(sdir, state)  # no traffic to what is about to stop
            procs.stop(old, f"{sdir}/", *REPLICA)
        entry = sdir / "app" / entry_name
        self._write(entry, inputs.entry_script)
        self._write(sdir / "gunicorn.conf.py", GUNICORN_CONF)
        state.update(
            service=spec.service.name,
            fingerprint=inputs.fingerprint,
            env_hash=env.hash,
            conda=inputs.conda_spec,
            model_dir=model_dir,
            entry_script=str(entry),
            gpu_cores=spec.service.gpu_cores,
            auth_enabled=spec.service.auth_enabled,
            timeout_ms=spec.service.scoring_timeout_ms,
            cpu_fallback=spec.local.allow_cpu_fallback,
            desired_replicas=replicas,
            warnings=list(env.warnings),
        )
        self._converge(sdir, state, env)
        return list(env.warnings)

    def _scale(self, inputs: DeploymentInputs, replicas: int) -> None:
        state = self._load(inputs)
        if state is None:
            raise TransientBackendError(f"service {inputs.spec.service.name} is not deployed yet; nothing to scale")
        state["desired_replicas"] = replicas
        self._converge(self._dir(inputs), state, self._environment(state["conda"], retry_failed=False))

    def _converge(self, sdir: Path, state: dict[str, Any], env: EnvStatus) -> None:
        """Drop dead replicas, stop extra ones, start missing ones once the environment is ready, keep the
        router running and its config current, and save; saved even when a start fails half-way."""
        live = [r for r in state["replicas"] if procs.running(r, *REPLICA)]
        dead = [r for r in state["replicas"] if r not in live]
        desired = int(state["desired_replicas"])
        state["replicas"], extra = live[:desired], live[desired:]
        try:
            if extra or dead:
                self._write_router_config(sdir, state)
                procs.stop(extra + dead, f"{sdir}/", *REPLICA)  # a dead master's workers may linger
            if env.state == "ready":
                while len(state["replicas"]) < desired:
                    state["replicas"].append(self._start_replica(sdir, state, env))
        finally:
            self._write_router_config(sdir, state)
            if not procs.running(state["router"], ROUTER_MODULE):
                self._start_router(sdir, state)
            self._write(sdir / "state.json", json.dumps(state, indent=2))

    def _ports_in_use(self) -> set[int]:
        ports: set[int] = set()
        for s in self._all_states():
            ports.add(int(s["router"]["port"]))
            ports.update(int(r["port"]) for r in s.get("replicas", []))
        return ports

    def _allocate(self, state: dict[str, Any]) -> list[int]:
        """Free GPU indices for one replica: never one a running replica of any local service holds."""
        inv = self.inventory
        if inv.count == 0:
            if state["cpu_fallback"]:
                return []
            raise PermanentBackendError(
                "no GPU on this machine and spec.local.allowCpuFallback is false", reason=c.INSUFFICIENT_GPUS
            )
        used = {g for r in state["replicas"] for g in r["gpus"]}
        for other in self._all_states():
            if other.get("owner") != state["owner"]:
                used |= {g for r in other.get("replicas", []) if procs.running(r, *REPLICA) for g in r["gpus"]}
        free = [g for g in inv.indices if g not in used]
        cores = int(state["gpu_cores"])
        if len(free) < cores:
            raise TransientBackendError(
                f"no {cores} free GPU(s) for another replica: GPUs {sorted(used)} of {inv.count} are held",
                reason=c.INSUFFICIENT_GPUS, retry_after=30,
            )  # fmt: skip
        return free[:cores]

    def _start_replica(self, sdir: Path, state: dict[str, Any], env: EnvStatus) -> dict[str, Any]:
        gpus = self._allocate(state)
        index = max((int(r["index"]) for r in state["replicas"]), default=-1) + 1
        port = procs.free_port(self._ports_in_use())
        log_path = sdir / f"replica-{index}.log"
        log_path.write_text("")
        environ = {k: v for k, v in os.environ.items() if PASS_ENV.match(k)}
        environ.update(
            PATH=f"{env.bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            VIRTUAL_ENV=str(env.bin.parent),
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in gpus),  # "" on CPU: no GPU visible at all
            CUDA_DEVICE_ORDER="PCI_BUS_ID",  # so CUDA numbers GPUs as NVML and nvidia-smi do
            AZUREML_MODEL_DIR=state["model_dir"],
            AZUREML_ENTRY_SCRIPT=state["entry_script"],
            AML_APP_ROOT=str(sdir / "app"),
            GUNICORN_CMD_ARGS=f"--config {sdir / 'gunicorn.conf.py'}",
        )
        args = [
            str(env.bin / SERVER), "--entry_script", state["entry_script"], "--model_dir", state["model_dir"],
            "--port", str(port),
        ]  # fmt: skip
        proc = procs.spawn(args, environ, log_path, sdir / "app")
        return {"index": index, **proc, "port": port, "gpus": gpus, "log": str(log_path)}

    def _start_router(self, sdir: Path, state: dict[str, Any]) -> None:
        if not procs.port_free(int(state["router"]["port"])):  # taken while the router was down: move
            state["router"]["port"] = procs.free_port(self._ports_in_use())
            self._write_router_config(sdir, state)
        args = [sys.executable, "-m", ROUTER_MODULE, "--config", str(sdir / "router.json")]
        state["router"].update(procs.spawn(args, dict(os.environ), sdir / "router.log", sdir))

    def _write_router_config(self, sdir: Path, state: dict[str, Any]) -> None:
        config = RouterConfig(
            service=state["service"],
            port=int(state["router"]["port"]),
            host=self.host,
            auth_enabled=bool(state["auth_enabled"]),
            keys=(state["keys"]["primary"], state["keys"]["secondary"]),
            timeout_ms=int(state["timeout_ms"]),
            replica_ports=tuple(int(r["port"]) for r in state["replicas"]),
        )
        self._write(sdir / "router.json", config.dump())

    # ---- service: delete, keys, probe ----------------------------------------------------------------

    async def delete_service(self, inputs: DeploymentInputs) -> None:
        """Stop every replica and the router (SIGTERM, then SIGKILL), then remove the service's files."""
        async with self._lock:
            await asyncio.to_thread(self._delete, inputs)

    def _delete(self, inputs: DeploymentInputs) -> None:
        try:
            state = self._load(inputs)
        except TransientBackendError:
            state = None  # unreadable: the processes cannot be found from it; remove what is there
        if state is not None:
            owner = f"{self._dir(inputs)}/"
            procs.stop(state.get("replicas", []), owner, *REPLICA)
            procs.stop([state["router"]], owner, ROUTER_MODULE)
        shutil.rmtree(self._dir(inputs), ignore_errors=True)

    async def get_keys(self, inputs: DeploymentInputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """From the service's state file, read every time (``fresh`` or not)."""
        state = await asyncio.to_thread(self._load, inputs)
        if state is None or not state.get("auth_enabled", True):
            return None
        return state["keys"]["primary"], state["keys"]["secondary"]

    async def probe(self, inputs: DeploymentInputs) -> ProbeResult:
        """A real GET of the health route through the router, with the primary key."""
        state = await asyncio.to_thread(self._load, inputs)
        if state is None:
            return ProbeResult(False, "the service does not exist")
        url = self._uri(state, "")
        headers = {"Authorization": f"Bearer {state['keys']['primary']}"} if state.get("auth_enabled") else {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            error = await _answers(session, url, headers)
        return ProbeResult(error is None, f"GET {url} " + ("answered 200" if error is None else f"failed: {error}"))

    async def close(self) -> None:
        """Serving outlives the operator on purpose: nothing to stop here."""
