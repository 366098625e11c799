"""The azureml-v2 backend's signed-in workspaces, and its calls through the shared door (:mod:`..azure.calls`).

What is this backend's own: the sign-in (a service principal's Secret, or the operator's federated token for a
workload identity), a workspace's ``MLClient`` for the public operations azure-ai-ml has (assets, logs, quota),
and an ARM client (:class:`..azure.arm.Arm`) with the same credential for the plain ARM requests of :mod:`.arm`.
Neither retries on its own (``retry_total=0``): see :mod:`..azure.calls`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from ... import __version__
from ... import conditions as c
from ...models import AzureMLV2Spec, SecretWorkspace
from ..azure.arm import Arm
from ..azure.arm_budget import ArmBudget
from ..azure.calls import READ_TIMEOUT, WRITE_TIMEOUT, CallKind, Calls, Scope
from ..azure.connections import Connections
from ..base import CallPriority, DeploymentInputs, PermanentBackendError
from .errors import classify

__all__ = ["READ_TIMEOUT", "WRITE_TIMEOUT", "Inputs", "Session", "Workspace", "WsKey", "credential_source"]

T = TypeVar("T")
#: Where a call goes and as whom (subscription, resource group, workspace, principal, credential digest).
WsKey: TypeAlias = Scope
#: Where the Azure Workload Identity webhook puts the ServiceAccount token in the operator's pod.
TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"
PROVIDER = "Microsoft.MachineLearningServices"
USER_AGENT = f"gpu-model-operator/{__version__}"
#: The inputs of this backend: its spec has the workspace (with one sign-in), the endpoint's compute, the model version.
Inputs: TypeAlias = DeploymentInputs[AzureMLV2Spec]


def credential_source(inputs: Inputs) -> str:
    """Where the sign-in comes from, for messages (never a credential)."""
    ws = inputs.spec.workspace
    if isinstance(ws, SecretWorkspace):
        return (
            f"the service principal in Secret {ws.credentials_secret_ref.name} (keys tenantId, clientId, clientSecret)"
        )
    client = inputs.credentials.get("clientId", "?")
    return f"the workload identity of application {client} (the operator's federated ServiceAccount token)"


@dataclass
class Workspace:
    """A signed-in workspace: its azure-ai-ml client, its ARM client, and what never changes about it."""

    client: Any  # azure.ai.ml.MLClient
    credential: Any
    subscription_id: str
    resource_group: str
    name: str
    arm: Arm
    location: str = ""

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}"
            f"/workspaces/{self.name}"
        )


class Session:
    """The signed-in workspaces, and the door every call of this backend passes."""

    def __init__(self, workers: int, budget: ArmBudget | None = None) -> None:
        #: ``budget``: ARM's buckets, shared with the azureml backend in one process.
        self._calls = Calls(workers, "azureml-v2", budget)
        self._workspaces: Connections[Workspace] = Connections(_close)

    def key(self, inputs: Inputs) -> WsKey:
        ws, creds = inputs.spec.workspace, inputs.credentials
        if not creds.get("tenantId") or not creds.get("clientId"):
            raise PermanentBackendError(
                f"no sign-in: {credential_source(inputs)} is incomplete", reason=c.CREDENTIALS_INVALID
            )
        return Scope.of(ws.subscription_id, ws.resource_group, ws.name, creds)

    async def call(
        self,
        inputs: Inputs,
        action: str,
        area: str,
        fn: Callable[[], T],
        timeout: float = READ_TIMEOUT,
        *,
        kind: CallKind | None = None,
        priority: CallPriority | None = None,
    ) -> T:
        """Run one blocking call to Azure in the pool; its failure comes back as a Transient/PermanentBackendError.
        ``kind`` is what ARM counts it as (by default, what the timeout says: :meth:`CallKind.given`); every call
        of this backend goes to ARM and waits for its token (``priority``: by default, a write's or the pass's)."""
        credential = credential_source(inputs)
        kind = kind or CallKind.given(timeout)
        explain = lambda exc: classify(exc, action, area=area, credential=credential)  # noqa: E731
        return await self._calls.call(self.key(inputs), kind, action, fn, explain, timeout, priority=priority)

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """A blocking call that is not Azure's management API (a scoring request): the pool, no classification."""
        return await self._calls.run(fn, timeout)

    async def workspace(self, inputs: Inputs) -> Workspace:
        """One signed-in workspace per workspace and credential (a changed Secret signs in again), with its
        location; a refused sign-in keeps nothing and is tried afresh next time."""
        name = inputs.spec.workspace.name
        observe = functools.partial(self._calls.budget.observe, self.key(inputs).principal_key)

        async def connect() -> Workspace:
            return await self.call(inputs, f"reading workspace {name}", "workspace", lambda: _sign_in(inputs, observe))

        return await self._workspaces.get(self.key(inputs), connect)

    async def close(self, timeout: float = 0.0) -> bool:
        """Stop taking calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a PUT or DELETE sent keeps running after its pass was cancelled. True when none is left."""
        drained = await self._calls.drain(timeout)
        self._workspaces.close()
        return drained


def _sign_in(inputs: Inputs, observe: Callable[[Mapping[str, str]], None]) -> Workspace:
    """The clients of the workspace, and its location read with them (a blocking call, in the pool); ``observe``
    gets the ARM client's answers' headers (the budget's remaining-calls counts)."""
    from azure.ai.ml import MLClient

    ws = inputs.spec.workspace
    credential = _credential(inputs)
    client = MLClient(
        credential,
        ws.subscription_id,
        ws.resource_group,
        ws.name,
        retry_total=0,
        show_progress=False,
        enable_telemetry=False,
        user_agent=USER_AGENT,
    )
    client_arm = Arm(credential, USER_AGENT, observe=observe)
    made = Workspace(client, credential, ws.subscription_id, ws.resource_group, ws.name, client_arm)
    try:
        made.location = str(client.workspaces.get(ws.name).location)
    except Exception:
        _close(made)
        raise
    return made


def _credential(inputs: Inputs) -> Any:
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    creds = inputs.credentials
    if creds.get("clientSecret"):
        return ClientSecretCredential(creds["tenantId"], creds["clientId"], creds["clientSecret"])
    token_file = os.environ.get(TOKEN_FILE_ENV, "")
    if not token_file:
        raise PermanentBackendError(
            f"spec.workspace.workloadIdentity needs the operator's pod to carry a federated token "
            f'({TOKEN_FILE_ENV} is not set): label the pod azure.workload.identity/use: "true" and annotate '
            "its ServiceAccount azure.workload.identity/client-id, or use spec.workspace.credentialsSecretRef",
            reason=c.CREDENTIALS_INVALID,
        )
    return WorkloadIdentityCredential(
        tenant_id=creds["tenantId"], client_id=creds["clientId"], token_file_path=token_file
    )


def _close(workspace: Workspace) -> None:
    workspace.arm.close()
    workspace.credential.close()
