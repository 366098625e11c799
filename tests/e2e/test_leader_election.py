"""High availability: two operator processes with leader election against the Azure ML emulator, exactly one of
them reconciling, whatever happens to the other.

- The leader is killed (SIGKILL, as when its node dies) while a compute is being created, and while a resource
  is being deleted: the standby takes the lease over, finishes the job, and the emulator's call log shows one
  compute PUT and one service POST, one DELETE of each, and nothing left billing. The takeover time is measured.
- The leader is cut off from the apiserver (a black-holed TCP proxy in front of it) while it keeps polling
  Azure: it exits before its lease can expire, and so before the standby takes over; the emulator's call log,
  the old leader's exit time and the lease's acquire time show that no instant had two writers.
- A graceful stop (SIGTERM, a rolling update) hands the lease over at the standby's next attempt; one that comes
  while a write to Azure is running (a thread that cannot be cancelled) hands it over only once the write ended.
- Shards: two operators with disjoint namespaces and leases of their own never touch each other's resources.

The lease settings are short (5 s lease, 3 s renew deadline, 0.5 s retry period) so that each case takes
seconds; the production defaults are 15 s, 10 s and 2 s. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpu_model_operator.standby import LOST_LEADERSHIP_EXIT
from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.controlplane import ControlPlane
from gpu_model_operator_dev.operator_process import OperatorProcess
from tests.e2e.azure_harness import Azure, provision
from tests.e2e.tcp_proxy import TcpProxy
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(240)

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 5, 3.0, 0.5
#: Slow enough for each step to be a window the test can observe and kill in.
SLOW = {"compute_create_s": 4, "compute_delete_s": 2, "service_create_s": 2, "service_delete_s": 2}
#: What the README promises for a takeover after a crash (with the production settings, 15 s leases).
TAKEOVER_BOUND_S = 30.0
#: How long the emulator holds a write in the graceful-stop case: longer than kopf's 5 s wait for its handlers.
WRITE_HELD_S = 8.0


@pytest.fixture(scope="module", autouse=True)
def slow_operations(emu: Emulator) -> Iterator[None]:
    emu.configure(latencies=SLOW)
    yield
    emu.configure(latencies=dict.fromkeys(SLOW, 1))


class Replica:
    """One operator process as one pod of the Deployment would run it: POD_NAME set, leader election on."""

    def __init__(self, cp: ControlPlane, emu: Emulator, tmp: Path, name: str, namespaces: list[str], lease: str,
                 lease_ns: str, kubeconfig: Path | None = None) -> None:  # fmt: skip
        self.name = name
        args = [
            "--leader-elect", "--lease-name", lease, "--lease-namespace", lease_ns,
            "--lease-duration", str(LEASE_DURATION), "--renew-deadline", str(RENEW_DEADLINE),
            "--retry-period", str(RETRY_PERIOD), "--poll-seconds", "1", "--resync-seconds", "1",
        ]  # fmt: skip
        home = tmp / f"{name}-home"
        home.mkdir(exist_ok=True)
        env = {**emu.client_env(), "HOME": str(home), "POD_NAME": name}
        state, log = tmp / f"{name}-state", tmp / f"{name}.log"
        self.op = OperatorProcess(kubeconfig or cp.kubeconfig, namespaces, state, log, extra_args=args, env=env)
        self.exited_at: float | None = None

    def start(self) -> Replica:
        self.exited_at = None
        self.op.start()
        proc = self.op.proc
        assert proc is not None

        def note_exit() -> None:
            proc.wait()
            self.exited_at = time.time()

        threading.Thread(target=note_exit, daemon=True).start()
        return self

    @property
    def returncode(self) -> int | None:
        return self.op.proc.poll() if self.op.proc else None

    def holds(self, holder: str | None) -> bool:
        return bool(holder) and str(holder).startswith(f"{self.name}_")

    def leader_gauge(self) -> float:
        match = re.search(r"^gpumodel_leader (\S+)$", self.op.metrics(), re.MULTILINE)
        assert match, "the gpumodel_leader gauge is exported"
        return float(match[1])

    def reconciled(self) -> set[str]:
        """The resources ("namespace/name") this process has reconciled, from its own metrics."""
        series = re.findall(r"^gpumodel_replicas_requested\{([^}]*)\}", self.op.metrics(), re.MULTILINE)
        labels = [dict(re.findall(r'(\w+)="([^"]*)"', s)) for s in series]
        return {f"{x['namespace']}/{x['name']}" for x in labels}


class Lease:
    """The Lease as the apiserver has it, and its holders over time (a watcher polling every 50 ms)."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = client.CoordinationV1Api(api), namespace, name
        self.history: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def spec(self) -> Any:
        try:
            return self.api.read_namespaced_lease(self.name, self.namespace).spec
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def holder(self) -> str | None:
        spec = self.spec()
        return spec.holder_identity if spec else None

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            with_holder = self.holder()
            if not self.history or self.history[-1][1] != with_holder:
                self.history.append((time.time(), with_holder))

    def wait_holder(self, replica: Replica, timeout: float = 60) -> Any:
        return wait_for(f"{replica.name} to hold the lease", lambda: replica.holds(self.holder()) and self.spec(),
                        timeout, 0.05)  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


