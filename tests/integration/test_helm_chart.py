"""The Helm chart (charts/gpu-model-operator) with the real helm (hack/helm) and the real apiserver.

One source of truth with the kustomize manifests: `helm template` with the values of each overlay
(charts/gpu-model-operator/ci/) renders the same objects as `kubectl kustomize` of that overlay, field by
field. The only differences allowed are Helm's conventions, each named below: the labels every chart adds,
Helm's keep annotation, and the release namespace, which a chart never creates. Any other difference fails
and the diff says what to change; so when the manifests change, this test says what the chart must follow.

Then `helm lint`, the values schema, the optional ServiceMonitor, and the chart installed and upgraded with
helm on the real apiserver, where the operator, signed in as the chart's ServiceAccount, takes the example
from apply to Ready to deleted, as tests/integration/test_rbac.py does for the kustomize overlays (its
helpers, used here). Each release has names of its own, so tests and repeated runs never collide.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from gpu_model_operator.cli import main as cli_main
from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.controlplane import ControlPlane, ensure_helm
from tests.integration.test_rbac import (
    OPERATOR_RULES,
    Install,
    converge,
    lease_released,
    lease_rules,
    listed_rules,
    operator_for,
    render,
    someone_elses_secret_is_out_of_reach,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gpu-model-operator"


@dataclass(frozen=True)
class Overlay:
    """A kustomize overlay, named by its folder under manifests/overlays, and the chart's values for it."""

    values: str


OVERLAYS: dict[str, Overlay] = {
    "cluster-wide": Overlay("cluster-wide-values.yaml"),
    "namespaced": Overlay("namespaced-values.yaml"),
}

#: The labels Helm's chart conventions put on every object (the chart's `helmLabels`); kustomize has none.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
#: Helm's annotation that keeps an object on `helm uninstall` (the chart's watched namespaces, the CRD).
HELM_ANNOTATIONS = {"helm.sh/resource-policy"}
#: The release's label, which the chart's selectors carry too (two releases in one namespace never select each
#: other's pods); kustomize installs one operator per namespace and selects without it.
INSTANCE = "app.kubernetes.io/instance"
#: The kustomize base creates the operator's namespace; a chart does not render its release namespace (it is
#: made before the release, by `kubectl create namespace` or `helm install --create-namespace`).
RELEASE_NAMESPACE = ("Namespace", None, "gpu-model-operator")

#: Cluster-scoped kinds that kubectl's built-in kustomize does not know as such: its namespace transformer gives
#: them the base's namespace, which the apiserver ignores for them. The chart renders them without one.
CLUSTER_SCOPED_UNKNOWN_TO_KUSTOMIZE = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

Key = tuple[str, str | None, str]


@dataclass
class Helm:
    """The helm binary with its own home folders (never the user's) and the test cluster's kubeconfig."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def __call__(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **{f"HELM_{d}_HOME": str(self.home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
        cluster = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        cmd = [str(self.binary), *map(str, args), *cluster]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(map(str, args))} failed ({result.returncode}): {result.stderr}")
        return result

    def template(self, *args: str | Path) -> list[dict[str, Any]]:
        """The release's objects, without `helm test`'s hook (test_helm_conventions.py renders that)."""
        out = self("template", "gpu-model-operator", CHART, "-n", "gpu-model-operator", "--skip-tests", *args)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(ensure_helm(), tmp_path_factory.mktemp("helm-home"))


def key(doc: dict[str, Any]) -> Key:
    return doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]


def without_instance(node: Any) -> Any:
    """The document without the release's label, wherever labels are (selectors, pod templates, anti-affinity)."""
    if isinstance(node, dict):
        return {k: without_instance(v) for k, v in node.items() if k != INSTANCE}
    if isinstance(node, list):
        return [without_instance(v) for v in node]
    return node


