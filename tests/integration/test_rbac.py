"""The install manifests on the real apiserver: every kustomization renders, each overlay's RBAC grants the
operator exactly what it uses (``kubectl auth can-i`` for what it may and must not do), its own Lease and no
other in its own namespace (leader election), the user roles do what they say, the operator's pod meets the
restricted Pod Security Standard, and finally the operator itself, signed in with its ServiceAccount's token
and configured by the Deployment's own environment (leader election on: it takes its Lease, and releases it
when stopped), takes the azureml example (against the Azure ML emulator) from apply to Ready to deleted with
nothing more than those permissions, while the shipped admission policy keeps it from changing any Secret it
did not publish.

Each overlay is installed under names of its own (namespaces, and the cluster-scoped role and binding), so
the two overlays and repeated runs never share a ServiceAccount or a grant; nothing else is changed.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    RESOURCE_GROUP,
    SECRET,
    SUBSCRIPTION,
    TENANT,
    WORKSPACE,
)
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OPERATOR_NS, WATCHED_NS, SA = "gpu-model-operator", "gpu-models", "gpu-model-operator"
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}

#: What `kubectl auth can-i --list` must show for the operator where it works, and nothing else (besides the
#: self-reviews every authenticated user has).
OPERATOR_RULES = {
    "gpumodeldeployments.gpumodel.io": {"get", "list", "watch", "patch"},
    "gpumodeldeployments.gpumodel.io/status": {"patch"},
    "gpumodeldeployments.gpumodel.io/finalizers": {"update"},
    "events": {"create"},
    "configmaps": {"get"},
    "secrets": {"get", "create", "patch", "delete"},
}
SELF_REVIEWS = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}
GMD = "gpumodeldeployments.gpumodel.io"
LEASES = "leases.coordination.k8s.io"


def lease_rules(lease: str) -> dict[str, set[str]]:
    """What the operator may do in its own namespace, for leader election: create a Lease (RBAC cannot narrow
    create to a name), and get and update its own Lease only."""
    return {LEASES: {"create"}, f"{LEASES}[{lease}]": {"get", "update"}}


def lease_may(lease: str) -> list[tuple[str, str, str]]:
    return [("create", LEASES, ""), ("get", f"{LEASES}/{lease}", ""), ("update", f"{LEASES}/{lease}", "")]


def lease_must_not(lease: str) -> list[tuple[str, str, str]]:
    """Another's Lease (kube-controller-manager's, another shard's) and what election never needs."""
    verbs = [("get", f"{LEASES}/kube-controller-manager", ""), ("update", f"{LEASES}/another-shard", "")]
    return (
        verbs
        + [(verb, LEASES, "") for verb in ("list", "watch", "patch", "delete", "deletecollection")]
        + [
            ("patch", f"{LEASES}/{lease}", ""),
            ("delete", f"{LEASES}/{lease}", ""),
        ]
    )


