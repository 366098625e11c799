"""The console command: ``gpu-model-operator run`` (also ``python -m gpu_model_operator``).

Every option of ``run`` also reads ``GMO_<PARAMETER>`` (``GMO_BACKENDS`` and ``GMO_NAMESPACES``, space-separated;
``GMO_ALL_NAMESPACES``; ``GMO_LOG_FORMAT``, …), which is how the Deployment in ``manifests/`` configures the
operator.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import kopf

from . import __version__
from .models import BackendKind
from .settings import Settings, default_state_dir


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
    backends: dict[BackendKind, Backend] = {}
    if BackendKind.AZUREML in settings.backends:
        from .backends.azureml.backend import AzureMLBackend

        backends[BackendKind.AZUREML] = AzureMLBackend(workers=settings.azure_workers)
    if BackendKind.AZUREML_V2 in settings.backends:
        from .backends.azureml_v2.backend import AzureMLV2Backend

        backends[BackendKind.AZUREML_V2] = AzureMLV2Backend(workers=settings.azure_workers)
    if BackendKind.LOCAL in settings.backends:
        from .backends.local.backend import LocalBackend

        backends[BackendKind.LOCAL] = LocalBackend(state_dir=settings.state_dir, declared_gpus=settings.declared_gpus)
    return Controller(settings, backends, KubeClient(client.ApiClient()))


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
@click.option("--poll-seconds", default=10.0, help="Seconds between checks of an operation in flight.")
@click.option("--resync-seconds", default=900.0, help="Seconds between drift checks of a converged resource.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=default_state_dir, help="Local backend state.")
@click.option("--declared-gpus", type=int, default=None, help="Declared GPU inventory (testing): skip discovery.")
@click.option("--azure-workers", default=8, help="Threads for Azure ML SDK calls.")
@click.option(
    "--call-budget", default=300, help="Backend calls one resource may make per resync interval (0: no limit)."
)
def run(
    backends: tuple[str, ...],
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    log_level: str,
    log_format: str,
    health_port: int,
    metrics_port: int,
    poll_seconds: float,
    resync_seconds: float,
    state_dir: Path,
    declared_gpus: int | None,
    azure_workers: int,
    call_budget: int,
) -> None:
    """Run the operator until interrupted."""
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace (one or more) or --all-namespaces")
    settings = Settings(
        backends=tuple(BackendKind(b) for b in dict.fromkeys(backends)),
        namespaces=list(namespaces),
        poll_seconds=poll_seconds,
        resync_seconds=resync_seconds,
        state_dir=state_dir,
        declared_gpus=declared_gpus,
        azure_workers=azure_workers,
        call_budget=call_budget,
        health_port=health_port,
        metrics_port=metrics_port,
        log_level=log_level,
        log_format=log_format,
    )
    from . import metrics
    from .handlers import build_registry

    kopf.configure(
        debug=log_level == "DEBUG",
        verbose=log_level in ("DEBUG", "INFO"),
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(log_level)
    logging.getLogger("kopf.objects").addFilter(RequeueIsNotAnError())
    metrics.serve(metrics_port)
    registry = build_registry(settings, lambda: build_controller(settings))
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
    )
