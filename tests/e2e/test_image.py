"""The operator's image, built as `make image` builds it (hack/image/build.sh: buildah on a Debian base made with
debootstrap, both cached) and run here with buildah (tests/e2e/buildah.py: no kubelet, no container engine):

- what it holds: the operator's wheel and the lock's dependencies, nothing of development (no dev tools, no tests,
  no dev package, no repository files), nothing only the local backend needs (uv, nvidia-ml-py; psutil only as
  azure-ai-ml's own dependency), and the licence of everything in it; configured as the Deployment runs it;
- the operator run from it as the chart's Deployment runs it (user 10001, its environment, the chart's
  ServiceAccount by the in-cluster path, HOME and /tmp as volumes and nothing else writable) against the test
  control plane and the Azure ML emulator, until a resource is Ready, then deleted; it writes nothing outside its
  volumes, as a read-only root file system requires;
- `helm test` of the release, its hook pod run from the image as the kubelet would (buildah.run_pod_once), passing
  because the operator in the image leads and renews its Lease.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gpu_model_operator_dev.azureml_emulator import Emulator
from gpu_model_operator_dev.controlplane import ControlPlane, ensure_helm
from gpu_model_operator_dev.operator_process import free_port
from gpu_model_operator_dev.tools import ensure_image
from tests.e2e.azure_v2_harness import AzureV2
from tests.e2e.buildah import Container, container, inspect_image, pod_volumes, run_pod_once, writable
from tests.e2e.harness import ROOT, wait_for
from tests.integration.test_helm_chart import CHART, Helm

pytestmark = pytest.mark.timeout(600)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SITE = Path("opt/gpu-model-operator/lib/python3.11/site-packages")
#: The dev extra's tools and the dev package: never in the image.
DEV: set[str] = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
DEV |= {"gpu-model-operator-dev", "hypothesis"}
#: What only the local backend needs.
LOCAL: set[str] = {
    canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["local"]
}
#: Files and folders only the repository has, beside the package: none of them may be in the image (third-party
#: distributions ship tests of their own, which are theirs).
REPOSITORY_ONLY = {".git", ".venv", "gpu_model_operator_dev", "azureml_emulator", "test_image.py", "alerts_test.yaml"}


@pytest.fixture(scope="module")
def image() -> str:
    return ensure_image()


@pytest.fixture(scope="module")
def box(image: str) -> Iterator[Container]:
    with container(image) as found:
        yield found


def distributions(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for info in (root / SITE).glob("*.dist-info"):
        name = next(ln for ln in (info / "METADATA").read_text().splitlines() if ln.startswith("Name: "))
        found[canonicalize_name(name.removeprefix("Name: "))] = info
    return found


def requires(info: Path) -> set[str]:
    """The distribution's requirements but its extras' (which are not installed)."""
    lines = (info / "METADATA").read_text().splitlines()
    reqs = [Requirement(ln.removeprefix("Requires-Dist: ")) for ln in lines if ln.startswith("Requires-Dist: ")]
    return {canonicalize_name(r.name) for r in reqs if r.marker is None or "extra" not in str(r.marker)}


def test_the_image_is_configured_as_the_deployment_runs_it(image: str) -> None:
    config = inspect_image(image)
    assert (config["User"], config["Entrypoint"], config["WorkingDir"]) == (
        "10001:10001",
        ["gpu-model-operator", "run"],
        "/home/gmo",
    )
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOME"] == "/home/gmo" and env["PATH"].startswith("/opt/gpu-model-operator/bin:")
    assert not {"PIP_BREAK_SYSTEM_PACKAGES", "CA_BUNDLE", "SSL_CERT_FILE", "UV_LINK_MODE"} & set(env), "build-time only"
    assert config["Labels"]["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]
    assert config["Labels"]["org.opencontainers.image.licenses"] == "MIT"


def test_the_image_holds_the_operator_and_nothing_of_development(box: Container) -> None:
    dists = distributions(box.root)
    assert "gpu-model-operator" in dists
    assert DEV & set(dists) == set(), "a development tool is in the image"
    needed = {req for info in dists.values() for req in requires(info)}
    assert {d for d in LOCAL & set(dists) if d not in needed} == set(), "only the local backend needs these"
    assert {"uv", "nvidia-ml-py"} & set(dists) == set()
    assert not (box.root / "src").exists(), "the build stage's sources stay in the build stage"
    assert not (box.root / "run" / "secrets").exists(), "the build's CA bundle (a build secret) stays out"
    leftovers = [
        str(path.relative_to(box.root))
        for top in ("opt", "home", "usr/local", "srv", "root")
        for path in (box.root / top).rglob("*")
        if path.name in REPOSITORY_ONLY
    ]
    assert leftovers == []
    assert not (box.root / SITE / "tests").exists()


def test_the_image_carries_the_licence_of_everything_in_it(box: Container) -> None:
    assert (box.root / "usr/share/doc/gpu-model-operator/copyright").read_text() == (ROOT / "LICENSE").read_text()
    assert (distributions(box.root)["gpu-model-operator"] / "licenses" / "LICENSE").read_text() == (
        ROOT / "LICENSE"
    ).read_text()
    without = []
    for name, info in distributions(box.root).items():
        files = [p.name for p in info.rglob("*") if re.match(r"(?i)(licen[cs]e|copying|notice)", p.name)]
        metadata = (info / "METADATA").read_text()
        declared = re.search(r"(?m)^(License(-Expression)?: \S|Classifier: License ::)", metadata)
        if not files and not declared:
            without.append(name)
    assert without == []
    status = (box.root / "var/lib/dpkg/status").read_text()
    packages = [ln.split(": ", 1)[1].split(":")[0] for ln in status.splitlines() if ln.startswith("Package: ")]
    docs = box.root / "usr/share/doc"
    assert (
        packages
        and [p for p in packages if not (docs / p / "copyright").exists() and not (docs / p).is_symlink()] == []
    )


def test_without_the_local_extra_the_local_backend_says_what_to_install(box: Container) -> None:
    result = box.run(["gpu-model-operator", "run", "--backend", "local", "--all-namespaces"])
    assert result.returncode == 2
    assert "pip install 'gpu-model-operator[local]'" in result.stderr, result.stderr


# ---- the operator run from the image ---------------------------------------------------------------------


def pod_env(manifest: list[dict[str, Any]], pod_name: str, namespace: str) -> dict[str, str]:
    """The chart's Deployment's container environment, the downward API's fields filled in as the kubelet would."""
    (deployment,) = [d for d in manifest if d["kind"] == "Deployment"]
    env = {}
    for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": namespace}[field]
    return env


