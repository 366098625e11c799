"""The console command: ``gpu-model-operator run`` (also ``python -m gpu_model_operator``).

Every option of ``run`` also reads ``GMO_<PARAMETER>`` (``GMO_BACKENDS`` and ``GMO_NAMESPACES``, space-separated;
``GMO_ALL_NAMESPACES``; ``GMO_LOG_FORMAT``; ``GMO_LEADER_ELECT``, …), which is how the Deployment in ``manifests/``
configures the operator. Leader election is off unless asked for (a developer's single process); the manifests
and the chart turn it on for their replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
from pathlib import Path
from typing import Any

import click
import kopf

from . import __version__
from .models import BackendKind
from .settings import LeaderElectionSettings, Settings, default_state_dir
from .standby import StopSignal, exit_keeping_lease, leadership, own_namespace


def build_controller(settings: Settings) -> object:
    """Clients are built here, at start-up, never at import (kopf convention)."""
    from kubernetes import client, config

    from .backends.base import Backend
    from .controller import Controller
    from .kube import KubeClient

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    backends: dict[BackendKind, Backend[Any]] = {}
    azure = {BackendKind.AZUREML, BackendKind.AZUREML_V2} & set(settings.backends)
    budget, refresh = (arm_budget(settings) if azure else None), settings.keys_refresh_seconds
    if BackendKind.AZUREML in settings.backends:
        from .backends.azureml.backend import AzureMLBackend

        backends[BackendKind.AZUREML] = AzureMLBackend(settings.azure_workers, budget)
    if BackendKind.AZUREML_V2 in settings.backends:
        from .backends.azureml_v2.backend import AzureMLV2Backend

        backends[BackendKind.AZUREML_V2] = AzureMLV2Backend(settings.azure_workers, budget, refresh)
    if BackendKind.LOCAL in settings.backends:
        from .backends.local.backend import LocalBackend

        backends[BackendKind.LOCAL] = LocalBackend(state_dir=settings.state_dir, declared_gpus=settings.declared_gpus)
    return Controller(settings, backends, KubeClient(client.ApiClient()))


def arm_budget(settings: Settings) -> Any:
    """The one ARM budget of the process, shared by both Azure backends (per subscription and principal)."""
    from .backends.azure.arm_budget import ArmBudget, Limit
    from .backends.azure.calls import CallKind

    kinds = {"reads": CallKind.READ, "writes": CallKind.WRITE}
    limits = {kinds[kind]: Limit(size, rate) for kind, size, rate in settings.arm_limits}
    return ArmBudget(limits, enabled=settings.arm_budget)


class RequeueIsNotAnError(logging.Filter):
    """The reconciler asks kopf to come back later by raising TemporaryError, which kopf logs at ERROR.
    Waiting for a cluster to provision is progress, not an error: log it at INFO (real problems carry their
    own Warning events and conditions)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed temporarily" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


@click.group(context_settings={"auto_envvar_prefix": "GMO", "show_default": True})
@click.version_option(__version__)
def main() -> None:
    """GPU Model Operator: serve models on GPUs from GpuModelDeployment resources."""