class Pair:
    """Two replicas on one lease in the test's namespace, watching only that namespace; ``a`` leads first."""

    def __init__(self, cp: ControlPlane, emu: Emulator, api: client.ApiClient, ns: str, tmp: Path) -> None:
        self.cp, self.emu, self.ns, self.tmp = cp, emu, ns, tmp
        self.lease = Lease(api, ns, f"gmo-{uuid.uuid4().hex[:6]}")
        self.replicas: list[Replica] = []

    def replica(self, name: str, kubeconfig: Path | None = None) -> Replica:
        replica = Replica(self.cp, self.emu, self.tmp, name, [self.ns], self.lease.name, self.ns, kubeconfig)
        self.replicas.append(replica)
        return replica.start()

    def left(self) -> list[str]:
        items = json.loads(self.cp.kubectl("get", "gmd", "-n", self.ns, "-o", "json").stdout)["items"]
        return [item["metadata"]["name"] for item in items]

    def close(self) -> None:
        """Safety net: delete what is left through the replicas still running, then stop them."""
        for name in self.left():
            self.cp.kubectl("delete", "gmd", name, "-n", self.ns, "--wait=false", check=False)
        if self.left() and any(r.returncode is None for r in self.replicas):
            with contextlib.suppress(AssertionError):
                wait_for("the leftovers to be deleted", lambda: not self.left(), 60)
        for name in self.left():
            patch = json.dumps({"metadata": {"finalizers": None}})
            self.cp.kubectl("patch", "gmd", name, "-n", self.ns, "--type=merge", "-p", patch)
        for replica in self.replicas:
            replica.op.stop()
        self.lease.close()


@pytest.fixture
def pair(control_plane: ControlPlane, emu: Emulator, k8s_api: client.ApiClient, namespace: str, tmp_path: Path,
         no_faults: None) -> Iterator[Pair]:  # fmt: skip
    made = Pair(control_plane, emu, k8s_api, namespace, tmp_path)
    yield made
    made.close()


def start_pair(pair: Pair, a_kubeconfig: Path | None = None) -> tuple[Replica, Replica, Azure]:
    """``a`` first, so that it leads; then ``b``, which stands by (and says so on its probes and metrics)."""
    a = pair.replica("gmo-a", a_kubeconfig)
    pair.lease.wait_holder(a)
    b = pair.replica("gmo-b")
    wait_for("b to see a's lease", lambda: "held by gmo-a_" in b.op.log_path.read_text(), 30, 0.1)
    assert (a.leader_gauge(), b.leader_gauge()) == (1.0, 0.0)
    azure = Azure(pair.cp, pair.ns, pair.emu, a.op)
    azure.secret()
    azure.emu.clear_calls()
    return a, b, azure


def creates(azure: Azure, compute: str, service: str) -> dict[str, int]:
    """Successful cloud writes to this compute and service (the call log counts what the SDK sent)."""
    ok = [c for c in azure.emu.calls() if 200 <= c["status"] < 300]

    def count(method: str, path: str) -> int:
        return sum(1 for c in ok if c["method"] == method and re.search(path, c["path"]))

    return {
        "compute PUT": count("PUT", rf"/computes/{compute}$"),
        "service POST": count("POST", r"/services$"),
        "service DELETE": count("DELETE", rf"/services/{service}$"),
        "compute DELETE": count("DELETE", rf"/computes/{compute}$"),
    }


def compute_state(azure: Azure, compute: str) -> str | None:
    return next((c["state"] for c in azure.emu.summary()["computes"] if c["name"] == compute), None)


def gone(azure: Azure, name: str) -> bool:
    return azure.cp.kubectl("get", "gmd", name, "-n", azure.ns, check=False).returncode != 0


