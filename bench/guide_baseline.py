"""The seed-style baseline: what the Azure guide does by hand, one deployment after another.

For each deployment in turn: create its GPU AKS compute if missing and ``wait_for_completion``, then
``Model.deploy`` and ``wait_for_deployment`` (the SDK polls every 5 s and cannot be told otherwise), with the
same entry script, conda file, GPU base image and resources the operator deploys. Run by ``convergence.py``
in a process whose environment points the SDK at the emulator (azureml reads it at import). Prints one line
``RESULT {"seconds": [...]}``: the wall time of each deployment.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from azureml.core import Workspace
from azureml.core.authentication import ServicePrincipalAuthentication
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.core.environment import DEFAULT_GPU_IMAGE, Environment
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AksWebservice

SOURCE = Path(__file__).resolve().parents[1] / "manifests" / "examples" / "digits-source"


def deploy_one(ws: Workspace, model: Model, compute_name: str, service_name: str) -> None:
    try:
        cluster = ComputeTarget(workspace=ws, name=compute_name)
    except ComputeTargetException:
        config = AksCompute.provisioning_configuration(
            vm_size="Standard_NC4as_T4_v3", agent_count=1, cluster_purpose=AksCompute.ClusterPurpose.DEV_TEST
        )
        cluster = ComputeTarget.create(ws, compute_name, config)
        cluster.wait_for_completion(show_output=False)
    env = Environment.from_conda_specification("digits-env", str(SOURCE / "myenv.yml"))
    env.docker.base_image = DEFAULT_GPU_IMAGE
    inference = InferenceConfig(entry_script=str(SOURCE / "score.py"), environment=env)
    deployment = AksWebservice.deploy_configuration(
        autoscale_enabled=False, num_replicas=1, cpu_cores=1, memory_gb=4, gpu_cores=1, auth_enabled=True
    )
    service = Model.deploy(ws, service_name, [model], inference, deployment, cluster)
    service.wait_for_deployment(show_output=False)
    if service.state != "Healthy":
        raise SystemExit(f"{service_name} ended {service.state}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--prefix", default="guide")
    p.add_argument("--subscription-id", required=True)
    p.add_argument("--resource-group", required=True)
    p.add_argument("--workspace", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    args = p.parse_args()
    auth = ServicePrincipalAuthentication("adfs", args.client_id, args.client_secret)
    ws = Workspace.get(
        args.workspace, auth=auth, subscription_id=args.subscription_id, resource_group=args.resource_group
    )
    model = Model(ws, name="digits", version=1)
    seconds = []
    for i in range(args.count):
        start = time.monotonic()
        deploy_one(ws, model, f"{args.prefix}-c{i}", f"{args.prefix}-s{i}")
        seconds.append(time.monotonic() - start)
        print(f"deployment {i}: {seconds[-1]:.1f}s", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps({"seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
