"""CPU per Azure call: azureml-core's own calls against the azureml backend's, against the Azure ML emulator.

Each figure is the operator-side process CPU (``time.process_time``: every thread of this process; the
emulator is its own process) per call, over ``--calls`` calls in a row, median of ``--runs`` runs. Columns:

- ``SDK, CA bundle``: the SDK's own call, as the backend made it before: a new ``requests.Session`` and TLS
  connection per call, urllib3 loading the CA bundle (``REQUESTS_CA_BUNDLE``: the emulator's CA and certifi's
  roots, as certifi's alone would be against Azure) into a new context each time.
- ``SDK, CA directory``: the same call with the same CAs as a hashed directory (``tls.use_hashed_ca_directory``):
  still a new connection and handshake, but no bundle to parse. This is what the backend's writes now cost.
- ``backend``: the backend's method (``observe_service``, ...), whose reads go over one kept-alive session.

The deploy row is one ``deploy_service`` of a new service (``Model.deploy``: three validations, two uploads to
blob storage through the emulator's proxy, the POST; its two reads go over the session in both columns).

Run: .venv/bin/python bench/cpu_per_call.py [--calls 100 --runs 5]
Prints a table, and a line ``RESULT {...}`` that convergence.py reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchlib import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, ROOT, SUBSCRIPTION, WORKSPACE, emulator

SOURCE = ROOT / "manifests" / "examples" / "digits-source"
SERVICE, COMPUTE = "svc-0000", "gpu-0000"
COLUMNS = ("SDK, CA bundle", "SDK, CA directory", "backend")


def inputs_for(service: str) -> Any:
    from gpu_model_operator.backends.base import DeploymentInputs
    from gpu_model_operator.models import parse_spec

    spec = parse_spec(
        {
            "backend": "azureml",
            "workspace": {
                "subscriptionId": SUBSCRIPTION,
                "resourceGroup": RESOURCE_GROUP,
                "name": WORKSPACE,
                "credentialsSecretRef": {"name": "sp"},
            },
            "compute": {"name": COMPUTE, "provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 1}},
            "model": {"name": "digits", "version": 1},
            "source": {"configMapRef": {"name": "src"}, "entryScript": "score.py", "condaFile": "myenv.yml"},
            "service": {"name": service, "replicas": 1},
        }
    )
    credentials = {"tenantId": "adfs", "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
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


async def measure(call: Callable[[], Awaitable[Any] | Any], calls: int, runs: int) -> dict[str, Any]:
    """Median CPU and wall milliseconds per call over ``runs`` runs of ``calls`` calls (after one warm-up)."""
    cpu, wall = [], []
    first = call()
    if asyncio.iscoroutine(first):
        await first
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            result = call()
            if asyncio.iscoroutine(result):
                await result
        cpu.append((time.process_time() - c0) / calls * 1000)
        wall.append((time.perf_counter() - w0) / calls * 1000)
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "cpu_ms_runs": cpu}


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
    ours: dict[str, Callable[[], Any]] = {
        "read a service": lambda: backend.observe_service(inputs),
        "read a compute": lambda: backend.observe_compute(inputs),
        "read its keys": lambda: backend.get_keys(inputs, fresh=True),
        f"list the AKS services ({args.services})": lambda: backend.services_on_compute(inputs, 0.0),
        "probe its health route": lambda: backend.probe(inputs),
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=100, help="calls in a row per run")
    p.add_argument("--deploys", type=int, default=5, help="deployments per run of the deploy row")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--services", type=int, default=10, help="services in the workspace (the listing's size)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gmo-cpu-") as tmp, emulator(Path(tmp), {}) as emu:
        services = [
            {"name": f"svc-{i:04d}", "computeName": COMPUTE, "numReplicas": 1, "kvTags": {}}
            for i in range(args.services)
        ]
        computes = [{"name": COMPUTE, "vm_size": "Standard_NC4as_T4_v3", "agent_count": 100}]
        emu.admin.seed(models=[{"name": "digits"}], computes=computes, services=services)
        emu.admin.configure(latencies={"service_create_s": 0.0})
        os.environ.update({**emu.env, "HOME": tmp})  # before azureml is imported: it reads them at import
        os.chdir(tmp)  # as the operator's image: the SDK asks git about the working directory at each deploy
        table = asyncio.run(run(args, emu.env["REQUESTS_CA_BUNDLE"]))
    width = max(len(r) for r in table)
    print(f"\nCPU ms per call (median of {args.runs} runs; {args.calls} calls, {args.deploys} deploys a run)")
    print(f"{'call':<{width}}  " + "  ".join(f"{c:>18}" for c in COLUMNS) + f"  {'saved':>6}")
    for row, cells in table.items():
        figures = [cells[c]["cpu_ms"] for c in COLUMNS]
        ratio = figures[0] / figures[2] if figures[2] else float("nan")
        print(f"{row:<{width}}  " + "  ".join(f"{f:>18.2f}" for f in figures) + f"  {ratio:>5.1f}x")
    print("RESULT " + json.dumps({"calls": args.calls, "runs": args.runs, "table": table}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
