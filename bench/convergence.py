"""Convergence and steady state of the operator on the azureml backend, against the guide's sequential script.

Everything is real but Azure: a kube-apiserver, the operator as its own process, the azureml-core SDK talking
HTTPS to the Azure ML emulator (its own process too), with operation latencies scaled down consistently from
Azure's (an AKS cluster in ~10 min, a GPU service in ~5 min, at 1:60: 10 s and 5 s; the operator polls at
--poll-seconds). For each N, N GpuModelDeployments (each its own 1-node Standard_NC4as_T4_v3 cluster and 1-replica
service, as N teams following the guide would) are applied at once, and the time until every one is Ready
(with its scoring probe answered) is measured. The baseline is the guide done by a script
(``guide_baseline.py``: create compute, ``wait_for_completion``, ``Model.deploy``, ``wait_for_deployment``,
one deployment after another) on a few deployments in the same run; being sequential, its time for N is N
times its median per deployment, and is reported as that extrapolation.

The steady state follows the largest run: the emulator's call log over whole resync intervals gives the
Azure calls per resource per interval (management reads and writes apart from scoring probes), and /proc the
operator's resident memory.

Run: .venv/bin/python bench/convergence.py                  (N = 50 200 500, then the steady state at 1000)
     .venv/bin/python bench/convergence.py --sizes 20 --steady 0 --baseline 2     (a quick look)
Results: a table on stdout and bench/results/convergence.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config

from gpu_model_operator_dev.azureml_emulator import EmulatorClient
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]

CLIENT_ID, CLIENT_SECRET = "bench-operator", "bench-client-secret"
SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE = "00000000-0000-0000-0000-000000000001", "rg1", "ws1"
NAMESPACE, SECRET = "bench", "azureml-sp"
RESULTS = ROOT / "bench" / "results" / "convergence.json"


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    admin: EmulatorClient
    env: dict[str, str]


@contextmanager
def emulator(state_dir: Path, latencies: dict[str, float]) -> Iterator[Emulator]:
    """The emulator as its own process, so its CPU is not the benchmark driver's GIL."""
    args = [sys.executable, "-m", "gpu_model_operator_dev.azureml_emulator", "--state-dir", str(state_dir)]
    args += ["--credential", f"{CLIENT_ID}={CLIENT_SECRET}"]
    args += [f"--latency={k}={v}" for k, v in latencies.items()]
    log = (state_dir / "emulator.log").open("w")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        admin = EmulatorClient(info["base_url"], Path(info["ca_bundle"]))
        yield Emulator(proc, admin, info["env"])
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def client_env(emu: Emulator, home: Path) -> dict[str, str]:
    """The SDK's environment, and MALLOC_ARENA_MAX as the operator's image sets it (see the Dockerfile)."""
    return {**os.environ, **emu.env, "HOME": str(home), "MALLOC_ARENA_MAX": "2"}


# ---- the baseline --------------------------------------------------------------------------------------


def run_baseline(emu: Emulator, work: Path, count: int) -> list[float]:
    args = [sys.executable, str(ROOT / "bench" / "guide_baseline.py"), "--count", str(count)]
    args += ["--subscription-id", SUBSCRIPTION, "--resource-group", RESOURCE_GROUP, "--workspace", WORKSPACE]
    args += ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    out = subprocess.run(args, env=client_env(emu, work), capture_output=True, text=True, check=False, cwd=work)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise SystemExit(f"the baseline failed:\n{out.stderr[-3000:]}")
    return [float(s) for s in json.loads(line[len("RESULT ") :])["seconds"]]


# ---- the operator --------------------------------------------------------------------------------------


