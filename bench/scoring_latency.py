"""Scoring through the local backend's scoring URI versus a bare inference server, at 1, 8 and 64 clients.

The routed side is a real local service of one replica (its gunicorn config: the service's port shared with
SO_REUSEPORT, the key checked in-process); the bare side is a plain ``azmlinfsrv`` started from the same serving
environment with the same score.py and model and no key, told only to listen on loopback. Each request is a
new connection (the inference server's worker closes every one, as on Azure), made by a small asyncio client
that sends the same digit and reads the whole answer; both servers share one CPU, the client has the others.
Per concurrency and round, the two sides run back to back (which goes first alternates), so a burst of other
work on a shared machine hits both alike; every figure is the median over the rounds, and the ratios are those
of the medians, routed/bare (goal: <= 1.1x for the median and p99 latency). A request that fails or answers
other than 200 counts as an error. Prints a table and writes bench/results/scoring_latency.json.

Run: .venv/bin/python bench/scoring_latency.py [--rounds 20] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from gpu_model_operator.backends.base import DeploymentInputs, ServiceState
from gpu_model_operator.backends.local import processes as procs
from gpu_model_operator.backends.local import replicas, state
from gpu_model_operator.backends.local.backend import LocalBackend
from gpu_model_operator.models import LocalSpec, parse_spec
from gpu_model_operator_dev.digits_model import train

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "manifests" / "examples" / "digits-source"
RESULTS = ROOT / "bench" / "results" / "scoring_latency.json"
CONCURRENCY = (1, 8, 64)
#: The bare server's only setting: loopback (azmlinfsrv itself binds 0.0.0.0).
BARE_CONF = (
    'import os\n\n\ndef on_starting(server):\n    server.cfg.set("bind", ["127.0.0.1:" + os.environ["SERVER_PORT"]])\n'
)


class Target:
    """One side: where to send, and the request's bytes."""

    def __init__(self, url: str, body: bytes, key: str | None) -> None:
        rest = url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        self.host, port = hostport.split(":")
        self.port = int(port)
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.request = (
            f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body


async def one(target: Target) -> tuple[float, bool]:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(target.request)
        answer = await reader.read()  # to EOF: the server closes
        writer.close()
        ok = answer.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        ok = False
    return time.perf_counter() - start, ok


async def load(target: Target, clients: int, seconds: float) -> dict[str, float]:
    """``clients`` loops sending one request after another for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            latency, ok = await one(target)
            latencies.append(latency)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "rps": len(ordered) / elapsed,
        "requests": len(ordered),
        "errors": errors,
    }


def wait_answering(url: str, headers: dict[str, str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.2)


async def deploy(tmp: Path, model_dir: Path) -> tuple[LocalBackend, DeploymentInputs[LocalSpec]]:
    spec = parse_spec(
        {
            "backend": "local",
            "model": {"path": str(model_dir)},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"},
            "service": {"name": "bench-svc", "replicas": 1},
            "local": {"allowCpuFallback": True},
        }
    )
    assert isinstance(spec, LocalSpec)
    inputs = DeploymentInputs(
        "bench", "bench", "uid", 1, spec, (SOURCE / "score.py").read_text(), (SOURCE / "myenv.yml").read_text(),
        fingerprint="bench",
    )  # fmt: skip
    backend = LocalBackend(tmp / "state", declared_gpus=1)
    await backend.deploy_service(inputs, 1)
    deadline = time.monotonic() + 900
    while (obs := await backend.observe_service(inputs)).state != ServiceState.HEALTHY:
        if obs.state == ServiceState.FAILED or time.monotonic() > deadline:
            raise RuntimeError(f"the service did not become healthy: {obs.message}")
        if obs.state == ServiceState.UNHEALTHY:
            await backend.scale_service(inputs, 1)
        await asyncio.sleep(0.5)
    return backend, inputs


def start_bare(
    tmp: Path, service_dir: Path, record: state.ServiceRecord, env_bin: Path
) -> tuple[state.ProcessRecord, str]:
    """A plain azmlinfsrv: the replica's environment without the gate's config and settings."""
    port = procs.free_port(set())
    (tmp / "bare.conf.py").write_text(BARE_CONF)
    environ = {k: v for k, v in os.environ.items() if replicas.PASS_ENV.match(k)}
    environ.update(
        PATH=f"{env_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        VIRTUAL_ENV=str(env_bin.parent),
        CUDA_VISIBLE_DEVICES="",
        AZUREML_MODEL_DIR=record.model_dir,
        AZUREML_ENTRY_SCRIPT=record.entry_script,
        AML_APP_ROOT=str(service_dir / "app"),
        GUNICORN_CMD_ARGS=f"--config {tmp / 'bare.conf.py'}",
    )
    args = [str(env_bin / replicas.SERVER), "--entry_script", record.entry_script, "--model_dir", record.model_dir,
            "--port", str(port)]  # fmt: skip
    proc = procs.spawn(args, environ, tmp / "bare.log", service_dir / "app")
    url = f"http://127.0.0.1:{port}"
    wait_answering(f"{url}/", {})
    return proc, f"{url}/score"


def pin(servers: list[int]) -> None:
    """Both servers on the last CPU, this load generator on the others: on a small shared machine the two sides
    then compete for the same CPUs in the same way, whatever else runs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    for pid in servers:
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            proc.cpu_affinity(cpus[-1:])
    os.sched_setaffinity(0, cpus[:-1])


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in CONCURRENCY:
        row: dict[str, Any] = {}
        for side in ("bare", "routed"):
            runs = [r[str(c)][side] for r in rounds]
            row[side] = {k: statistics.median(run[k] for run in runs) for k in ("median_ms", "p99_ms", "rps")}
            row[side]["errors"] = sum(run["errors"] for run in runs)
            row[side]["requests"] = sum(run["requests"] for run in runs)
        row["ratio"] = {k: row["routed"][k] / row["bare"][k] for k in ("median_ms", "p99_ms", "rps")}
        out[str(c)] = row
    return out


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'clients':>7} {'bare med ms':>11} {'p99':>7} {'req/s':>7} {'err':>4}   "
        f"{'routed med ms':>13} {'p99':>7} {'req/s':>7} {'err':>4}   {'x med':>6} {'x p99':>6} {'x req/s':>7}"
    ]
    for c, row in summary.items():
        b, r, x = row["bare"], row["routed"], row["ratio"]
        lines.append(
            f"{c:>7} {b['median_ms']:>11.2f} {b['p99_ms']:>7.2f} {b['rps']:>7.0f} {b['errors']:>4}   "
            f"{r['median_ms']:>13.2f} {r['p99_ms']:>7.2f} {r['rps']:>7.0f} {r['errors']:>4}   "
            f"{x['median_ms']:>6.2f} {x['p99_ms']:>6.2f} {x['rps']:>7.2f}"
        )
    return "\n".join(lines)


