"""Bad inputs the schema cannot catch, on the local backend: each ends in a condition and a Warning event
that say what to fix, nothing is lost, and fixing it converges. (Schema and CEL rejects are in
tests/integration/test_crd.py.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.e2e.harness import ROOT, Deployment, wait_for


def rendered(deployment: Deployment) -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all(deployment.cp.kubectl("kustomize", str(ROOT / "manifests/examples/local")).stdout))
    for doc in docs:
        if doc["kind"] == "GpuModelDeployment":
            doc["spec"]["model"]["path"] = str(deployment.model.model_dir)
            doc["spec"]["local"]["allowCpuFallback"] = False
    return docs


def apply(deployment: Deployment, docs: list[dict[str, Any]]) -> None:
    deployment.cp.kubectl("apply", "-n", deployment.ns, "-f", "-", input=yaml.safe_dump_all(docs))


def gmd(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "GpuModelDeployment")


def configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "ConfigMap")


def failed_with(deployment: Deployment, reason: str, text: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cond = deployment.condition("Ready")
        return cond if cond and cond["reason"] == reason else None

    try:
        cond = wait_for(f"Ready=False with reason {reason}", check, 120)
    except AssertionError:
        raise AssertionError(f"{deployment.get().get('status')}\n{deployment.operator.log_tail()}") from None
    assert cond["status"] == "False"
    assert text in cond["message"]
    warnings = wait_for(f"a Warning event {reason}", lambda: deployment.events(reason), 30)
    assert warnings[0]["type"] == "Warning" and text in warnings[0]["message"]
    return cond


def delete(deployment: Deployment) -> None:
    deployment.cp.kubectl("delete", "gmd", deployment.name, "-n", deployment.ns, "--timeout=120s")


def test_missing_configmap_then_created(deployment: Deployment) -> None:
    docs = rendered(deployment)
    apply(deployment, [gmd(docs)])
    name = gmd(docs)["spec"]["source"]["configMapRef"]["name"]
    failed_with(deployment, "SourceNotFound", f"ConfigMap {name} not found in namespace {deployment.ns}")
    apply(deployment, [configmap(docs)])  # Argo CD may sync them in either order: it converges
    deployment.wait_ready()
    delete(deployment)


def test_configmap_without_the_entry_script_key(deployment: Deployment) -> None:
    docs = rendered(deployment)
    gmd(docs)["spec"]["source"]["entryScript"] = "scoring.py"
    apply(deployment, docs)
    failed_with(deployment, "SourceNotFound", "has no key 'scoring.py' (spec.source.entryScript)")
    delete(deployment)


def test_broken_conda_file(deployment: Deployment) -> None:
    docs = rendered(deployment)
    configmap(docs)["data"]["myenv.yml"] = "dependencies: [python=3.11\n"
    apply(deployment, docs)
    failed_with(deployment, "EnvironmentFailed", "conda file")
    assert deployment.get()["status"]["phase"] == "Failed"
    delete(deployment)


def test_model_path_that_does_not_exist(deployment: Deployment) -> None:
    docs = rendered(deployment)
    gmd(docs)["spec"]["model"]["path"] = "/nonexistent/models/digits"
    apply(deployment, docs)
    failed_with(deployment, "ModelNotFound", "/nonexistent/models/digits does not exist")
    delete(deployment)


def test_unknown_reconcile_policy(deployment: Deployment) -> None:
    docs = rendered(deployment)
    gmd(docs)["metadata"]["annotations"] = {"gpumodel.io/reconcile-policy": "sometimes"}
    apply(deployment, docs)
    failed_with(deployment, "InvalidSpec", "must be one of manage, skip, detach-on-delete")
    delete(deployment)


@dataclass(frozen=True)
class Capped:
    replicas: int
    #: The status's replicasSummary once Ready: what serves of what was asked.
    summary: str


CAPPED: dict[str, Capped] = {"five replicas on the two declared GPUs": Capped(5, "2/5")}


@pytest.mark.parametrize("name", CAPPED)
def test_replicas_over_capacity_are_capped_not_failed(deployment: Deployment, name: str) -> None:
    case = CAPPED[name]
    docs = rendered(deployment)
    gmd(docs)["spec"]["service"]["replicas"] = case.replicas
    apply(deployment, docs)
    obj = deployment.wait_ready()
    assert obj["status"]["replicasSummary"] == case.summary
    assert deployment.events("ReplicasCapped")
    delete(deployment)


def test_deleting_while_the_environment_builds_leaves_nothing(deployment: Deployment) -> None:
    docs = rendered(deployment)
    # A new environment (a pip package nobody else uses) so that deletion lands mid-build.
    configmap(docs)["data"]["myenv.yml"] = "dependencies:\n  - pip:\n      - numpy>=1.26\n      - six\n"
    apply(deployment, docs)
    wait_for("the deployment to start", lambda: (deployment.get().get("status") or {}).get("phase") == "Deploying", 60)
    delete(deployment)
    out = deployment.cp.kubectl("get", "gmd,secret", "-n", deployment.ns, "-o", "json").stdout
    assert json.loads(out)["items"] == []
