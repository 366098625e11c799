"""A real Kubernetes control plane on loopback, started the way controller-runtime's envtest does it.

kube-apiserver backed by etcd; no kubelet, no nodes. Tests and the demo talk to it exactly as to any cluster
(kubeconfig, kubectl, RBAC, TokenRequest), which is the point: no API mocks. On request it also runs
kube-controller-manager with the namespace and garbage-collector controllers, so that ``kubectl delete namespace``
deletes what the namespace holds (finalizers respected, as a cluster does) and ownerReferences are collected.
Binaries come from ``hack/controlplane/build.sh`` (pinned Go modules, cached outside the repository).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

import click
import yaml

from .operator_process import free_port
from .pki import PrivateCA, write_rsa_key_pair

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_ENV = "GPU_MODEL_OPERATOR_CONTROLPLANE_BIN"
#: The controllers the tests' control plane runs: what makes a namespace's deletion and ownerReferences behave as
#: in a cluster. No controller that needs nodes or a kubelet.
CONTROLLERS = ("namespace-controller", "garbage-collector-controller")


def run_build(tool: str) -> str:
    """Runs ``hack/<tool>/build.sh``, which builds into the cache outside the repository once and then only
    prints where the result is, and returns that (the script's last line of output).

    One build of a tool at a time on this machine: test processes running in parallel (pytest-xdist workers) may
    all ask for a tool that is not built yet, and two builds writing the same files would corrupt them; the others
    wait on the lock, then find the cache filled."""
    lock = Path(tempfile.gettempdir()) / f"gpu-model-operator-build-{tool}.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        script = str(REPO_ROOT / "hack" / tool / "build.sh")
        out = subprocess.run([script], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def _build(tool: str) -> Path:
    """The directory ``hack/<tool>/build.sh`` built into (``run_build``)."""
    return Path(run_build(tool))


def ensure_binaries() -> Path:
    """The directory with kube-apiserver, kube-controller-manager, etcd and kubectl; builds them on first use
    (minutes, once)."""
    override = os.environ.get(BIN_ENV)
    if override:
        return Path(override)
    return _build("controlplane")


def ensure_helm() -> Path:
    """The helm binary of the release pinned in ``hack/helm/``; built on first use (minutes, once), so the
    chart is linted, rendered and installed by the real Helm rather than by an imitation of it."""
    return _build("helm") / "helm"


def ensure_argocd_health() -> Path:
    """The ``argocd-health`` program of ``hack/argocd-health/``, which runs a health check through Argo CD's
    own code (util/lua, util/settings, gitops-engine); built on first use (minutes, once)."""
    return _build("argocd-health") / "argocd-health"


class ControlPlane:
    """etcd + kube-apiserver as child processes, with certificates and an admin kubeconfig in ``directory``;
    kube-controller-manager too when ``controller_manager`` is set, or from ``start_controller_manager()`` on."""

    def __init__(
        self, directory: Path | None = None, *, start_timeout: float = 120.0, controller_manager: bool = False
    ) -> None:
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="gmo-controlplane-"))
        self.start_timeout = start_timeout
        self.with_controller_manager = controller_manager
        self.binaries_dir = Path()
        self.server = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._controller_manager: subprocess.Popen[bytes] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def _write_pki(self) -> None:
        """A fresh CA per start: the apiserver's serving certificate (its loopback names and the first address of
        the service range, which in-cluster clients dial as ``kubernetes.default``), the admin's client
        certificate (user ``admin`` in group ``system:masters``), and the ServiceAccount token key pair."""
        pki = self.dir / "pki"
        ca = PrivateCA("gpu-model-operator test control plane")
        ca.write_cert(pki / "ca.crt")
        serving = ("localhost", "127.0.0.1", "10.0.0.1")
        ca.issue(pki / "apiserver.crt", pki / "apiserver.key", *serving, common_name="kube-apiserver")
        ca.issue(pki / "admin.crt", pki / "admin.key", "admin", common_name="admin", organization="system:masters")
        write_rsa_key_pair(pki / "sa.key", pki / "sa.pub")

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def start(self) -> ControlPlane:
        self.binaries_dir = ensure_binaries()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        pki = self.dir / "pki"
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            str(self.binaries_dir / "etcd"), f"--data-dir={self.dir / 'etcd'}", f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}", f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync=true",
        ])  # fmt: skip
        self.server = f"https://127.0.0.1:{api_port}"
        apiserver = self._spawn("kube-apiserver", [
            str(self.binaries_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            f"--secure-port={api_port}", f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--service-account-issuer={self.server}", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}", "--disable-admission-plugins=ServiceAccount",
            "--advertise-address=127.0.0.1",
        ])  # fmt: skip
        self._write_kubeconfig()
        try:
            self._wait_ready(apiserver)
            if self.with_controller_manager:
                self.start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def start_controller_manager(self) -> None:
        """kube-controller-manager with ``CONTROLLERS`` only, signed in as the admin (no leader election: it is
        the only one), serving nothing. Ready when the namespace controller has started: a namespace deleted
        from then on is emptied and removed. Idempotent."""
        if self._controller_manager is not None and self._controller_manager.poll() is None:
            return
        self._controller_manager = self._spawn("kube-controller-manager", [
            str(self.binaries_dir / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}", "--leader-elect=false", "--secure-port=0",
            "--use-service-account-credentials=false",
        ])  # fmt: skip
        self._wait_log(self._controller_manager, "Starting namespace controller")

    def stop_controller_manager(self, timeout: float = 15.0) -> None:
        """Stops kube-controller-manager only (the apiserver and etcd go on); a namespace deleted afterwards stays
        Terminating, as before it ran."""
        proc, self._controller_manager = self._controller_manager, None
        if proc is None:
            return
        self._terminate(proc, timeout)
        self._procs.remove(proc)

    def _wait_log(self, proc: subprocess.Popen[bytes], *needles: str) -> None:
        """Polls ``proc``'s log for a line holding every one of ``needles``, until ``start_timeout``."""
        path = self.dir / f"{self._name(proc)}.log"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{self._name(proc)} exited with {proc.returncode}:\n{self._log_tail(proc)}")
            text = path.read_text(errors="replace") if path.exists() else ""
            if any(all(n in line for n in needles) for line in text.splitlines()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self._name(proc)} not started in {self.start_timeout}s:\n{self._log_tail(proc)}")

    def _write_kubeconfig(self) -> None:
        pki = self.dir / "pki"
        cluster = {"server": self.server, "certificate-authority": str(pki / "ca.crt")}
        user = {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": cluster}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self, apiserver: subprocess.Popen[bytes]) -> None:
        pki = self.dir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self._name(proc)} exited with {proc.returncode}:\n{self._log_tail(proc)}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=2) as resp:
                    if resp.status == 200 and self.kubectl("get", "namespace", "default", check=False).returncode == 0:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready in {self.start_timeout}s:\n{self._log_tail(apiserver)}")

    @staticmethod
    def _name(proc: subprocess.Popen[bytes]) -> str:
        args = proc.args
        return Path(str(args[0] if isinstance(args, list) else args)).name

    def _log_tail(self, proc: subprocess.Popen[bytes], lines: int = 30) -> str:
        path = self.dir / f"{self._name(proc)}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binaries_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=180)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def install_crds(self, path: Path, timeout: float = 60.0) -> None:
        """Apply the CRDs and wait until each is Established (polled: a fresh CRD has no conditions yet,
        which makes `kubectl wait` fail instead of wait)."""
        names = self.kubectl("apply", "-f", str(path), "-o", "name").stdout.split()
        deadline = time.monotonic() + timeout
        for name in names:
            query = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
            while self.kubectl("get", name, "-o", query, check=False).stdout.strip() != "True":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not Established in {timeout}s")
                time.sleep(0.1)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """In the reverse order of their start (the controller manager and the apiserver depend on what started
        before them), each SIGTERM then SIGKILL after a deadline."""
        for proc in reversed(self._procs):
            self._terminate(proc, timeout)
        self._procs.clear()
        self._controller_manager = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            shutil.rmtree(self.dir / "etcd", ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


@click.group()
def main() -> None:
    """A local Kubernetes control plane for development (kube-apiserver + etcd, no nodes)."""


@main.command()
def build() -> None:
    """Build (or find in the cache) the control-plane binaries and print their directory."""
    click.echo(ensure_binaries())


@main.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True, help="Where to keep state.")
def up(directory: Path) -> None:
    """Start it (with the namespace and garbage-collector controllers), print the kubeconfig path, and run until
    interrupted."""
    with ControlPlane(directory, controller_manager=True) as cp:
        click.echo(str(cp.kubeconfig), err=False)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop:
            signal.pause()


if __name__ == "__main__":
    main()
