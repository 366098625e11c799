"""CPU per Azure call: azureml-core's own calls against the azureml backend's, and the azureml-v2 backend's calls
with and without their kept-alive connections, against the Azure ML emulator.

Each figure is the operator-side process CPU (``time.process_time``: every thread of this process; the
emulator is its own process) per call, over ``--calls`` calls in a row, median of ``--runs`` runs, with the TLS
handshakes this process made per call (``ssl.SSLContext.wrap_socket`` counted: 0 means the connection was
reused, 1 a new one per call). Each target (``--targets``) runs in a process of its own with its own emulator:
azureml-core and azure-ai-ml are told their cloud by the environment, at import.

v1 (the azureml backend), columns:

- ``SDK, CA bundle``: the SDK's own call, as the backend made it before: a new ``requests.Session`` and TLS
  connection per call, urllib3 loading the CA bundle (``REQUESTS_CA_BUNDLE``: the emulator's CA and certifi's
  roots, as certifi's alone would be against Azure) into a new context each time.
- ``SDK, CA directory``: the same call with the same CAs as a hashed directory (``tls.use_hashed_ca_directory``):
  still a new connection and handshake, but no bundle to parse. This is what the backend's writes now cost.
- ``backend``: the backend's method (``observe_service``, ...), whose reads go over one kept-alive session.

The deploy row is one ``deploy_service`` of a new service (``Model.deploy``: three validations, two uploads to
blob storage through the emulator's proxy, the POST; its two reads go over the session in both columns).

v2 (the azureml-v2 backend, on a managed online endpoint it deployed itself), columns:

- ``new connection``: the same call with azure-core's pooled connections dropped after each (the transports'
  ``requests`` sessions closed): a new TCP and TLS connection, and the CA bundle parsed, per request, as a new
  client per call would pay without signing in again.
- ``backend``: the backend's call as it makes it, through its session's pool and azure-core's pipeline (one
  ``requests.Session`` per generated operations client, kept alive), in a process that serves azureml-v2 alone.
- ``backend, CA directory``: the same with ``REQUESTS_CA_BUNDLE`` pointed at a hashed directory of the same CAs,
  as in an operator that also serves azureml (the manifests' default): that backend does so for the whole process
  (``tls.use_hashed_ca_directory``), and new connections then load no bundle.

Rows: the single ARM calls the backend makes (read an endpoint; list its deployments, which is how the backend
reads a deployment; read its keys), its ``observe_service`` (the endpoint and its deployments: 2 calls) and
``observe_compute`` (the quota family's usage, the endpoint, its deployments: 3 calls), and its scoring probe
(a POST to the endpoint's scoring host through the emulator's proxy).

Run: .venv/bin/python bench/cpu_per_call.py [--calls 100 --runs 5 --targets v1,v2]
Prints a table per target, and a line ``RESULT {...}`` that convergence.py reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchlib import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, ROOT, SUBSCRIPTION, TENANT, WORKSPACE, emulator

SOURCE = ROOT / "manifests" / "examples" / "digits-source"
SERVICE, COMPUTE, ENDPOINT = "svc-0000", "gpu-0000", "ep-0000"
COLUMNS = ("SDK, CA bundle", "SDK, CA directory", "backend")
V2_COLUMNS = ("new connection", "backend", "backend, CA directory")
TARGETS = ("v1", "v2")

#: TLS handshakes this process has started (every thread): ``ssl.SSLContext.wrap_socket`` counted.
HANDSHAKES = [0]
_wrap_socket = ssl.SSLContext.wrap_socket


def _counted_wrap_socket(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
    HANDSHAKES[0] += 1
    return _wrap_socket(self, *args, **kwargs)


def inputs_for(service: str, v2: bool = False) -> Any:
    from gpu_model_operator.backends.base import DeploymentInputs
    from gpu_model_operator.models import parse_spec

    compute: dict[str, Any] = {"name": COMPUTE, "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 1}}
    if v2:
        compute = {"managed": {"instanceType": "Standard_NC4as_T4_v3"}}
    spec = parse_spec(
        {
            "backend": "azureml-v2" if v2 else "azureml",
            "workspace": {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "name": WORKSPACE,
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": compute,
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "entryScript": "score.py", "condaFile": "myenv.yml"},
            "service": {"name": service, "replicas": 1, "gpuCores": 1},
        }
    )
    credentials = {"tenantId": TENANT if v2 else "adfs", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    return DeploymentInputs(
        "bench",
        service,
        "uid",
        1,
        spec,
        (SOURCE / "score.py").read_text(),
        (SOURCE / "myenv.yml").read_text(),
        credentials=credentials,
        fingerprint="f",
    )


async def measure(
    call: Callable[[], Awaitable[Any] | Any], calls: int, runs: int, after: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Median CPU and wall milliseconds and TLS handshakes per call over ``runs`` runs of ``calls`` calls (after
    one warm-up); ``after`` runs after each call, inside the measurement."""
    cpu, wall, handshakes = [], [], []
    first = call()
    if asyncio.iscoroutine(first):
        await first
    after()
    for _ in range(runs):
        h0, c0, w0 = HANDSHAKES[0], time.process_time(), time.perf_counter()
        for _ in range(calls):
            result = call()
            if asyncio.iscoroutine(result):
                await result
            after()
        cpu.append((time.process_time() - c0) / calls * 1000)
        wall.append((time.perf_counter() - w0) / calls * 1000)
        handshakes.append((HANDSHAKES[0] - h0) / calls)
    return {
        "cpu_ms": statistics.median(cpu),
        "wall_ms": statistics.median(wall),
        "handshakes": statistics.median(handshakes),
        "cpu_ms_runs": cpu,
    }


