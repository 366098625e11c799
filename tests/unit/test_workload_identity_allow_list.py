"""Workload identity signs in with the operator's own ServiceAccount token, which every team's Entra application
federates with: so a namespace may name only the applications the installer allowed it (``--workload-identity
NAMESPACE=CLIENT_ID``, GMO_WORKLOAD_IDENTITIES; ``*``: every namespace). Anything else is refused before any
backend sees it (IdentityNotAllowed, permanent), else any namespace editor could sign in as another team."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import pytest

from gpu_model_operator import conditions as c
from gpu_model_operator.cli import main
from gpu_model_operator.controller import Controller
from gpu_model_operator.inputs import InputError, Resource, load_inputs, parse_spec
from gpu_model_operator.models import BackendKind
from gpu_model_operator.settings import Settings

TEAM_B_APP = "22222222-2222-2222-2222-222222222222"


class Kube:
    async def config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        return {"score.py": "def init(): pass\ndef run(x): return x", "env.yml": "name: e"}

    async def secret_data(self, namespace: str, name: str) -> None:
        raise AssertionError("no Secret is read with workload identity")


class NeverCalled:
    name = "azureml-v2"

    def __getattr__(self, item: str) -> Any:
        raise AssertionError(f"backend.{item} called")


def resource(namespace: str, client_id: str = TEAM_B_APP) -> Resource:
    spec = {
        "backend": "azureml-v2",
        "workspace": {
            "subscriptionId": "team-b-sub",
            "resourceGroup": "team-b-rg",
            "name": "team-b-ws",
            "workloadIdentity": {"clientId": client_id, "tenantId": "corp"},
        },
        "compute": {"managed": {"instanceType": "Standard_NC4as_T4_v3"}},
        "model": {"name": "fraud", "version": 1},
        "source": {"configMapRef": {"name": "src"}, "condaFile": "env.yml"},
        "service": {"name": "fraud-ep", "replicas": 1},
    }
    return Resource(namespace, "x", "uid", 1, spec, {})


def sign_in(res: Resource, identities: tuple[tuple[str, str], ...]) -> dict[str, str]:
    spec = parse_spec(res, (BackendKind.AZUREML_V2,))
    return asyncio.run(load_inputs(Kube(), res, spec, identities=identities)).credentials  # type: ignore[arg-type]


def test_a_namespace_cannot_sign_in_as_another_teams_application() -> None:
    allowed = (("team-a", "11111111-1111-1111-1111-111111111111"), ("team-b", TEAM_B_APP))
    with pytest.raises(InputError) as refused:
        sign_in(resource("team-a"), allowed)
    error = refused.value
    assert error.reason == c.IDENTITY_NOT_ALLOWED and not error.transient
    assert "namespace team-a" in error.message and TEAM_B_APP in error.message
    assert f"--workload-identity team-a={TEAM_B_APP}" in error.message and "GMO_WORKLOAD_IDENTITIES" in error.message
    # The namespace it was allowed to signs in as it (client ids are GUIDs: compared without case).
    assert sign_in(resource("team-b", TEAM_B_APP.upper()), allowed)["clientId"] == TEAM_B_APP.upper()


def test_without_an_allow_list_no_workload_identity_is_allowed() -> None:
    with pytest.raises(InputError, match="may not sign in"):
        sign_in(resource("team-b"), ())


def test_star_allows_an_application_in_every_namespace() -> None:
    assert sign_in(resource("anywhere"), (("*", TEAM_B_APP),)) == {"tenantId": "corp", "clientId": TEAM_B_APP}


def test_the_refusal_comes_before_any_backend_call_and_is_permanent() -> None:
    settings = Settings(backends=(BackendKind.AZUREML_V2,), workload_identities=(("team-b", TEAM_B_APP),))
    controller = Controller(settings, {BackendKind.AZUREML_V2: NeverCalled()}, kube=Kube())  # type: ignore[arg-type]
    decision = asyncio.run(controller.reconcile(resource("team-a")))
    ready = next(cond for cond in decision.status.conditions if cond.type == "Ready")
    assert ready.reason == c.IDENTITY_NOT_ALLOWED and decision.permanent


def resolve(monkeypatch: pytest.MonkeyPatch, *args: str, env: str | None = None) -> Any:
    """The ``run`` command's parameters, as click resolves them from the command line and the environment."""
    if env is not None:
        monkeypatch.setenv("GMO_WORKLOAD_IDENTITIES", env)
    group = main.make_context("gpu-model-operator", ["run"])
    run = main.get_command(group, "run")
    assert run is not None
    return run.make_context("run", list(args), parent=group).params["workload_identities"]


def test_the_allow_list_is_read_from_options_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GMO_WORKLOAD_IDENTITIES", raising=False)
    assert resolve(monkeypatch) == ()
    given = ("--workload-identity", "team-a=app-a", "--workload-identity", "*=app-b")
    assert resolve(monkeypatch, *given) == (("team-a", "app-a"), ("*", "app-b"))
    assert resolve(monkeypatch, env="team-a=app-a  team-b=app-b") == (("team-a", "app-a"), ("team-b", "app-b"))
    with pytest.raises(click.BadParameter, match="NAMESPACE=CLIENT_ID"):
        resolve(monkeypatch, "--workload-identity", "app-a")
