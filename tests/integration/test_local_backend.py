"""The local backend with real processes: a real serving environment built with uv, real ``azmlinfsrv``
replicas serving the service's port themselves. Two GPUs are declared (the operator's testing setting), so
pinning and the per-GPU exclusivity are exercised on machines without one. Nothing is mocked; every wait polls a real
condition against a deadline.

The serving environment (empty pip list: just the inference server) is built once per module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from gpu_model_operator.backends.base import (
    DeploymentInputs,
    ObservedService,
    PermanentBackendError,
    ServiceState,
    TransientBackendError,
)
from gpu_model_operator.backends.local import processes as procs
from gpu_model_operator.backends.local import state as st
from gpu_model_operator.backends.local.backend import LocalBackend, stop_all
from gpu_model_operator.backends.local.environments import Environments, EnvStatus
from gpu_model_operator.backends.local.logs import failure_message
from gpu_model_operator.backends.local.replicas import LEGACY_ROUTER
from gpu_model_operator.backends.local.state import Keys
from gpu_model_operator.models import LocalSpec, parse_spec
from tests import polling

T = TypeVar("T")

CONDA = "name: echo\ndependencies:\n  - pip\n  - pip: []\n"
ECHO = """import json

ready = None


def init():
    global ready
    ready = "yes"


def run(raw_data):
    return {"echo": json.loads(raw_data), "ready": ready}
"""
BROKEN = "def init():\n    raise RuntimeError('weights file is corrupt')\n\n\ndef run(raw_data):\n    return raw_data\n"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.1) -> T:
    return polling.wait_for(what, probe, timeout, every)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, T]], T]:
    return loop.run_until_complete


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    (path / "weights.txt").write_text("42")
    return path


@pytest.fixture(scope="module")
def environment(state_dir: Path) -> EnvStatus:
    """The serving environment, built once: cold here, then every deploy finds it ready (warm)."""
    envs = Environments(state_dir)
    started = time.monotonic()
    first = envs.ensure_environment(CONDA)
    assert first.state == "building", "a new environment starts building and the call returns at once"
    assert time.monotonic() - started < 5
    assert envs.ensure_environment(CONDA).state == "building", "no second build of the same hash"
    status = wait_for("the environment", lambda: _done(envs.observe(first.hash)), timeout=600, every=0.2)
    assert status.state == "ready", status.message
    cold = time.monotonic() - started
    started = time.monotonic()
    assert envs.ensure_environment(CONDA).state == "ready"
    print(f"\nserving environment: cold build {cold:.1f}s, warm {time.monotonic() - started:.3f}s")
    assert not list(status.path.glob("*.lock")), "the lock is removed when the build ends"
    return status


def _done(status: EnvStatus) -> EnvStatus | None:
    return status if status.state in ("ready", "failed") else None


@pytest.fixture
def backend(state_dir: Path, environment: EnvStatus) -> LocalBackend:
    return LocalBackend(state_dir, declared_gpus=2)


@pytest.fixture(scope="module", autouse=True)
def no_process_left_behind(
    run: Callable[[Coroutine[Any, Any, Any]], Any], state_dir: Path, model_dir: Path
) -> Iterator[None]:
    """Whatever a failed test left running is stopped, through the backend's own delete."""
    yield
    cleaner = LocalBackend(state_dir, declared_gpus=2)
    for path in (state_dir / "services").glob("team-a.*"):
        run(cleaner.delete_service(make_inputs(model_dir, path.name.split(".", 1)[1])))


def make_inputs(
    model_dir: Path, name: str, *, script: str = ECHO, auth: bool = True, gpu_cores: int = 1, cpu: bool = False
) -> DeploymentInputs[LocalSpec]:
    spec = parse_spec(
        {
            "backend": "local",
            "model": {"path": str(model_dir)},
            "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
            "service": {"name": f"{name}-svc", "authEnabled": auth, "gpuCores": gpu_cores},
            "local": {"allowCpuFallback": cpu},
        }
    )
    assert isinstance(spec, LocalSpec)
    fingerprint = hashlib.sha256(json.dumps([script, CONDA, spec.to_wire()]).encode()).hexdigest()[:16]
    return DeploymentInputs("team-a", name, f"uid-{name}", 1, spec, script, CONDA, fingerprint=fingerprint)