async def main(rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        model = train(tmp / "model")
        backend, inputs = await deploy(tmp, model.model_dir)
        service_dir = tmp / "state" / "services" / "bench.bench"
        record = state.read(service_dir)
        assert record is not None
        bare: state.ProcessRecord | None = None
        try:
            bare, bare_url = start_bare(tmp, service_dir, record, backend.envs.observe(record.env_hash).bin)
            body = json.dumps({"data": [model.test_images[0].tolist()]}).encode()
            keys = await backend.get_keys(inputs)
            routed_url = (await backend.observe_service(inputs)).scoring_uri or ""
            sides = {
                "bare": Target(bare_url, body, None),
                "routed": Target(routed_url, body, keys[0] if keys else None),
            }
            pin([bare.pid, *(r.pid for r in record.replicas)])
            for target in sides.values():  # warm-up, and a check that both answer 200
                assert (await load(target, 4, 1.0))["errors"] == 0
            results: list[dict[str, Any]] = []
            for i in range(rounds):
                result: dict[str, Any] = {}
                for c in CONCURRENCY:
                    order = ["bare", "routed"] if (i + c) % 2 == 0 else ["routed", "bare"]
                    result[str(c)] = {side: await load(sides[side], c, seconds) for side in order}
                results.append(result)
                print(f"round {i + 1}/{rounds} done", file=sys.stderr)
        finally:
            if bare is not None:
                procs.stop([bare], f"{service_dir}/", *replicas.REPLICA)
            await backend.delete_service(inputs)
    summary = summarise(results)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"{rounds} rounds of {seconds:g} s per side and concurrency; {machine}")
    print(table(summary))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "rounds": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.5, help="per side, concurrency and round")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.seconds))
