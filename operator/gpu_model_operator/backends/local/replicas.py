"""Starting one replica: an ``azmlinfsrv`` process from the serving environment, pinned to its GPUs, with the
gunicorn configuration of ``gate`` (the service's port and the key check) and only the environment the
user's code should see."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from . import processes as procs
from .environments import EnvStatus
from .state import ACCESS_FILE, ReplicaRecord, ServiceRecord, write_private

SERVER = "azmlinfsrv"
#: A replica's command line names the server, or gunicorn's master/worker where setproctitle renamed it.
REPLICA = (SERVER, "gunicorn")
#: An earlier operator's router (services it started are re-adopted, and moved off the router).
LEGACY_ROUTER = "gpu_model_operator.backends.local.router"
#: What the inference server logs once the user's init() returned.
INIT_DONE = "init has completed successfully"
GUNICORN_CONF = "gunicorn.conf.py"
#: The user's code gets the machine's basics, proxies, certificates and GPU/thread tuning, not the
#: operator's own settings or credentials.
PASS_ENV = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|TZ|TMPDIR|LD_LIBRARY_PATH|SSL_CERT_FILE|SSL_CERT_DIR"
    r"|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|XDG_CACHE_HOME|(?i:https?_proxy|no_proxy|all_proxy)"
    r"|LC_\w+|CUDA_\w+|NVIDIA_\w+|NCCL_\w+|OPENBLAS_\w+|OMP_\w+|MKL_\w+|HF_\w+|TORCH_\w+|TRANSFORMERS_\w+)$"
)


def write_config(service_dir: Path) -> None:
    """The gate's source, as gunicorn's configuration file of the service's replicas."""
    text = resources.files(__package__).joinpath("gate.py").read_text()
    write_private(service_dir / GUNICORN_CONF, text)


def environment(service_dir: Path, record: ServiceRecord, env: EnvStatus, gpus: list[int]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if PASS_ENV.match(k)}
    environ.update(
        PATH=f"{env.bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(env.bin.parent),
        CUDA_VISIBLE_DEVICES=",".join(str(g) for g in gpus),  # "" on CPU: no GPU visible at all
        CUDA_DEVICE_ORDER="PCI_BUS_ID",  # so CUDA numbers GPUs as NVML and nvidia-smi do
        AZUREML_MODEL_DIR=record.model_dir,
        AZUREML_ENTRY_SCRIPT=record.entry_script,
        AML_APP_ROOT=str(service_dir / "app"),
        SCORING_TIMEOUT_MS=str(record.timeout_ms),  # the inference server's own limit on run()
        GUNICORN_CMD_ARGS=f"--config {service_dir / GUNICORN_CONF}",
        GMO_SERVICE_PORT=str(record.port),
        GMO_ACCESS_FILE=str(service_dir / ACCESS_FILE),
    )
    return environ


def start(service_dir: Path, record: ServiceRecord, env: EnvStatus, gpus: list[int], port: int) -> ReplicaRecord:
    """Start replica number max+1 on its own ``port``; it joins the service's port once its init() is done."""
    index = max((r.index for r in record.replicas), default=-1) + 1
    log_path = service_dir / f"replica-{index}.log"
    log_path.write_text("")
    args = [
        str(env.bin / SERVER), "--entry_script", record.entry_script, "--model_dir", record.model_dir,
        "--port", str(port),
    ]  # fmt: skip
    proc = procs.spawn(args, environment(service_dir, record, env, gpus), log_path, service_dir / "app")
    return ReplicaRecord(**proc.model_dump(), index=index, port=port, gpus=gpus, log=str(log_path))