def without_helm_conventions(doc: dict[str, Any]) -> dict[str, Any]:
    doc = without_instance(json.loads(json.dumps(doc)))
    meta = doc["metadata"]
    for field, conventional in (("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)):
        kept = {k: v for k, v in meta.get(field, {}).items() if k not in conventional}
        meta.pop(field, None)
        if kept:
            meta[field] = kept
    return doc


def drift(kustomize: dict[Key, dict[str, Any]], chart: dict[Key, dict[str, Any]]) -> list[str]:
    """What differs, object by object, as unified diffs of their YAML (kustomize first)."""
    report = [f"only in kustomize: {k}" for k in sorted(kustomize.keys() - chart.keys(), key=str)]
    report += [f"only in the chart: {k}" for k in sorted(chart.keys() - kustomize.keys(), key=str)]
    for k in sorted(kustomize.keys() & chart.keys(), key=str):
        if kustomize[k] != chart[k]:
            a, b = (yaml.safe_dump(d[k], sort_keys=True).splitlines() for d in (kustomize, chart))
            report.append("\n".join(difflib.unified_diff(a, b, f"kustomize {k}", f"chart {k}", lineterm="")))
    return report


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_chart_renders_what_kustomize_renders(control_plane: ControlPlane, helm: Helm, name: str) -> None:
    rendered = render(control_plane, ROOT / "manifests" / "overlays" / name)
    for doc in rendered:
        if doc["kind"] in CLUSTER_SCOPED_UNKNOWN_TO_KUSTOMIZE:
            doc["metadata"].pop("namespace", None)
    kustomize = {key(d): d for d in rendered}
    chart = {key(d): without_helm_conventions(d) for d in helm.template("-f", CHART / "ci" / OVERLAYS[name].values)}
    assert RELEASE_NAMESPACE in kustomize and RELEASE_NAMESPACE not in chart
    del kustomize[RELEASE_NAMESPACE]
    assert (differences := drift(kustomize, chart)) == [], "\n\n".join(differences)


def test_the_ci_values_are_the_overlays_and_the_defaults_are_cluster_wide(helm: Helm) -> None:
    assert {p.name for p in (CHART / "ci").glob("*-values.yaml")} == {o.values for o in OVERLAYS.values()}
    defaults, cluster_wide = helm.template(), helm.template("-f", CHART / "ci" / "cluster-wide-values.yaml")
    assert defaults == cluster_wide


@dataclass(frozen=True)
class Lint:
    #: The values file under the chart's ci/, or none for the defaults.
    values: str | None


LINTS: dict[str, Lint] = {
    "defaults": Lint(None),
    **{o.values: Lint(o.values) for o in OVERLAYS.values()},
}


@pytest.mark.parametrize("name", LINTS)
def test_helm_lint_passes_strict(helm: Helm, name: str) -> None:
    values = LINTS[name].values
    args: list[str | Path] = ["-f", CHART / "ci" / values] if values else []
    result = helm("lint", "--strict", CHART, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@dataclass(frozen=True)
class Refusal:
    """Values set with ``--set``, and what the schema's refusal names (the value's path, or the rule)."""

    values: list[str]
    refusal: str


REFUSALS: dict[str, Refusal] = {
    "an unknown watch scope": Refusal(["watch.scope=everywhere"], "/watch/scope"),
    "namespaced with no namespace": Refusal(["watch.scope=namespaced"], "minItems"),
    "namespaces the cluster scope would ignore": Refusal(["watch.namespaces={a}"], "maxItems"),
    "a namespace that is not a name": Refusal(
        ["watch.scope=namespaced", "watch.namespaces={Not_A_Name}"], "/watch/namespaces/0"
    ),
    "an unknown log level": Refusal(["log.level=debug"], "/log/level"),
    "an extra variable named PATH": Refusal(["extraEnv[0].name=PATH"], "/extraEnv/0/name"),
    "no leader election: two replicas would both reconcile": Refusal(["leaderElection.enabled=false"], "/replicas"),
    "no replicas": Refusal(["replicas=0"], "/replicas"),
    "a lease duration in fractions of a second": Refusal(
        ["leaderElection.leaseDuration=1.5"], "/leaderElection/leaseDuration"
    ),
    "a renew deadline as long as the lease": Refusal(
        ["leaderElection.renewDeadline=15"], "must be shorter than leaderElection.leaseDuration"
    ),
    "a retry period as long as the renew deadline": Refusal(
        ["leaderElection.retryPeriod=10"], "must be shorter than leaderElection.renewDeadline"
    ),
    "a disruption budget that lets nothing go": Refusal(
        ["podDisruptionBudget.maxUnavailable=0"], "/podDisruptionBudget/maxUnavailable"
    ),
    "a scrape interval that is not a duration": Refusal(
        ["metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"
    ),
    "the local backend: never in a cluster (README, Trust)": Refusal(["backends={azureml,local}"], "/backends/1"),
    "no backend": Refusal(["backends={}"], "/backends"),
    "an allow-list key neither a namespace name nor *": Refusal(["workloadIdentity.allowed.Team_A={app}"], "Team_A"),
    "an allow-list entry that is not a client id": Refusal(
        ["workloadIdentity.allowed.team-a={a=b}"], "/workloadIdentity/allowed/team-a/0"
    ),
    "an allow-list that is not a list of client ids": Refusal(
        ["workloadIdentity.allowed.team-a=app"], "/workloadIdentity/allowed/team-a"
    ),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_the_schema_refuses_values_the_chart_cannot_honour(helm: Helm, name: str) -> None:
    case = REFUSALS[name]
    args = [arg for value in case.values for arg in ("--set", value)]
    result = helm("template", "x", CHART, *args, check=False)
    assert result.returncode != 0 and case.refusal in result.stderr, result.stderr


def test_the_schema_offers_the_operators_own_log_choices() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["log"]["properties"]
    choices = {p.name: set(p.type.choices) for p in cli_main.commands["run"].params if isinstance(p.type, click.Choice)}
    assert set(schema["level"]["enum"]) == choices["log_level"]
    assert set(schema["format"]["enum"]) == choices["log_format"]


def test_the_service_monitor_is_off_by_default_and_scrapes_the_metrics_service(helm: Helm) -> None:
    assert "ServiceMonitor" not in {d["kind"] for d in helm.template()}
    enabled = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.a=b"]
    refused = helm("template", "x", CHART, *enabled, check=False)
    assert refused.returncode != 0 and "needs metrics.bindAddress: 0.0.0.0" in refused.stderr, "loopback by default"
    docs = helm.template(*enabled, "--set", "metrics.bindAddress=0.0.0.0")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["metadata"]["labels"]["a"] == "b"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "a resource's namespace label is its own, not exported_namespace"


def _deployment_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_leader_election_values_name_the_lease_and_its_role(helm: Helm) -> None:
    """One lease per release (a shard): named after the release unless leaseName says otherwise, in the release's
    namespace unless leaseNamespace does, and the Role grants that one Lease there."""
    docs = helm.template("--set", "leaderElection.leaseName=shard-a", "--set", "leaderElection.leaseNamespace=ops")
    env = _deployment_env(docs)
    assert (env["GMO_LEASE_NAME"], env["GMO_LEASE_NAMESPACE"], env["GMO_LEADER_ELECT"]) == ("shard-a", "ops", "true")
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "ops" and role["rules"][1]["resourceNames"] == ["shard-a"]
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gpu-model-operator", "namespace": "gpu-model-operator"}
    ]
    other = helm("template", "shard-b", CHART, "-n", "gpu-model-operator").stdout
    assert 'value: "shard-b-gpu-model-operator"' in other, "another release, another lease"


def test_names_yaml_would_read_as_numbers_or_booleans_stay_strings(helm: Helm) -> None:
    """`123`, `on` and `no` are valid namespace names and YAML 1.1 scalars of other types: rendered unquoted, the API
    server would refuse a number or a boolean where a namespace or an env value goes."""
    docs = helm.template(
        "--set", "watch.scope=namespaced", "--set-string", "watch.namespaces={123,on}", "--set-string",
        "leaderElection.leaseNamespace=no", "--set-string", "leaderElection.leaseName=1",
    )  # fmt: skip
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] in ("Role", "RoleBinding")}
    assert namespaces == {"123", "on", "no"}
    env = _deployment_env(docs)
    assert (env["GMO_LEASE_NAME"], env["GMO_LEASE_NAMESPACE"]) == ("1", "no")


def test_without_leader_election_one_replica_is_replaced_never_doubled(helm: Helm) -> None:
    docs = helm.template("--set", "leaderElection.enabled=false", "--set", "replicas=1")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = _deployment_env(docs)
    assert env["GMO_LEADER_ELECT"] == "false" and "GMO_LEASE_NAME" not in env
    assert "Role" not in {d["kind"] for d in docs}


def test_a_cluster_serves_the_two_azure_ml_backends_v2_first(helm: Helm) -> None:
    assert _deployment_env(helm.template())["GMO_BACKENDS"] == "azureml-v2 azureml"
    assert _deployment_env(helm.template("--set", "backends={azureml}"))["GMO_BACKENDS"] == "azureml"


def test_workload_identity_labels_the_pods_and_names_the_application(helm: Helm) -> None:
    """What the kustomize component components/workload-identity does, as values: the webhook's pod label, and
    the application's client id on the ServiceAccount. Off by default: neither is rendered."""

    def pod_labels_and_sa(docs: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        account = next(d for d in docs if d["kind"] == "ServiceAccount")
        return deployment["spec"]["template"]["metadata"]["labels"], account["metadata"].get("annotations", {})

    labels, annotations = pod_labels_and_sa(helm.template())
    assert "azure.workload.identity/use" not in labels and annotations == {}
    app = "00000000-0000-0000-0000-0000000000aa"
    labels, annotations = pod_labels_and_sa(
        helm.template("--set", "workloadIdentity.enabled=true", "--set", f"workloadIdentity.clientId={app}")
    )
    assert labels["azure.workload.identity/use"] == "true"
    assert annotations == {"azure.workload.identity/client-id": app}


def test_workload_identity_allowed_renders_the_operators_allow_list(helm: Helm) -> None:
    """workloadIdentity.allowed (namespace -> client ids) is GMO_WORKLOAD_IDENTITIES, NAMESPACE=CLIENT_ID pairs as
    --workload-identity reads them; none allowed by default, and then the variable is not rendered."""
    assert "GMO_WORKLOAD_IDENTITIES" not in _deployment_env(helm.template())
    docs = helm.template(
        "--set", "workloadIdentity.allowed.team-a={app-a1,app-a2}", "--set", "workloadIdentity.allowed.\\*={app-any}"
    )  # fmt: skip
    value = _deployment_env(docs)["GMO_WORKLOAD_IDENTITIES"]
    assert value == "*=app-any team-a=app-a1 team-a=app-a2"
    run = cli_main.commands["run"]
    ctx = run.make_context("run", [arg for pair in value.split() for arg in ("--workload-identity", pair)])
    assert ctx.params["workload_identities"] == (("*", "app-any"), ("team-a", "app-a1"), ("team-a", "app-a2"))


def test_the_workload_identity_component_patches_what_the_chart_values_render(
    control_plane: ControlPlane, helm: Helm, tmp_path: Path
) -> None:
    """The kustomize component and the chart's values stay one feature: an overlay with the component renders
    the same Deployment and ServiceAccount as the chart with workloadIdentity on."""
    app = "00000000-0000-0000-0000-0000000000aa"
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "manifests/overlays/cluster-wide", overlay)],
                "components": [os.path.relpath(ROOT / "manifests/components/workload-identity", overlay)],
                "patches": [
                    {
                        "target": {"kind": "ServiceAccount", "name": "gpu-model-operator"},
                        "patch": yaml.safe_dump(
                            [
                                {
                                    "op": "replace",
                                    "path": "/metadata/annotations/azure.workload.identity~1client-id",
                                    "value": app,
                                }
                            ]
                        ),
                    }
                ],
            }
        )
    )
    rendered = render(control_plane, overlay)
    kustomize = {key(d): d for d in rendered if d["kind"] in {"Deployment", "ServiceAccount"}}
    chart = {
        key(d): without_helm_conventions(d)
        for d in helm.template(
            "-f",
            CHART / "ci" / "cluster-wide-values.yaml",
            "--set",
            "workloadIdentity.enabled=true",
            "--set",
            f"workloadIdentity.clientId={app}",
        )
        if d["kind"] in {"Deployment", "ServiceAccount"}
    }
    assert (differences := drift(kustomize, chart)) == [], "\n\n".join(differences)


