"""Signed-in azure-ai-ml clients, one per workspace and credential, and the thread pool their calls run in.

Why a pool: the SDK blocks, so every call runs in a ``ThreadPoolExecutor`` while the event loop only awaits it,
and a call's timeout counts from when it got a thread (a semaphore on the loop hands them out). Why no SDK retry
(``retry_total=0``): azure-core retries 429 and 5xx itself, sleeping inside a pass; the operator's own backoff
honours Retry-After instead, and a 429 closes the workspace to every call until Retry-After has passed, so a
resync cannot call Azure early either.

Why the generated clients for writes: the public ``begin_create_or_update`` / ``begin_delete`` return an
``LROPoller`` that polls on a thread of its own until the operation ends, whether or not anyone waits for it; a
restarted operator could not find those pollers, and each would keep calling Azure. The same generated operations
are called here with ``polling=False``: the PUT or DELETE is sent, Azure's answer is returned, and the state is
read back later with ``get`` (what a restarted operator does anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from ... import conditions as c
from ...models import AzureMLV2Spec, SecretWorkspace
from ..base import DeploymentInputs, DrainablePool, PermanentBackendError, TransientBackendError
from .errors import classify

log = logging.getLogger(__name__)
T = TypeVar("T")
WsKey = tuple[str, str, str, str]  # subscription, resource group, workspace (lower case), credential digest
#: Seconds one SDK call may take before the pass gives up on it (its thread finishes in the background).
READ_TIMEOUT, WRITE_TIMEOUT = 60.0, 300.0
#: Where the Azure Workload Identity webhook puts the ServiceAccount token in the operator's pod.
TOKEN_FILE_ENV = "AZURE_FEDERATED_TOKEN_FILE"
PROVIDER = "Microsoft.MachineLearningServices"
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
    """A signed-in client of one workspace, and what never changes about the workspace."""

    client: Any  # azure.ai.ml.MLClient
    credential: Any
    subscription_id: str
    resource_group: str
    name: str
    location: str = ""

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{PROVIDER}"
            f"/workspaces/{self.name}"
        )

    def scope(self) -> dict[str, Any]:
        """The keyword arguments every generated workspace operation takes."""
        return {"resource_group_name": self.resource_group, "workspace_name": self.name}


class Session:
    """The pool, the Retry-After gate, and the signed-in workspaces."""

    def __init__(self, workers: int) -> None:
        self._pool = DrainablePool(max_workers=workers, thread_name_prefix="azureml-v2")
        self._slots = asyncio.Semaphore(workers)
        self._workspaces: dict[WsKey, Workspace] = {}
        self._connecting = asyncio.Lock()
        #: Per workspace: no Azure call before this monotonic time (a 429's Retry-After).
        self._not_before: dict[tuple[str, str, str], float] = {}

    def key(self, inputs: Inputs) -> WsKey:
        ws, creds = inputs.spec.workspace, inputs.credentials
        if not creds.get("tenantId") or not creds.get("clientId"):
            raise PermanentBackendError(
                f"no sign-in: {credential_source(inputs)} is incomplete", reason=c.CREDENTIALS_INVALID
            )
        digest = hashlib.sha256("\0".join(creds.get(k, "") for k in sorted(creds)).encode()).hexdigest()
        return ws.subscription_id.lower(), ws.resource_group.lower(), ws.name.lower(), digest

    async def call(
        self,
        inputs: Inputs,
        action: str,
        area: str,
        fn: Callable[[], T],
        timeout: float = READ_TIMEOUT,
    ) -> T:
        """Run one blocking SDK call in the pool; its failure comes back as a Transient/PermanentBackendError."""
        where = self.key(inputs)[:3]
        wait = self._not_before.get(where, 0.0) - time.monotonic()
        if wait > 0:
            raise TransientBackendError(
                f"{action}: Azure asked to wait (HTTP 429, Retry-After); {wait:.1f}s left", retry_after=wait
            )
        loop = asyncio.get_running_loop()
        try:
            async with self._slots:
                return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), timeout)
        except asyncio.TimeoutError:
            raise TransientBackendError(f"{action} failed: no answer from Azure in {timeout:.0f}s") from None
        except Exception as exc:
            error = classify(exc, action, area=area, credential=credential_source(inputs))
            if isinstance(error, TransientBackendError) and error.retry_after:
                self._not_before[where] = time.monotonic() + error.retry_after
            if error is exc:
                raise
            raise error from exc

    async def run(self, fn: Callable[[], T], timeout: float) -> T:
        """A blocking call that is not Azure's management API (a scoring request): the pool, no classification."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, fn), timeout)

    async def workspace(self, inputs: Inputs) -> Workspace:
        """One client per workspace and credential (a changed Secret builds a new one), with its location."""
        key = self.key(inputs)
        found = self._workspaces.get(key)
        if found is not None:
            return found
        async with self._connecting:
            if key not in self._workspaces:
                made = self._connect(inputs)
                where = f"reading workspace {made.name}"
                try:
                    got = await self.call(inputs, where, "workspace", lambda: made.client.workspaces.get(made.name))
                except Exception:
                    self._close(made)  # a refused sign-in is tried afresh next time
                    raise
                made.location = str(got.location)
                for old in [k for k in self._workspaces if k[:3] == key[:3]][:-2]:  # keep a few credential sets
                    self._close(self._workspaces.pop(old))
                self._workspaces[key] = made
        return self._workspaces[key]

    def _connect(self, inputs: Inputs) -> Workspace:
        from azure.ai.ml import MLClient
        from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

        ws, creds = inputs.spec.workspace, inputs.credentials
        credential: Any
        if creds.get("clientSecret"):
            credential = ClientSecretCredential(creds["tenantId"], creds["clientId"], creds["clientSecret"])
        else:
            token_file = os.environ.get(TOKEN_FILE_ENV, "")
            if not token_file:
                raise PermanentBackendError(
                    f"spec.workspace.workloadIdentity needs the operator's pod to carry a federated token "
                    f'({TOKEN_FILE_ENV} is not set): label the pod azure.workload.identity/use: "true" and annotate '
                    "its ServiceAccount azure.workload.identity/client-id, or use spec.workspace.credentialsSecretRef",
                    reason=c.CREDENTIALS_INVALID,
                )
            credential = WorkloadIdentityCredential(
                tenant_id=creds["tenantId"], client_id=creds["clientId"], token_file_path=token_file
            )
        client = MLClient(
            credential,
            ws.subscription_id,
            ws.resource_group,
            ws.name,
            retry_total=0,
            show_progress=False,
            enable_telemetry=False,
            user_agent="gpu-model-operator",
        )
        return Workspace(client, credential, ws.subscription_id, ws.resource_group, ws.name)

    @staticmethod
    def _close(workspace: Workspace) -> None:
        try:
            workspace.credential.close()
        except Exception:  # closing a credential is tidiness; a failure changes nothing
            log.debug("closing a credential failed", exc_info=True)

    async def close(self, timeout: float = 0.0) -> bool:
        """Stop taking SDK calls, and wait up to ``timeout`` seconds for the calls in flight: a thread cannot be
        cancelled, so a PUT or DELETE sent keeps running after its pass was cancelled. True when none is left."""
        drained = await self._pool.drain(timeout)
        for workspace in self._workspaces.values():
            self._close(workspace)
        self._workspaces.clear()
        return drained
