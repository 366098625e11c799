"""The few Kubernetes reads and writes the controller makes besides kopf's own (ConfigMap, Secret).

The official client is synchronous, so every call runs in a thread; the event loop never waits on it.
Everything is namespaced to the resource's own namespace, which the caller passes explicitly.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class KubeClient:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)

    async def config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's data, or None when it does not exist."""
        try:
            cm = await asyncio.to_thread(self._core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's decoded data, or None when it does not exist."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        data.update(secret.string_data or {})
        return data

    async def apply_secret(self, body: dict[str, Any]) -> None:
        """Create the Secret, or replace its data when it exists."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            await asyncio.to_thread(self._core.create_namespaced_secret, namespace, cast(Any, body))
        except ApiException as exc:
            if exc.status != 409:
                raise
            await asyncio.to_thread(self._core.patch_namespaced_secret, name, namespace, {"data": body["data"]})

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self._core.delete_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