def test_affinity_replaces_the_default_anti_affinity(helm: Helm) -> None:
    default = next(d for d in helm.template() if d["kind"] == "Deployment")["spec"]["template"]["spec"]["affinity"]
    assert (
        default["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"][
            "topologyKey"
        ]
        == "kubernetes.io/hostname"
    )
    docs = helm.template("--set", "affinity.nodeAffinity.foo=bar", "--set", "podDisruptionBudget.enabled=false")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"foo": "bar"}}
    assert "PodDisruptionBudget" not in {d["kind"] for d in docs}


# ---- installed with helm, and the operator under the chart's ServiceAccount --------------------------------


@dataclass
class Release:
    name: str
    install: Install


@pytest.fixture(scope="module")
def cluster_helm(control_plane: ControlPlane, helm: Helm) -> Helm:
    return Helm(helm.binary, helm.home, control_plane.kubeconfig)


def helm_install(cp: ControlPlane, helm: Helm, scope: str) -> Release:
    """The README's steps: the namespace made and labelled first, then `helm install` into it. The user roles
    are left out: they are cluster-wide names, and test_rbac.py applies the kustomize ones."""
    tag = uuid.uuid4().hex[:8]
    # A release name that holds the chart's name is the objects' name, the ServiceAccount's included.
    name, namespace = f"gmo-{tag}-gpu-model-operator", f"gmo-{tag}-operator"
    cp.kubectl("create", "namespace", namespace)
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    watched = f"gmo-{tag}-watched" if scope == "namespaced" else None
    values: list[str | Path] = [
        "-f",
        CHART / "ci" / ("namespaced-values.yaml" if watched else "cluster-wide-values.yaml"),
    ]
    if watched:
        values += ["--set", f"watch.namespaces={{{watched}}}"]
    # Not the cluster-wide objects with fixed names (the user roles; the policy that refuses backend: local binds
    # to everyone, and the other tests' operators serve the local backend on this shared control plane).
    fixed = ["--set", "userRoles.create=false", "--set", "admissionPolicies.noLocalBackend=false"]
    fixed += ["--set", "crds.install=false"]  # the control plane's CRD is the tests' (conftest), not a release's
    helm("install", name, CHART, "-n", namespace, *fixed, *values)
    return Release(name, Install(f"helm-{scope}", namespace, watched, manifest(helm, name, namespace), name))


