"""The Azure guide "Deploy a deep learning model for inference with GPU", done with the real azureml-core.

Run as a script in a process whose environment already points the SDK at the emulator (see
``Emulator.client_env``; azureml reads it at import, so it cannot be set later)::

    python -m gpu_model_operator_dev.azureml_emulator.sdk_guide workflow|capacity|missing-model [--workspace ws1 ...]

Each scenario prints one line ``RESULT {json}`` on stdout for the test to check. Why a script and not
in-process calls: the SDK's cloud configuration is module-level state fixed at import time. It is not part of
the emulator package: importing it imports azureml.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from azureml.core import Workspace
from azureml.core.authentication import ServicePrincipalAuthentication
from azureml.core.compute import AksCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.core.conda_dependencies import CondaDependencies
from azureml.core.environment import DEFAULT_GPU_IMAGE, Environment
from azureml.core.model import InferenceConfig, Model
from azureml.core.webservice import AksWebservice, Webservice
from azureml.exceptions import WebserviceException

SCORE_PY = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def connect(args: argparse.Namespace) -> Workspace:
    """Workspace.get with a service principal on the ADFS-style authority (no instance discovery)."""
    auth = ServicePrincipalAuthentication(
        tenant_id=args.tenant, service_principal_id=args.client_id, service_principal_password=args.client_secret
    )
    return Workspace.get(
        args.workspace, subscription_id=args.subscription_id, resource_group=args.resource_group, auth=auth
    )


def inference_config(workdir: Path) -> InferenceConfig:
    """The guide's entry script and conda environment on the SDK's GPU base image."""
    (workdir / "score.py").write_text(SCORE_PY)
    env = Environment("myenv")
    env.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["python=3.8"], pip_packages=["azureml-defaults", "tensorflow-gpu"]
    )
    env.docker.base_image = DEFAULT_GPU_IMAGE
    return InferenceConfig(entry_script=str(workdir / "score.py"), environment=env)


def gpu_config(replicas: int, gpus: int = 1) -> Any:
    return AksWebservice.deploy_configuration(
        autoscale_enabled=False, num_replicas=replicas, cpu_cores=1, memory_gb=4, gpu_cores=gpus, auth_enabled=True
    )


def error_of(func: Callable[[], Any]) -> dict[str, str] | None:
    """Run ``func``; the exception's type and message, or None if it succeeded."""
    try:
        func()
    except Exception as exc:  # the scenarios assert on the SDK's own exception types
        return {"type": type(exc).__name__, "message": str(exc)}
    return None


