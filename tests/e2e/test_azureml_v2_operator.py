"""The azureml-v2 backend end to end: the operator process with the real azure-ai-ml SDK, against the emulator's
v2 surface and a real apiserver. Every promise of the README's azureml-v2 section is tried here: Ready means a
client can score with the key from the Secret; a rollout never drops a request and a failed one leaves the old
deployment serving; replicas are capped by quota and by GPUs per node, and say so; an endpoint the operator did not
create is left alone; Retain keeps the endpoint; keys rotated in Azure reach the Secret; workload identity signs in
only as the applications the operator allows the resource's namespace (GMO_WORKLOAD_IDENTITIES), else nothing is
called at Azure.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import RESOURCE_GROUP, SUBSCRIPTION, TENANT, WORKSPACE
from tests.e2e.azure_v2_harness import LATENCIES, AzureV2, arm_call, kubernetes, managed, run_v2_operator
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.timeout(240)


#: The operator's ServiceAccount, federated with the Entra application WORKLOAD_APP (workload identity).
OPERATOR_NS, OPERATOR_SA, WORKLOAD_APP = "gmo-system", "gpu-model-operator", "workload-app"
#: The one namespace allowed to sign in as WORKLOAD_APP; STRANGER_APP (federated with nothing) is allowed in every
#: namespace, so that Entra's own refusal is tried too. Any other application, or WORKLOAD_APP elsewhere: refused.
WI_NAMESPACE, STRANGER_APP = "gmo-wi-team", "stranger-app"
ALLOWED_IDENTITIES = f"{WI_NAMESPACE}={WORKLOAD_APP} *={STRANGER_APP}"
MANAGEMENT = r"/subscriptions/.*/(onlineEndpoints|computes|usages|vmSizes|models|environments|codes|workspaces/ws1$)"


@pytest.fixture(scope="module")
def v2_operator(
    control_plane: Any, v2_emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator with a federated token file, as the Azure Workload Identity webhook projects it into its pod: a
    real ServiceAccount token of the apiserver, audience api://AzureADTokenExchange; the Entra application trusts
    the apiserver's issuer for that ServiceAccount (the emulator checks the token against the apiserver's JWKS)."""
    cp = control_plane
    cp.kubectl("create", "namespace", OPERATOR_NS, check=False)
    cp.kubectl("create", "serviceaccount", OPERATOR_SA, "-n", OPERATOR_NS, check=False)
    token = cp.kubectl(
        "create",
        "token",
        OPERATOR_SA,
        "-n",
        OPERATOR_NS,
        "--audience",
        "api://AzureADTokenExchange",
        "--duration",
        "1h",
    ).stdout.strip()
    token_file = tmp_path_factory.mktemp("azure-identity") / "token"
    token_file.write_text(token)
    jwks = json.loads(cp.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
    subject = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
    v2_emu.v2.configure(
        federated_credentials=[{"client_id": WORKLOAD_APP, "issuer": cp.server, "subject": subject, "jwks": jwks}]
    )
    env = {"AZURE_FEDERATED_TOKEN_FILE": str(token_file), "GMO_WORKLOAD_IDENTITIES": ALLOWED_IDENTITIES}
    yield from run_v2_operator(cp, v2_emu, tmp_path_factory, env=env)


def live(azure: AzureV2, endpoint: str) -> dict[str, int]:
    found = azure.endpoint(endpoint)
    return {k: v for k, v in (found or {}).get("traffic", {}).items() if v}


def deployments(azure: AzureV2, endpoint: str) -> dict[str, Any]:
    """The deployments of an endpoint that exists."""
    found = azure.endpoint(endpoint)
    assert found is not None, f"endpoint {endpoint} not found"
    by_name: dict[str, Any] = found["deployments"]
    return by_name


def test_create_score_scale_roll_out_and_delete(v2: AzureV2) -> None:
    v2.apply("digits", "digits-ep", managed(), replicas=1)
    obj = v2.wait_ready("digits")
    status = obj["status"]
    assert status["phase"] == "Ready" and status["replicasSummary"] == "1/1" and status["gpus"]["held"] == 1
    assert status["scoringUri"] == "https://digits-ep.eastus.inference.ml.azure.com/score"
    assert v2.score("digits").status_code == 200  # with the key from the Secret, as a client does
    first = next(iter(live(v2, "digits-ep")))

    v2.apply("digits", "digits-ep", managed(), replicas=2)
    obj = v2.wait_ready("digits")
    assert obj["status"]["replicasSummary"] == "2/2"
    assert deployments(v2, "digits-ep")[first]["instance_count"] == 2  # scaled in place

    # Blue/green: a new model version, while a client scores in a loop and must see nothing but 200s.
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            answer = v2.score("digits")
            seen[f"{answer.status_code} {answer.headers.get('azureml-model-deployment')}"] += 1

    loop = threading.Thread(target=client)
    loop.start()
    try:
        v2.apply("digits", "digits-ep", managed(), replicas=2, version=2)
        wait_for("the new deployment alone with all traffic", lambda: set(live(v2, "digits-ep")) - {first}, 60)
        v2.wait_ready("digits")
        wait_for("the old deployment deleted", lambda: first not in deployments(v2, "digits-ep"), 30)
    finally:
        stop.set()
        loop.join(30)
    second = next(iter(live(v2, "digits-ep")))
    assert {k.split()[0] for k in seen} == {"200"}, seen
    assert {k.split()[1] for k in seen} == {first, second}, "both deployments answered during the rollout"
    assert deployments(v2, "digits-ep")[second]["instance_count"] == 2
    assert v2.events("digits", "KeysPublished")

    v2.delete("digits")
    v2.wait_endpoint_gone("digits-ep")
    assert v2.cp.kubectl("get", "secret", "digits-scoring-keys", "-n", v2.ns, check=False).returncode != 0


def test_a_failed_rollout_leaves_the_old_deployment_serving_and_says_why(v2: AzureV2) -> None:
    """Why: Azure's reason for the failure, which is in the operation's status (``Azure-AsyncOperation``), never in
    the deployment or its logs (a crashed container's logs are its console)."""
    v2.apply("canary", "canary-ep", managed())
    try:
        v2.wait_ready("canary")
        old = next(iter(live(v2, "canary-ep")))
        v2.emu.v2.fail_start(endpoint="^canary-ep$", deployment=f"^(?!{old}$)", times=1)
        v2.apply("canary", "canary-ep", managed(), version=2)
        cond = v2.wait_reason("canary", "ServiceFailed")
        assert "User container has crashed" in cond["message"] and f"{old} keeps serving 100%" in cond["message"]
        assert v2.events("canary", "ServiceFailed")[0]["type"] == "Warning"
        assert live(v2, "canary-ep") == {old: 100}
        answer = v2.score("canary")
        assert (answer.status_code, answer.headers["azureml-model-deployment"]) == (200, old)

        # Back to the version that serves: the failed deployment is cleared and the resource is Ready again.
        v2.apply("canary", "canary-ep", managed(), version=1)
        v2.wait_ready("canary")
        assert set(deployments(v2, "canary-ep")) == {old}
    finally:  # the quota its instances hold is every later test's
        v2.delete("canary")
        v2.wait_endpoint_gone("canary-ep")


def test_a_failed_rollout_gives_production_its_instances_back(v2: AzureV2) -> None:
    """Quota for two T4 instances and their reserve (16 vCPUs: 2 hold 12, 1 holds 8): the rollout halves the live
    deployment to start the new one beside it; the new one fails to start. Before the failure is reported, the live
    deployment is back at 2 instances and the failed one is gone."""
    family = "standardNCASv3_T4Family"
    v2.emu.v2.configure(family_limits={family: 16})
    v2.apply("halved", "halved-ep", managed(), replicas=2)
    try:
        v2.wait_ready("halved")
        old = next(iter(live(v2, "halved-ep")))
        v2.emu.v2.fail_start(endpoint="^halved-ep$", deployment=f"^(?!{old}$)", times=1)
        v2.apply("halved", "halved-ep", managed(), replicas=2, version=2)
        wait_for(
            "the live deployment halved",
            lambda: deployments(v2, "halved-ep")[old]["instance_count"] == 1,
            60,
        )
        cond = v2.wait_reason("halved", "ServiceFailed")
        found = deployments(v2, "halved-ep")
        assert set(found) == {old}, found
        assert found[old]["instance_count"] == 2 and live(v2, "halved-ep") == {old: 100}
        assert "User container has crashed" in cond["message"] and f"{old} keeps serving 100%" in cond["message"]
        assert v2.score("halved").status_code == 200
    finally:
        v2.emu.v2.configure(family_limits={family: 24})
        v2.delete("halved")
        v2.wait_endpoint_gone("halved-ep")


def test_a_rollout_refused_at_the_call_gives_production_its_instances_back_and_says_so(v2: AzureV2) -> None:
    """Quota for two T4 instances and their reserve, as above: the rollout halves the live deployment to make room,
    then Azure refuses the new deployment at the call (400: the model version it names is not registered), before
    any operation starts. The refusal is the rollout's end as much as a later failure is: the live deployment is
    back at 2 instances with all the traffic, and the status says 2 run and why the change was not made (issue 20:
    it stayed halved while ``status.replicas`` reported the spec's count)."""
    family = "standardNCASv3_T4Family"
    v2.emu.v2.configure(family_limits={family: 16})
    v2.apply("unregistered", "unregistered-ep", managed(), replicas=2)
    try:
        v2.wait_ready("unregistered")
        old = next(iter(live(v2, "unregistered-ep")))
        v2.apply("unregistered", "unregistered-ep", managed(), replicas=2, version=3)  # digits:3 is not registered

        def given_back() -> dict[str, Any] | None:
            obj = v2.get("unregistered")
            cond: dict[str, Any] = next(
                (c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
            )
            found = deployments(v2, "unregistered-ep")
            serving = live(v2, "unregistered-ep") == {old: 100}
            back = set(found) == {old} and found[old]["instance_count"] == 2 and serving
            current = cond.get("observedGeneration") == obj["metadata"]["generation"]
            told = current and cond.get("status") == "False" and "Azure refused" in cond.get("message", "")
            counted = obj["status"].get("replicas", {}).get("effective") == 2
            return obj if back and told and counted else None

        try:
            obj = wait_for("production given back, counted and the refusal said", given_back, 90)
        except AssertionError:
            raise AssertionError(f"{v2.get('unregistered')['status']}\n{deployments(v2, 'unregistered-ep')}") from None
        cond = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert "keeps serving" in cond["message"], cond
        assert v2.score("unregistered").status_code == 200
    finally:
        v2.emu.v2.configure(family_limits={family: 24})
        v2.delete("unregistered")
        v2.wait_endpoint_gone("unregistered-ep")


def test_a_rollout_keeps_what_the_operator_does_not_manage_on_the_endpoint(v2: AzureV2) -> None:
    """A security team makes the operator's endpoint private and tags it, as ``az ml online-endpoint update`` does
    (a GET, the change, a PUT of the whole endpoint). The rollout's traffic shift is a PUT too, which replaces the
    endpoint: it must send back what it read, or the endpoint turns public again."""
    v2.apply("private", "private-ep", managed())
    v2.wait_ready("private")
    old = next(iter(live(v2, "private-ep")))
    endpoint = arm_call(v2.emu, "GET", "/onlineEndpoints/private-ep").json()
    principal = endpoint["identity"]["principalId"]
    # Sent back as the CLI's SDK serializes it: without what the specification marks read-only.
    update = {k: v for k, v in endpoint.items() if k not in ("id", "name", "type", "systemData")}
    update["properties"] = {
        k: v for k, v in endpoint["properties"].items() if k not in ("provisioningState", "scoringUri", "swaggerUri")
    }
    update["identity"] = {"type": endpoint["identity"]["type"]}
    update["properties"]["publicNetworkAccess"] = "Disabled"
    update["tags"]["cost-center"] = "42"
    changed = arm_call(v2.emu, "PUT", "/onlineEndpoints/private-ep", update)
    assert changed.status_code == 200, changed.text
    wait_for("the change applied", lambda: (v2.endpoint("private-ep") or {}).get("state") == "Succeeded", 10)

    v2.apply("private", "private-ep", managed(), version=2)
    wait_for("the new deployment alone with all traffic", lambda: set(live(v2, "private-ep")) - {old}, 60)
    v2.wait_ready("private")
    after = arm_call(v2.emu, "GET", "/onlineEndpoints/private-ep").json()
    assert after["properties"]["publicNetworkAccess"] == "Disabled", after["properties"]
    uid = v2.get("private")["metadata"]["uid"]
    assert after["tags"]["cost-center"] == "42" and after["tags"]["gpumodel-owner"] == f"{v2.ns}/private/{uid}"
    assert after["identity"]["principalId"] == principal
    v2.delete("private")
    v2.wait_endpoint_gone("private-ep")


class PickyModel(BaseHTTPRequestHandler):
    """An entry script that needs its input: ``{"data": ...}`` is answered, anything else fails in run() (500, which
    Azure turns into 424 for the client)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = b'"data"' in body
        payload = body if ok else b'{"error": "KeyError: \'data\'"}'
        self.send_response(200 if ok else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def test_ready_means_the_model_answers_the_probe(v2: AzureV2) -> None:
    """Azure's 424 is the model's run() failing: a client sending that request cannot score, so it is never Ready.
    Without spec.rollout.probeRequest the probe's body is {}, which this model refuses: the resource says so and waits;
    with a request it answers, it is Ready."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PickyModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    v2.emu.configure(default_scoring_backend=f"http://127.0.0.1:{server.server_address[1]}/score")
    try:
        v2.apply("picky", "picky-ep", managed())
        cond = v2.wait_reason("picky", "ProbeFailed")
        assert "answered 424: the model's run() failed with 500 on the probe's default body {}" in cond["message"]
        assert "set spec.rollout.probeRequest" in cond["message"]
        assert not live(v2, "picky-ep"), "no traffic to a deployment that cannot score"
        probe = json.dumps({"spec": {"rollout": {"probeRequest": '{"data": [[0, 1]]}'}}})
        v2.cp.kubectl("patch", "gmd", "picky", "-n", v2.ns, "--type=merge", "-p", probe)
        v2.wait_ready("picky")
        assert v2.score("picky").status_code == 200
    finally:
        v2.emu.configure(default_scoring_backend=None)
        server.shutdown()
    v2.delete("picky")
    v2.wait_endpoint_gone("picky-ep")


def test_quota_caps_replicas_and_says_so(v2: AzureV2) -> None:
    # One NV36ads_A10_v5 holds ceil(1.2) x 36 = 72 vCPUs, two ceil(2.4) x 36 = 108: a 72-vCPU family limit fits one
    # instance. (An A10 size keeps the 20% reserve; the A100 and H100 sizes of Azure's SKU list skip it.)
    v2.emu.v2.configure(family_limits={"standardNVADSA10v5Family": 72})
    v2.apply("a10", "a10-ep", managed("Standard_NV36ads_A10_v5"), replicas=2)
    obj = v2.wait_ready("a10")
    assert obj["status"]["replicasSummary"] == "1/2" and obj["status"]["phase"] == "Degraded"
    assert obj["status"]["gpus"]["held"] == 1
    ready = v2.condition("a10")
    assert ready["reason"] == "ReplicasCapped"
    assert "quota standardNVADSA10v5Family: 72 vCPUs" in v2.condition("a10", "ComputeReady")["message"]
    assert v2.events("a10", "ReplicasCapped")[0]["type"] == "Warning"

    # A family with no quota at all (the H100 family's default limit is 0): nothing is deployed.
    v2.apply("h100", "h100-ep", managed("Standard_NC40ads_H100_v5"))
    cond = v2.wait_reason("h100", "InsufficientGPUs")
    assert cond["status"] == "False"
    assert v2.endpoint("h100-ep") is None
    v2.delete("h100")
    v2.delete("a10")


def test_a_kubernetes_endpoint_is_capped_per_node(v2: AzureV2) -> None:
    # Nodes with 2 and 1 GPUs, two GPUs per instance: one instance fits (the 1-GPU node holds none, though its
    # GPU is the compute's: total counts it).
    v2.apply("kube", "kube-ep", kubernetes(), replicas=2, gpu_cores=2)
    obj = v2.wait_ready("kube")
    assert obj["status"]["replicasSummary"] == "1/2" and obj["status"]["gpus"] == {
        "total": 3,
        "heldByOthers": 0,
        "held": 2,
    }
    assert v2.condition("kube")["reason"] == "ReplicasCapped"
    assert v2.score("kube").status_code == 200
    assert obj["status"]["scoringUri"].endswith("/api/v1/endpoint/kube-ep/score")
    v2.delete("kube")
    v2.wait_endpoint_gone("kube-ep")
    assert any(c["name"] == "k8s" for c in v2.emu.v2.summary()["kubernetes_computes"]), "the compute stays attached"


def test_an_endpoint_the_operator_did_not_create_is_left_alone(v2: AzureV2) -> None:
    made = arm_call(
        v2.emu, "PUT", "/onlineEndpoints/theirs-ep", {"location": "eastus", "properties": {"authMode": "Key"}}
    )
    assert made.status_code == 201, made.text
    wait_for("their endpoint", lambda: (v2.endpoint("theirs-ep") or {}).get("state") == "Succeeded", 10)
    v2.emu.clear_calls()
    v2.apply("theirs", "theirs-ep", managed())
    cond = v2.wait_reason("theirs", "ServiceExists")
    assert "gpumodel.io/take-over=true" in cond["message"]
    assert v2.writes(r"/onlineEndpoints/theirs-ep", "PUT") == 0
    v2.delete("theirs")
    assert v2.endpoint("theirs-ep") is not None, "never deleted with the resource"

    # Taken over: deployed from the spec, and deleted with the resource.
    v2.apply("theirs", "theirs-ep", managed(), annotations={"gpumodel.io/take-over": "true"})
    v2.wait_ready("theirs")
    v2.delete("theirs")
    v2.wait_endpoint_gone("theirs-ep")


def test_an_endpoint_made_again_outside_the_operator_is_never_written_to_or_deleted(v2: AzureV2) -> None:
    """The operator's endpoint is deleted behind its back and someone makes one of the same name, without its tags.
    The status still records the endpoint as created by the operator (the core trusts that record over a missing
    tag), so the core asks for a deploy and, on deletion, for the endpoint's deletion: the backend checks the tags
    at each write and refuses, and the resource can only go with detach-on-delete."""
    v2.apply("swapped", "swapped-ep", managed())
    v2.wait_ready("swapped")
    v2.cp.kubectl("annotate", "gmd", "swapped", "-n", v2.ns, "gpumodel.io/reconcile-policy=skip")
    v2.wait_reason("swapped", "ReconcileSkipped")
    assert arm_call(v2.emu, "DELETE", "/onlineEndpoints/swapped-ep").status_code == 202
    v2.wait_endpoint_gone("swapped-ep")
    made = arm_call(
        v2.emu,
        "PUT",
        "/onlineEndpoints/swapped-ep",
        {"location": "eastus", "tags": {"team": "other"}, "properties": {"authMode": "Key"}},
    )
    assert made.status_code == 201, made.text
    wait_for("their endpoint", lambda: (v2.endpoint("swapped-ep") or {}).get("state") == "Succeeded", 10)
    v2.emu.clear_calls()
    v2.cp.kubectl("annotate", "gmd", "swapped", "-n", v2.ns, "gpumodel.io/reconcile-policy-")
    cond = v2.wait_reason("swapped", "ServiceExists")
    assert "is not tagged as this resource's (gpumodel-owner: none)" in cond["message"], cond
    assert "nothing of it was changed" in cond["message"]

    v2.cp.kubectl("delete", "gmd", "swapped", "-n", v2.ns, "--wait=false")
    time.sleep(5)  # several deletion passes, each refused
    assert v2.get("swapped")["metadata"].get("deletionTimestamp"), "the finalizer holds the resource"
    refused = [e for e in v2.operator.log_path.read_text().splitlines() if "not deleting endpoint swapped-ep" in e]
    assert refused, v2.operator.log_tail()
    v2.cp.kubectl("annotate", "gmd", "swapped", "-n", v2.ns, "gpumodel.io/reconcile-policy=detach-on-delete")

    def gone() -> bool:
        return v2.cp.kubectl("get", "gmd", "swapped", "-n", v2.ns, check=False).returncode != 0

    wait_for("the resource gone", gone, 30)
    writes = v2.writes(r"/onlineEndpoints/swapped-ep", "PUT") + v2.writes(r"/onlineEndpoints/swapped-ep", "DELETE")
    assert writes + v2.writes(r"/onlineEndpoints/swapped-ep", "PATCH") == 0
    swapped = v2.endpoint("swapped-ep")
    assert swapped is not None and swapped["state"] == "Succeeded"
    arm_call(v2.emu, "DELETE", "/onlineEndpoints/swapped-ep")  # its owner's own clean-up


def test_another_resource_s_endpoint_is_a_conflict_left_untouched(v2: AzureV2) -> None:
    v2.apply("first", "shared-ep", managed())
    v2.wait_ready("first")
    v2.emu.clear_calls()
    v2.apply("second", "shared-ep", managed(), version=2)
    cond = v2.wait_reason("second", "ServiceNameConflict")
    assert f"GpuModelDeployment {v2.ns}/first" in cond["message"]
    assert v2.writes(r"/onlineEndpoints/shared-ep", "PUT") + v2.writes(r"/onlineEndpoints/shared-ep", "DELETE") == 0
    v2.delete("second")
    assert v2.condition("first")["status"] == "True", "the first resource's endpoint serves on"
    v2.delete("first")
    v2.wait_endpoint_gone("shared-ep")


def test_retain_keeps_the_endpoint_serving(v2: AzureV2) -> None:
    v2.apply("kept", "kept-ep", managed(), deletion_policy="Retain")
    v2.wait_ready("kept")
    key = v2.keys("kept")["primaryKey"]
    v2.delete("kept")
    assert v2.events("kept", "RetainedService")
    assert v2.endpoint("kept-ep") is not None
    arm_call(v2.emu, "DELETE", "/onlineEndpoints/kept-ep")  # the user's own clean-up
    assert key


def test_keys_rotated_in_azure_reach_the_secret(v2: AzureV2) -> None:
    v2.apply("rotate", "rotate-ep", managed())
    v2.wait_ready("rotate")
    before = v2.keys("rotate")["primaryKey"]
    answer = arm_call(v2.emu, "POST", "/onlineEndpoints/rotate-ep/regenerateKeys", {"keyType": "Primary"})
    assert answer.status_code == 202, answer.text
    rotated = wait_for("the new key in the Secret", lambda: v2.keys("rotate")["primaryKey"] != before or None, 30)
    assert rotated
    assert v2.score("rotate").status_code == 200
    assert v2.score("rotate", key=before).status_code == 401
    v2.delete("rotate")


def test_workload_identity_signs_in_with_the_federated_token(v2: AzureV2) -> None:
    workspace = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP, "name": WORKSPACE}
    identity = {"clientId": WORKLOAD_APP, "tenantId": TENANT}
    v2.cp.kubectl("create", "namespace", WI_NAMESPACE, check=False)
    team = AzureV2(v2.cp, WI_NAMESPACE, v2.emu, v2.operator)  # the namespace allowed to use WORKLOAD_APP
    team.apply("wi", "wi-ep", managed(), workspace={**workspace, "workloadIdentity": identity})
    team.wait_ready("wi")
    assert team.score("wi").status_code == 200
    team.delete("wi")

    # An application the ServiceAccount is not federated with (allowed by the operator): Entra refuses, said so.
    stranger = {"clientId": STRANGER_APP, "tenantId": TENANT}
    v2.apply("stranger", "stranger-ep", managed(), workspace={**workspace, "workloadIdentity": stranger})
    cond = v2.wait_reason("stranger", "CredentialsInvalid")
    assert "workload identity of application stranger-app" in cond["message"] and "AADSTS" in cond["message"]
    assert v2.endpoint("stranger-ep") is None
    # Deletion must sign in as well (it cannot know nothing exists): the README's way out lets the resource go.
    v2.cp.kubectl("annotate", "gmd", "stranger", "-n", v2.ns, "gpumodel.io/reconcile-policy=detach-on-delete")
    v2.delete("stranger")


def test_a_namespace_cannot_sign_in_as_an_application_allowed_to_another(v2: AzureV2) -> None:
    """WORKLOAD_APP is federated with the operator's token and allowed in WI_NAMESPACE only: a resource of another
    namespace naming it is refused before anything is signed in, and the cloud never hears of it."""
    workspace = {"subscriptionId": SUBSCRIPTION, "resourceGroup": RESOURCE_GROUP, "name": WORKSPACE}
    identity = {"clientId": WORKLOAD_APP, "tenantId": TENANT}
    v2.emu.clear_calls()
    v2.apply("borrowed", "borrowed-ep", managed(), workspace={**workspace, "workloadIdentity": identity})
    cond = v2.wait_reason("borrowed", "IdentityNotAllowed")
    assert f"namespace {v2.ns}" in cond["message"] and WORKLOAD_APP in cond["message"]
    assert f"--workload-identity {v2.ns}={WORKLOAD_APP}" in cond["message"]
    assert v2.get("borrowed")["status"]["phase"] == "Failed"
    warned = lambda: [e for e in v2.events("borrowed", "IdentityNotAllowed") if e["type"] == "Warning"]  # noqa: E731
    wait_for("the IdentityNotAllowed Warning", warned, 30)
    # No token was asked for, no workspace read, nothing created: no call at all reached the emulated cloud.
    assert v2.emu.calls() == [] and v2.endpoint("borrowed-ep") is None
    # Deletion cannot sign in either: nothing was created, so the resource goes without touching Azure (and
    # without the user having to annotate it).
    v2.delete("borrowed")
    assert v2.emu.calls() == []


def test_a_wrong_secret_is_named_and_never_shown(v2: AzureV2) -> None:
    v2.secret(client_secret="a-wrong-secret-value")
    v2.apply("wrong", "wrong-ep", managed())
    cond = v2.wait_reason("wrong", "CredentialsInvalid")
    assert "Secret azureml-service-principal" in cond["message"] and "the clientSecret is wrong" in cond["message"]
    events = json.dumps(v2.events("wrong"))
    assert "a-wrong-secret-value" not in events and "a-wrong-secret-value" not in json.dumps(v2.get("wrong"))
    assert "a-wrong-secret-value" not in v2.operator.log_path.read_text()
    v2.secret()  # deletion signs in too: with no way in, the finalizer stays (nothing may be left billing)
    v2.delete("wrong")


def test_throttling_outages_and_resets_converge_with_one_create_per_object(v2: AzureV2) -> None:
    v2.emu.clear_calls()
    for action, extra in [
        ("status", {"status": 429, "retry_after": 1}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("reset", {}),
    ]:
        # Each kind hits 30% of management calls until it has struck once: every kind is injected, and the
        # operator's back-off (doubling over consecutive failures, or Retry-After) stays short.
        v2.emu.add_fault(action=action, path=MANAGEMENT, probability=0.3, times=1, **extra)
    v2.apply("noisy", "noisy-ep", managed(), replicas=2)
    obj = v2.wait_ready("noisy", timeout=120)
    assert obj["status"]["replicasSummary"] == "2/2"
    injected = Counter(c.get("fault") for c in v2.emu.calls() if c.get("fault"))
    assert sum(injected.values()) == 4, f"every fault struck: {injected}"
    assert len(v2.emu.calls()) < 300, "no hot loop"
    assert v2.writes(r"/onlineEndpoints/noisy-ep$", "PUT", 201) == 1, "one endpoint created"
    assert v2.writes(r"/onlineEndpoints/noisy-ep/deployments/[^/]+$", "PUT", 201) == 1, "one deployment created"
    v2.emu.clear_faults()
    v2.delete("noisy")
    v2.wait_endpoint_gone("noisy-ep")


def test_deleting_shows_ready_false_deleting_until_gone(v2: AzureV2) -> None:
    """From the first deletion step to the last, `kubectl get gmd` says so: READY False and PHASE Deleting (the Ready
    condition's reason Deleting, its message what is being removed), never Ready True again, then the resource is
    gone. The endpoint's deletion is made slow enough to be seen."""
    v2.emu.v2.configure(latencies={**LATENCIES, "endpoint_delete_s": 4.0})
    try:
        v2.apply("leaving", "leaving-ep", managed(), replicas=1)
        v2.wait_ready("leaving")
        v2.cp.kubectl("delete", "gmd", "leaving", "-n", v2.ns, "--wait=false")
        rows: list[dict[str, str]] = []
        reasons: list[tuple[str, str]] = []

        def gone() -> bool:
            shown = v2.cp.kubectl("get", "gmd", "leaving", "-n", v2.ns, check=False)
            if shown.returncode != 0:
                return True
            header, *lines = shown.stdout.splitlines()
            if lines:
                rows.append(dict(zip(header.split(), lines[0].split(), strict=False)))
            whole = v2.cp.kubectl("get", "gmd", "leaving", "-n", v2.ns, "-o", "json", check=False)
            if whole.returncode != 0:  # gone between the two reads: the finalizer went meanwhile
                return True
            conditions = json.loads(whole.stdout).get("status", {}).get("conditions", []) if lines else []
            ready: dict[str, Any] = next((cond for cond in conditions if cond["type"] == "Ready"), {})
            if ready:
                reasons.append((ready["reason"], ready.get("message", "")))
            return False

        wait_for("the resource gone", gone, 60)
    finally:
        v2.emu.v2.configure(latencies=LATENCIES)
    deleting = [i for i, row in enumerate(rows) if row.get("READY") == "False" and row.get("PHASE") == "Deleting"]
    assert deleting, f"kubectl get gmd never showed READY False / Deleting: {rows}"
    assert all(row.get("READY") != "True" for row in rows[deleting[0] :]), rows
    assert ("Deleting", "deleting service leaving-ep") in reasons or (
        "Deleting",
        "waiting for service leaving-ep to be deleted",
    ) in reasons, reasons
    v2.wait_endpoint_gone("leaving-ep")
