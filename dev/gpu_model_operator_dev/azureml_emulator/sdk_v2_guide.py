"""Online endpoints with the real azure-ai-ml SDK and azure-identity: the blue/green workflow of Azure's
"Deploy and score a model with an online endpoint" and "Safe rollout for online endpoints" guides, on a managed
GPU endpoint and on a Kubernetes endpoint, plus the failures the backend must handle.

Run as a script in a process whose environment points the SDKs at the emulator (``Emulator.client_env_v2``)::

    python -m gpu_model_operator_dev.azureml_emulator.sdk_v2_guide workflow|quota|instance-type|failing|traffic|
        identity [--instance-type Standard_NC4as_T4_v3 ...]

Each scenario prints ``RESULT {json}`` on stdout. Why a script: like ``sdk_guide.py``, the SDK's cloud choice is
process state. Not imported by the emulator package (importing it imports azure-ai-ml).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    CodeConfiguration,
    Environment,
    KubernetesCompute,
    KubernetesOnlineDeployment,
    KubernetesOnlineEndpoint,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
)
from azure.core.credentials import TokenCredential
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

SCORE_PY = "import json\n\n\ndef init():\n    pass\n\n\ndef run(raw_data):\n    return json.loads(raw_data)\n"
CONDA_YML = "name: digits\ndependencies:\n  - python=3.10\n  - pip:\n    - azureml-inference-server-http\n"
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
BODY = {"data": [[0.0, 1.0, 2.0, 3.0]]}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def credential(args: argparse.Namespace) -> TokenCredential:
    """A service principal's secret, or (``--federated-token-file``) workload identity federation. The authority
    comes from ``AZURE_AUTHORITY_HOST`` in both cases."""
    if args.federated_token_file:
        return WorkloadIdentityCredential(
            tenant_id=args.tenant, client_id=args.client_id, token_file_path=args.federated_token_file
        )
    return ClientSecretCredential(args.tenant, args.client_id, args.client_secret)


def connect(args: argparse.Namespace) -> MLClient:
    return MLClient(credential(args), args.subscription_id, args.resource_group, args.workspace)


def error_of(func: Callable[[], Any]) -> dict[str, Any] | None:
    """Run ``func``; the exception's type, status and message, or None if it succeeded."""
    try:
        func()
    except Exception as exc:  # the scenarios report the SDK's own exception types
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return {"type": type(exc).__name__, "status": status, "message": str(exc)}
    return None


def sources(workdir: Path) -> tuple[Path, Path, Path]:
    """The entry script folder, the conda file and a model file, written into ``workdir``."""
    src = workdir / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(SCORE_PY)
    conda = workdir / "conda.yml"
    conda.write_text(CONDA_YML)
    model = workdir / "model.bin"
    model.write_bytes(bytes(range(256)))
    return src, conda, model


def score(uri: str, key: str, deployment: str | None = None, body: Any = BODY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    return requests.post(uri, json=body, headers=headers, timeout=30)


def managed_deployment(args: argparse.Namespace, name: str, endpoint: str, model: Any, env: Any, src: Path) -> Any:
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        environment=env,
        code_configuration=CodeConfiguration(code=str(src), scoring_script="score.py"),
        instance_type=args.instance_type,
        instance_count=1,
    )