def takeover(pair: Pair, killed_at: float, standby: Replica, azure: Azure) -> tuple[float, float]:
    """Seconds from the kill to the standby's holding the lease, and to its first call to the cloud."""
    spec = pair.lease.wait_holder(standby, timeout=TAKEOVER_BOUND_S)
    first_call = wait_for(
        "the new leader's first call to Azure",
        lambda: next((c["t"] for c in azure.emu.calls() if c["t"] > killed_at), None),
        TAKEOVER_BOUND_S,
        0.1,
    )
    return _epoch(spec.acquire_time) - killed_at, first_call - killed_at


def report(what: str, **figures: float) -> None:
    print(f"\n[leader election] {what}: " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))


def test_a_standby_takes_over_a_provisioning_killed_with_its_leader(pair: Pair) -> None:
    a, b, azure = start_pair(pair)
    azure.apply("ha", "ha-svc-1", provision("ha-gpu1"))
    wait_for("the compute PUT, still Creating", lambda: compute_state(azure, "ha-gpu1") == "Creating", 60, 0.1)
    killed_at = time.time()
    a.op.kill()
    lease_s, first_call_s = takeover(pair, killed_at, b, azure)
    report("killed while the compute was Creating", lease_taken=lease_s, first_cloud_call=first_call_s)
    assert first_call_s < TAKEOVER_BOUND_S
    azure.operator = b.op
    obj = azure.wait_ready("ha", timeout=90)
    assert obj["status"]["ownership"]["computeCreated"] and obj["status"]["ownership"]["serviceCreated"]
    assert pair.lease.spec().lease_transitions == 1
    a.start()  # back as a standby, as its Deployment would restart it
    azure.delete("ha")
    assert creates(azure, "ha-gpu1", "ha-svc-1") == dict.fromkeys(
        ["compute PUT", "service POST", "service DELETE", "compute DELETE"], 1
    ), "one create and one delete of each, across the takeover"
    computes, services = azure.cloud()
    assert "ha-gpu1" not in computes and "ha-svc-1" not in services, "nothing left billing"
    assert b.returncode is None and b.holds(pair.lease.holder()), "the new leader kept the lease"


def test_a_standby_finishes_a_deletion_killed_with_its_leader(pair: Pair) -> None:
    a, b, azure = start_pair(pair)
    azure.apply("ha", "ha-svc-2", provision("ha-gpu2"))
    azure.wait_ready("ha")
    azure.cp.kubectl("delete", "gmd", "ha", "-n", azure.ns, "--wait=false")
    wait_for("the service DELETE", lambda: creates(azure, "ha-gpu2", "ha-svc-2")["service DELETE"], 60, 0.1)
    killed_at = time.time()
    a.op.kill()
    lease_s, first_call_s = takeover(pair, killed_at, b, azure)
    report("killed while the service was being deleted", lease_taken=lease_s, first_cloud_call=first_call_s)
    assert first_call_s < TAKEOVER_BOUND_S
    wait_for("the resource to be gone", lambda: gone(azure, "ha"), 90)
    assert creates(azure, "ha-gpu2", "ha-svc-2") == dict.fromkeys(
        ["compute PUT", "service POST", "service DELETE", "compute DELETE"], 1
    ), "one create and one delete of each, across the takeover"
    computes, services = azure.cloud()
    assert "ha-gpu2" not in computes and "ha-svc-2" not in services, "nothing left billing"
    assert azure.cp.kubectl("get", "secret", "ha-scoring-keys", "-n", azure.ns, check=False).returncode != 0


