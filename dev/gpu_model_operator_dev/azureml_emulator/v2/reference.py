"""Run the v2 guide's workflow (``sdk_v2_guide.py workflow``) with the real azure-ai-ml SDK against a fresh
emulator and write every HTTP request it made as JSON lines: the reference trace in ``../reference/``.

    python -m gpu_model_operator_dev.azureml_emulator.v2.reference OUT.jsonl

Each line: ``t``, ``method``, ``host``, ``path``, ``query``, ``body`` (JSON bodies only, secrets redacted),
``status``. CONNECTs come from the proxy's log. The emulator's port is written as 8443 so traces compare
across runs. The test module uses :func:`workflow_emulator` and :func:`run_guide` for the same set-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import Emulator, EmulatorConfig, start_emulator
from .model import V2Latencies

GUIDE = Path(__file__).resolve().parent.parent / "sdk_v2_guide.py"
CLIENT_ID, CLIENT_SECRET = "gpu-operator", "not-a-secret"

#: The attached cluster of the Kubernetes half: two nodes with one GPU each, and a one-GPU instance type.
GPU_INSTANCE_TYPE: dict[str, Any] = {
    "nodeSelector": None,
    "resources": {
        "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": 1},
        "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": 1},
    },
}
CLUSTER: dict[str, Any] = {
    "resource_group": "rg1",
    "name": "aks-gpu",
    "nodes": [{"name": "aks-gpu-0", "gpus": 1}, {"name": "aks-gpu-1", "gpus": 1}],
    "instance_types": {"gpu1": GPU_INSTANCE_TYPE},
}


def fast_config() -> EmulatorConfig:
    return EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET})


def configure_fast(emu: Emulator, **settings: Any) -> None:
    """Operations finish at their first poll, polled every 0.2 s (see ``V2Config.retry_after_s``)."""
    zero = dict.fromkeys(V2Latencies.__dataclass_fields__, 0.0)
    emu.v2.configure(**{"latencies": zero, "retry_after_s": 0.2, **settings})


@contextlib.contextmanager
def workflow_emulator(state_dir: Path, record: bool = True) -> Iterator[tuple[Emulator, str]]:
    """An emulator set up for the workflow: fast operations, the GPU cluster to attach, the trace recording."""
    with start_emulator(state_dir, fast_config()) as emu:
        configure_fast(emu, record_trace=record)
        cluster_id = emu.v2.seed(kubernetes_clusters=[CLUSTER])["kubernetes_clusters"][0]
        yield emu, cluster_id


def run_guide(
    emu: Emulator, scenario: str, workdir: Path, *args: str, timeout: float = 150, **env: str
) -> dict[str, Any]:
    """One scenario of the v2 guide with the real SDK in a fresh process pointed at ``emu``."""
    environ = emu.client_env_v2()
    environ.update(HOME=str(workdir), **env)
    proc = subprocess.run(
        [sys.executable, str(GUIDE), scenario, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *args],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{scenario} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def trace_lines(emu: Emulator) -> list[dict[str, Any]]:
    """The recorded trace plus the proxy's CONNECTs, in time order, with the port normalised."""
    port = emu.base_url.rsplit(":", 1)[-1]
    entries = emu.v2.trace() + [dict(c, body=None) for c in emu.calls() if c["method"] == "CONNECT"]
    entries.sort(key=lambda e: float(e["t"]))
    for entry in entries:
        if "sig" in entry["query"]:  # a SAS signature is a secret wherever it appears
            entry["query"]["sig"] = "<redacted>"
    text = json.dumps(entries)
    text = re.sub(rf"127\.0\.0\.1:{port}\b", "127.0.0.1:8443", text)
    return list(json.loads(text))


def main(argv: list[str] | None = None) -> int:
    import tempfile

    out = Path((argv or sys.argv[1:])[0])
    with tempfile.TemporaryDirectory(prefix="v2-trace-") as tmp, workflow_emulator(Path(tmp) / "emu") as (emu, cid):
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        run_guide(emu, "workflow", workdir, "--cluster-id", cid)
        lines = trace_lines(emu)
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"{len(lines)} requests written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