#: Allowed where the operator works: (verb, resource, subresource).
MAY = [
    ("get", GMD, ""),
    ("list", GMD, ""),
    ("watch", GMD, ""),
    ("patch", GMD, ""),
    ("patch", GMD, "status"),
    ("update", GMD, "finalizers"),
    ("create", "events", ""),
    ("get", "configmaps", ""),
    ("get", "secrets", ""),
    ("create", "secrets", ""),
    ("patch", "secrets", ""),
    ("delete", "secrets", ""),
]
#: Denied where the operator works.
MUST_NOT = [
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("update", "secrets", ""),
    ("deletecollection", "secrets", ""),
    ("list", "configmaps", ""),
    ("patch", "configmaps", ""),
    ("create", GMD, ""),
    ("update", GMD, ""),
    ("delete", GMD, ""),
    ("update", GMD, "status"),
    ("patch", "events", ""),
    ("delete", "events", ""),
    ("create", "pods", ""),
    ("create", "pods", "exec"),
    ("create", "deployments.apps", ""),
    ("create", "services", ""),
    ("create", "serviceaccounts", "token"),
    ("create", "roles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
    ("bind", "roles.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""),
]
#: Denied at cluster scope, for either overlay.
MUST_NOT_CLUSTER = [
    ("list", "namespaces", ""),
    ("create", "namespaces", ""),
    ("get", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""),
    ("impersonate", "groups", ""),
    ("get", "nodes", ""),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", ""),
    ("create", "certificatesigningrequests.certificates.k8s.io", ""),
]
#: Denied across all namespaces (`-A`), for either overlay: it never lists Secrets or ConfigMaps.
MUST_NOT_ALL_NAMESPACES = [("list", "secrets", ""), ("watch", "secrets", ""), ("list", "configmaps", "")]


#: kopf's observers ask for these at start-up; without the permission (on purpose) it logs the refusals,
#: falls back to the namespaces it was given and the resources API discovery found, and carries on.
#: Any other refusal in the operator's log is a missing permission.
def render(cp: ControlPlane, path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(cp.kubectl("kustomize", str(path)).stdout) if doc]


@dataclass
class Install:
    """One overlay's RBAC (and the Namespaces and ServiceAccount it binds) applied under unique names; or
    a Helm release of the chart (tests/integration/test_helm_chart.py), whose ServiceAccount is named after it."""

    overlay: str
    operator_ns: str
    watched_ns: str | None  # None: cluster-wide
    docs: list[dict[str, Any]] = field(default_factory=list)
    service_account: str = SA

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.operator_ns}:{self.service_account}"

    @property
    def deployment(self) -> dict[str, Any]:
        return next(doc for doc in self.docs if doc["kind"] == "Deployment")

    def operator_env(self) -> dict[str, str]:
        """The Deployment's GMO_* settings and what its downward API gives the pod (POD_NAME, POD_NAMESPACE): the
        test's operator is configured exactly as the pod would be."""
        container = self.deployment["spec"]["template"]["spec"]["containers"][0]
        pod = {"metadata.name": f"{self.deployment['metadata']['name']}-pod", "metadata.namespace": self.operator_ns}
        env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("GMO_")}
        for e in container["env"]:
            if e["name"].startswith("POD_"):
                env[e["name"]] = pod[e["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    @property
    def lease(self) -> str:
        return self.operator_env()["GMO_LEASE_NAME"]


def install(cp: ControlPlane, overlay: str) -> Install:
    tag = uuid.uuid4().hex[:8]
    operator_ns = f"gmo-{tag}"
    watched_ns = f"gmo-{tag}-watched" if overlay == "namespaced" else None
    rename = {OPERATOR_NS: operator_ns, WATCHED_NS: watched_ns or WATCHED_NS}
    docs = render(cp, MANIFESTS / "overlays" / overlay)
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = rename[meta["name"]]
        if "namespace" in meta:
            meta["namespace"] = rename[meta["namespace"]]
        for subject in doc.get("subjects", []):
            subject["namespace"] = rename[subject["namespace"]]
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding") and meta["name"] == SA:
            meta["name"] = f"{SA}-{tag}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"{SA}-{tag}"
        if doc["kind"] == "Deployment":
            for env in doc["spec"]["template"]["spec"]["containers"][0]["env"]:
                if env["name"] == "GMO_NAMESPACES":
                    env["value"] = " ".join(rename.get(ns, ns) for ns in env["value"].split())
    rbac = [doc for doc in docs if doc["kind"] in RBAC_KINDS]
    # The policy that confines the operator to its own Secrets (it binds to ServiceAccounts of the operator's
    # name only). The no-local-backend policy binds to everyone and is tested on a control plane of its own.
    secrets_policy = [
        doc
        for doc in docs
        if doc["kind"].startswith("ValidatingAdmissionPolicy") and "secrets" in doc["metadata"]["name"]
    ]
    assert len(secrets_policy) == 2, "the base ships the policy and its binding"
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac + secrets_policy))
    return Install(overlay, operator_ns, watched_ns, docs)