def converge(
    run: Callable[[Coroutine[Any, Any, Any]], Any],
    backend: LocalBackend,
    inputs: DeploymentInputs[LocalSpec],
    replicas: int,
) -> ObservedService:
    """What the controller does, pass after pass: deploy when absent or changed, scale when the count is
    off, deploy to repair, wait while transitioning; until healthy or failed."""

    def step() -> ObservedService | None:
        obs: ObservedService = run(backend.observe_service(inputs))
        if obs.state in (ServiceState.HEALTHY, ServiceState.FAILED) and (
            obs.state == ServiceState.FAILED or obs.replicas == replicas
        ):
            return obs
        if obs.state == ServiceState.ABSENT or obs.fingerprint != inputs.fingerprint:
            run(backend.deploy_service(inputs, replicas))
        elif obs.state in (ServiceState.UNHEALTHY, ServiceState.HEALTHY) and obs.replicas != replicas:
            run(backend.scale_service(inputs, replicas))
        elif obs.state == ServiceState.UNHEALTHY:
            run(backend.deploy_service(inputs, replicas))
        return None

    return wait_for(f"{inputs.name} to converge", step, timeout=120, every=0.2)


def state_of(state_dir: Path, inputs: DeploymentInputs[LocalSpec]) -> dict[str, Any]:
    return json.loads((state_dir / "services" / f"team-a.{inputs.name}" / "state.json").read_text())  # type: ignore[no-any-return]