async def run(args: argparse.Namespace, bundle: str) -> dict[str, dict[str, dict[str, float]]]:
    import requests
    from azureml.core import Workspace
    from azureml.core.authentication import ServicePrincipalAuthentication
    from azureml.core.compute import ComputeTarget
    from azureml.core.webservice import AksWebservice, Webservice

    from gpu_model_operator.backends.azureml.backend import AzureMLBackend

    backend = AzureMLBackend(workers=8)  # points REQUESTS_CA_BUNDLE at a hashed directory of the same CAs
    directory = os.environ["REQUESTS_CA_BUNDLE"]
    inputs = inputs_for(SERVICE)
    auth = ServicePrincipalAuthentication("adfs", CLIENT_ID, CLIENT_SECRET)
    ws = Workspace.get(WORKSPACE, auth=auth, subscription_id=SUBSCRIPTION, resource_group=RESOURCE_GROUP)
    service = Webservice(ws, SERVICE)
    keys = service.get_keys()
    health = service.scoring_uri.removesuffix("score")
    sdk: dict[str, Callable[[], Any]] = {
        "read a service": lambda: Webservice(ws, SERVICE),
        "read a compute": lambda: ComputeTarget(ws, COMPUTE),
        "read its keys": lambda: service.get_keys(),
        f"list the AKS services ({args.services})": lambda: AksWebservice.list(ws, compute_type="AKS"),
        "probe its health route": lambda: requests.get(health, headers={"Authorization": f"Bearer {keys[0]}"}),
    }
    observed = await backend.observe_service(inputs)

    def probe() -> Any:
        return backend.probe(inputs, observed)

    ours: dict[str, Callable[[], Any]] = {
        "read a service": lambda: backend.observe_service(inputs),
        "read a compute": lambda: backend.observe_compute(inputs),
        "read its keys": lambda: backend.get_keys(inputs, fresh=True),
        f"list the AKS services ({args.services})": lambda: backend.services_on_compute(inputs),
        "probe its health route": lambda: probe(),
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for row, call in sdk.items():
        os.environ["REQUESTS_CA_BUNDLE"] = bundle
        table[row] = {COLUMNS[0]: await measure(call, args.calls, args.runs)}
        os.environ["REQUESTS_CA_BUNDLE"] = directory
        table[row][COLUMNS[1]] = await measure(call, args.calls, args.runs)
        table[row][COLUMNS[2]] = await measure(ours[row], args.calls, args.runs)
        print(f"  {row}: done", file=sys.stderr, flush=True)
    count = iter(range(1, 10**6))
    deploy = lambda: backend.deploy_service(inputs_for(f"new-{next(count):04d}"), 1)  # noqa: E731
    row = "deploy a new service"
    os.environ["REQUESTS_CA_BUNDLE"] = bundle
    table[row] = {COLUMNS[0]: await measure(deploy, args.deploys, args.runs)}
    os.environ["REQUESTS_CA_BUNDLE"] = directory
    table[row][COLUMNS[1]] = table[row][COLUMNS[2]] = await measure(deploy, args.deploys, args.runs)
    await backend.close()
    return table


async def run_v2(args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    from azure.core.pipeline.transport import RequestsTransport

    from gpu_model_operator import rollout
    from gpu_model_operator.backends.azureml_v2 import arm
    from gpu_model_operator.backends.azureml_v2.backend import AzureMLV2Backend
    from gpu_model_operator.backends.base import ServiceState

    backend = AzureMLV2Backend(workers=8)
    inputs = inputs_for(ENDPOINT, v2=True)
    # The endpoint, its deployment and the traffic, by the backend's own steps (the emulator's latencies are 0).
    deadline = time.monotonic() + 60
    while True:
        await backend.observe_compute(inputs)
        observed = await backend.observe_service(inputs)
        summary = rollout.summarize(observed, inputs.fingerprint)
        if summary.state == ServiceState.HEALTHY and summary.fingerprint == inputs.fingerprint:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"endpoint {ENDPOINT} not healthy after 60 s: {observed}")
        step = rollout.next_step(observed.endpoint, 1, rollout.Room(1, 1, "bench"), True, None)
        if step.kind.writes:  # the bench's endpoint answers: no probe before the shift
            await backend.take_step(inputs, step)
        await asyncio.sleep(0.1)
    session = backend._session
    ws = await session.workspace(inputs)
    # Every generated operations client's transport (one requests.Session each, opened at its first request).
    import gc

    transports = [o for o in gc.get_objects() if isinstance(o, RequestsTransport)]

    def drop_connections() -> None:
        for transport in transports:
            if transport.session is not None:
                transport.session.close()  # its adapters' pools: the next request connects afresh

    def call(what: str, fn: Callable[[], Any]) -> Awaitable[Any]:
        return session.call(inputs, what, "endpoint", fn)

    rows: dict[str, Callable[[], Any]] = {
        "read an endpoint": lambda: call("reading", lambda: arm.get_endpoint(ws, ENDPOINT)),
        "list its deployments": lambda: call("listing", lambda: arm.list_deployments(ws, ENDPOINT)),
        "read its keys": lambda: backend.get_keys(inputs, fresh=True),
        "observe_service (2 calls)": lambda: backend.observe_service(inputs),
        "observe_compute (3 calls)": lambda: backend.observe_compute(inputs),
        "probe its scoring route": lambda: backend.probe(inputs, observed),
    }
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row, fn in rows.items():
        table[row] = {V2_COLUMNS[0]: await measure(fn, args.calls, args.runs, after=drop_connections)}
        table[row][V2_COLUMNS[1]] = await measure(fn, args.calls, args.runs)
        print(f"  {row}: done", file=sys.stderr, flush=True)
    from gpu_model_operator.backends.azure.tls import use_hashed_ca_directory

    use_hashed_ca_directory()  # what the azureml backend does at its construction, for the whole process
    for row, fn in rows.items():
        table[row][V2_COLUMNS[2]] = await measure(fn, args.calls, args.runs)
    await backend.close()
    return table


def run_target(args: argparse.Namespace, target: str) -> dict[str, dict[str, dict[str, Any]]]:
    """One target's table, in this process (its SDK reads the environment set here at import)."""
    ssl.SSLContext.wrap_socket = _counted_wrap_socket  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="gmo-cpu-") as tmp, emulator(Path(tmp), {}) as emu:
        os.chdir(tmp)  # as the operator's image: the SDK asks git about the working directory at each deploy
        if target == "v2":
            emu.admin.v2.configure(
                latencies={"endpoint_create_s": 0.0, "deployment_create_s": 0.0, "endpoint_update_s": 0.0}
            )
            emu.admin.v2.seed(models=[{"name": "digits", "version": "1"}])
            os.environ.update({**emu.env_v2, "HOME": tmp})  # before azure-ai-ml is imported
            return asyncio.run(run_v2(args))
        services = [
            {"name": f"svc-{i:04d}", "computeName": COMPUTE, "numReplicas": 1, "kvTags": {}}
            for i in range(args.services)
        ]
        computes = [{"name": COMPUTE, "vm_size": "Standard_NC4as_T4_v3", "agent_count": 100}]
        emu.admin.seed(models=[{"name": "digits"}], computes=computes, services=services)
        emu.admin.configure(latencies={"service_create_s": 0.0})
        os.environ.update({**emu.env, "HOME": tmp})  # before azureml is imported: it reads them at import
        return asyncio.run(run(args, emu.env["REQUESTS_CA_BUNDLE"]))