def can_i(cp: ControlPlane, user: str, verb: str, resource: str, subresource: str, where: list[str]) -> bool:
    args = ["auth", "can-i", verb, resource, *where, f"--as={user}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = cp.kubectl(*args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {result.stderr}"
    return answer == "yes"


def answers(
    cp: ControlPlane, user: str, checks: list[tuple[str, str, str]], where: list[str]
) -> dict[tuple[str, str, str], bool]:
    def ask(check: tuple[str, str, str]) -> bool:
        return can_i(cp, user, *check, where)

    with ThreadPoolExecutor(8) as pool:
        results = pool.map(ask, checks)
        return dict(zip(checks, results, strict=True))


def listed_rules(cp: ControlPlane, user: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list`: resource -> verbs (``resource[name]`` where a rule names its objects),
    without the non-resource URLs and self-reviews."""
    out = cp.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={user}").stdout
    rules: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$", line)
        if match and match[1] not in SELF_REVIEWS:
            resource = f"{match[1]}[{match[3]}]" if match[3] else match[1]
            rules.setdefault(resource, set()).update(match[4].split())
    return rules


@pytest.fixture(scope="module")
def cluster_wide(control_plane: ControlPlane) -> Install:
    return install(control_plane, "cluster-wide")


@pytest.fixture(scope="module")
def namespaced(control_plane: ControlPlane) -> Install:
    return install(control_plane, "namespaced")


INSTALL_KINDS = frozenset({"Namespace", "CustomResourceDefinition", "ServiceAccount", "Deployment", "Service"})
EXAMPLE_KINDS = frozenset({"ConfigMap", "GpuModelDeployment"})


@dataclass(frozen=True)
class Kustomization:
    """A kustomization under manifests/, named by its folder, and kinds it must render (others may come beside
    them: this test is not where each new manifest is listed)."""

    kinds: frozenset[str]


KUSTOMIZATIONS: dict[str, Kustomization] = {
    "base": Kustomization(INSTALL_KINDS),
    "overlays/cluster-wide": Kustomization(INSTALL_KINDS | {"ClusterRoleBinding"}),
    "overlays/namespaced": Kustomization(INSTALL_KINDS | {"Role", "RoleBinding"}),
    "examples/local": Kustomization(EXAMPLE_KINDS),
    "examples/azureml": Kustomization(EXAMPLE_KINDS),
}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_kustomization_renders(control_plane: ControlPlane, name: str) -> None:
    kinds = {doc["kind"] for doc in render(control_plane, MANIFESTS / name)}
    assert kinds & KUSTOMIZATIONS[name].kinds == KUSTOMIZATIONS[name].kinds, kinds


def test_overlays_differ_only_in_rbac_and_namespaces(control_plane: ControlPlane) -> None:
    docs = {o: render(control_plane, MANIFESTS / "overlays" / o) for o in ("cluster-wide", "namespaced")}
    role = next(d for d in docs["namespaced"] if d["kind"] == "Role" and d["metadata"]["name"] == SA)
    cluster_role = next(d for d in docs["cluster-wide"] if d["kind"] == "ClusterRole" and d["metadata"]["name"] == SA)
    assert role["rules"] == cluster_role["rules"], "the two overlays must grant the same rules"
    assert role["metadata"]["namespace"] == WATCHED_NS
    env = {}
    for overlay, rendered in docs.items():
        deployment = next(d for d in rendered if d["kind"] == "Deployment")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        env[overlay] = {e["name"]: e.get("value", e.get("valueFrom")) for e in containers[0]["env"]}
    assert env["cluster-wide"].pop("GMO_ALL_NAMESPACES") == "true"
    assert env["namespaced"].pop("GMO_NAMESPACES") == WATCHED_NS
    assert env["cluster-wide"] == env["namespaced"]


def test_namespaced_overlay_grants_exactly_its_rules_in_the_watched_namespace_only(
    control_plane: ControlPlane, namespaced: Install, namespace: str
) -> None:
    cp, user = control_plane, namespaced.user
    assert namespaced.watched_ns is not None
    assert listed_rules(cp, user, namespaced.watched_ns) == OPERATOR_RULES
    assert answers(cp, user, MAY, ["-n", namespaced.watched_ns]) == dict.fromkeys(MAY, True)
    assert answers(cp, user, MUST_NOT, ["-n", namespaced.watched_ns]) == dict.fromkeys(MUST_NOT, False)
    # Nothing at all elsewhere: another namespace, the system's; its own namespace, only its Lease.
    for other in (namespace, namespaced.operator_ns, "kube-system", "default"):
        assert listed_rules(cp, user, other) == ({} if other != namespaced.operator_ns else lease_rules(SA)), other
        assert answers(cp, user, MAY, ["-n", other]) == dict.fromkeys(MAY, False), other
    leases_may_not_elsewhere = lease_may(SA)
    for other in (namespaced.watched_ns, namespace, "kube-system"):
        assert answers(cp, user, leases_may_not_elsewhere, ["-n", other]) == dict.fromkeys(lease_may(SA), False)
    everywhere = [*MUST_NOT_ALL_NAMESPACES, ("list", GMD, ""), ("watch", GMD, ""), ("get", "secrets", "")]
    assert answers(cp, user, everywhere, ["-A"]) == dict.fromkeys(everywhere, False)
    assert answers(cp, user, MUST_NOT_CLUSTER, []) == dict.fromkeys(MUST_NOT_CLUSTER, False)


def test_cluster_wide_overlay_grants_exactly_its_rules_in_every_namespace(
    control_plane: ControlPlane, cluster_wide: Install, namespace: str
) -> None:
    cp, user = control_plane, cluster_wide.user
    for where in (namespace, "default"):
        assert listed_rules(cp, user, where) == OPERATOR_RULES, where
        assert answers(cp, user, MAY, ["-n", where]) == dict.fromkeys(MAY, True), where
        assert answers(cp, user, MUST_NOT, ["-n", where]) == dict.fromkeys(MUST_NOT, False), where
    assert listed_rules(cp, user, cluster_wide.operator_ns) == OPERATOR_RULES | lease_rules(SA)
    watch_all = [("list", GMD, ""), ("watch", GMD, "")]
    assert answers(cp, user, watch_all, ["-A"]) == dict.fromkeys(watch_all, True)
    assert answers(cp, user, lease_may(SA), ["-n", namespace]) == dict.fromkeys(lease_may(SA), False)
    assert answers(cp, user, MUST_NOT_ALL_NAMESPACES, ["-A"]) == dict.fromkeys(MUST_NOT_ALL_NAMESPACES, False)
    assert answers(cp, user, MUST_NOT_CLUSTER, []) == dict.fromkeys(MUST_NOT_CLUSTER, False)


@dataclass(frozen=True)
class Overlay:
    #: The module fixture that installs it.
    fixture: str


OVERLAYS: dict[str, Overlay] = {"namespaced": Overlay("namespaced"), "cluster_wide": Overlay("cluster_wide")}


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_overlay_grants_its_own_lease_and_no_other(
    control_plane: ControlPlane, name: str, request: pytest.FixtureRequest
) -> None:
    inst: Install = request.getfixturevalue(OVERLAYS[name].fixture)
    where = ["-n", inst.operator_ns]
    assert inst.lease == SA and inst.operator_env()["GMO_LEADER_ELECT"] == "true"
    assert answers(control_plane, inst.user, lease_may(SA), where) == dict.fromkeys(lease_may(SA), True)
    must_not = lease_must_not(SA)
    assert answers(control_plane, inst.user, must_not, where) == dict.fromkeys(must_not, False)
    assert answers(control_plane, inst.user, [("create", LEASES, "")], ["-A"]) == {("create", LEASES, ""): False}


def test_user_roles_edit_and_view_gpumodeldeployments_but_never_their_status(
    control_plane: ControlPlane, namespace: str
) -> None:
    docs = render(control_plane, MANIFESTS / "base")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    assert roles["gpumodeldeployment-editor"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"]
    assert roles["gpumodeldeployment-viewer"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"]
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(roles.values()))
    for role, user in (("gpumodeldeployment-editor", "alice"), ("gpumodeldeployment-viewer", "bob")):
        control_plane.kubectl("create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}", "-n", namespace)
    where = ["-n", namespace]
    read = [("get", GMD, ""), ("list", GMD, ""), ("watch", GMD, ""), ("get", GMD, "status"), ("get", GMD, "scale")]
    write = [("create", GMD, ""), ("update", GMD, ""), ("patch", GMD, ""), ("delete", GMD, "")]
    write += [("patch", GMD, "scale"), ("update", GMD, "scale")]  # kubectl scale
    never = [("patch", GMD, "status"), ("update", GMD, "status"), ("get", "secrets", ""), ("create", "pods", "")]
    assert answers(control_plane, "alice", read + write, where) == dict.fromkeys(read + write, True)
    assert answers(control_plane, "bob", read, where) == dict.fromkeys(read, True)
    assert answers(control_plane, "bob", write, where) == dict.fromkeys(write, False)
    for user in ("alice", "bob"):
        assert answers(control_plane, user, never, where) == dict.fromkeys(never, False)


def test_the_operator_pod_meets_the_restricted_pod_security_standard(
    control_plane: ControlPlane, namespaced: Install
) -> None:
    """The operator's namespace enforces `restricted`; the apiserver admits the Deployment's pod there."""
    ns = next(
        d for d in namespaced.docs if d["kind"] == "Namespace" and d["metadata"]["name"] == namespaced.operator_ns
    )
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": namespaced.operator_ns},
        "spec": namespaced.deployment["spec"]["template"]["spec"],
    }
    control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    privileged = json.loads(json.dumps(pod))
    privileged["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(privileged), check=False)
    assert result.returncode != 0 and "PodSecurity" in result.stderr, "the namespace must enforce it"


# ---- the operator itself, with nothing but its ServiceAccount's token ------------------------------------


def service_account_kubeconfig(cp: ControlPlane, inst: Install, path: Path) -> Path:
    token = cp.kubectl("create", "token", inst.service_account, "-n", inst.operator_ns, "--duration=1h").stdout.strip()
    cluster = {"server": cp.server, "certificate-authority": str(cp.dir / "pki" / "ca.crt")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextmanager
def operator_for(cp: ControlPlane, inst: Install, tmp_path: Path, emu: Emulator) -> Iterator[OperatorProcess]:
    """The operator as the Deployment runs it (its GMO_* environment, so the azureml backend only), signed in as
    the ServiceAccount, its Azure ML SDK pointed at the emulator."""
    kubeconfig = service_account_kubeconfig(cp, inst, tmp_path / f"{inst.overlay}.kubeconfig")
    env = {**emu.client_env(), "HOME": str(tmp_path / f"{inst.overlay}-home"), **inst.operator_env()}
    log = tmp_path / f"{inst.overlay}-operator.log"
    op = OperatorProcess(
        kubeconfig, [], tmp_path / f"{inst.overlay}-state", log, extra_args=["--poll-seconds", "1"], env=env
    )
    with op:
        if inst.operator_env().get("GMO_LEADER_ELECT") == "true":
            wait_for("the operator to hold its lease", lambda: holds_lease(cp, inst), 30, 0.2)
        yield op


def holds_lease(cp: ControlPlane, inst: Install) -> bool:
    """The operator, signed in as its ServiceAccount, created or took its Lease (get, create, update)."""
    result = cp.kubectl("get", "lease", inst.lease, "-n", inst.operator_ns, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    holder = json.loads(result.stdout)["spec"].get("holderIdentity", "")
    return bool(holder.startswith(f"{inst.operator_env()['POD_NAME']}_"))


def lease_released(cp: ControlPlane, inst: Install) -> bool:
    lease = json.loads(cp.kubectl("get", "lease", inst.lease, "-n", inst.operator_ns, "-o", "json").stdout)
    return "holderIdentity" not in lease["spec"]


def refusals(op: OperatorProcess) -> list[str]:
    lines = op.log_path.read_text(errors="replace").splitlines()
    refused = [ln for ln in lines if re.search(r"forbidden|\b403\b", ln, re.IGNORECASE)]
    # Not a permission: a namespace left Terminating by an earlier test (no controller-manager finishes it)
    # refuses new Events for the resources still in it, which the cluster-wide operator also watches.
    return [ln for ln in refused if "NamespaceTerminating" not in ln and "being terminated" not in ln]


def converge(cp: ControlPlane, ns: str, op: OperatorProcess, timeout: float) -> None:
    """The azureml example from apply to Ready to deleted, and what the operator wrote on the way."""
    cp.kubectl("create", "secret", "generic", SECRET, "-n", ns, f"--from-literal=tenantId={TENANT}",
               f"--from-literal=clientId={CLIENT_ID}", f"--from-literal=clientSecret={CLIENT_SECRET}")  # fmt: skip
    docs = render(cp, MANIFESTS / "examples" / "azureml")
    for doc in docs:
        if doc["kind"] == "GpuModelDeployment":
            doc["metadata"]["name"] = "digits"
            spec = doc["spec"]
            spec["workspace"].update(subscriptionId=SUBSCRIPTION, resourceGroup=RESOURCE_GROUP, name=WORKSPACE)
            spec["workspace"]["credentialsSecretRef"]["name"] = SECRET
            spec["compute"]["name"] = f"gpu-{ns[-8:]}"
            spec["service"]["name"] = f"svc-{ns[-8:]}"
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))

    def get() -> dict[str, Any]:
        return json.loads(cp.kubectl("get", "gmd", "digits", "-n", ns, "-o", "json").stdout)  # type: ignore[no-any-return]

    def ready() -> dict[str, Any] | None:
        obj = get()
        cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)
        current = cond and cond["status"] == "True" and cond["observedGeneration"] == obj["metadata"]["generation"]
        return obj if current else None

    try:
        obj = wait_for("Ready", ready, timeout)
    except AssertionError:
        raise AssertionError(f"not Ready: {get().get('status')}\n{op.log_tail()}") from None
    assert "gpumodel.io/finalizer" in obj["metadata"]["finalizers"]  # patch on the resource
    assert obj["status"]["keysSecretName"] == "digits-scoring-keys"  # patch on the status
    keys = json.loads(cp.kubectl("get", "secret", "digits-scoring-keys", "-n", ns, "-o", "json").stdout)
    assert set(keys["data"]) == {"scoringUri", "primaryKey", "secondaryKey"}  # get/create on secrets
    events = json.loads(cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert "KeysPublished" in {e["reason"] for e in events}  # create on events
    # The credentials Secret is held while the resource made something in Azure (issue 20: a namespace's Secrets
    # go before its resources); a patch of its finalizers alone, which the admission policy allows.
    hold = f"gpumodel.io/credentials-in-use-{obj['metadata']['uid']}"
    assert hold in credentials_finalizers(cp, ns)

    cp.kubectl("delete", "gmd", "digits", "-n", ns, "--timeout=60s")  # the finalizer removed with a patch
    assert cp.kubectl("get", "secret", "digits-scoring-keys", "-n", ns, check=False).returncode != 0
    assert hold not in credentials_finalizers(cp, ns), "released once the deletion finished"
    assert op.proc is not None and op.proc.poll() is None, op.log_tail()
    assert refusals(op) == [], "the operator was refused something it needs"


def credentials_finalizers(cp: ControlPlane, ns: str) -> list[str]:
    secret = json.loads(cp.kubectl("get", "secret", SECRET, "-n", ns, "-o", "json").stdout)
    return list(secret["metadata"].get("finalizers") or [])


def someone_elses_secret_is_out_of_reach(cp: ControlPlane, inst: Install, ns: str, tmp_path: Path) -> None:
    """RBAC lets the operator patch and delete Secrets (it publishes the keys); the admission policy narrows that
    to the Secrets it published. Tried with the ServiceAccount's own token, as the operator would."""
    cp.kubectl("create", "secret", "generic", "team-db-password", "-n", ns, "--from-literal=password=hunter2")
    kubeconfig = str(service_account_kubeconfig(cp, inst, tmp_path / f"{inst.overlay}-probe.kubeconfig"))
    as_operator = ["--kubeconfig", kubeconfig, "-n", ns]
    attempts = {
        "patch": ["patch", "secret", "team-db-password", "-p", '{"stringData":{"password":"stolen"}}'],
        "delete": ["delete", "secret", "team-db-password"],
        "label and take": ["label", "secret", "team-db-password", "app.kubernetes.io/managed-by=gpu-model-operator"],
        "create unlabelled": ["create", "secret", "generic", "planted", "--from-literal=a=b"],
        "change it under a credentials hold": [
            "patch",
            "secret",
            "team-db-password",
            "-p",
            '{"metadata":{"finalizers":["gpumodel.io/credentials-in-use-x"]},"stringData":{"password":"stolen"}}',
        ],
    }
    for what, args in attempts.items():
        result = cp.kubectl(*args, *as_operator, check=False)
        assert result.returncode != 0, f"the operator's ServiceAccount could {what} someone else's Secret"
        assert "gpu-model-operator-owned-secrets" in result.stderr, result.stderr
    data = json.loads(cp.kubectl("get", "secret", "team-db-password", "-n", ns, "-o", "json").stdout)["data"]
    assert base64.b64decode(data["password"]).decode() == "hunter2"


def test_the_operator_converges_with_only_its_rbac(
    control_plane: ControlPlane,
    cluster_wide: Install,
    namespaced: Install,
    namespace: str,
    tmp_path: Path,
    emu: Emulator,
) -> None:
    # Both at once: the cluster-wide operator must not trip over the namespaced one's resource, and neither
    # is refused anything (kopf's cluster scanning is off: the resource comes from API discovery).
    with operator_for(control_plane, namespaced, tmp_path, emu) as namespaced_op:
        with operator_for(control_plane, cluster_wide, tmp_path, emu) as cluster_wide_op:
            converge(control_plane, namespace, cluster_wide_op, timeout=90)
        assert namespaced.watched_ns is not None
        converge(control_plane, namespaced.watched_ns, namespaced_op, timeout=90)
    for inst in (cluster_wide, namespaced):
        assert lease_released(control_plane, inst), "stopped, each released its Lease (update)"
    someone_elses_secret_is_out_of_reach(control_plane, cluster_wide, namespace, tmp_path)
    assert namespaced.watched_ns is not None
    someone_elses_secret_is_out_of_reach(control_plane, namespaced, namespaced.watched_ns, tmp_path)
