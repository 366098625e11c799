"""The few Kubernetes reads and writes the controller makes besides kopf's own (ConfigMap, Secret).

The official client is synchronous, so every call runs in a thread; the event loop never waits on it.
Everything is namespaced to the resource's own namespace, which the caller passes explicitly.

The operator changes or deletes only the Secrets it publishes: a Secret is its own when it carries the
``app.kubernetes.io/managed-by: gpu-model-operator`` label and an owner reference to the GpuModelDeployment of
that name. Anything else with the same name belongs to someone else and is left as it is (:class:`SecretConflict`).
The shipped ValidatingAdmissionPolicy enforces the same rule on the operator's ServiceAccount at the apiserver.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import GROUP, KIND, PLURAL, VERSION
from .decision import PublishedSecret
from .keys import keys_secret_name

MANAGED_BY = ("app.kubernetes.io/managed-by", "gpu-model-operator")
#: The finalizer with which a resource holds the credentials Secret it signs in with, one per resource (its uid): a
#: namespace's Secrets are deleted before its resources, and deletion must still sign in to delete what they made.
CREDENTIALS_HOLD = "gpumodel.io/credentials-in-use-"


def credentials_hold(uid: str) -> str:
    """The finalizer of the resource ``uid`` on its credentials Secret (a qualified name: 19 + 36 characters)."""
    return f"{CREDENTIALS_HOLD}{uid}"


def keys_secret_body(namespace: str, name: str, uid: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret owned by the resource (garbage-collected with it on a real cluster), holding ``data``."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": keys_secret_name(name),
            "namespace": namespace,
            "labels": {MANAGED_BY[0]: MANAGED_BY[1], "gpumodel.io/deployment": name},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    owner = kopf.Body({"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name, "uid": uid}})
    kopf.append_owner_reference(body, owner=owner, controller=True, block_owner_deletion=True)
    return body


class SecretBeingDeleted(Exception):
    """The credentials Secret a resource is about to sign in with for a create is being deleted: it cannot be held."""

    def __init__(self, namespace: str, name: str) -> None:
        self.message = (
            f"the credentials Secret {name} in namespace {namespace} is being deleted, so nothing new is made with it "
            "(a deletion would have no credentials to sign in with); cancel its deletion or name another Secret"
        )
        super().__init__(self.message)


class SecretConflict(Exception):
    """A Secret of the name the operator publishes exists and is not the operator's."""

    def __init__(self, namespace: str, name: str) -> None:
        self.message = (
            f"Secret {name} in namespace {namespace} exists and was not created by the operator for this "
            "GpuModelDeployment; it is left as it is, and the scoring keys are not published. Delete or rename it"
        )
        super().__init__(self.message)


def owned_by(secret: Any, resource_name: str) -> bool:
    """The operator's label and an owner reference to the GpuModelDeployment called ``resource_name`` (any uid:
    a resource deleted and created again under the same name owns what its predecessor published)."""
    meta = secret.metadata
    labels = meta.labels or {}
    refs = meta.owner_references or []
    return labels.get(MANAGED_BY[0]) == MANAGED_BY[1] and any(
        ref.kind == KIND and ref.name == resource_name for ref in refs
    )


class KubeClient:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def still_live(self, namespace: str, name: str, uid: str) -> bool:
        """Whether the GpuModelDeployment is still there, not being deleted, and the same object (uid). A pass runs
        on the body kopf last saw, which a resource deleted meanwhile (its finalizer stripped by hand, or an event not
        yet seen) outlives: creating anything for it then would leave it billing with no one to delete it."""
        try:
            found = cast(
                dict[str, Any],
                await asyncio.to_thread(
                    self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        meta = found.get("metadata") or {}
        return bool(meta.get("uid") == uid and not meta.get("deletionTimestamp"))

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's data, or None when it does not exist."""
        try:
            cm = await asyncio.to_thread(self._core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    async def _read_secret(self, namespace: str, name: str) -> Any:
        try:
            return await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        secret = await self._read_secret(namespace, name)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        return data

    async def published_secret(self, namespace: str, name: str, resource_name: str) -> PublishedSecret | None:
        """The keys Secret as it is: its decoded data and whether it is the operator's own; None if absent."""
        secret = await self._read_secret(namespace, name)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return PublishedSecret(data, owned_by(secret, resource_name))

    async def publish_secret(self, body: dict[str, Any], resource_name: str) -> None:
        """Create the Secret, or replace the data (not merge: a key no longer published goes) and the owner of
        the one the operator published before; raises :class:`SecretConflict` for anyone else's."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            await asyncio.to_thread(self._core.create_namespaced_secret, namespace, cast(Any, body))
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = await self._read_secret(namespace, name)
        if existing is None:  # deleted in between: the next pass creates it
            return
        if not owned_by(existing, resource_name):
            raise SecretConflict(namespace, name)
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": existing.metadata.uid},  # the Secret just checked
            {"op": "replace", "path": "/data", "value": body["data"]},
            {"op": "replace", "path": "/metadata/ownerReferences", "value": body["metadata"]["ownerReferences"]},
        ]
        await asyncio.to_thread(self._core.patch_namespaced_secret, name, namespace, patch)

    async def hold_secret(self, namespace: str, name: str, finalizer: str) -> None:
        """Add ``finalizer`` to the Secret (the credentials a resource signs in with) if it is not there; a Secret that
        is gone is nothing to hold (signing in fails and says so). Only the finalizers change, tested against the
        Secret just read (the admission policy allows the operator nothing else on a Secret it did not publish)."""
        await self._finalizers(namespace, name, finalizer, add=True)

    async def release_secret(self, namespace: str, name: str, finalizer: str) -> None:
        """Remove ``finalizer`` from the Secret, if it is there (the resource's deletion has finished)."""
        await self._finalizers(namespace, name, finalizer, add=False)

    async def _finalizers(self, namespace: str, name: str, finalizer: str, *, add: bool) -> None:
        for _ in range(5):  # the Secret changed between the read and the patch: read it again
            secret = await self._read_secret(namespace, name)
            if secret is None:
                return
            held = list(secret.metadata.finalizers or [])
            if (finalizer in held) == add:
                return
            if add and secret.metadata.deletion_timestamp is not None:
                # The API server refuses a new finalizer on an object being deleted (422): no retry can change that.
                raise SecretBeingDeleted(namespace, name)
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": secret.metadata.resource_version}
            ]
            if add:
                patch.append({"op": "add", "path": "/metadata/finalizers", "value": [*held, finalizer]})
            else:
                patch.append({"op": "remove", "path": f"/metadata/finalizers/{held.index(finalizer)}"})
            try:
                await asyncio.to_thread(self._core.patch_namespaced_secret, name, namespace, patch)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status not in (409, 422):
                    raise
        raise RuntimeError(f"Secret {name} in namespace {namespace} kept changing while its finalizers were set")

    async def delete_owned_secret(self, namespace: str, name: str, resource_name: str) -> bool:
        """Delete the Secret if it is the operator's; True when none of ours is left, False when one of someone
        else's is (left untouched)."""
        existing = await self._read_secret(namespace, name)
        if existing is None:
            return True
        if not owned_by(existing, resource_name):
            return False
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=existing.metadata.uid))
        try:
            await asyncio.to_thread(self._core.delete_namespaced_secret, name, namespace, body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or replaced by another Secret since the read: not ours
                raise
        return True
