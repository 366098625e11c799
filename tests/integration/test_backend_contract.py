"""One contract, every backend: the promises of ``backends/base.py`` checked the same way against each backend
the operator has. The local backend runs real inference-server processes with 2 declared GPUs; the azureml
backend runs the real azureml-core SDK against the Azure ML emulator, and the azureml-v2 backend the real
azure-ai-ml and azure-identity against the emulator's online endpoints, on an attached Kubernetes compute. A
backend added later joins by adding a fixture to ``BACKENDS``.

The contract: observing reads only; deleting what is gone is success; operations start work and return, and
observation follows it to the end; a deployed service carries its owner and the fingerprint of its inputs; the
listing of a compute counts the service's replicas and GPUs; keys are two and distinct where auth is on; the
probe is a real request; errors are typed, permanent ones with a reason a user can act on. A backend that observes
an online endpoint is driven as the controller drives it: the pure core decides each rollout step from the
snapshot (:func:`gpu_model_operator.rollout.next_step`), and the backend takes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator import rollout
from gpu_model_operator.backends.base import (
    Backend,
    ComputeState,
    DeploymentInputs,
    ObservedService,
    PermanentBackendError,
    ServiceState,
    SpecT,
)
from gpu_model_operator.backends.endpoint import StepKind
from gpu_model_operator.models import AzureMLSpec, AzureMLV2Spec, LocalSpec, parse_spec
from gpu_model_operator_dev.azureml_emulator import EmulatorConfig, Latencies, start_emulator
from tests import polling
from tests.e2e.azure_harness import CLIENT_ID, CLIENT_SECRET, RESOURCE_GROUP, SUBSCRIPTION, TENANT, WORKSPACE

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SCORE = (ROOT / "manifests" / "examples" / "digits-source" / "score.py").read_text()
ECHO = "import json\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return json.loads(raw_data)\n"
CONDA = "name: echo\ndependencies:\n  - pip\n  - pip: []\n"


@dataclass
class Subject(Generic[SpecT]):
    """A backend under contract, and how to make the inputs of one resource for it."""

    backend: Backend[SpecT]
    make: Callable[[str, str], DeploymentInputs[SpecT]]  # (resource name, service name) -> inputs
    #: Whether the compute must be created before a service can run (AKS), or is this machine.
    creates_compute: bool


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def local_subject(tmp: Path) -> Iterator[Subject[LocalSpec]]:
    from gpu_model_operator.backends.local.backend import LocalBackend

    model_dir = tmp / "model"
    model_dir.mkdir()
    (model_dir / "weights.txt").write_text("42")

    def make(name: str, service: str) -> DeploymentInputs[LocalSpec]:
        spec = parse_spec(
            {
                "backend": "local",
                "model": {"path": str(model_dir)},
                "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
                "service": {"name": service, "replicas": 1},
            }
        )
        assert isinstance(spec, LocalSpec)
        return DeploymentInputs("contract", name, f"uid-{name}", 1, spec, ECHO, CONDA, fingerprint=f"fp-{name}")

    yield Subject(LocalBackend(tmp / "state", declared_gpus=2), make, creates_compute=False)


def azureml_subject(tmp: Path) -> Iterator[Subject[AzureMLSpec]]:
    latencies = Latencies(**dict.fromkeys(Latencies.__dataclass_fields__, 0.3))
    config = EmulatorConfig(latencies=latencies, credentials={CLIENT_ID: CLIENT_SECRET})
    with start_emulator(tmp / "emulator", config) as emu:
        emu.seed(models=[{"name": "digits"}])
        saved = dict(os.environ)
        os.environ.update({**emu.client_env(), "HOME": str(tmp / "home")})
        try:
            from gpu_model_operator.backends.azureml.backend import AzureMLBackend

            def make(name: str, service: str) -> DeploymentInputs[AzureMLSpec]:
                spec = parse_spec(
                    {
                        "backend": "azureml",
                        "workspace": {
                            "subscriptionId": SUBSCRIPTION,
                            "resourceGroup": RESOURCE_GROUP,
                            "name": WORKSPACE,
                            "credentialsSecretRef": {"name": "sp"},
                        },
                        "compute": {
                            "name": "contract-gpu",
                            "provision": {
                                "vmSize": "Standard_NC4as_T4_v3",
                                "agentCount": 2,
                                "clusterPurpose": "DevTest",
                            },
                        },
                        "model": {"name": "digits", "version": 1},
                        "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
                        "service": {"name": service, "replicas": 1},
                    }
                )
                assert isinstance(spec, AzureMLSpec)
                credentials = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
                return DeploymentInputs(
                    "contract", name, f"uid-{name}", 1, spec, SCORE, CONDA, credentials, fingerprint=f"fp-{name}"
                )

            yield Subject(AzureMLBackend(workers=4), make, creates_compute=True)
        finally:
            os.environ.clear()
            os.environ.update(saved)


#: An attached Kubernetes compute of two 1-GPU nodes and a one-GPU instance type, as Azure ML lists them.
GPU1 = {"resources": {"requests": {"cpu": "1", "nvidia.com/gpu": 1}, "limits": {"cpu": "1", "nvidia.com/gpu": 1}}}
KUBE = {
    "resource_group": RESOURCE_GROUP,
    "name": "aks-contract",
    "compute": "contract-k8s",
    "nodes": [{"name": "node-0", "gpus": 1}, {"name": "node-1", "gpus": 1}],
    "instance_types": {"gpu1": GPU1},
}


def azureml_v2_subject(tmp: Path) -> Iterator[Subject[AzureMLV2Spec]]:
    config = EmulatorConfig(credentials={CLIENT_ID: CLIENT_SECRET})
    with start_emulator(tmp / "emulator", config) as emu:
        emu.v2.configure(latencies=dict.fromkeys(("endpoint_create_s", "deployment_create_s"), 0.3))
        emu.v2.seed(models=[{"name": "digits", "version": "1"}], kubernetes_computes=[KUBE])
        saved = dict(os.environ)
        os.environ.update({**emu.client_env_v2(), "HOME": str(tmp / "home")})
        try:
            from gpu_model_operator.backends.azureml_v2.backend import AzureMLV2Backend

            def make(name: str, service: str) -> DeploymentInputs[AzureMLV2Spec]:
                spec = parse_spec(
                    {
                        "backend": "azureml-v2",
                        "workspace": {
                            "subscriptionId": SUBSCRIPTION,
                            "resourceGroup": RESOURCE_GROUP,
                            "name": WORKSPACE,
                            "credentialsSecretRef": {"name": "sp"},
                        },
                        "compute": {
                            "kubernetes": {"computeName": "contract-k8s", "instanceType": "gpu1", "nodeGpus": [1, 1]}
                        },
                        "model": {"name": "digits", "version": 1},
                        "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
                        "service": {"name": service, "replicas": 1},
                    }
                )
                assert isinstance(spec, AzureMLV2Spec)
                credentials = {"tenantId": TENANT, "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
                return DeploymentInputs(
                    "contract", name, f"uid-{name}", 1, spec, SCORE, CONDA, credentials, fingerprint=f"fp-{name}"
                )

            yield Subject(AzureMLV2Backend(workers=4), make, creates_compute=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)


BACKENDS: dict[str, Callable[[Path], Iterator[Subject[Any]]]] = {
    "local": local_subject,
    "azureml": azureml_subject,
    "azureml-v2": azureml_v2_subject,
}


@pytest.fixture(scope="module", params=list(BACKENDS))
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject[Any]]:
    yield from BACKENDS[request.param](tmp_path_factory.mktemp(request.param))


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


def until(loop: asyncio.AbstractEventLoop, what: str, check: Callable[[], Coroutine[Any, Any, T | None]]) -> T:
    return polling.wait_for(what, lambda: run(loop, check()), timeout=300, every=0.3)


async def converge(backend: Backend[SpecT], inputs: DeploymentInputs[SpecT], replicas: int) -> ObservedService:
    """One step towards ``replicas`` healthy replicas of the inputs, as the controller takes it: a deploy or a scale;
    on an online endpoint, the rollout step the core decides from the snapshot (the new deployment probed on its
    own before the traffic moves). Returns what was observed before the step."""
    seen = await backend.observe_service(inputs)
    if backend.name != "azureml-v2":
        mine = seen.fingerprint == inputs.fingerprint
        if seen.state in (ServiceState.ABSENT, ServiceState.UNHEALTHY) or (
            seen.state != ServiceState.TRANSITIONING and not mine
        ):
            await backend.deploy_service(inputs, replicas)
        elif seen.state == ServiceState.HEALTHY and seen.replicas != replicas:
            await backend.scale_service(inputs, replicas)
        return seen
    room = rollout.Room(replicas, replicas, "the contract's compute")
    step = rollout.next_step(seen.endpoint, replicas, room, False, None)
    if step.kind == StepKind.PROBE:
        answers = (await backend.probe(inputs, seen, step.deployment)).ok
        step = rollout.next_step(seen.endpoint, replicas, room, answers, None)
    if step.kind.writes:
        await backend.take_step(inputs, step)
    return rollout.summarize(seen, inputs.fingerprint)


def test_a_service_from_nothing_to_scored_to_gone(subject: Subject[Any], loop: asyncio.AbstractEventLoop) -> None:
    backend, inputs = subject.backend, subject.make("whole", "contract-whole")
    absent = run(loop, backend.observe_service(inputs))
    assert absent.state == ServiceState.ABSENT, "observing reads: nothing exists before it is created"
    run(loop, backend.delete_service(inputs))  # deleting what is gone is success

    async def compute_ready() -> bool | None:
        found = await backend.observe_compute(inputs)
        if found.state == ComputeState.ABSENT:
            await backend.create_compute(inputs)
        return found.state == ComputeState.READY or None

    until(loop, "the compute", compute_ready)
    compute = run(loop, backend.observe_compute(inputs))
    assert compute.gpus_total >= 2 and all(n >= 1 for n in compute.node_gpus)

    async def healthy() -> Any:
        seen = await converge(backend, inputs, 1)
        mine = seen.state == ServiceState.HEALTHY and seen.fingerprint == inputs.fingerprint
        return seen if mine and seen.replicas == 1 else None

    seen = until(loop, "the service healthy", healthy)
    assert (seen.owner, seen.fingerprint, seen.replicas) == ("contract/whole/uid-whole", "fp-whole", 1)
    assert seen.scoring_uri and seen.scoring_uri.endswith("/score")
    keys = run(loop, backend.get_keys(inputs))
    assert keys is not None and keys[0] != keys[1]
    assert run(loop, backend.get_keys(inputs, fresh=True)) == keys, "a fresh read of unchanged keys is the same"
    probe = run(loop, backend.probe(inputs, seen))
    assert probe.ok, probe.message

    listed = run(loop, backend.services_on_compute(inputs))
    mine = [s for s in listed if s.owner == "contract/whole/uid-whole"]
    # azureml-v2 lists each deployment of the endpoint, named endpoint/deployment.
    assert [(s.name.split("/")[0], s.replicas, s.gpu_cores, s.deleting) for s in mine] == [
        ("contract-whole", 1, 1, False)
    ]

    async def scaled() -> Any:
        seen = await converge(backend, inputs, 2)
        return seen if seen.state == ServiceState.HEALTHY and seen.replicas == 2 else None

    until(loop, "two replicas", scaled)

    run(loop, backend.delete_service(inputs))
    until(loop, "the service gone", lambda: _absent(backend, inputs))
    run(loop, backend.delete_service(inputs))  # and again: gone is success
    if subject.creates_compute:
        run(loop, backend.delete_compute(inputs))

        async def compute_gone() -> bool | None:
            return (await backend.observe_compute(inputs)).state == ComputeState.ABSENT or None

        until(loop, "the compute gone", compute_gone)
        run(loop, backend.delete_compute(inputs))


async def _absent(backend: Backend[SpecT], inputs: DeploymentInputs[SpecT]) -> bool | None:
    return (await backend.observe_service(inputs)).state == ServiceState.ABSENT or None


def test_a_model_that_does_not_exist_is_a_permanent_error_naming_it(
    subject: Subject[Any], loop: asyncio.AbstractEventLoop
) -> None:
    inputs = subject.make("nomodel", "contract-nomodel")
    spec = inputs.spec
    missing = (
        spec.model_copy(update={"model": spec.model.model_copy(update={"path": "/no/such/model"})})
        if spec.backend.value == "local"
        else spec.model_copy(update={"model": spec.model.model_copy(update={"name": "no-such-model"})})
    )
    inputs = replace(inputs, spec=missing)
    if subject.creates_compute:

        async def ready() -> bool | None:
            found = await subject.backend.observe_compute(inputs)
            if found.state == ComputeState.ABSENT:
                await subject.backend.create_compute(inputs)
            return found.state == ComputeState.READY or None

        until(loop, "the compute", ready)
    with pytest.raises(PermanentBackendError) as raised:
        run(loop, converge(subject.backend, inputs, 1))
    assert raised.value.reason == c.MODEL_NOT_FOUND
    assert "no-such-model" in raised.value.message or "/no/such/model" in raised.value.message
    assert run(loop, subject.backend.observe_service(inputs)).state == ServiceState.ABSENT, "nothing half-made"