def workflow(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ws = connect(args)
    out["workspace"] = {"name": ws.name, "location": ws.location}
    log("workspace found")
    try:
        cluster = ComputeTarget(workspace=ws, name="gpucluster")
    except ComputeTargetException:
        config = AksCompute.provisioning_configuration(
            vm_size="Standard_NC4as_T4_v3", agent_count=2, cluster_purpose=AksCompute.ClusterPurpose.DEV_TEST
        )
        cluster = ComputeTarget.create(ws, "gpucluster", config)
        out["compute_state_after_create"] = cluster.get_status()
        cluster.wait_for_completion(show_output=True)
    out["compute"] = {
        "state": cluster.provisioning_state,
        "vm_size": cluster.agent_vm_size,
        "agents": cluster.agent_count,
        "type": type(cluster).__name__,
    }
    log("compute ready")

    attach_config = AksCompute.attach_configuration(resource_id=args.attach_resource_id)
    attached = ComputeTarget.attach(ws, "attachedaks", attach_config)
    attached.wait_for_completion(show_output=True)
    out["attached"] = {"state": attached.provisioning_state, "is_attached": attached.is_attached}

    (workdir / "model.bin").write_bytes(bytes(256))
    registered = Model.register(ws, model_path=str(workdir / "model.bin"), model_name="tf-dnn-mnist")
    model = Model(ws, name="tf-dnn-mnist", version=registered.version)
    out["model"] = {"id": model.id, "version": model.version, "latest": Model(ws, name="tf-dnn-mnist").id}
    log("model registered")

    service = Model.deploy(ws, "aks-dnn-mnist", [model], inference_config(workdir), gpu_config(1), cluster)
    out["state_after_deploy_call"] = service.state
    service.wait_for_deployment(show_output=True)
    out["deployed"] = {
        "state": service.state,
        "replicas": service.num_replicas,
        "gpu": service.container_resource_requirements.gpu,
        "scoring_uri": service.scoring_uri,
    }
    log("service deployed")

    primary, secondary = service.get_keys()
    body = {"data": [[0.0] * 4]}
    scored = requests.post(service.scoring_uri, json=body, headers={"Authorization": f"Bearer {primary}"})
    refused = requests.post(service.scoring_uri, json=body, headers={"Authorization": "Bearer wrong"})
    health = requests.get(service.scoring_uri.rsplit("/", 1)[0] + "/")
    out["scoring"] = {
        "status": scored.status_code,
        "json": scored.json(),
        "without_key": refused.status_code,
        "health": health.status_code,
        "keys_differ": primary != secondary,
    }
    out["run"] = service.run(json.dumps(body))

    service.update(num_replicas=2)
    service.wait_for_deployment()
    out["updated"] = {"state": service.state, "replicas": service.num_replicas}
    log("service scaled")

    out["listed"] = sorted(s.name for s in AksWebservice.list(ws))
    service.delete()
    out["service_gone"] = error_of(lambda: Webservice(ws, "aks-dnn-mnist"))
    cluster.delete()
    attached.detach()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and error_of(lambda: ComputeTarget(ws, "gpucluster")) is None:
        time.sleep(0.2)
    out["compute_gone"] = error_of(lambda: ComputeTarget(ws, "gpucluster"))
    log("cleaned up")
    return out


def capacity(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A seeded 2-GPU cluster: 3 replicas fail, 2 fit, scaling them to 3 fails, a third service finds none."""
    ws = connect(args)
    cluster = ComputeTarget(ws, args.compute)
    model = Model(ws, name=args.model)
    config = inference_config(workdir)
    out: dict[str, Any] = {"cluster": {"vm_size": cluster.agent_vm_size, "agents": cluster.agent_count}}

    too_big = Model.deploy(ws, "too-big", [model], config, gpu_config(3), cluster)
    out["three_replicas"] = error_of(lambda: too_big.wait_for_deployment())
    out["three_replicas_state"] = too_big.state

    fits = Model.deploy(ws, "fits", [model], config, gpu_config(2), cluster)
    fits.wait_for_deployment()
    out["two_replicas_state"] = fits.state

    fits.update(num_replicas=3)
    out["scale_to_three"] = error_of(lambda: fits.wait_for_deployment())
    out["after_failed_scale"] = {"state": fits.state, "replicas": fits.num_replicas}

    neighbour = Model.deploy(ws, "neighbour", [model], config, gpu_config(1), cluster)
    out["neighbour"] = error_of(lambda: neighbour.wait_for_deployment())
    return out


def per_node(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A seeded cluster of two 2-GPU nodes: two 1-GPU replicas spread over both nodes, so a 2-GPU replica finds
    no node although 2 GPUs are free; then a 1-replica service whose update must start its new replica beside
    the old one, on a full cluster (the rolling update cannot start), while a scale alone is fine."""
    ws = connect(args)
    cluster = ComputeTarget(ws, args.compute)
    model = Model(ws, name=args.model)
    config = inference_config(workdir)
    out: dict[str, Any] = {}
    small = Model.deploy(ws, "small", [model], config, gpu_config(2, gpus=1), cluster)
    small.wait_for_deployment()
    big = Model.deploy(ws, "big", [model], config, gpu_config(1, gpus=2), cluster)
    out["fragmented"] = error_of(lambda: big.wait_for_deployment())
    big.delete()
    fill = Model.deploy(ws, "fill", [model], config, gpu_config(1, gpus=1), cluster)
    fill.wait_for_deployment()  # 3 of the 4 GPUs held
    rolled = Model.deploy(ws, "rolled", [model], config, gpu_config(1, gpus=1), cluster)
    rolled.wait_for_deployment()  # 4 of 4 GPUs held
    config.environment.environment_variables = {"CHANGED": "1"}
    rolled.update(inference_config=config)
    out["rollout_on_full_cluster"] = error_of(lambda: rolled.wait_for_deployment())
    out["after_failed_rollout"] = rolled.state
    small.update(num_replicas=1)
    small.wait_for_deployment()
    rolled.update(inference_config=config)
    out["rollout_with_room"] = error_of(lambda: rolled.wait_for_deployment())
    return out


def missing_model(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ws = connect(args)
    return {
        "by_name": error_of(lambda: Model(ws, name="missing")),
        "by_id": error_of(lambda: Model(ws, id="missing:1")),
        "not_found_type": WebserviceException.__name__,
    }


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "workflow": workflow,
    "capacity": capacity,
    "per-node": per_node,
    "missing-model": missing_model,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--subscription-id", default="00000000-0000-0000-0000-000000000001")
    p.add_argument("--resource-group", default="rg1")
    p.add_argument("--workspace", default="ws1")
    p.add_argument("--tenant", default="adfs")
    p.add_argument("--client-id", default="gpu-operator")
    p.add_argument("--client-secret", default="not-a-secret")
    p.add_argument("--attach-resource-id", default="")
    p.add_argument("--compute", default="gpu2")
    p.add_argument("--model", default="digits")
    args = p.parse_args()
    result = SCENARIOS[args.scenario](args, Path.cwd())
    print("\nRESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