def resources(n: int) -> list[dict[str, Any]]:
    """The namespace's Secret and source ConfigMap (the azureml example, rendered by kustomize) and N deployments."""
    docs = list(
        yaml.safe_load_all(
            subprocess.run(
                ["kubectl", "kustomize", str(ROOT / "manifests/examples/azureml")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    )
    template = next(d for d in docs if d["kind"] == "GpuModelDeployment")
    out = [d for d in docs if d["kind"] != "GpuModelDeployment"]
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "stringData": {"tenantId": "adfs", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
        }
    )
    for i in range(n):
        doc = json.loads(json.dumps(template))
        doc["metadata"]["name"] = f"model-{i:04d}"
        spec = doc["spec"]
        spec["workspace"].update(subscriptionId=SUBSCRIPTION, resourceGroup=RESOURCE_GROUP, name=WORKSPACE)
        spec["workspace"]["credentialsSecretRef"]["name"] = SECRET
        spec["compute"] = {
            "name": f"gpu-{i:04d}",
            "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 1, "clusterPurpose": "DevTest"},
            "deletionPolicy": "Delete",
        }
        spec["model"] = {"name": "digits", "version": 1}
        spec["service"].update(name=f"svc-{i:04d}", replicas=1)
        out.append(doc)
    return out


def ready_names(api: client.CustomObjectsApi) -> set[str]:
    # The client types a custom object list as object; it is the decoded JSON.
    listed = cast(
        dict[str, Any], api.list_namespaced_custom_object("gpumodel.io", "v1alpha1", NAMESPACE, "gpumodeldeployments")
    )
    items = listed["items"]
    ready = set()
    for item in items:
        cond: dict[str, Any] = next(
            (c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
        )
        if cond.get("status") == "True" and cond.get("observedGeneration") == item["metadata"]["generation"]:
            ready.add(item["metadata"]["name"])
    return ready


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Run:
    n: int
    seconds: float
    ready_at_median: float
    ready_at_p90: float
    emulator_calls: int
    calls_by_kind: dict[str, int]
    steady: dict[str, Any] = field(default_factory=dict)


MGMT = re.compile(r"/(computes|services|models|assets|artifact|operations|computeOperationsStatus)")


def kind_of(call: dict[str, Any]) -> str:
    path, method = call["path"], call["method"]
    if "/api/v1/service/" in path:
        return "probe"
    if "oauth2" in path or "openid" in path or "discovery/instance" in path:
        return "auth"
    if method in ("PUT", "PATCH", "DELETE") or (method == "POST" and not path.endswith("/listkeys")):
        return "write"
    return "read"


def converge(emu: Emulator, work: Path, n: int, args: argparse.Namespace, steady_intervals: int) -> Run:
    emu.admin.reset()
    emu.admin.seed(models=[{"name": "digits"}])
    with ControlPlane(work / f"cp-{n}") as cp:
        cp.install_crds(ROOT / "crds")
        cp.kubectl("create", "namespace", NAMESPACE)
        home = work / f"home-{n}"
        home.mkdir()
        op_args = ["--all-namespaces", "--poll-seconds", str(args.poll_seconds)]
        op_args += ["--resync-seconds", str(args.resync_seconds), "--azure-workers", str(args.workers)]
        log = work / f"operator-{n}.log"
        with OperatorProcess(
            cp.kubeconfig, [], work / f"state-{n}", log, extra_args=op_args, env=client_env(emu, home)
        ) as op:
            assert op.proc is not None
            # kubernetes.config is unannotated.
            api = client.CustomObjectsApi(config.new_client_from_config(str(cp.kubeconfig)))  # type: ignore[no-untyped-call]
            manifest = work / f"deployments-{n}.yaml"
            manifest.write_text(yaml.safe_dump_all(resources(n)))
            start = time.monotonic()
            cp.kubectl("apply", "-n", NAMESPACE, "-f", str(manifest))
            ready_at: dict[str, float] = {}
            deadline = start + args.timeout
            while len(ready_at) < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"N={n}: only {len(ready_at)} Ready after {args.timeout}s; see {log}")
                now = time.monotonic() - start
                for name in ready_names(api) - ready_at.keys():
                    ready_at[name] = now
                time.sleep(0.5)
            seconds = max(ready_at.values())
            calls = emu.admin.calls()
            times = sorted(ready_at.values())
            run = Run(
                n,
                seconds,
                statistics.median(times),
                times[int(0.9 * (len(times) - 1))],
                len(calls),
                dict(Counter(kind_of(c) for c in calls)),
            )
            print(f"N={n}: all Ready in {seconds:.1f}s", flush=True)
            if steady_intervals:
                run.steady = steady_state(emu, op, n, args.resync_seconds, steady_intervals)
        return run


def steady_state(emu: Emulator, op: OperatorProcess, n: int, resync: float, intervals: int) -> dict[str, Any]:
    """After convergence: Azure calls per resource per resync interval, and the operator's memory."""
    assert op.proc is not None
    time.sleep(resync)  # every resource's first resync (timers start when each resource is first seen)
    emu.admin.clear_calls()
    rss = [rss_mb(op.proc.pid)]
    end = time.monotonic() + intervals * resync
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        rss.append(rss_mb(op.proc.pid))
    calls = emu.admin.calls()
    kinds = Counter(kind_of(c) for c in calls)
    per_service = Counter(
        m.group(1) for c in calls if c["method"] == "GET" and (m := re.search(r"/services/(svc-\d+)$", c["path"]))
    )
    per = n * intervals
    return {
        "resources": n,
        "resync_seconds": resync,
        "intervals": intervals,
        "reads_per_resource_per_resync": kinds["read"] / per,
        "writes_per_resource_per_resync": kinds["write"] / per,
        "probes_per_resource_per_resync": kinds["probe"] / per,
        "auth_calls": kinds["auth"],
        "max_service_reads_of_one_resource_per_resync": max(per_service.values(), default=0) / intervals,
        "operator_rss_mb_median": statistics.median(rss),
        "operator_rss_mb_max": max(rss),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[50, 200, 500])
    p.add_argument("--steady", type=int, default=1000, help="resources for the steady state (0: skip)")
    p.add_argument("--baseline", type=int, default=3, help="deployments the guide's script does in turn")
    p.add_argument("--compute-seconds", type=float, default=10.0)
    p.add_argument("--service-seconds", type=float, default=5.0)
    p.add_argument("--poll-seconds", type=float, default=2.0)
    p.add_argument("--resync-seconds", type=float, default=60.0)
    p.add_argument("--intervals", type=int, default=2, help="resync intervals the steady state is counted over")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--workdir", type=Path, help="keep logs and manifests here (default: a temporary directory)")
    args = p.parse_args()
    latencies = {"compute_create_s": args.compute_seconds, "service_create_s": args.service_seconds}
    with tempfile.TemporaryDirectory(prefix="gmo-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with emulator(work, latencies) as emu:
            emu.admin.seed(models=[{"name": "digits"}])
            baseline = run_baseline(emu, work, args.baseline) if args.baseline else []
            per_deployment = statistics.median(baseline) if baseline else float("nan")
            print(f"baseline: {len(baseline)} deployments, median {per_deployment:.1f}s each", flush=True)
            runs = [converge(emu, work, n, args, 0) for n in args.sizes]
            if args.steady:
                runs.append(converge(emu, work, args.steady, args, args.intervals))
    floor = args.compute_seconds + args.service_seconds
    rows = []
    for run in runs:
        guide = run.n * per_deployment
        rows.append(
            {
                **asdict(run),
                "baseline_seconds_extrapolated": guide,
                "speedup_vs_baseline": guide / run.seconds,
                "over_emulator_latency_seconds": run.seconds - floor,
            }
        )
    print()
    header = ("N", "operator s", "median Ready s", "guide s (N x median)", "speed-up", "over latency s")
    print("  ".join(f"{h:>{len(h) if i else 5}}" for i, h in enumerate(header)))
    for r in rows:
        cells = (
            f"{r['n']:>5}",
            f"{r['seconds']:>10.1f}",
            f"{r['ready_at_median']:>14.1f}",
            f"{r['baseline_seconds_extrapolated']:>20.0f}",
            f"{r['speedup_vs_baseline']:>7.1f}x",
            f"{r['over_emulator_latency_seconds']:>14.1f}",
        )
        print("  ".join(cells))
    for r in rows:
        if r["steady"]:
            print(f"steady state at {r['n']}: {json.dumps(r['steady'])}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "emulator_latency_floor_seconds": floor,
                "baseline_seconds_per_deployment": baseline,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