def manifest(helm: Helm, name: str, namespace: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm("get", "manifest", name, "-n", namespace).stdout) if d]


@pytest.fixture(scope="module")
def releases(control_plane: ControlPlane, cluster_helm: Helm) -> Iterator[dict[str, Release]]:
    made = {scope: helm_install(control_plane, cluster_helm, scope) for scope in ("namespaced", "cluster")}
    yield made
    for release in made.values():
        cluster_helm("uninstall", release.name, "-n", release.install.operator_ns, check=False)


def test_helm_upgrade_changes_the_live_deployment(
    control_plane: ControlPlane, cluster_helm: Helm, releases: dict[str, Release]
) -> None:
    release = releases["namespaced"]
    ns = release.install.operator_ns
    cluster_helm("upgrade", release.name, CHART, "-n", ns, "--reuse-values", "--set", "log.level=DEBUG")
    history = json.loads(cluster_helm("history", release.name, "-n", ns, "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    deployment = json.loads(control_plane.kubectl("get", "deployment", release.name, "-n", ns, "-o", "json").stdout)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["GMO_LOG_LEVEL"], env["GMO_NAMESPACES"]) == ("DEBUG", release.install.watched_ns)
    release.install.docs = manifest(cluster_helm, release.name, ns)  # the operator below runs as upgraded


def test_each_release_grants_exactly_the_operators_rules(
    control_plane: ControlPlane, releases: dict[str, Release], namespace: str
) -> None:
    namespaced, cluster = releases["namespaced"].install, releases["cluster"].install
    assert namespaced.watched_ns is not None
    assert listed_rules(control_plane, namespaced.user, namespaced.watched_ns) == OPERATOR_RULES
    assert listed_rules(control_plane, namespaced.user, namespace) == {}
    assert listed_rules(control_plane, cluster.user, namespace) == OPERATOR_RULES
    # Each release's own Lease, named after it, in its own namespace.
    assert listed_rules(control_plane, namespaced.user, namespaced.operator_ns) == lease_rules(namespaced.lease)
    assert namespaced.lease == releases["namespaced"].name != cluster.lease


def test_the_operator_converges_under_the_charts_service_accounts(
    control_plane: ControlPlane, releases: dict[str, Release], namespace: str, tmp_path: Path, emu: Emulator
) -> None:
    namespaced, cluster = releases["namespaced"].install, releases["cluster"].install
    with operator_for(control_plane, namespaced, tmp_path, emu) as namespaced_op:
        with operator_for(control_plane, cluster, tmp_path, emu) as cluster_op:
            converge(control_plane, namespace, cluster_op, timeout=90)
        assert namespaced.watched_ns is not None
        converge(control_plane, namespaced.watched_ns, namespaced_op, timeout=90)
    assert lease_released(control_plane, namespaced) and lease_released(control_plane, cluster)
    someone_elses_secret_is_out_of_reach(control_plane, cluster, namespace, tmp_path)


def test_helm_uninstall_keeps_the_watched_namespace(
    control_plane: ControlPlane, cluster_helm: Helm, releases: dict[str, Release]
) -> None:
    release = releases["namespaced"]
    cluster_helm("uninstall", release.name, "-n", release.install.operator_ns)
    assert release.install.watched_ns is not None
    watched = json.loads(control_plane.kubectl("get", "namespace", release.install.watched_ns, "-o", "json").stdout)
    assert "deletionTimestamp" not in watched["metadata"]
    for kind in ("deployment", "serviceaccount", "service"):
        gone = control_plane.kubectl("get", kind, "-n", release.install.operator_ns, "-o", "name").stdout
        assert gone.strip() == "", gone
    rules = control_plane.kubectl("get", "role,rolebinding", "-n", release.install.watched_ns, "-o", "name").stdout
    assert rules.strip() == ""
