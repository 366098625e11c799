"""Convergence, memory and steady state of the operator on the azureml and azureml-v2 backends, against the
guide's script.

Everything is real but Azure: a kube-apiserver, the operator as its own process, the SDK talking HTTPS to the
Azure ML emulator (its own process too), with operation latencies scaled down consistently from Azure's (1:60;
the operator polls at --poll-seconds). Targets (``TARGETS``, ``--targets``), each against the same emulator:

- ``v1``, the azureml backend (azureml-core): each resource its own 1-node Standard_NC4as_T4_v3 (DevTest) AKS
  cluster and 1-replica service, as N teams following the guide would; an AKS cluster in ~10 min and a GPU
  service in ~5 min are 10 s and 5 s.
- ``v2``, the azureml-v2 backend (azure-ai-ml): each resource its own managed online endpoint with one
  Standard_NC4as_T4_v3 instance; an endpoint in ~2 min, a GPU deployment in ~12 min and the traffic moved to it
  in ~1 min are 2 s, 12 s and 1 s (the family's vCPU quota raised to fit every instance).

Each target's latency floor is its operations' latencies in sequence (15 s for both by default). For each N, N
GpuModelDeployments are applied at once, and the time until every one is Ready (with its scoring probe answered)
is measured, with the operator's resident memory once all are Ready. The baseline is the guide done by a script
(``guide_baseline.py``: create compute, ``wait_for_completion``, ``Model.deploy``, ``wait_for_deployment``, one
deployment after another) on a few deployments in the same run; being sequential, its time for N is N times its
median per deployment, and is reported as that extrapolation. The guide is the v1 SDK's: both targets are
compared against that one figure.

Each run is made with ARM's throttling on in the emulator (its token buckets at the published sizes: reads 250
refilled at 25 a second, writes and deletes 200 at 10, per subscription and principal; every resource here signs in
as one principal in one subscription) and, for comparison, off (``--limits``). For each, ``run_costs.py`` gives the
lower bound those limits put on the run's ARM calls and its ratio to the time taken, the calls per resource by kind
(from the emulator's own counts), the calls ARM refused, and the writes the operator made to the API server (from
its ``/metrics``); the machine's load average is kept beside them.

The steady state is measured on the run of --steady resources, after it converged: the emulator's call log over
whole resync intervals gives the Azure calls per resource per interval (management reads and writes apart from
scoring probes, and by the emulator's own counts every kind apart, keys included), and /proc the operator's
resident memory. Last, ``cpu_per_call.py`` gives the CPU of one Azure call, the SDK's against the backend's.

Run: .venv/bin/python bench/convergence.py       (N = 100 1000 2000, limits on and off, the steady state at 1000)
     .venv/bin/python bench/convergence.py --sizes 20 --steady 0 --baseline 2     (a quick look)
     .venv/bin/python bench/convergence.py --sizes 100 --limits on                (ARM's limits only)
     .venv/bin/python bench/convergence.py --sizes 20,100 --targets v2            (one target)
Results: tables on stdout and bench/results/convergence.json.
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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import run_costs
import urllib3
import yaml
from benchlib import (
    CLIENT_ID,
    CLIENT_SECRET,
    RESOURCE_GROUP,
    ROOT,
    SUBSCRIPTION,
    TENANT,
    WORKSPACE,
    Emulator,
    client_env,
    emulator,
)
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess

NAMESPACE, SECRET = "bench", "azureml-sp"
T4, T4_FAMILY = "Standard_NC4as_T4_v3", "standardNCASv3_T4Family"
RESULTS = ROOT / "bench" / "results" / "convergence.json"


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


def example(name: str, tenant: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An example of manifests/examples rendered by kustomize: its other documents (the source ConfigMap) with the
    service principal's Secret, and its GpuModelDeployment pointed at the emulator's workspace and that Secret."""
    docs = list(
        yaml.safe_load_all(
            subprocess.run(
                ["kubectl", "kustomize", str(ROOT / "manifests/examples" / name)],
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
            "stringData": {"tenantId": tenant, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
        }
    )
    template["spec"]["workspace"] = {
        "subscriptionId": SUBSCRIPTION,
        "resourceGroup": RESOURCE_GROUP,
        "name": WORKSPACE,
        "credentialsSecretRef": {"name": SECRET},
    }
    return out, template


def v1_resources(n: int) -> list[dict[str, Any]]:
    """The azureml example: N deployments, each its own 1-node AKS cluster and 1-replica service."""
    out, template = example("azureml", "adfs")
    for i in range(n):
        doc = json.loads(json.dumps(template))
        doc["metadata"]["name"] = f"model-{i:04d}"
        spec = doc["spec"]
        spec["compute"] = {
            "name": f"gpu{i:04d}",  # a dash followed by digits alone is refused (the CRD, as Azure)
            "provision": {"vmSize": T4, "agentCount": 1, "clusterPurpose": "DevTest"},
            "deletionPolicy": "Delete",
        }
        spec["model"] = {"name": "digits", "version": 1}
        spec["service"].update(name=f"svc-{i:04d}", replicas=1)
        out.append(doc)
    return out


def v2_resources(n: int) -> list[dict[str, Any]]:
    """The azureml-v2 example: N deployments, each its own managed online endpoint with one T4 instance (the
    example's scoring probe request kept: the emulator's inference server echoes it)."""
    out, template = example("azureml-v2", TENANT)
    for i in range(n):
        doc = json.loads(json.dumps(template))
        doc["metadata"]["name"] = f"model-{i:04d}"
        spec = doc["spec"]
        spec["compute"] = {"managed": {"instanceType": T4}, "deletionPolicy": "Delete"}
        spec["model"] = {"name": "digits", "version": 1}
        spec["service"].update(name=f"ep-{i:04d}", replicas=1, gpuCores=1)
        out.append(doc)
    return out


@dataclass(frozen=True)
class Target:
    """A backend column: the operator's --backend, the manifests of N resources on it, whether its SDK is
    azure-ai-ml (the client environment, the models to seed), and the Azure operations a resource waits for in
    sequence (names of the emulator's latencies; their sum is the target's floor)."""

    backend: str
    resources: Callable[[int], list[dict[str, Any]]]
    v2: bool
    sequence: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "v1": Target("azureml", v1_resources, False, ("compute_create_s", "service_create_s")),
    "v2": Target("azureml-v2", v2_resources, True, ("endpoint_create_s", "deployment_create_s", "endpoint_update_s")),
}


def latencies(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """The emulator's latencies from the arguments: v1's (given at its start) and v2's (its v2 admin API)."""
    v1 = {"compute_create_s": args.compute_seconds, "service_create_s": args.service_seconds}
    v2 = {
        "endpoint_create_s": args.endpoint_seconds,
        "deployment_create_s": args.deployment_seconds,
        "endpoint_update_s": args.traffic_seconds,
    }
    return v1, v2


def floor_of(target: str, args: argparse.Namespace) -> float:
    """The target's latency floor: its operations' latencies in sequence, polling not counted."""
    v1, v2 = latencies(args)
    return sum({**v1, **v2}[name] for name in TARGETS[target].sequence)


def is_ready(item: dict[str, Any]) -> bool:
    conditions: list[dict[str, Any]] = item.get("status", {}).get("conditions", [])
    cond = next((c for c in conditions if c["type"] == "Ready"), {})
    return bool(cond.get("status") == "True" and cond.get("observedGeneration") == item["metadata"]["generation"])


class ReadyWatch:
    """When each resource first became Ready, from one watch of the namespace (a thread): listing a few
    thousand objects every second cost the API server, on the same two cores, more CPU than the operator."""

    def __init__(self, api: client.CustomObjectsApi, start: float) -> None:
        self.api, self.start = api, start
        self.ready_at: dict[str, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        version = ""
        while not self.stopped.is_set():
            # kubernetes.watch is unannotated.
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.api.list_namespaced_custom_object,
                "gpumodel.io",
                "v1alpha1",
                NAMESPACE,
                "gpumodeldeployments",
                resource_version=version,
                timeout_seconds=30,
            )
            try:
                for event in stream:
                    item = event["object"]
                    version = item["metadata"]["resourceVersion"]
                    name = item["metadata"]["name"]
                    if name not in self.ready_at and is_ready(item):
                        self.ready_at[name] = time.monotonic() - self.start
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the version is too old; watch again from now
                    raise
                version = ""
            except (urllib3.exceptions.HTTPError, OSError):
                if self.stopped.is_set():
                    return  # the control plane stopped after the run
                raise

    def stop(self) -> None:
        self.stopped.set()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (/proc/PID/stat: utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


def malloc_arena_max(pid: int) -> str:
    """MALLOC_ARENA_MAX as the operator process really has it (the image sets 2)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"MALLOC_ARENA_MAX=")), "unset")


@dataclass
class Run:
    target: str
    n: int
    seconds: float
    ready_at_median: float
    ready_at_p90: float
    rss_mb_converged: float
    rss_mb_peak: float
    malloc_arena_max: str
    #: CPU seconds each process spent from the apply until all were Ready (the machine's cores are shared by all).
    cpu_seconds: dict[str, float]
    emulator_calls: int
    calls_by_kind: dict[str, int]
    steady: dict[str, Any] = field(default_factory=dict)
    #: ARM's limits on (the emulator's token buckets at the published sizes) or off.
    limits: bool = False
    #: The emulator's counts from the apply to all Ready (run_costs.azure_calls), ARM's bound on them in seconds
    #: (run_costs.lower_bound), and the operator's writes to the API server (run_costs.operator_writes).
    azure: dict[str, Any] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    apiserver: dict[str, Any] = field(default_factory=dict)
    #: The machine's 1-minute load average, lowest and highest while converging.
    load_average: tuple[float, float] = (0.0, 0.0)


#: POSTs that change nothing: v1's and v2's key listings, v2's deployment logs and scoring token.
READ_POSTS = ("/listkeys", "/getlogs", "/token")


def kind_of(call: dict[str, Any]) -> str:
    """probe (a scoring request: v1's health route, v2's /score), auth, connect (a tunnel through the emulator's
    proxy: a new TLS connection to a blob or scoring host), write, or read."""
    path, method = call["path"], call["method"]
    if "/api/v1/service/" in path or path.endswith("/score"):
        return "probe"
    if "oauth2" in path or "openid" in path or "discovery/instance" in path:
        return "auth"
    if method == "CONNECT":
        return "connect"
    if method in ("PUT", "PATCH", "DELETE") or (method == "POST" and not path.lower().endswith(READ_POSTS)):
        return "write"
    return "read"


def converge(
    emu: Emulator,
    work: Path,
    target: str,
    n: int,
    args: argparse.Namespace,
    intervals: int,
    env: dict[str, str] | None = None,
    on_started: Callable[[OperatorProcess], None] | None = None,
    on_converged: Callable[[OperatorProcess], None] | None = None,
    arm_limits: bool = False,
) -> Run:
    """N resources of ``target`` applied at once, until all are Ready, under ARM's published limits or without
    them; ``env`` adds to the operator's environment, ``on_started`` runs once it is up, ``on_converged`` while the
    converged operator still runs (both for memory_profile.py). The emulator's latencies are set before (they
    outlive its reset); its reset fills the buckets and zeroes the counts."""
    spec = TARGETS[target]
    emu.admin.reset()
    emu.admin.configure_throttling(enabled=arm_limits, limits="published")
    if spec.v2:
        emu.admin.v2.seed(models=[{"name": "digits", "version": "1"}])
    else:
        emu.admin.seed(models=[{"name": "digits"}])
    run_dir = work / f"{target}-n{n}-{'on' if arm_limits else 'off'}-{time.strftime('%H%M%S')}"  # a size may rerun
    run_dir.mkdir(parents=True)
    with ControlPlane(run_dir / "cp") as cp:
        cp.install_crds(ROOT / "crds")
        cp.kubectl("create", "namespace", NAMESPACE)
        home = run_dir / "home"
        home.mkdir()
        op_args = ["--backend", spec.backend, "--all-namespaces", "--poll-seconds", str(args.poll_seconds)]
        op_args += ["--resync-seconds", str(args.resync_seconds), "--azure-workers", str(args.workers)]
        log = run_dir / "operator.log"
        env = {**client_env(emu, home, spec.v2), **(env or {})}
        with OperatorProcess(cp.kubeconfig, [], run_dir / "state", log, extra_args=op_args, env=env) as op:
            assert op.proc is not None
            if on_started:
                on_started(op)
            kube = config.new_client_from_config(str(cp.kubeconfig))  # type: ignore[no-untyped-call]  # unannotated
            api = client.CustomObjectsApi(kube)
            manifest = run_dir / "deployments.yaml"
            manifest.write_text(yaml.safe_dump_all(spec.resources(n)))
            pids = {
                "operator": [op.proc.pid],
                "emulator": [emu.proc.pid],
                "apiserver+etcd": [p.pid for p in cp._procs],
                "benchmark driver": [os.getpid()],
            }
            writes_before = run_costs.apiserver_writes(cp)
            cpu_before = cpu_of(pids)
            start = time.monotonic()
            cp.kubectl("apply", "-n", NAMESPACE, "-f", str(manifest))
            readiness = ReadyWatch(api, start)
            ready_at = readiness.ready_at
            deadline = start + args.timeout
            rss, load = [rss_mb(op.proc.pid)], [os.getloadavg()[0]]
            while len(ready_at) < n:
                if time.monotonic() > deadline or not readiness.thread.is_alive():
                    raise SystemExit(f"{target} N={n}: only {len(ready_at)} Ready after {args.timeout}s; see {log}")
                rss.append(rss_mb(op.proc.pid))
                load.append(os.getloadavg()[0])
                time.sleep(1.0)
            readiness.stop()
            azure = run_costs.azure_calls(emu.admin.throttling()["calls"])
            writes = run_costs.operator_writes(writes_before, run_costs.apiserver_writes(cp), n)
            seconds = max(ready_at.values())
            cpu = {k: v - cpu_before[k] for k, v in cpu_of(pids).items()}
            calls = emu.admin.calls()
            times = sorted(ready_at.values())
            run = Run(
                target,
                n,
                seconds,
                statistics.median(times),
                times[int(0.9 * (len(times) - 1))],
                rss[-1],
                max(rss),
                malloc_arena_max(op.proc.pid),
                cpu,
                len(calls),
                dict(Counter(kind_of(c) for c in calls)),
                limits=arm_limits,
                azure=azure,
                bound=run_costs.lower_bound(azure["arm"]),
                apiserver=writes,
                load_average=(min(load), max(load)),
            )
            spent = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
            print(
                f"{target} N={n} limits {'on' if arm_limits else 'off'}: all Ready in {seconds:.1f}s (ARM's bound "
                f"{run.bound['all']:.1f}s, {azure['throttled']} throttled), RSS {rss[-1]:.0f} MB; CPU s: {spent}",
                flush=True,
            )
            if intervals:
                run.steady = steady_state(emu, op, n, args.resync_seconds, intervals)
            if on_converged:
                on_converged(op)
        return run


def steady_state(emu: Emulator, op: OperatorProcess, n: int, resync: float, intervals: int) -> dict[str, Any]:
    """After convergence: Azure calls per resource per resync interval, and the operator's memory."""
    assert op.proc is not None
    time.sleep(resync)  # every resource's first resync (timers start when each resource is first seen)
    emu.admin.clear_calls()
    emu.admin.clear_throttling_calls()
    rss = [rss_mb(op.proc.pid)]
    end = time.monotonic() + intervals * resync
    while time.monotonic() < end:
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        rss.append(rss_mb(op.proc.pid))
    calls = emu.admin.calls()
    counted = run_costs.azure_calls(emu.admin.throttling()["calls"])
    kinds = Counter(kind_of(c) for c in calls)
    per_service = Counter(  # v1's service, v2's endpoint: the object each resource reads at its resync
        m.group(1)
        for c in calls
        if c["method"] == "GET" and (m := re.search(r"/(?:services|onlineEndpoints)/((?:svc|ep)-\d+)$", c["path"]))
    )
    per = n * intervals
    return {
        "resources": n,
        "resync_seconds": resync,
        "intervals": intervals,
        "reads_per_resource_per_resync": kinds["read"] / per,
        "writes_per_resource_per_resync": kinds["write"] / per,
        "probes_per_resource_per_resync": kinds["probe"] / per,
        "connects_per_resource_per_resync": kinds["connect"] / per,
        "auth_calls": kinds["auth"],
        #: The emulator's own counts: every kind apart (keys and probes too), per resource per resync.
        "per_resource_per_resync_by_kind": {k: v / per for k, v in counted["by_kind"].items()},
        "arm_calls_by_bucket": counted["arm"],
        "max_service_reads_of_one_resource_per_resync": max(per_service.values(), default=0) / intervals,
        "operator_rss_mb_median": statistics.median(rss),
        "operator_rss_mb_max": max(rss),
    }


def cpu_per_call(work: Path, calls: int, targets: list[str]) -> dict[str, Any]:
    """``cpu_per_call.py`` in its own process (each target's SDK reads its cloud settings at import)."""
    args = [sys.executable, str(ROOT / "bench" / "cpu_per_call.py"), "--calls", str(calls)]
    args += ["--targets", ",".join(targets)]
    out = subprocess.run(args, capture_output=True, text=True, check=False, cwd=work)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode or line is None:
        raise SystemExit(f"cpu_per_call.py failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(line[len("RESULT ") :]))


# ---- the report ----------------------------------------------------------------------------------------

KINDS = ("auth", "read", "write", "probe", "connect")
table = run_costs.table


def limits_of(row: dict[str, Any]) -> str:
    return "on" if row["limits"] else "off"


def print_tables(
    rows: list[dict[str, Any]], floors: dict[str, float], per_deployment: float, cpu: dict[str, Any]
) -> None:
    """The convergence table (a row per N, target and limits, the targets of one N together), ARM's limits and the
    calls by kind (run_costs), the CPU and Azure calls of each run, the steady state, and the CPU per call."""
    rows = sorted(rows, key=lambda r: (r["n"], r["target"], not r["limits"]))
    baseline = per_deployment == per_deployment  # not NaN: the guide's script ran
    floor_text = "; ".join(f"{t} {f:g} s" for t, f in floors.items())
    print(f"\nconvergence: seconds until all N are Ready (latency floor: {floor_text}), operator RSS once they are")
    print("guide: the v1 SDK's script (the guide is v1's), N x its median per deployment; every target against it")
    table(
        ["N", "target", "limits", "operator s", "median Ready s", "over floor s", "RSS MB", "guide (v1) s", "speed-up"],
        [
            [
                str(r["n"]),
                r["target"],
                limits_of(r),
                f"{r['seconds']:.1f}",
                f"{r['ready_at_median']:.1f}",
                f"{r['seconds'] - floors[r['target']]:.1f}",
                f"{r['rss_mb_converged']:.0f}",
                f"{r['n'] * per_deployment:.0f}" if baseline else "-",
                f"{r['n'] * per_deployment / r['seconds']:.1f}x" if baseline else "-",
            ]
            for r in rows
        ],
    )
    run_costs.print_tables(rows)
    print("\nCPU seconds spent while converging (2 cores: at most 2 x the wall time, shared with all else), and the")
    print("Azure calls the emulator answered, by kind (connect: a tunnel through its proxy, a new TLS connection)")
    names = list(dict.fromkeys(k for r in rows for k in r["cpu_seconds"]))
    table(
        ["N", "target", "limits", *names, "operator ms/resource", *KINDS],
        [
            [str(r["n"]), r["target"], limits_of(r)]
            + [f"{r['cpu_seconds'][k]:.0f}" for k in names]
            + [f"{1000 * r['cpu_seconds']['operator'] / r['n']:.0f}"]
            + [str(r["calls_by_kind"].get(k, 0)) for k in KINDS]
            for r in rows
        ],
    )
    for r in rows:
        if r["steady"]:
            print(f"steady state of {r['target']} at {r['n']}, limits {limits_of(r)}: {json.dumps(r['steady'])}")
    for target, cells in (cpu.get("tables") or {}).items():
        columns = list(next(iter(cells.values())))
        runs = f"median of {cpu['runs']} runs of {cpu['calls']} calls; cpu_per_call.py"
        print(f"\n{target}: CPU ms per Azure call, TLS handshakes per call ({runs})")
        table(
            ["call", *(f"{c} {x}" for c in columns for x in ("ms", "TLS"))],
            [
                [name, *(f"{row[c][x]:.2f}" for c in columns for x in ("cpu_ms", "handshakes"))]
                for name, row in cells.items()
            ],
        )


def listed(value: str) -> list[str]:
    """A comma- or space-separated list (``--targets v1,v2``, ``--sizes 20,100``)."""
    return [x for x in value.replace(",", " ").split() if x]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=["100,1000,2000"], help="N to converge, e.g. 20,100")
    p.add_argument("--steady", type=int, default=1000, help="the run whose steady state is measured (0: none)")
    p.add_argument("--targets", nargs="*", default=[",".join(TARGETS)], help=f"e.g. v1,v2 (of {', '.join(TARGETS)})")
    p.add_argument(
        "--limits",
        nargs="*",
        default=["on,off"],
        help="ARM's throttling in the emulator: on (its published token buckets), off, or both in turn (on,off); "
        "the steady state is measured on the first",
    )
    p.add_argument("--baseline", type=int, default=3, help="deployments the guide's script does in turn")
    p.add_argument("--cpu-calls", type=int, default=100, help="calls per run of cpu_per_call.py (0: skip it)")
    p.add_argument("--compute-seconds", type=float, default=10.0, help="v1: an AKS cluster's creation")
    p.add_argument("--service-seconds", type=float, default=5.0, help="v1: a service's deployment")
    p.add_argument("--endpoint-seconds", type=float, default=2.0, help="v2: an online endpoint's creation")
    p.add_argument("--deployment-seconds", type=float, default=12.0, help="v2: an online deployment's creation")
    p.add_argument("--traffic-seconds", type=float, default=1.0, help="v2: an endpoint's update (the traffic)")
    p.add_argument("--poll-seconds", type=float, default=2.0)
    p.add_argument("--resync-seconds", type=float, default=60.0)
    p.add_argument("--intervals", type=int, default=2, help="resync intervals the steady state is counted over")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--workdir", type=Path, help="keep logs and manifests here (default: a temporary directory)")
    args = p.parse_args()
    args.targets = listed(" ".join(args.targets))
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        p.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    args.sizes = [int(x) for x in listed(" ".join(args.sizes))]
    args.limits = listed(" ".join(args.limits))
    if not args.limits or set(args.limits) - {"on", "off"}:
        p.error("--limits takes on, off or on,off")
    v1_latencies, v2_latencies = latencies(args)
    sizes = list(dict.fromkeys([*args.sizes, *([args.steady] if args.steady else [])]))
    floors = {t: floor_of(t, args) for t in args.targets}
    print("latency floor per target: " + "; ".join(f"{t} {f:g} s" for t, f in floors.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="gmo-bench-") as tmp:
        work = Path(args.workdir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # as in the image: the SDK asks git about the working directory at every deploy
        with emulator(work, v1_latencies) as emu:
            # v2: its latencies, and the T4 family's quota raised to hold every instance twice (a rollout's room).
            quota = {T4_FAMILY: 2 * 8 * max(sizes, default=1)}
            emu.admin.v2.configure(latencies=v2_latencies, family_limits=quota)
            emu.admin.seed(models=[{"name": "digits"}])
            baseline = run_baseline(emu, work, args.baseline) if args.baseline else []
            per_deployment = statistics.median(baseline) if baseline else float("nan")
            print(f"baseline (v1 guide): {len(baseline)} deployments, median {per_deployment:.1f}s each", flush=True)
            runs = [
                converge(
                    emu,
                    work,
                    target,
                    n,
                    args,
                    args.intervals if n == args.steady and limits == args.limits[0] else 0,
                    arm_limits=limits == "on",
                )
                for n in sizes
                for target in args.targets
                for limits in args.limits
            ]
        cpu = cpu_per_call(work, args.cpu_calls, args.targets) if args.cpu_calls else {}
    rows = [
        {
            **asdict(run),
            "latency_floor_seconds": floors[run.target],
            "baseline_seconds_extrapolated": run.n * per_deployment,
            "speedup_vs_baseline": run.n * per_deployment / run.seconds,
            "over_emulator_latency_seconds": run.seconds - floors[run.target],
        }
        for run in runs
    ]
    print_tables(rows, floors, per_deployment, cpu)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    RESULTS.write_text(
        json.dumps(
            {
                "settings": settings,
                "emulator_latency_floor_seconds": floors,
                "baseline_seconds_per_deployment": baseline,
                "runs": rows,
                "cpu_per_call": cpu,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