@main.command(context_settings={"auto_envvar_prefix": "GMO"})
@click.option(
    "--backend",
    "backends",
    multiple=True,
    default=[BackendKind.AZUREML.value],
    type=click.Choice([kind.value for kind in BackendKind]),
    help="A backend to serve (repeatable): azureml-v2 (online endpoints, for new deployments), azureml (SDK v1 AKS "
    "services), local (runs the entry script on this machine: development only).",
)
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Namespace to watch (repeatable).")
@click.option("--all-namespaces", "-A", is_flag=True, help="Watch every namespace (cluster-wide install).")
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.option("--log-format", default="text", type=click.Choice(["text", "json"]))
@click.option("--health-port", default=8080, help="Port of the liveness endpoint /healthz (0: off).")
@click.option("--metrics-port", default=9090, help="Port of the Prometheus /metrics endpoint (0: off).")
@click.option(
    "--metrics-bind-address",
    default="127.0.0.1",
    help="Address /metrics listens on: loopback by default (it has no authentication); 0.0.0.0 to let Prometheus "
    "scrape the pod (README, Metrics).",
)
@click.option("--poll-seconds", default=10.0, help="Seconds between checks of an operation in flight.")
@click.option("--resync-seconds", default=900.0, help="Seconds between drift checks of a converged resource.")
@click.option(
    "--probe-deadline-seconds",
    default=900.0,
    help="Seconds a new online deployment may take to answer its scoring probe before its rollout is given up.",
)
@click.option(
    "--price-table",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A YAML price table (VM size -> price per hour; README, What it costs), e.g. a ConfigMap mounted into the "
    "pod and read again when it changes. Default: the shipped table of Azure pay-as-you-go Linux prices in East US.",
)
@click.option("--state-dir", type=click.Path(path_type=Path), default=default_state_dir, help="Local backend state.")
@click.option("--declared-gpus", type=int, default=None, help="Declared GPU inventory (testing): skip discovery.")
@click.option("--azure-workers", default=8, help="Threads for Azure ML SDK calls.")
@click.option(
    "--workload-identity",
    "workload_identities",
    multiple=True,
    metavar="NAMESPACE=CLIENT_ID",
    callback=lambda ctx, param, value: parse_workload_identities(value),
    help="An Entra application (client id) that resources of NAMESPACE may sign in as with azureml-v2's "
    "spec.workspace.workloadIdentity (repeatable); NAMESPACE * allows it in every namespace (a single-tenant "
    "install). Every application federates with the operator's own ServiceAccount token: none listed, none allowed.",
)
@click.option(
    "--keys-refresh-seconds",
    default=3600.0,
    help="Seconds after which a resync reads an azureml-v2 endpoint's keys again (a probe refused with them reads them "
    "at once; azureml reads its services' keys at every resync).",
)
@click.option(
    "--arm-budget/--no-arm-budget",
    default=True,
    help="Keep ARM's token buckets on the client side, one per subscription and principal shared by both Azure "
    "backends: calls wait for a token by priority instead of drawing 429s.",
)
@click.option(
    "--arm-limit",
    "arm_limits",
    multiple=True,
    metavar="KIND=SIZE/REFILL",
    callback=lambda ctx, param, value: parse_arm_limits(value),
    help="A bucket's size and refill per second (repeatable; KIND reads or writes, writes and deletes share one). "
    "Default: ARM's published limits, reads=250/25 writes=200/10.",
)
@click.option(
    "--call-budget", default=300, help="Backend calls one resource may make per resync interval (0: no limit)."
)
@click.option(
    "--leader-elect/--no-leader-elect",
    default=False,
    help="Reconcile only while holding the lease, so that of several replicas exactly one acts (on in the "
    "manifests). Off: this process reconciles alone, as on a developer's machine.",
)
@click.option("--lease-name", default="gpu-model-operator", help="The Lease to elect on: one per shard.")
@click.option(
    "--lease-namespace",
    default=own_namespace,
    show_default="the pod's: POD_NAMESPACE",
    help="The Lease's namespace (the operator's own).",
)
@click.option("--lease-duration", default=15, help="Seconds without a renewal before a standby takes the lease.")
@click.option("--renew-deadline", default=10.0, help="Seconds the leader acts without renewing; then it exits.")
@click.option("--retry-period", default=2.0, help="Seconds between renewals, and between a standby's attempts.")
def run(
    backends: tuple[str, ...],
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    log_level: str,
    log_format: str,
    health_port: int,
    metrics_port: int,
    metrics_bind_address: str,
    poll_seconds: float,
    resync_seconds: float,
    probe_deadline_seconds: float,
    price_table: Path | None,
    state_dir: Path,
    declared_gpus: int | None,
    azure_workers: int,
    keys_refresh_seconds: float,
    arm_budget: bool,
    arm_limits: tuple[tuple[str, float, float], ...],
    workload_identities: tuple[tuple[str, str], ...],
    call_budget: int,
    leader_elect: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: int,
    renew_deadline: float,
    retry_period: float,
) -> None:
    """Run the operator until interrupted."""
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace (one or more) or --all-namespaces")
    if leader_elect and not lease_namespace:
        raise click.UsageError("leader election needs --lease-namespace (or POD_NAMESPACE, the pod's namespace)")
    if BackendKind.LOCAL.value in backends and (missing := missing_local_extra()):
        raise click.UsageError(
            f"the local backend needs {', '.join(missing)}: pip install 'gpu-model-operator[local]' (the image and a "
            "cluster install leave them out: they serve Azure ML only)"
        )
    if price_table is not None:
        check_price_table(price_table)
    try:
        leader_election = LeaderElectionSettings(
            leader_elect, lease_name, lease_namespace, lease_duration, renew_deadline, retry_period
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = Settings(
        backends=tuple(BackendKind(b) for b in dict.fromkeys(backends)),
        namespaces=list(namespaces),
        poll_seconds=poll_seconds,
        resync_seconds=resync_seconds,
        probe_deadline_seconds=probe_deadline_seconds,
        price_table=price_table,
        state_dir=state_dir,
        declared_gpus=declared_gpus,
        azure_workers=azure_workers,
        keys_refresh_seconds=keys_refresh_seconds,
        arm_budget=arm_budget,
        arm_limits=arm_limits,
        workload_identities=workload_identities,
        call_budget=call_budget,
        health_port=health_port,
        metrics_port=metrics_port,
        metrics_bind_address=metrics_bind_address,
        log_level=log_level,
        log_format=log_format,
        leader_election=leader_election,
    )
    serve(settings, all_namespaces)


def check_price_table(path: Path) -> None:
    """Refuse to start with a price table that cannot be read: a typo would otherwise price nothing, silently."""
    from .price_file import read_price_table
    from .prices import PriceTableError

    try:
        read_price_table(path)
    except (OSError, PriceTableError) as exc:
        raise click.UsageError(f"--price-table: {exc}") from exc


#: The modules of the ``local`` extra (psutil, nvidia-ml-py, uv), which only the local backend imports.
LOCAL_EXTRA = ("psutil", "pynvml", "uv")


def missing_local_extra() -> list[str]:
    """The local extra's modules that are not installed (the backend imports them only once it is enabled)."""
    return [name for name in LOCAL_EXTRA if importlib.util.find_spec(name) is None]


def parse_workload_identities(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``NAMESPACE=CLIENT_ID`` pairs, from the options or GMO_WORKLOAD_IDENTITIES (space-separated)."""
    pairs = []
    for value in values:
        namespace, _, client_id = value.partition("=")
        if not namespace.strip() or not client_id.strip():
            raise click.BadParameter(f"{value!r} is not NAMESPACE=CLIENT_ID (NAMESPACE * for every namespace)")
        pairs.append((namespace.strip(), client_id.strip()))
    return tuple(pairs)


#: ARM's published limits per principal (reads 250 refilled at 25 a second, writes 200 at 10).
ARM_LIMITS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0)}


def parse_arm_limits(values: tuple[str, ...]) -> tuple[tuple[str, float, float], ...]:
    """``KIND=SIZE/REFILL`` pairs over ARM's published limits (from the options or GMO_ARM_LIMITS)."""
    limits = dict(ARM_LIMITS)
    for value in values:
        kind, _, numbers = value.partition("=")
        size, _, rate = numbers.partition("/")
        try:
            parsed = (float(size), float(rate))
        except ValueError:
            parsed = (0.0, 0.0)
        if kind.strip() not in ARM_LIMITS or parsed[0] < 1 or parsed[1] <= 0:
            raise click.BadParameter(f"{value!r} is not KIND=SIZE/REFILL (KIND reads or writes, e.g. reads=250/25)")
        limits[kind.strip()] = parsed
    return tuple((kind, size, rate) for kind, (size, rate) in limits.items())


def serve(settings: Settings, all_namespaces: bool) -> None:
    """kopf with the operator's handlers; under leader election, only once this process holds the lease."""
    from . import metrics
    from .handlers import build_registry, nothing_in_flight

    log_level, health_port = settings.log_level, settings.health_port
    kopf.configure(
        debug=log_level == "DEBUG",
        verbose=log_level in ("DEBUG", "INFO"),
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(log_level)
    logging.getLogger("kopf.objects").addFilter(RequeueIsNotAnError())
    metrics.serve(settings.metrics_port, settings.metrics_bind_address)
    registry = build_registry(settings, lambda: build_controller(settings))

    options: dict[str, Any] = {
        "registry": registry,
        "standalone": True,
        "clusterwide": all_namespaces,
        "namespaces": settings.namespaces,
        "liveness_endpoint": f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
    }
    if not settings.leader_election.enabled:
        metrics.LEADER.set(1)
        kopf.run(**options)
        return
    with leadership(settings.leader_election, health_port, lambda leading: metrics.LEADER.set(int(leading))) as stop:
        if stop is not None and not stop.is_set():
            # The lease is released when this block ends, and a standby starts writing at once: only once every
            # backend call has ended (the cleanup handler waits for them, up to settings.drain_seconds).
            memo = kopf.Memo()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    asyncio.run(operator_until(stop, {**options, "memo": memo}))
            finally:
                if not nothing_in_flight(memo):
                    exit_keeping_lease()


async def operator_until(stop: StopSignal, options: dict[str, Any]) -> None:
    """kopf, stopped by its own signal handlers; a SIGTERM that came after the lease was taken but before kopf
    set them was caught by the elector's, and is raised again for kopf once kopf listens (its stop-flag is not
    used for this: kopf would then wait 5 s for the flag's waiter on every stop)."""
    loop = asyncio.get_running_loop()

    def check() -> None:
        if stop.is_set() and stop.handed_over():
            signal.raise_signal(signal.SIGTERM)
        else:
            loop.call_later(0.2, check)

    loop.call_soon(check)
    await kopf.operator(**options)
