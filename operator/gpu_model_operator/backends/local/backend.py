"""The local backend: the user's own entry script served on this machine by the Azure ML inference server.

Compute is this machine and its GPUs. Each replica is its own ``azmlinfsrv`` process from the service's
serving environment (``environments``), pinned with ``CUDA_VISIBLE_DEVICES`` to GPUs no other replica of any
local service holds. The replicas of a service share one port on 127.0.0.1 (SO_REUSEPORT: the kernel spreads
connections over them) and check the keys themselves (``gate``): a request goes from the client straight to a
replica. The scoring URI names that port, which stays while the service lives; only when the service had no
replica running and another program took the port meanwhile does it move, and the operator republishes it.

Everything about a service is in ``<state_dir>/services/<namespace>.<name>/state.json`` (``state``), and
every process is detached (its own session), so serving outlives the operator: a restarted operator
re-adopts what runs instead of starting duplicates, and deletion finds every process. A process counts as
ours only while its pid, its creation time and its command line all match the record, so a recycled pid is
never adopted or killed.

What calls what: ``observe_service`` only reads (files, processes, health routes) and never starts a process,
not even an environment build. ``deploy_service`` and ``scale_service`` are idempotent convergers: each
restarts the build if it is missing, starts what is missing once the environment is ready, and stops what
is extra. While the environment builds, observe says TRANSITIONING; once it is ready with replicas still to
start (or some died), observe says UNHEALTHY with the replicas that run, and the controller's next pass
calls ``scale_service`` (or ``deploy_service``) again, which starts them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp

from ... import conditions as c
from ...models import LocalSpec
from ..base import (
    Backend,
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
from ..endpoint import RequestCounts, RolloutStep
from . import logs as local_logs
from . import processes as procs
from . import replicas as replica
from . import state as st
from .environments import Environments, EnvStatus
from .gpus import GpuInventory, discover
from .replicas import INIT_DONE, LEGACY_ROUTER, REPLICA
from .state import Keys, ServiceRecord

log = logging.getLogger(__name__)
#: The inputs of this backend: its spec has the model's path and the local options.
Inputs: TypeAlias = DeploymentInputs[LocalSpec]


def _model_dir(spec: LocalSpec) -> str:
    path = Path(spec.model.path).expanduser().resolve()
    if not path.exists():
        raise PermanentBackendError(
            f"model path {path} does not exist on the operator's machine (spec.model.path)", reason=c.MODEL_NOT_FOUND
        )
    return str(path if path.is_dir() else path.parent)


async def _answers(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> str | None:
    """None when ``GET url`` answers 200, else what went wrong."""
    try:
        async with session.get(url, headers=headers) as resp:
            return None if resp.status == 200 else f"{resp.status} {(await resp.text())[:200].strip()}"
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return str(exc) or type(exc).__name__


def _auth(record: ServiceRecord) -> dict[str, str]:
    return {"Authorization": f"Bearer {record.keys.primary}"} if record.auth_enabled else {}


def _route(record: ServiceRecord, port: int, path: str = "score") -> str:
    return f"http://127.0.0.1:{port}/api/v1/service/{record.service}/{path}"


def stop_all(service_dir: Path) -> None:
    """Stop every process the service's record names, with what they started; nothing to do without a readable
    record (its processes cannot be found without it; an orphaned replica stops itself once its entry script,
    in the service directory, is gone)."""
    try:
        record = st.read(service_dir)
    except (OSError, ValueError):
        record = None
    if record is not None:
        router = [record.legacy_router] if record.legacy_router else []
        procs.stop([*record.replicas, *router], f"{service_dir}/", *REPLICA, LEGACY_ROUTER)


class LocalBackend(Backend[LocalSpec]):
    name = "local"

    def __init__(self, state_dir: Path, declared_gpus: int | None = None, python: str = sys.executable) -> None:
        self.state_dir = Path(state_dir)
        self.declared_gpus = declared_gpus
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

    def _dir(self, inputs: Inputs) -> Path:
        return self.state_dir / "services" / f"{inputs.namespace}.{inputs.name}"

    def _load(self, inputs: Inputs) -> ServiceRecord | None:
        try:
            return st.read(self._dir(inputs))
        except (OSError, ValueError) as exc:
            raise TransientBackendError(f"cannot read the state of service {inputs.spec.service.name}: {exc}") from exc

    def _all(self) -> list[ServiceRecord]:
        return [record for _, record in st.read_all(self.state_dir / "services")]

    # ---- compute: this machine -----------------------------------------------------------------------

    async def observe_compute(self, inputs: Inputs) -> ObservedCompute:
        inv = await asyncio.to_thread(lambda: self.inventory)
        nodes = (inv.count,) if inv.count else ()  # this machine is the one node
        return ObservedCompute(
            "local", ComputeState.READY, nodes, cpu_only=inv.count == 0, message=f"GPUs from {inv.source}"
        )

    async def create_compute(self, inputs: Inputs) -> None:
        """This machine exists already."""

    async def delete_compute(self, inputs: Inputs) -> None:
        """This machine is never deleted."""

    async def services_on_compute(self, inputs: Inputs) -> list[ServiceOnCompute]:
        """Every local service with the GPUs it holds or is about to hold (its desired replicas)."""
        found = []
        on_gpu = (await asyncio.to_thread(lambda: self.inventory)).count > 0
        for record in await asyncio.to_thread(self._all):
            holding = sum(1 for r in record.replicas if r.gpus)
            replicas = max(holding, record.desired_replicas if on_gpu else 0)
            found.append(ServiceOnCompute(record.service, replicas, record.gpu_cores, record.owner))
        return found

    # ---- service: observe (reads only) ---------------------------------------------------------------

    async def observe_service(self, inputs: Inputs) -> ObservedService:
        record = await asyncio.to_thread(self._load, inputs)
        name = inputs.spec.service.name
        if record is None:
            return ObservedService(name, ServiceState.ABSENT)
        # A renamed service needs a deploy (new route), though its fingerprint leaves the name out.
        fingerprint = record.fingerprint if record.service == name else None
        base: dict[str, Any] = {"scoring_uri": _route(record, record.port), "fingerprint": fingerprint}
        env, live = await asyncio.to_thread(self._look, record)
        n = len(live)

        def seen(status: ServiceState, message: str = "") -> ObservedService:
            return ObservedService(name, status, n, message=message, owner=record.owner, **base)

        if env.state == "failed":
            return seen(ServiceState.FAILED, f"the serving environment failed to build: {env.message[-800:]}")
        if env.state == "building":
            return seen(ServiceState.TRANSITIONING, f"building the serving environment ({env.message})")
        if env.state == "missing":
            return seen(ServiceState.UNHEALTHY, f"{env.message}; the next deploy or scale builds it")
        if record.legacy:
            return seen(ServiceState.UNHEALTHY, "started by an earlier operator behind a router; restarted next")
        dead = [r for r in record.replicas if r not in live]
        for r in dead:
            text = await asyncio.to_thread(local_logs.read, r.log)
            failure = local_logs.failure_message(text, record.entry_script) if INIT_DONE not in text else None
            if failure is not None:
                return seen(ServiceState.FAILED, f"replica {r.index}: {failure}")
        if dead:
            why = "; ".join(f"replica {r.index} exited: {local_logs.log_tail(r.log)}" for r in dead)
            return seen(ServiceState.UNHEALTHY, why)
        if n < record.desired_replicas:
            return seen(ServiceState.UNHEALTHY, f"{record.desired_replicas - n} replica(s) to start")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            checks = (_answers(session, _route(record, r.port, ""), _auth(record)) for r in live)
            errors = await asyncio.gather(*checks)
        waiting = [str(r.index) for r, e in zip(live, errors, strict=True) if e is not None]
        if waiting:
            return seen(ServiceState.TRANSITIONING, f"replica(s) {', '.join(waiting)} starting (init() runs)")
        return seen(ServiceState.HEALTHY)

    def _look(self, record: ServiceRecord) -> tuple[EnvStatus, list[st.ReplicaRecord]]:
        env = self.envs.observe(record.env_hash)
        return env, [r for r in record.replicas if procs.running(r, *REPLICA)]

    # ---- service: converge (deploy, scale) -----------------------------------------------------------

    async def deploy_service(self, inputs: Inputs, replicas: int) -> list[str]:
        """Create, redeploy (new fingerprint: replicas replaced) or repair; returns the environment warnings."""
        async with self._lock:
            return await asyncio.to_thread(self._deploy, inputs, replicas)

    async def scale_service(self, inputs: Inputs, replicas: int) -> None:
        """Start or stop replicas to match (and restart dead ones); the others serve on, on the same port."""
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

    def _deploy(self, inputs: Inputs, replicas: int) -> list[str]:
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
        for path in (self.state_dir, self.state_dir / "services", sdir):
            st.private_dir(path)
        (sdir / "app").mkdir(exist_ok=True)
        record = self._load(inputs) or ServiceRecord(
            layout=st.LAYOUT,
            owner=inputs.owner,
            keys=Keys(primary=secrets.token_urlsafe(32), secondary=secrets.token_urlsafe(32)),
            port=procs.free_port(self._ports_in_use()),
        )
        # The core deploys only what is this resource's, or taken over: from now on it is this one's.
        record.owner = inputs.owner
        if record.fingerprint != inputs.fingerprint and record.replicas:
            procs.stop(record.replicas, f"{sdir}/", *REPLICA)
            record.replicas = []
        entry = sdir / "app" / entry_name
        st.write_private(entry, inputs.entry_script)
        replica.write_config(sdir)
        record = record.model_copy(
            update={
                "service": spec.service.name,
                "fingerprint": inputs.fingerprint,
                "env_hash": env.hash,
                "conda": inputs.conda_spec,
                "model_dir": model_dir,
                "entry_script": str(entry),
                "gpu_cores": spec.service.gpu_cores,
                "auth_enabled": spec.service.auth_enabled,
                "timeout_ms": spec.service.scoring_timeout_ms,
                "cpu_fallback": spec.local.allow_cpu_fallback,
                "desired_replicas": replicas,
                "warnings": list(env.warnings),
            }
        )
        self._converge(sdir, record, env)
        return list(env.warnings)

    def _scale(self, inputs: Inputs, replicas: int) -> None:
        record = self._load(inputs)
        if record is None:
            raise TransientBackendError(f"service {inputs.spec.service.name} is not deployed yet; nothing to scale")
        record.desired_replicas = replicas
        sdir = self._dir(inputs)
        if record.legacy:
            replica.write_config(sdir)  # an earlier operator wrote another one
        self._converge(sdir, record, self._environment(record.conda, retry_failed=False))

    def _converge(self, sdir: Path, record: ServiceRecord, env: EnvStatus) -> None:
        """Drop dead replicas, stop extra ones, start missing ones once the environment is ready (on a new port
        when none runs and another program took the service's), and save; saved even when a start fails
        half-way. The access file is saved first, so the replicas that run take a change at once."""
        owner = f"{sdir}/"
        if record.legacy:  # an earlier operator's router and the replicas behind it give way to the new layout
            procs.stop([*record.replicas, *([record.legacy_router] if record.legacy_router else [])], owner,
                       *REPLICA, LEGACY_ROUTER)  # fmt: skip
            record.replicas, record.legacy_router, record.layout = [], None, st.LAYOUT
        live = [r for r in record.replicas if procs.running(r, *REPLICA)]
        dead = [r for r in record.replicas if r not in live]
        desired = record.desired_replicas
        record.replicas, extra = live[:desired], live[desired:]
        st.save(sdir, record)
        try:
            if extra or dead:
                procs.stop(extra + dead, owner, *REPLICA)  # a dead master's workers may linger
            if env.state == "ready" and len(record.replicas) < desired:
                if not record.replicas and not procs.port_usable(record.port):
                    moved = procs.free_port(self._ports_in_use())
                    log.warning("service %s: port %d is taken by another program; moving to %d",
                                record.service, record.port, moved)  # fmt: skip
                    record.port = moved
                while len(record.replicas) < desired:
                    gpus = self._allocate(record)
                    taken = {record.port, *(r.port for r in record.replicas)}  # not saved yet
                    port = procs.free_port(self._ports_in_use() | taken)
                    record.replicas.append(replica.start(sdir, record, env, gpus, port))
        finally:
            st.save(sdir, record)

    def _ports_in_use(self) -> set[int]:
        ports: set[int] = set()
        for record in self._all():
            ports.add(record.port)
            ports.update(r.port for r in record.replicas)
        return ports

    def _allocate(self, record: ServiceRecord) -> list[int]:
        """Free GPU indices for one replica: never one a running replica of any local service holds."""
        inv = self.inventory
        if inv.count == 0:
            if record.cpu_fallback:
                return []
            raise PermanentBackendError(
                "no GPU on this machine and spec.local.allowCpuFallback is false", reason=c.INSUFFICIENT_GPUS
            )
        used = {g for r in record.replicas for g in r.gpus}
        for other in self._all():
            if other.owner != record.owner:
                used |= {g for r in other.replicas if procs.running(r, *REPLICA) for g in r.gpus}
        free = [g for g in inv.indices if g not in used]
        cores = record.gpu_cores
        if len(free) < cores:
            raise TransientBackendError(
                f"no {cores} free GPU(s) for another replica: GPUs {sorted(used)} of {inv.count} are held",
                reason=c.INSUFFICIENT_GPUS, retry_after=30,
            )  # fmt: skip
        return free[:cores]

    # ---- service: delete, keys, probe ----------------------------------------------------------------

    async def delete_service(self, inputs: Inputs) -> None:
        """Stop every replica (SIGTERM, then SIGKILL), then remove the service's files."""
        async with self._lock:
            await asyncio.to_thread(self._delete, inputs)

    def _delete(self, inputs: Inputs) -> None:
        stop_all(self._dir(inputs))
        shutil.rmtree(self._dir(inputs), ignore_errors=True)

    async def get_keys(self, inputs: Inputs, *, fresh: bool = False) -> tuple[str, str] | None:
        """From the service's state file, read every time (``fresh`` or not)."""
        record = await asyncio.to_thread(self._load, inputs)
        if record is None or not record.auth_enabled:
            return None
        return record.keys.primary, record.keys.secondary

    async def probe(self, inputs: Inputs, service: ObservedService, deployment: str | None = None) -> ProbeResult:
        """A real GET of the health route at the scoring URI's port, with the primary key (the state file has both:
        it is read again rather than trusted from the observation, as the processes may have moved since)."""
        record = await asyncio.to_thread(self._load, inputs)
        if record is None:
            return ProbeResult(False, "the service does not exist")
        url = _route(record, record.port, "")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            error = await _answers(session, url, _auth(record))
        return ProbeResult(error is None, f"GET {url} " + ("answered 200" if error is None else f"failed: {error}"))

    async def request_metrics(self, inputs: Inputs, deployment: str, start: str, end: str) -> RequestCounts | None:
        """None: local services have none of an online endpoint's request metrics (the core asks only for endpoints)."""
        return None

    async def take_step(self, inputs: Inputs, step: RolloutStep) -> str | None:
        """Never called: local services have no online endpoint's rollout steps."""
        raise PermanentBackendError(f"local has no rollout step {step.kind.value}", reason=c.SERVICE_FAILED)

    async def close(self, timeout: float = 0.0) -> bool:
        """Serving outlives the operator on purpose: nothing to stop here (and no cloud to write to)."""
        return True