def post(url: str, body: Any, key: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def environ_of(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def running(pid: int) -> bool:
    """Running, or still exiting with its sockets open (``processes.alive``, whatever the program)."""
    return procs.alive(pid)


def processes_naming(fragment: str) -> list[int]:
    """Every running process whose command line contains ``fragment`` (gunicorn workers included)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and fragment in cmdline and running(int(entry.name)):
            found.append(int(entry.name))
    return found


def refuses(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    except urllib.error.HTTPError:
        return False
    except OSError:
        return True
    return False


def listening(pid: int) -> list[tuple[str, int]]:
    """Where a replica (its gunicorn master and workers) listens."""
    procs_ = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sorted(
        {(c.laddr.ip, c.laddr.port) for p in procs_ for c in p.net_connections("tcp") if c.status == "LISTEN"}
    )


def kill_replica(pid: int) -> None:
    """SIGKILL to a replica's process group (gunicorn's master and worker), as a crash would; returns once
    every thread of both has exited, and with them their sockets."""
    pids = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for("the killed replica to be gone", lambda: not any(running(p) for p in pids) or None)


def scores(uri: str, key: str | None, n: int) -> list[int]:
    return [post(uri, {"n": i}, key)[0] for i in range(n)]


def test_deploy_score_keys_pinning_scale_readopt_delete(
    run: Callable[[Coroutine[Any, Any, Any]], Any], backend: LocalBackend, state_dir: Path, model_dir: Path
) -> None:
    inputs = make_inputs(model_dir, "echo")
    warnings = run(backend.deploy_service(inputs, 2))
    assert warnings == []
    obs = converge(run, backend, inputs, 2)
    assert obs.state == ServiceState.HEALTHY, obs.message
    assert obs.owner == "team-a/echo/uid-echo" and obs.fingerprint == inputs.fingerprint
    assert obs.scoring_uri is not None and obs.scoring_uri.endswith("/api/v1/service/echo-svc/score")
    uri = obs.scoring_uri

    keys = run(backend.get_keys(inputs))
    assert keys is not None and keys[0] != keys[1]
    for key in keys:
        assert post(uri, {"x": [1, 2]}, key) == (200, {"echo": {"x": [1, 2]}, "ready": "yes"})
    assert post(uri, {"x": 1}, None)[0] == 401
    assert post(uri, {"x": 1}, "wrong-key")[0] == 401
    probe = run(backend.probe(inputs, obs))
    assert probe.ok, probe.message
    assert post(uri.replace("/echo-svc/", "/other-svc/"), {}, keys[0])[0] == 404, "its own service only"

    state = state_of(state_dir, inputs)
    port = state["port"]
    assert uri.startswith(f"http://127.0.0.1:{port}/")
    service_dir = state_dir / "services" / f"{inputs.namespace}.{inputs.name}"
    # The files that hold the keys, and the directories above them, are this user's alone.
    for path in (service_dir / "state.json", service_dir / "access.json"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (state_dir, state_dir / "services", service_dir):
        assert path.stat().st_mode & 0o777 == 0o700, path
    assert sorted(tuple(r["gpus"]) for r in state["replicas"]) == [(0,), (1,)], "each replica on its own GPU"
    for r in state["replicas"]:
        assert environ_of(r["pid"])["CUDA_VISIBLE_DEVICES"] == str(r["gpus"][0])
        # Loopback only: its own port (the operator's health check) and the service's, shared, nothing else.
        assert listening(r["pid"]) == sorted([("127.0.0.1", r["port"]), ("127.0.0.1", port)])
        own = f"http://127.0.0.1:{r['port']}"
        assert post(f"{own}/score", {}, keys[0])[0] == 404, "a replica's own port has the same routes"
        assert post(f"{own}/api/v1/service/echo-svc/score", {}, None)[0] == 401, "and the same key check"
    assert scores(uri, keys[0], 40) == [200] * 40
    for r in state["replicas"]:  # the kernel spreads the connections: every replica serves
        assert "/api/v1/service/echo-svc/score" in Path(r["log"]).read_text()
    with socket.socket() as stranger, pytest.raises(OSError):  # the port is the replicas' alone
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", port))

    on_compute = run(backend.services_on_compute(inputs))
    assert [(s.owner, s.replicas, s.gpu_cores) for s in on_compute] == [("team-a/echo/uid-echo", 2, 1)]

    # A replica that dies does not take the port: the other one serves every request at once.
    kill_replica(state["replicas"][0]["pid"])
    assert scores(uri, keys[1], 20) == [200] * 20
    assert converge(run, backend, inputs, 2).scoring_uri == uri

    # Scale 2 -> 1 under load: one replica stops, serving what the kernel queued for it first; the other serves
    # on, on the same port; not one request fails.
    state = state_of(state_dir, inputs)
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append(post(uri, {"n": 0}, keys[0])[0])
            except OSError:
                statuses.append(-1)

    clients = [threading.Thread(target=client) for _ in range(6)]
    for thread in clients:
        thread.start()
    wait_for("load on both replicas", lambda: len(statuses) > 50 or None)
    run(backend.scale_service(inputs, 1))
    wait_for("load after the scale", lambda: len(statuses) > 200 or None)
    stop.set()
    for thread in clients:
        thread.join()
    assert set(statuses) == {200}, f"{len(statuses)} requests: {sorted(set(statuses))}"
    obs = converge(run, backend, inputs, 1)
    after = state_of(state_dir, inputs)
    assert len(after["replicas"]) == 1 and obs.scoring_uri == uri
    stopped = [r for r in state["replicas"] if r["pid"] != after["replicas"][0]["pid"]]
    assert stopped and not any(running(r["pid"]) for r in stopped)
    assert not processes_naming(f"--port {stopped[0]['port']} "), "its gunicorn worker stopped too"
    assert scores(uri, keys[1], 3) == [200] * 3

    # A rename (no redeploy: the controller's fingerprint leaves the name out) and new keys reach the
    # running replica without a restart.
    renamed = dataclasses.replace(
        inputs,
        spec=inputs.spec.model_copy(update={"service": inputs.spec.service.model_copy(update={"name": "echo2-svc"})}),
    )
    run(backend.deploy_service(renamed, 1))
    obs = converge(run, backend, renamed, 1)
    assert obs.scoring_uri == uri.replace("/echo-svc/", "/echo2-svc/")
    assert post(obs.scoring_uri, {}, keys[0])[0] == 200 and post(uri, {}, keys[0])[0] == 404
    record = st.read(service_dir)
    assert record is not None
    record.keys = Keys(primary="rotated-primary", secondary=record.keys.secondary)
    st.save(service_dir, record)
    assert post(obs.scoring_uri, {}, keys[0])[0] == 401 and post(obs.scoring_uri, {}, "rotated-primary")[0] == 200
    assert [r["pid"] for r in state_of(state_dir, inputs)["replicas"]] == [r["pid"] for r in after["replicas"]]
    run(backend.deploy_service(inputs, 1))  # back to its name for the rest
    uri = converge(run, backend, inputs, 1).scoring_uri or ""
    keys = ("rotated-primary", keys[1])

    # Drift repair: a replica killed from outside is seen (UNHEALTHY) and restarted by the next scale. The
    # service had no replica then, and another program took its port: the service moves to a new one.
    victim = after["replicas"][0]["pid"]
    kill_replica(victim)
    seen = wait_for("the dead replica", lambda: _state(run(backend.observe_service(inputs)), ServiceState.UNHEALTHY))
    assert "exited" in seen.message and seen.replicas == 0
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: past TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        obs = converge(run, backend, inputs, 1)
        assert state_of(state_dir, inputs)["replicas"][0]["pid"] != victim
        moved = state_of(state_dir, inputs)["port"]
        assert moved != port and obs.scoring_uri == uri.replace(f":{port}/", f":{moved}/")
        assert post(obs.scoring_uri or "", {"n": 3}, keys[0])[0] == 200
        uri, port = obs.scoring_uri or "", moved

    # A new backend over the same state (an operator restart) adopts what runs: same pids, no duplicates.
    before = state_of(state_dir, inputs)
    restarted = LocalBackend(state_dir, declared_gpus=2)
    assert run(restarted.observe_service(inputs)).state == ServiceState.HEALTHY
    run(restarted.deploy_service(inputs, 1))
    run(restarted.scale_service(inputs, 1))
    again = state_of(state_dir, inputs)
    assert [r["pid"] for r in again["replicas"]] == [r["pid"] for r in before["replicas"]]
    assert again["port"] == port

    # Delete: every process gone, the port refuses connections, the files are gone; again is success.
    run(restarted.delete_service(inputs))
    assert not any(running(r["pid"]) for r in again["replicas"])
    assert not processes_naming(str(state_dir / "services" / "team-a.echo") + "/"), "workers included"
    assert refuses(port)
    assert not (state_dir / "services" / "team-a.echo").exists()
    assert run(restarted.observe_service(inputs)).state == ServiceState.ABSENT
    run(restarted.delete_service(inputs))


def _state(obs: ObservedService, want: ServiceState) -> ObservedService | None:
    return obs if obs.state == want else None


def test_a_failing_init_is_failed_with_the_scripts_exception(
    run: Callable[[Coroutine[Any, Any, Any]], Any], backend: LocalBackend, model_dir: Path
) -> None:
    inputs = make_inputs(model_dir, "broken", script=BROKEN)
    run(backend.deploy_service(inputs, 1))
    obs = wait_for("FAILED", lambda: _state(run(backend.observe_service(inputs)), ServiceState.FAILED))
    assert "RuntimeError: weights file is corrupt" in obs.message
    assert "score.py" in obs.message and "in init" in obs.message
    assert "UserScriptException" not in obs.message, "the user's exception, not the server's wrapper"
    run(backend.delete_service(inputs))


SLOW = "import time\n\n\ndef init():\n    pass\n\n\ndef run(raw_data):\n    time.sleep(5)\n    return 'late'\n"


def test_the_scoring_timeout_is_the_inference_servers_own(
    run: Callable[[Coroutine[Any, Any, Any]], Any], backend: LocalBackend, model_dir: Path
) -> None:
    """No proxy enforces spec.service.scoringTimeoutMs any more: the inference server does (SCORING_TIMEOUT_MS), as
    in Azure ML's images, and says so."""
    inputs = make_inputs(model_dir, "slow", script=SLOW)
    spec = inputs.spec.model_copy(
        update={"service": inputs.spec.service.model_copy(update={"scoring_timeout_ms": 1000})}
    )
    inputs = dataclasses.replace(inputs, spec=spec)
    uri = converge(run, backend, inputs, 1).scoring_uri or ""
    keys = run(backend.get_keys(inputs))
    started = time.monotonic()
    status, body = post(uri, {}, keys[0])
    assert (status, time.monotonic() - started < 4) == (500, True)
    assert "Scoring timeout after 1000 ms" in body
    run(backend.delete_service(inputs))


def test_gpus_are_never_shared_between_services(
    run: Callable[[Coroutine[Any, Any, Any]], Any], backend: LocalBackend, state_dir: Path, model_dir: Path
) -> None:
    first, second = make_inputs(model_dir, "first", gpu_cores=2), make_inputs(model_dir, "second")
    assert converge(run, backend, first, 1).state == ServiceState.HEALTHY
    with pytest.raises(TransientBackendError, match="free GPU"):
        run(backend.deploy_service(second, 1))
    run(backend.delete_service(first))
    assert converge(run, backend, second, 1).state == ServiceState.HEALTHY
    assert state_of(state_dir, second)["replicas"][0]["gpus"] == [0]
    run(backend.delete_service(second))


def test_no_gpu_serves_on_cpu_only_when_allowed(
    run: Callable[[Coroutine[Any, Any, Any]], Any], state_dir: Path, model_dir: Path, environment: EnvStatus
) -> None:
    cpu_machine = LocalBackend(state_dir, declared_gpus=0)
    compute = run(cpu_machine.observe_compute(make_inputs(model_dir, "cpu")))
    assert compute.cpu_only and compute.gpus_total == 0
    with pytest.raises(PermanentBackendError, match="allowCpuFallback"):
        run(cpu_machine.deploy_service(make_inputs(model_dir, "nocpu"), 1))
    assert not (state_dir / "services" / "team-a.nocpu").exists(), "refused before anything was started"
    inputs = make_inputs(model_dir, "cpu", cpu=True, auth=False)
    obs = converge(run, cpu_machine, inputs, 1)
    assert obs.state == ServiceState.HEALTHY
    assert run(cpu_machine.get_keys(inputs)) is None
    assert post(obs.scoring_uri or "", [1], None) == (200, {"echo": [1], "ready": "yes"}), "auth off: no key"
    replica = state_of(state_dir, inputs)["replicas"][0]
    assert environ_of(replica["pid"])["CUDA_VISIBLE_DEVICES"] == ""
    run(cpu_machine.delete_service(inputs))


def test_environment_builds_are_locked_retried_and_report_failures(state_dir: Path, environment: EnvStatus) -> None:
    envs = Environments(state_dir)
    # A stale lock (its builder died with the machine, say) is taken over, not waited on forever.
    conda = "dependencies:\n  - pip:\n      - flask\n"  # the server brings flask: same packages, another hash
    status = envs.observe(hashlib.sha256(b"unused").hexdigest()[:16])
    assert status.state == "missing"
    digest = envs.ensure_environment(conda).hash
    wait_for("the second environment", lambda: _done(envs.observe(digest)), timeout=300)
    (envs.root / digest / "ready").unlink()
    (envs.root / digest / "build.lock").write_text("999999999")
    assert envs.observe(digest).state == "missing"
    assert envs.ensure_environment(conda).state == "building"
    assert wait_for("the rebuild", lambda: _done(envs.observe(digest)), timeout=300).state == "ready"

    # The build is detached: it finishes after the process that started it is gone (an operator restart).
    detached = "dependencies:\n  - pip:\n      - click\n"  # the server brings click too
    starter = (
        "import os, sys; from pathlib import Path\n"
        "from gpu_model_operator.backends.local.environments import Environments\n"
        "print(Environments(Path(sys.argv[1])).ensure_environment(sys.argv[2]).hash, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", starter, str(state_dir), detached], capture_output=True, text=True, timeout=60
    )
    started = out.stdout.strip()
    assert out.returncode == 0 and (envs.root / started / "build.lock").exists(), out.stderr
    assert wait_for("the orphaned build", lambda: _done(envs.observe(started)), timeout=300).state == "ready"
    assert not (envs.root / started / "build.lock").exists()

    # A build that cannot succeed says why, and is not retried until a deploy asks for it.
    bad = "dependencies:\n  - pip:\n      - /nonexistent/local-package\n"
    first = envs.ensure_environment(bad)
    failed = wait_for("the failing build", lambda: _done(envs.observe(first.hash)), timeout=300)
    assert failed.state == "failed" and "nonexistent" in failed.message
    assert envs.ensure_environment(bad).state == "failed"
    assert envs.ensure_environment(bad, retry_failed=True).state == "building"
    assert wait_for("the retry", lambda: _done(envs.observe(first.hash)), timeout=300).state == "failed"