def test_a_partitioned_leader_stops_before_its_lease_can_be_taken(pair: Pair) -> None:
    server_port = int(pair.cp.server.rsplit(":", 1)[1])
    with TcpProxy(server_port) as proxy:
        kubeconfig = yaml.safe_load(pair.cp.kubeconfig.read_text())
        kubeconfig["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        proxied = pair.tmp / "through-proxy.kubeconfig"
        proxied.write_text(yaml.safe_dump(kubeconfig))
        a, b, azure = start_pair(pair, a_kubeconfig=proxied)
        azure.apply("ha", "ha-svc-3", provision("ha-gpu3"))
        azure.wait_ready("ha")
        # Ready, and resynced every second: a calls Azure all the time, with or without the apiserver.
        since = time.time()
        wait_for("a's resyncs", lambda: len([c for c in azure.emu.calls() if c["t"] > since]) >= 4, 30, 0.1)
        cut_at = time.time()
        proxy.cut()
        wait_for("a to exit", lambda: a.exited_at, RENEW_DEADLINE + 10, 0.05)
        spec = pair.lease.wait_holder(b, timeout=LEASE_DURATION + 10)
    exited_at, acquired_at = a.exited_at, _epoch(spec.acquire_time)
    assert exited_at is not None
    b_calls = lambda: next((c["t"] for c in azure.emu.calls() if c["t"] > acquired_at), None)  # noqa: E731
    first_b_call = wait_for("b's first call", b_calls, 30, 0.1)
    calls = [c["t"] for c in azure.emu.calls()]
    a_after_cut = [t for t in calls if cut_at <= t < exited_at]
    nobody = [t for t in calls if exited_at <= t < acquired_at]
    report(
        "apiserver cut from the leader",
        leader_exit_after_cut=exited_at - cut_at,
        lease_taken_after_exit=acquired_at - exited_at,
        first_cloud_call_after_cut=first_b_call - cut_at,
    )
    # Each pass reads its ConfigMap and Secret from the apiserver before it calls Azure, so a cut-off leader
    # makes only the calls of the passes already past those reads; whatever it makes, it makes before it exits.
    print(f"[leader election] the cut-off leader's cloud calls after the cut: {len(a_after_cut)}")
    assert a.returncode == LOST_LEADERSHIP_EXIT and "lost the lease" in a.op.log_path.read_text()
    assert exited_at - cut_at <= RENEW_DEADLINE + 1.0, "the leader stops by its renew deadline"
    assert exited_at < acquired_at, "the old leader was gone before the new one held the lease"
    assert nobody == [], "no call to Azure between the old leader's exit and the new leader's lease"
    holders = [h for _, h in pair.lease.history]
    assert [h.split("_")[0] for h in holders if h] == ["gmo-a", "gmo-b"], holders
    azure.operator = b.op
    azure.wait_ready("ha")
    azure.delete("ha")
    assert creates(azure, "ha-gpu3", "ha-svc-3") == dict.fromkeys(
        ["compute PUT", "service POST", "service DELETE", "compute DELETE"], 1
    )


def test_a_leader_stopped_gracefully_hands_the_lease_over_at_once(pair: Pair) -> None:
    """A rolling update's SIGTERM: kopf finishes, the lease is released, the standby takes it at its next
    attempt, well before the lease would have expired."""
    a, b, _ = start_pair(pair)
    last_renewal = _epoch(pair.lease.spec().renew_time)
    stopped_at = time.time()
    a.op.stop()
    assert a.returncode == 0 and "released lease" in a.op.log_path.read_text()
    spec = pair.lease.wait_holder(b, timeout=LEASE_DURATION)
    acquired_at = _epoch(spec.acquire_time)
    report("leader stopped with SIGTERM", lease_taken=acquired_at - stopped_at)
    # a renews until it releases, so without the release the lease would have stayed a's until at least
    # LEASE_DURATION after the renewal read before the signal; kopf's own shutdown time comes on top of that.
    assert acquired_at < last_renewal + LEASE_DURATION
    wait_for("b's gauge", lambda: b.leader_gauge() == 1.0, 10, 0.1)


def test_a_leader_stopped_during_a_write_hands_the_lease_over_only_once_the_write_has_ended(pair: Pair) -> None:
    """SIGTERM while the compute PUT is held at Azure (the emulator answers it WRITE_HELD_S later, longer than
    kopf's own wait for its handlers): kopf cancels the handler, but the SDK's thread cannot be cancelled and the
    PUT is answered later. The old leader keeps (and renews) the lease until that write has ended, and releases
    it then: the standby never acts while the old leader still writes."""
    a, b, azure = start_pair(pair)
    azure.emu.add_fault(action="delay", method="PUT", path=r"/computes/ha-gpu5$", delay_s=WRITE_HELD_S)
    azure.apply("ha", "ha-svc-5", provision("ha-gpu5"))
    held = lambda: any(rule["hits"] for rule in azure.emu.request("GET", "/_emulator/faults")["rules"])  # noqa: E731
    wait_for("the compute PUT to be held at Azure", held, 60, 0.05)
    stopped_at = time.time()
    a.op.stop(timeout=WRITE_HELD_S + 20)
    put = next(c for c in azure.emu.calls() if c["method"] == "PUT" and c["path"].endswith("/computes/ha-gpu5"))
    answered_at = put["t"] + WRITE_HELD_S
    assert a.returncode == 0 and "released lease" in a.op.log_path.read_text()
    spec = pair.lease.wait_holder(b, timeout=LEASE_DURATION)
    acquired_at = _epoch(spec.acquire_time)
    report("leader stopped with SIGTERM during a write", write_left=answered_at - stopped_at,
           lease_taken_after_write=acquired_at - answered_at)  # fmt: skip
    # The lease was a's all along until the PUT was answered, and handed over promptly once it was.
    assert [h for t, h in pair.lease.history if stopped_at <= t < answered_at and not a.holds(h)] == []
    assert answered_at <= acquired_at < answered_at + LEASE_DURATION
    assert creates(azure, "ha-gpu5", "ha-svc-5")["compute PUT"] == 1


def test_shards_with_leases_of_their_own_never_touch_each_others_resources(
    control_plane: ControlPlane, emu: Emulator, k8s_api: client.ApiClient, tmp_path: Path, no_faults: None
) -> None:
    cp, tag = control_plane, uuid.uuid4().hex[:6]
    ops, ns_a, ns_b = (f"t-{tag}-{s}" for s in ("ops", "a", "b"))
    for ns in (ops, ns_a, ns_b):
        cp.kubectl("create", "namespace", ns)
    shard_a = Replica(cp, emu, tmp_path, "shard-a", [ns_a], "gmo-shard-a", ops).start()
    shard_b = Replica(cp, emu, tmp_path, "shard-b", [ns_b], "gmo-shard-b", ops).start()
    leases = {name: Lease(k8s_api, ops, f"gmo-{name}") for name in ("shard-a", "shard-b")}
    try:
        leases["shard-a"].wait_holder(shard_a)
        leases["shard-b"].wait_holder(shard_b)
        in_a, in_b = Azure(cp, ns_a, emu, shard_a.op), Azure(cp, ns_b, emu, shard_b.op)
        for azure, tag_ in ((in_a, "a"), (in_b, "b")):
            azure.secret()
            azure.apply("digits", f"shard-{tag}-{tag_}", provision(f"shard-{tag}-{tag_}"))
        for azure in (in_a, in_b):
            azure.wait_ready("digits")
        owners = {s["name"]: s.get("tags", {}).get("gpumodel.io/owner") for s in emu.summary()["services"]}
        uids = {ns: azure.get("digits")["metadata"]["uid"] for ns, azure in ((ns_a, in_a), (ns_b, in_b))}
        assert owners[f"shard-{tag}-a"] == f"{ns_a}/digits/{uids[ns_a]}"
        assert owners[f"shard-{tag}-b"] == f"{ns_b}/digits/{uids[ns_b]}"
        assert (shard_a.reconciled(), shard_b.reconciled()) == ({f"{ns_a}/digits"}, {f"{ns_b}/digits"})

        # Shard a dies; shard b goes on, and leaves a's namespace alone (its lease is another).
        shard_a.op.kill()
        in_a.apply("late", f"shard-{tag}-a2", provision(f"shard-{tag}-a2"))
        in_b.apply("late", f"shard-{tag}-b2", provision(f"shard-{tag}-b2"))
        in_b.wait_ready("late")
        untouched = in_a.get("late")
        assert "status" not in untouched and not untouched["metadata"].get("finalizers"), untouched
        assert shard_b.holds(leases["shard-b"].holder()) and shard_a.holds(leases["shard-a"].holder())
        assert shard_b.reconciled() == {f"{ns_b}/digits", f"{ns_b}/late"}

        shard_a.start()  # restarted, it waits out its own lease (the dead holder's) and then serves ns_a again
        in_a.operator = shard_a.op
        in_a.wait_ready("late", timeout=90)
        assert shard_a.reconciled() == {f"{ns_a}/digits", f"{ns_a}/late"}, "restarted, it serves its own again"
        for azure in (in_a, in_b):
            for name in ("digits", "late"):
                azure.cp.kubectl("delete", "gmd", name, "-n", azure.ns, "--wait=false")
        for azure in (in_a, in_b):
            for name in ("digits", "late"):
                wait_for(f"{azure.ns}/{name} to be gone", lambda: gone(azure, name), 90)  # noqa: B023
        computes, services = in_a.cloud()
        assert not {c for c in computes | services if c.startswith(f"shard-{tag}")}, "nothing left billing"
    finally:
        for replica in (shard_a, shard_b):
            replica.op.stop()
        for lease in leases.values():
            lease.close()
