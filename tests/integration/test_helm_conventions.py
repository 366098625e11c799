"""The chart's conventions, as a platform team checks them beside cert-manager's, KEDA's and Azure Service Operator's
charts (the real helm of hack/helm): the release in every selector, the CRD upgraded with the chart and kept on
uninstall, kubeVersion, the values every cluster asks for, `global` for a parent chart, the PrometheusRule, the
`helm test` hook, and the values README. Then the upgrade from the previous chart version, 0.1.0 (its package, made
from the repository as it was, is tests/integration/fixtures/), on a control plane of its own, by the README's
steps: the resources and the CRD stay, and the CRD is the new one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.controlplane import ControlPlane, ensure_helm
from tests.integration.test_crd import base
from tests.integration.test_helm_chart import CHART, INSTANCE, ROOT, Helm

PREVIOUS = Path(__file__).with_name("fixtures") / "gpu-model-operator-0.1.0.tgz"
RULES = CHART / "alerts" / "gpu-model-operator.rules.yaml"
CRD = "gpumodeldeployments.gpumodel.io"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(ensure_helm(), tmp_path_factory.mktemp("helm-home"))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def selectors(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Every label selector in an object: a Deployment's, its pods' labels, a Service's, a PDB's, the
    anti-affinity's."""
    spec = doc["spec"]
    if doc["kind"] == "Deployment":
        affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        return [spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]] + [
            term["podAffinityTerm"]["labelSelector"]["matchLabels"] for term in affinity
        ]
    if doc["kind"] == "Service":
        return [spec["selector"]]
    return [spec["selector"]["matchLabels"]]


def test_two_releases_in_one_namespace_select_only_their_own_pods(helm: Helm) -> None:
    first = helm("template", "first", CHART, "-n", "shared", "--skip-tests").stdout
    second = helm("template", "second", CHART, "-n", "shared", "--skip-tests").stdout
    for release, text in (("first", first), ("second", second)):
        docs = [d for d in yaml.safe_load_all(text) if d]
        for doc in of_kind(docs, "Deployment") + of_kind(docs, "Service") + of_kind(docs, "PodDisruptionBudget"):
            for selector in selectors(doc):
                assert selector[INSTANCE] == release, (doc["kind"], selector)