def managed_workflow(ml: MLClient, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Create, blue/green update with a traffic shift, scale, keys, score, delete: a managed GPU endpoint."""
    out: dict[str, Any] = {}
    src, conda, model_file = sources(workdir)
    model = ml.models.create_or_update(Model(name="digits", version="1", path=str(model_file), type="custom_model"))
    env = ml.environments.create_or_update(
        Environment(name="digits-gpu", version="1", image=GPU_IMAGE, conda_file=str(conda))
    )
    out["model"] = {"name": model.name, "version": model.version, "id": model.id}
    out["environment"] = {"name": env.name, "version": env.version, "image": env.image}
    log("model and environment registered")

    name = args.endpoint
    endpoint = ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=name, auth_mode="key")).result()
    out["endpoint"] = {
        "name": endpoint.name,
        "state": endpoint.provisioning_state,
        "scoring_uri": endpoint.scoring_uri,
        "type": type(endpoint).__name__,
    }
    log("endpoint created")

    blue = ml.online_deployments.begin_create_or_update(
        managed_deployment(args, "blue", name, model, env, src)
    ).result()
    out["blue"] = {"state": blue.provisioning_state, "instance_type": blue.instance_type, "count": blue.instance_count}
    endpoint = ml.online_endpoints.get(name)
    endpoint.traffic = {"blue": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    log("blue deployed with all traffic")

    keys = ml.online_endpoints.get_keys(name)
    first = score(endpoint.scoring_uri, keys.primary_key)
    out["score_blue"] = {
        "status": first.status_code,
        "json": first.json(),
        "deployment": first.headers.get("azureml-model-deployment"),
    }
    request_file = workdir / "request.json"
    request_file.write_text(json.dumps(BODY))
    out["invoke"] = json.loads(ml.online_endpoints.invoke(endpoint_name=name, request_file=str(request_file)))

    # Blue/green: green beside blue at 0%, checked directly through the header, then all traffic moves.
    green = ml.online_deployments.begin_create_or_update(
        managed_deployment(args, "green", name, model, env, src)
    ).result()
    out["green"] = {"state": green.provisioning_state}
    direct = score(endpoint.scoring_uri, keys.primary_key, deployment="green")
    out["green_direct"] = {"status": direct.status_code, "deployment": direct.headers.get("azureml-model-deployment")}
    endpoint = ml.online_endpoints.get(name)
    out["traffic_before_shift"] = dict(endpoint.traffic)
    endpoint.traffic = {"blue": 0, "green": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    out["traffic_after_shift"] = dict(ml.online_endpoints.get(name).traffic)
    shifted = score(endpoint.scoring_uri, keys.primary_key)
    out["score_after_shift"] = {
        "status": shifted.status_code,
        "deployment": shifted.headers.get("azureml-model-deployment"),
    }
    ml.online_deployments.begin_delete(name="blue", endpoint_name=name).result()
    out["deployments_after_delete"] = sorted(d.name for d in ml.online_deployments.list(endpoint_name=name))
    log("traffic moved to green, blue deleted")

    green = ml.online_deployments.get(name="green", endpoint_name=name)
    green.instance_count = 2
    scaled = ml.online_deployments.begin_create_or_update(green).result()
    out["scaled"] = {"state": scaled.provisioning_state, "count": scaled.instance_count}
    out["logs"] = ml.online_deployments.get_logs(name="green", endpoint_name=name, lines=5)
    log("green scaled to 2")

    ml.online_endpoints.begin_regenerate_keys(name=name, key_type="primary").result()
    new_keys = ml.online_endpoints.get_keys(name)
    out["regenerated"] = {
        "primary_changed": new_keys.primary_key != keys.primary_key,
        "secondary_kept": new_keys.secondary_key == keys.secondary_key,
        "old_key": score(endpoint.scoring_uri, keys.primary_key).status_code,
        "new_key": score(endpoint.scoring_uri, new_keys.primary_key).status_code,
        "secondary": score(endpoint.scoring_uri, new_keys.secondary_key).status_code,
    }
    log("primary key regenerated")

    # Usage and VmSize entities copy the REST model's as_dict(): their attributes carry the wire names
    # (currentValue, limit, name.value; vCPUs, gpus), not snake_case ones.
    usage = {vars(u)["name"]["value"]: (vars(u)["currentValue"], vars(u)["limit"]) for u in ml.compute.list_usage()}
    out["usage"] = {k: v for k, v in usage.items() if k in ("standardNCASv3_T4Family", "standardNCADSA100v4Family")}
    sizes = {vars(s)["name"]: (vars(s)["vCPUs"], vars(s)["gpus"]) for s in ml.compute.list_sizes()}
    out["size"] = sizes.get(args.instance_type)

    out["listed"] = sorted(e.name for e in ml.online_endpoints.list())
    ml.online_endpoints.begin_delete(name=name).result()
    out["endpoint_gone"] = error_of(lambda: ml.online_endpoints.get(name))
    log("managed endpoint deleted")
    return out


def kubernetes_workflow(ml: MLClient, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The same on an attached Kubernetes compute with a GPU instance type."""
    out: dict[str, Any] = {}
    src, _, _ = sources(workdir)
    compute = ml.compute.begin_attach(
        KubernetesCompute(name=args.compute, resource_id=args.cluster_id, namespace="azureml")
    ).result()
    got = ml.compute.get(args.compute)
    out["compute"] = {
        "type": type(got).__name__,
        "state": got.provisioning_state,
        "instance_types": sorted((got.properties or {}).get("instanceTypes", {})),
        "attached": type(compute).__name__,
    }
    log("kubernetes compute attached")
    model = ml.models.get("digits", version="1")
    env = ml.environments.get("digits-gpu", version="1")
    name = args.k8s_endpoint
    endpoint = ml.online_endpoints.begin_create_or_update(
        KubernetesOnlineEndpoint(name=name, compute=args.compute, auth_mode="key")
    ).result()
    out["endpoint"] = {
        "type": type(endpoint).__name__,
        "state": endpoint.provisioning_state,
        "scoring_uri": endpoint.scoring_uri,
    }

    def deployment(deployment_name: str, count: int) -> KubernetesOnlineDeployment:
        return KubernetesOnlineDeployment(
            name=deployment_name,
            endpoint_name=name,
            model=model,
            environment=env,
            code_configuration=CodeConfiguration(code=str(src), scoring_script="score.py"),
            instance_type=args.k8s_instance_type,
            instance_count=count,
        )

    blue = ml.online_deployments.begin_create_or_update(deployment("blue", 1)).result()
    out["blue"] = {"state": blue.provisioning_state, "instance_type": blue.instance_type}
    endpoint = ml.online_endpoints.get(name)
    endpoint.traffic = {"blue": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    keys = ml.online_endpoints.get_keys(name)
    scored = score(endpoint.scoring_uri, keys.primary_key)
    out["score"] = {"status": scored.status_code, "deployment": scored.headers.get("azureml-model-deployment")}

    green = ml.online_deployments.begin_create_or_update(deployment("green", 1)).result()
    out["green"] = {"state": green.provisioning_state}
    endpoint = ml.online_endpoints.get(name)
    endpoint.traffic = {"blue": 0, "green": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    ml.online_deployments.begin_delete(name="blue", endpoint_name=name).result()
    green = ml.online_deployments.get(name="green", endpoint_name=name)
    green.instance_count = 2
    out["scaled"] = ml.online_deployments.begin_create_or_update(green).result().instance_count
    green.instance_count = 3
    out["scale_beyond_gpus"] = error_of(lambda: ml.online_deployments.begin_create_or_update(green).result())
    out["after_failed_scale"] = {
        "state": ml.online_deployments.get(name="green", endpoint_name=name).provisioning_state,
        "count": ml.online_deployments.get(name="green", endpoint_name=name).instance_count,
        "score": score(endpoint.scoring_uri, keys.primary_key).status_code,
    }
    ml.online_endpoints.begin_delete(name=name).result()
    ml.compute.begin_delete(args.compute, action="Detach").result()
    out["compute_gone"] = error_of(lambda: ml.compute.get(args.compute))
    log("kubernetes endpoint deleted, compute detached")
    return out


def workflow(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ml = connect(args)
    result = {"managed": managed_workflow(ml, args, workdir)}
    if args.cluster_id:
        result["kubernetes"] = kubernetes_workflow(ml, args, workdir)
    return result


def _endpoint_with_blue(ml: MLClient, args: argparse.Namespace, workdir: Path, instance_type: str) -> Any:
    """An endpoint and a deployment ``blue`` of ``instance_type`` on a seeded model (no traffic yet)."""
    src, conda, _ = sources(workdir)
    ml.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name=args.endpoint, auth_mode="key")).result()
    return ManagedOnlineDeployment(
        name="blue",
        endpoint_name=args.endpoint,
        model=f"azureml:{args.model}:1",
        environment=Environment(image=GPU_IMAGE, conda_file=str(conda)),
        code_configuration=CodeConfiguration(code=str(src), scoring_script="score.py"),
        instance_type=instance_type,
        instance_count=1,
    )


def quota(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A family limit that fits one instance and its reserve: one fits, scaling to three does not."""
    ml = connect(args)
    blue = _endpoint_with_blue(ml, args, workdir, args.instance_type)
    created = ml.online_deployments.begin_create_or_update(blue).result()
    blue.instance_count = 3
    return {
        "created": created.provisioning_state,
        "scale": error_of(lambda: ml.online_deployments.begin_create_or_update(blue)),
        "after": ml.online_deployments.get(name="blue", endpoint_name=args.endpoint).instance_count,
    }


def instance_type(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ml = connect(args)
    return {
        size: error_of(
            lambda size=size: ml.online_deployments.begin_create_or_update(  # type: ignore[misc]
                _endpoint_with_blue(ml, args, workdir, size)
            )
        )
        for size in ("Standard_NC6s_v3", "Standard_NC5_nope")
    }


def failing(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A deployment whose container crashes: the poller raises, the deployment says Failed, logs say why."""
    ml = connect(args)
    blue = _endpoint_with_blue(ml, args, workdir, args.instance_type)
    poller = ml.online_deployments.begin_create_or_update(blue)
    out: dict[str, Any] = {"token": bool(poller.continuation_token())}
    out["error"] = error_of(poller.result)
    got = ml.online_deployments.get(name="blue", endpoint_name=args.endpoint)
    out["state"] = got.provisioning_state
    out["logs"] = ml.online_deployments.get_logs(name="blue", endpoint_name=args.endpoint, lines=3)
    return out


def traffic(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Traffic rules, then a 50/50 split observed over many requests."""
    ml = connect(args)
    blue = _endpoint_with_blue(ml, args, workdir, args.instance_type)
    ml.online_deployments.begin_create_or_update(blue).result()
    blue.name = "green"
    ml.online_deployments.begin_create_or_update(blue).result()
    endpoint = ml.online_endpoints.get(args.endpoint)
    out: dict[str, Any] = {}
    for label, split in (("sum_90", {"blue": 50, "green": 40}), ("unknown", {"blue": 50, "red": 50})):
        endpoint.traffic = split
        out[label] = error_of(lambda: ml.online_endpoints.begin_create_or_update(endpoint).result())
    endpoint.traffic = {"blue": 50, "green": 50}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    out["delete_with_traffic"] = error_of(
        lambda: ml.online_deployments.begin_delete(name="blue", endpoint_name=args.endpoint).result()
    )
    uri = ml.online_endpoints.get(args.endpoint).scoring_uri
    key = ml.online_endpoints.get_keys(args.endpoint).primary_key
    seen: Counter[str] = Counter()
    with requests.Session() as session:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(args.requests):
            resp = session.post(uri, json=BODY, headers=headers, timeout=30)
            seen[f"{resp.status_code}:{resp.headers.get('azureml-model-deployment')}"] += 1
    out["split"] = dict(seen)
    return out


def identity(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Whatever credential the arguments give: list endpoints (an ARM call) and report the outcome."""
    ml = connect(args)
    listed: list[str] = []
    error = error_of(lambda: listed.extend(e.name for e in ml.online_endpoints.list()))
    return {"error": error, "listed": listed, "token_file": bool(os.environ.get("AZURE_FEDERATED_TOKEN_FILE"))}


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "workflow": workflow,
    "quota": quota,
    "instance-type": instance_type,
    "failing": failing,
    "traffic": traffic,
    "identity": identity,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--subscription-id", default="00000000-0000-0000-0000-000000000001")
    p.add_argument("--resource-group", default="rg1")
    p.add_argument("--workspace", default="ws1")
    p.add_argument("--tenant", default="00000000-0000-0000-0000-0000000000aa")
    p.add_argument("--client-id", default="gpu-operator")
    p.add_argument("--client-secret", default="not-a-secret")
    p.add_argument("--federated-token-file", default="")
    p.add_argument("--endpoint", default="digits-ep")
    p.add_argument("--k8s-endpoint", default="digits-k8s")
    p.add_argument("--instance-type", default="Standard_NC4as_T4_v3")
    p.add_argument("--k8s-instance-type", default="gpu1")
    p.add_argument("--compute", default="k8s")
    p.add_argument("--cluster-id", default="")
    p.add_argument("--model", default="digits")
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args()
    result = SCENARIOS[args.scenario](args, Path.cwd())
    print("\nRESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