def print_table(target: str, table: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    columns = list(next(iter(table.values())))
    width = max(len(r) for r in table)
    deploys = f", {args.deploys} deploys a run" if target == "v1" else ""
    runs = f"median of {args.runs} runs; {args.calls} calls{deploys}"
    print(f"\n{target}: CPU ms per call, TLS handshakes per call ({runs})")
    print(f"{'call':<{width}}  " + "  ".join(f"{c:>18} {'TLS':>4}" for c in columns) + f"  {'saved':>6}")
    for row, cells in table.items():
        first, backend = cells[columns[0]]["cpu_ms"], cells["backend"]["cpu_ms"]
        ratio = first / backend if backend else float("nan")
        line = "  ".join(f"{cells[c]['cpu_ms']:>18.2f} {cells[c]['handshakes']:>4.2f}" for c in columns)
        print(f"{row:<{width}}  {line}  {ratio:>5.1f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=100, help="calls in a row per run")
    p.add_argument("--deploys", type=int, default=5, help="deployments per run of v1's deploy row")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--services", type=int, default=10, help="v1's services in the workspace (the listing's size)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: v1, v2")
    p.add_argument("--target", choices=TARGETS, help=argparse.SUPPRESS)  # one target, in this process
    args = p.parse_args()
    if args.target:
        print("RESULT " + json.dumps(run_target(args, args.target)), flush=True)
        return 0
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        p.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    tables: dict[str, Any] = {}
    for target in targets:
        child = [sys.executable, __file__, "--target", target, "--calls", str(args.calls), "--runs", str(args.runs)]
        child += ["--deploys", str(args.deploys), "--services", str(args.services)]
        out = subprocess.run(child, capture_output=True, text=True, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if out.returncode or line is None:
            raise SystemExit(f"cpu_per_call.py --target {target} failed:\n{out.stderr[-3000:]}")
        tables[target] = json.loads(line[len("RESULT ") :])
        print_table(target, tables[target], args)
    print("RESULT " + json.dumps({"calls": args.calls, "runs": args.runs, "tables": tables}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