def test_the_crd_is_a_template_kept_on_uninstall_and_can_be_left_to_another_release(helm: Helm) -> None:
    (crd,) = of_kind(helm.template(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["spec"] == yaml.safe_load((ROOT / "crds" / "gpumodel.io_gpumodeldeployments.yaml").read_text())["spec"]
    assert not (CHART / "crds").exists(), "crds/ is never upgraded by Helm"
    (unkept,) = of_kind(helm.template("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    assert of_kind(helm.template("--set", "crds.install=false"), "CustomResourceDefinition") == []


def test_kube_version_is_the_admission_policies_own(helm: Helm) -> None:
    old = helm("template", "x", CHART, "--kube-version", "1.29.9", check=False)
    assert old.returncode != 0 and "kubeVersion" in old.stderr
    assert helm("template", "x", CHART, "--kube-version", "1.30.0").returncode == 0


def test_the_values_every_cluster_asks_for_reach_the_pod(helm: Helm) -> None:
    digest = "sha256:" + "ab" * 32
    values: dict[str, Any] = {
        "podLabels": {"team": "ml-platform"},
        "podAnnotations": {"example.com/owner": "ml-platform"},
        "priorityClassName": "platform-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "extraVolumes": [{"name": "corporate-ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "image": {"repository": "registry.example/gmo", "digest": digest},
        "global": {"imageRegistry": "ignored"},  # a parent chart's globals are allowed, and read by no one here
    }
    path = Path(helm.home) / "common-values.yaml"
    path.write_text(yaml.safe_dump(values))
    (deployment,) = of_kind(helm.template("-f", path), "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "ml-platform"
    assert pod["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    spec = pod["spec"]
    assert spec["priorityClassName"] == "platform-critical"
    assert (spec["nodeSelector"], spec["tolerations"]) == (values["nodeSelector"], values["tolerations"])
    (spread,) = spec["topologySpreadConstraints"]
    assert spread == {
        **values["topologySpreadConstraints"][0],
        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }
    assert values["extraVolumes"][0] in spec["volumes"]
    assert values["extraVolumeMounts"][0] in spec["containers"][0]["volumeMounts"]
    assert spec["containers"][0]["image"] == f"registry.example/gmo@{digest}"


def test_the_schema_allows_global_and_still_refuses_a_typo(helm: Helm) -> None:
    assert helm("template", "x", CHART, "--set", "global.anything=1").returncode == 0
    typo = helm("template", "x", CHART, "--set", "podLabel.team=x", check=False)
    assert typo.returncode != 0 and "podLabel" in typo.stderr


def test_the_prometheus_rule_carries_the_rules_file(helm: Helm) -> None:
    assert of_kind(helm.template(), "PrometheusRule") == []
    (rule,) = of_kind(
        helm.template("--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.prometheusRule.labels.r=p"),
        "PrometheusRule",
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["r"] == "p"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_helm_test_hook_reads_the_releases_lease_and_nothing_else(helm: Helm) -> None:
    text = helm("template", "shard-a", CHART, "-n", "ops", "--set", "leaderElection.leaseName=shard-a-lease").stdout
    hooks = [d for d in yaml.safe_load_all(text) if d and d["metadata"].get("annotations", {}).get("helm.sh/hook")]
    assert {(d["kind"], d["metadata"]["annotations"]["helm.sh/hook"]) for d in hooks} == {
        ("ServiceAccount", "test"),
        ("Role", "test"),
        ("RoleBinding", "test"),
        ("Pod", "test"),
    }
    (role,) = of_kind(hooks, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["shard-a-lease"],
            "verbs": ["get"],
        }
    ]
    (pod,) = of_kind(hooks, "Pod")
    assert "/namespaces/ops/leases/shard-a-lease" in pod["spec"]["containers"][0]["args"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    without = helm("template", "x", CHART, "--set", "leaderElection.enabled=false", "--set", "replicas=1").stdout
    assert "helm.sh/hook: test" not in without, "without leader election there is no Lease to check"


def test_the_values_readme_is_generated_from_the_schema() -> None:
    check = [sys.executable, str(ROOT / "hack" / "chart_values_readme.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = (CHART / "README.md").read_text()
    for key in ("crds.keep", "metrics.bindAddress", "topologySpreadConstraints", "image.digest", "global"):
        assert f"| `{key}` |" in text


# ---- the upgrade from 0.1.0 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory, helm: Helm) -> Iterator[tuple[ControlPlane, Helm]]:
    """A control plane of its own: the release owns the CRD there, as on a real cluster."""
    with ControlPlane(tmp_path_factory.mktemp("upgrade-controlplane")) as cp:
        yield cp, Helm(helm.binary, helm.home, cp.kubeconfig)


def test_an_upgrade_from_0_1_0_by_the_readmes_steps_keeps_the_resources_and_upgrades_the_crd(
    fresh_cluster: tuple[ControlPlane, Helm],
) -> None:
    cp, helm = fresh_cluster
    release, ns, users = "gpu-model-operator", "gpu-model-operator", f"team-{uuid.uuid4().hex[:6]}"
    for namespace in (ns, users):
        cp.kubectl("create", "namespace", namespace)
    helm("install", release, PREVIOUS, "-n", ns)
    columns = json.loads(cp.kubectl("get", "crd", CRD, "-o", "json").stdout)["spec"]["versions"][0]
    assert "Reason" not in {c["name"] for c in columns["additionalPrinterColumns"]}, "0.1.0's CRD"
    resource = base()
    resource["metadata"]["namespace"] = users
    cp.kubectl("apply", "-f", "-", input=json.dumps(resource))
    status = {"status": {"phase": "Ready", "observedGeneration": 1, "scoringUri": "https://x/score"}}
    cp.kubectl("patch", "gmd", "digits", "-n", users, "--subresource=status", "--type=merge", "-p", json.dumps(status))
    before = json.loads(cp.kubectl("get", "gmd", "digits", "-n", users, "-o", "json").stdout)

    # Without the README's steps Helm refuses, and says why: the selector cannot change, the CRD is not the release's.
    refused = helm("upgrade", release, CHART, "-n", ns, check=False)
    assert refused.returncode != 0 and "CustomResourceDefinition" in refused.stderr, refused.stderr
    # The README's steps.
    cp.kubectl("delete", "deployment", release, "-n", ns)
    helm("upgrade", release, CHART, "-n", ns, "--take-ownership")

    history = json.loads(helm("history", release, "-n", ns, "-o", "json").stdout)
    assert [(h["chart"], h["status"]) for h in history][-1] == ("gpu-model-operator-0.2.0", "deployed")
    deployment = json.loads(cp.kubectl("get", "deployment", release, "-n", ns, "-o", "json").stdout)
    assert deployment["spec"]["selector"]["matchLabels"][INSTANCE] == release
    crd = json.loads(cp.kubectl("get", "crd", CRD, "-o", "json").stdout)
    assert "Reason" in {c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}, "upgraded"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    after = json.loads(cp.kubectl("get", "gmd", "digits", "-n", users, "-o", "json").stdout)
    assert (after["metadata"]["uid"], after["spec"], after["status"]) == (
        before["metadata"]["uid"],
        before["spec"],
        before["status"],
    )

    # The next version's upgrade needs no step, and `helm uninstall` keeps the CRD and so the resources.
    helm("upgrade", release, CHART, "-n", ns, "--set", "log.level=DEBUG")
    helm("uninstall", release, "-n", ns)
    assert (
        cp.kubectl("get", "crd", CRD, "-o", "name").stdout.strip()
        == f"customresourcedefinition.apiextensions.k8s.io/{CRD}"
    )
    kept = json.loads(cp.kubectl("get", "gmd", "digits", "-n", users, "-o", "json").stdout)
    assert kept["metadata"]["uid"] == before["metadata"]["uid"]