@pytest.fixture(scope="module")
def release(
    control_plane: ControlPlane, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The chart installed with the built image, watching one namespace (its CRD and cluster-wide objects are the
    other tests')."""
    tag = uuid.uuid4().hex[:6]
    name, namespace, watched = f"img-{tag}-gpu-model-operator", f"img-{tag}-operator", f"img-{tag}-models"
    for ns in (namespace, watched):
        control_plane.kubectl("create", "namespace", ns)
    helm = Helm(ensure_helm(), tmp_path_factory.mktemp("helm-home"), control_plane.kubeconfig)
    repository, version = image.rsplit(":", 1)
    values = [
        "watch.scope=namespaced", f"watch.namespaces={{{watched}}}", "userRoles.create=false",
        "admissionPolicies.noLocalBackend=false", "crds.install=false",
        f"image.repository={repository}", f"image.tag={version}",
    ]  # fmt: skip
    helm("install", name, CHART, "-n", namespace, *[a for v in values for a in ("--set", v)])
    manifest = [d for d in yaml.safe_load_all(helm("get", "manifest", name, "-n", namespace).stdout) if d]
    yield {"name": name, "namespace": namespace, "watched": watched, "manifest": manifest, "helm": helm}
    helm("uninstall", name, "-n", namespace, check=False)


def test_the_operator_runs_from_the_image_until_a_resource_is_ready_and_helm_test_passes(
    control_plane: ControlPlane, image: str, release: dict[str, Any], v2_emu: Emulator, tmp_path: Path
) -> None:
    cp, namespace, watched = control_plane, release["namespace"], release["watched"]
    volumes, env = pod_volumes(cp, namespace, release["name"], tmp_path / "account")
    home, tmp = writable(tmp_path / "home"), writable(tmp_path / "tmp")
    # The emulator's CA, as a corporate CA bundle is given to the pod (extraVolumes, REQUESTS_CA_BUNDLE).
    trust = tmp_path / "emulator-ca"
    trust.mkdir(mode=0o755)
    (trust / "ca.crt").write_bytes(Path(v2_emu.env["REQUESTS_CA_BUNDLE"]).read_bytes())
    (trust / "ca.crt").chmod(0o644)
    volumes |= {str(home): "/home/gmo", str(tmp): "/tmp", str(trust): "/etc/ssl/emulator:ro"}
    env |= pod_env(release["manifest"], "gpu-model-operator-image-test", namespace)
    env |= {**v2_emu.client_env_v2(base={}), "GMO_HEALTH_PORT": str(free_port()), "GMO_METRICS_PORT": str(free_port())}
    env |= {"REQUESTS_CA_BUNDLE": "/etc/ssl/emulator/ca.crt", "SSL_CERT_FILE": "/etc/ssl/emulator/ca.crt"}
    # Where the SDKs write their configuration: under HOME, the pod's emptyDir.
    env |= {"AZURE_CONFIG_DIR": "/home/gmo/.azure", "AZUREML_AUTH_CONFIG_DIR": "/home/gmo/.azureml"}
    env["GMO_POLL_SECONDS"] = "1"  # what extraEnv would set: the emulator answers in a second
    azure = AzureV2(cp, watched, v2_emu, None)  # type: ignore[arg-type]
    with (
        container(image) as box,
        box.background(["gpu-model-operator", "run"], tmp_path / "operator.log", env=env, volumes=volumes) as proc,
    ):
        azure.secret()
        azure.apply("digits", f"img-{uuid.uuid4().hex[:6]}")

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            return azure.condition("digits").get("status") == "True"

        try:
            wait_for("the resource Ready, reconciled by the operator in the image", ready, 180)
        except AssertionError:
            raise AssertionError((tmp_path / "operator.log").read_text()[-4000:]) from None
        helm_test(cp, release, tmp_path)
        cp.kubectl("delete", "gmd", "digits", "-n", watched, "--wait=false")
        wait_for("the resource deleted by the operator in the image", lambda: not exists(cp, watched), 120)
        written = box.files_written()
    log = (tmp_path / "operator.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert written == [], f"a read-only root file system would have refused these writes: {written}"


def exists(cp: ControlPlane, namespace: str) -> bool:
    return cp.kubectl("get", "gmd", "digits", "-n", namespace, "-o", "name", check=False).stdout.strip() != ""


def helm_test(cp: ControlPlane, release: dict[str, Any], tmp_path: Path) -> None:
    """`helm test`, with this test in the kubelet's place for its hook pod (run from the image: run_pod_once)."""
    helm: Helm = release["helm"]
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    runner = threading.Thread(
        target=lambda: result.setdefault("helm", helm("test", release["name"], "-n", release["namespace"], check=False))
    )
    runner.start()
    pod_name = f"{release['name']}-test"

    def hook_pod() -> dict[str, Any] | None:
        found = cp.kubectl("get", "pod", pod_name, "-n", release["namespace"], "-o", "json", check=False)
        return json.loads(found.stdout) if found.returncode == 0 else None

    pod = wait_for("helm test's pod", hook_pod, 60)
    log = io.StringIO()
    status = run_pod_once(cp, pod, tmp_path / "hook", log)
    runner.join(120)
    assert status == 0, log.getvalue()
    assert "leads: it renewed the Lease" in log.getvalue()
    assert result["helm"].returncode == 0 and "Succeeded" in result["helm"].stdout, result["helm"].stdout
    wait_for("Helm to delete the pod of a test that passed (hook-succeeded)", lambda: hook_pod() is None, 30)