def test_failure_message_prefers_the_users_exception() -> None:
    log = (
        "Traceback (most recent call last):\n"
        '  File "/venv/x/appinsights_client.py", line 230, in _get_model_ids\n'
        "NotADirectoryError: [Errno 20] Not a directory: '/m/weights.txt'\n"
        "E azmlinfsrv - Encountered Exception Traceback (most recent call last):\n"
        '  File "/srv/app/score.py", line 3, in init\n'
        "    raise KeyError('w')\n"
        "KeyError: 'w'\n\n"
        "Traceback (most recent call last):\n"
        '  File "/venv/x/user_script.py", line 121, in invoke_init\n'
        "azureml_inference_server_http.server.user_script.UserScriptException: Caught an unhandled exception\n"
    )
    message = "init() failed: KeyError: 'w' (File score.py, line 3, in init)"
    assert failure_message(log, "/srv/app/score.py") == message
    assert failure_message("nothing went wrong") is None


ROUTER_STAND_IN = """import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    s.accept()[0].close()
"""


def test_a_service_of_the_router_layout_keeps_its_uri_when_it_moves_to_the_replicas(
    run: Callable[[Coroutine[Any, Any, Any]], Any], backend: LocalBackend, state_dir: Path, model_dir: Path
) -> None:
    """A service an earlier operator started: a router process on the service's port (plain, no SO_REUSEPORT) in
    front of replicas on ports of their own, in a state file of that layout. The next pass stops the router and
    starts replicas that serve the same port themselves: the scoring URI does not change."""
    inputs = make_inputs(model_dir, "earlier")
    uri = converge(run, backend, inputs, 1).scoring_uri
    service_dir = state_dir / "services" / "team-a.earlier"
    stop_all(service_dir)
    record = st.read(service_dir)
    assert record is not None and uri is not None
    args = [sys.executable, "-c", ROUTER_STAND_IN, str(record.port), LEGACY_ROUTER, "--config", "router.json"]
    router = procs.spawn(args, {"PATH": os.environ["PATH"]}, service_dir / "router.log", service_dir)
    ticks = Path(f"/proc/{router.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    earlier = json.loads(record.dump())
    for field in ("port", "layout", "legacy_router"):
        del earlier[field]
    earlier["router"] = {"pid": router.pid, "pgid": router.pgid, "start_time": ticks, "port": record.port}
    earlier["replicas"] = [{**r, "create_time": None, "start_time": "1"} for r in earlier["replicas"]]
    (service_dir / "state.json").write_text(json.dumps(earlier))

    seen = run(backend.observe_service(inputs))
    assert seen.state == ServiceState.UNHEALTHY and "earlier operator" in seen.message and seen.scoring_uri == uri
    obs = converge(run, backend, inputs, 1)
    assert obs.state == ServiceState.HEALTHY and obs.scoring_uri == uri
    assert not running(router.pid), "the router was stopped"
    keys = run(backend.get_keys(inputs))
    assert post(uri, {"n": 1}, keys[0]) == (200, {"echo": {"n": 1}, "ready": "yes"})
    moved = st.read(service_dir)
    assert moved is not None and not moved.legacy and moved.layout == st.LAYOUT
    run(backend.delete_service(inputs))
