"""An in-memory model of the cluster: the surface of :class:`~gpu_model_operator.kube.KubeClient` the controller
uses, over Secrets, ConfigMaps and GpuModelDeployments, with Kubernetes' deletion rules: an object with finalizers
is only marked for deletion (``deletionTimestamp``) and goes once the last is removed; deleting a namespace deletes
every object in it at once, Secrets included, each then waiting on its own finalizers
(kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/, "namespace deletion")."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from gpu_model_operator.decision import PublishedSecret
from gpu_model_operator.inputs import Resource

SOURCE = {"score.py": "def init():\n    pass\n\ndef run(data):\n    return data\n", "myenv.yml": "name: env\n"}
CREDENTIALS = {"tenantId": "t", "clientId": "c", "clientSecret": "s"}
_uids = itertools.count(1)


@dataclass
class Secret:
    data: dict[str, str]
    finalizers: list[str] = field(default_factory=list)
    deleting: bool = False
    #: The resource name that owns it (a published keys Secret), else None.
    owner: str | None = None


@dataclass
class Gmd:
    namespace: str
    name: str
    uid: str
    spec: dict[str, Any]
    generation: int = 1
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    deleting: bool = False

    def resource(self) -> Resource:
        return Resource(
            self.namespace, self.name, self.uid, self.generation, self.spec, self.status, dict(self.annotations)
        )

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"


def new_uid() -> str:
    return f"00000000-0000-0000-0000-{next(_uids):012d}"


class Cluster:
    """The model, and the KubeClient the controller is given."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], Secret] = {}
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}
        self.resources: dict[tuple[str, str], Gmd] = {}
        self.terminating: set[str] = set()

    # ---- what users do ---------------------------------------------------------------------------

    def namespace(self, ns: str) -> None:
        self.config_maps[(ns, "src")] = dict(SOURCE)
        if (ns, "creds") not in self.secrets:
            self.secrets[(ns, "creds")] = Secret(dict(CREDENTIALS))

    def delete_secret(self, ns: str, name: str) -> None:
        secret = self.secrets.get((ns, name))
        if secret is None:
            return
        if secret.finalizers:
            secret.deleting = True
        else:
            del self.secrets[(ns, name)]

    def delete_namespace(self, ns: str) -> None:
        """Its Secrets go first (the namespace controller deletes every object; the resources wait on their
        finalizer, the Secrets on theirs)."""
        self.terminating.add(ns)
        for key in [k for k in self.secrets if k[0] == ns]:
            self.delete_secret(*key)
        for key in [k for k in self.config_maps if k[0] == ns]:
            del self.config_maps[key]
        for gmd in self.resources.values():
            if gmd.namespace == ns:
                gmd.deleting = True

    def settle_namespace(self, ns: str) -> bool:
        """The namespace is gone once nothing is left in it."""
        left = [k for k in (*self.secrets, *self.resources) if k[0] == ns]
        if ns in self.terminating and not left:
            self.terminating.discard(ns)
            return True
        return False

    # ---- the KubeClient surface ---------------------------------------------------------------------

    async def still_live(self, namespace: str, name: str, uid: str) -> bool:
        gmd = self.resources.get((namespace, name))
        return gmd is not None and gmd.uid == uid and not gmd.deleting

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        data = self.config_maps.get((namespace, name))
        return dict(data) if data is not None else None

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = self.secrets.get((namespace, name))
        return dict(secret.data) if secret is not None else None

    async def published_secret(self, namespace: str, name: str, resource_name: str) -> PublishedSecret | None:
        secret = self.secrets.get((namespace, name))
        if secret is None:
            return None
        return PublishedSecret(dict(secret.data), secret.owner == resource_name)

    async def publish_secret(self, body: dict[str, Any], resource_name: str) -> None:
        import base64

        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        if ns in self.terminating:
            return  # a terminating namespace refuses new objects
        data = {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
        existing = self.secrets.get((ns, name))
        if existing is None or existing.owner == resource_name:
            self.secrets[(ns, name)] = Secret(data, owner=resource_name)

    async def delete_owned_secret(self, namespace: str, name: str, resource_name: str) -> bool:
        secret = self.secrets.get((namespace, name))
        if secret is None:
            return True
        if secret.owner != resource_name:
            return False
        self.delete_secret(namespace, name)
        return True

    async def hold_secret(self, namespace: str, name: str, finalizer: str) -> None:
        secret = self.secrets.get((namespace, name))
        if secret is not None and finalizer not in secret.finalizers:
            secret.finalizers.append(finalizer)

    async def release_secret(self, namespace: str, name: str, finalizer: str) -> None:
        secret = self.secrets.get((namespace, name))
        if secret is None or finalizer not in secret.finalizers:
            return
        secret.finalizers.remove(finalizer)
        if secret.deleting and not secret.finalizers:
            del self.secrets[(namespace, name)]
