"""Running the operator's image here, where there is no kubelet and no container engine: buildah's own ``run``
(``--isolation chroot``, the host's network), with what a kubelet would give the pod's container.

- :class:`Container`: one working container of the image, its root file system mounted for reading, and its
  writable layer, so a test can tell what the process wrote outside its volumes (a read-only root file system
  allows nothing there).
- :func:`pod_volumes`: the ServiceAccount token, CA and namespace at the path in-cluster clients read them from,
  and ``KUBERNETES_SERVICE_HOST``/``PORT``, as the kubelet projects them (here the control plane's loopback, in
  its serving certificate's names).
- :func:`run_pod_once`: what the kubelet does with a pod whose containers run to completion (a `helm test` hook):
  run its container from its image, as its user, with its ServiceAccount, and write the pod's phase from the exit
  status. Nothing else of a pod is honoured (resources, probes): the tests that use it say so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gpu_model_operator_dev.controlplane import ControlPlane

#: Where in-cluster clients (client-go, the Python client) read the pod's ServiceAccount: /var/run/secrets/...,
#: and /var/run is /run in Debian; buildah binds a volume at the resolved path only.
ACCOUNT = "/run/secrets/kubernetes.io/serviceaccount"


def buildah(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def inspect_image(image: str) -> dict[str, Any]:
    """The image's OCI configuration (user, entrypoint, environment, labels)."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image).stdout)["OCIv1"]["config"]
    return config


@dataclass
class Container:
    """A working container of ``image``: ``root`` is its merged file system, ``written`` its writable layer."""

    image: str
    cid: str
    root: Path

    @property
    def written(self) -> Path:
        return self.root.parent / "diff"

    def files_written(self) -> list[str]:
        """The files written into the container's own layer: not the folders (buildah makes one for each volume's
        mount point there), nor /run/.containerenv, which buildah and podman write into every container they run."""
        found = [str(p.relative_to(self.written)) for p in self.written.rglob("*") if not p.is_dir()]
        return sorted(f for f in found if f != "run/.containerenv")

    def command(self, argv: list[str], *, user: str, env: Mapping[str, str], volumes: Mapping[str, str]) -> list[str]:
        """``buildah run`` of ``argv`` in this container: as ``user``, with these variables and bind mounts."""
        cmd = ["buildah", "run", "--isolation", "chroot", "--network", "host", "--user", user]
        for name, value in env.items():
            cmd += ["--env", f"{name}={value}"]
        for host, inside in volumes.items():
            cmd += ["--volume", f"{host}:{inside}"]
        return [*cmd, self.cid, "--", *argv]

    def run(
        self, argv: list[str], *, user: str = "10001:10001", env: Mapping[str, str] = {}, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(argv, user=user, env=env, volumes={})
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    @contextmanager
    def background(
        self, argv: list[str], log: Path, *, env: Mapping[str, str], volumes: Mapping[str, str]
    ) -> Iterator[subprocess.Popen[bytes]]:
        """The command running until the block ends; then SIGTERM (as the kubelet stops a container), SIGKILL
        after 30 s. Its own process group, so the signal reaches the process buildah started."""
        cmd = self.command(argv, user="10001:10001", env=env, volumes=volumes)
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                yield proc
            finally:
                stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextmanager
def container(image: str) -> Iterator[Container]:
    cid = buildah("from", "--pull=never", image).stdout.strip()
    try:
        root = Path(buildah("mount", cid).stdout.strip())
        yield Container(image, cid, root)
    finally:
        buildah("umount", cid, check=False)
        buildah("rm", cid, check=False)


def pod_volumes(cp: ControlPlane, namespace: str, account: str, folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The ServiceAccount's projected volume (a fresh token, the cluster's CA, the namespace) and the variables the
    kubelet sets for in-cluster clients: (volumes, env)."""
    folder.mkdir(parents=True, exist_ok=True)
    token = cp.kubectl("create", "token", account, "-n", namespace, "--duration=3600s").stdout.strip()
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes((cp.dir / "pki" / "ca.crt").read_bytes())
    (folder / "namespace").write_text(namespace)
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the container's user, as the kubelet's are
    host, port = cp.server.removeprefix("https://").rsplit(":", 1)
    return {str(folder): f"{ACCOUNT}:ro"}, {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


def writable(folder: Path) -> Path:
    """An emptyDir: a fresh folder the container's user (10001) owns."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 10001, 10001)
    return folder


def run_pod_once(cp: ControlPlane, pod: dict[str, Any], folder: Path, log: IO[str]) -> int:
    """The pod's one container run to completion as the kubelet would, and its phase written: Succeeded on exit
    status 0, else Failed. Returns the exit status."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    spec = pod["spec"]
    (main,) = spec["containers"]
    security = spec.get("securityContext", {})
    user = f"{security.get('runAsUser', 0)}:{security.get('runAsGroup', 0)}"
    volumes, env = pod_volumes(cp, namespace, spec["serviceAccountName"], folder / "account")
    env.update({e["name"]: e["value"] for e in main.get("env", []) if "value" in e})
    with container(main["image"]) as box:
        cmd = box.command([*main.get("command", []), *main.get("args", [])], user=user, env=env, volumes=volumes)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    log.write(result.stdout + result.stderr)
    phase = "Succeeded" if result.returncode == 0 else "Failed"
    status = json.dumps({"status": {"phase": phase}})
    cp.kubectl("patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", status)
    return result.returncode
