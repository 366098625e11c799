"""The Secret that publishes a service's scoring URI and keys in the resource's namespace."""

from __future__ import annotations

import base64
from typing import Any

from . import GROUP, KIND, VERSION


def keys_secret_name(resource_name: str) -> str:
    return f"{resource_name}-scoring-keys"


def keys_secret_data(scoring_uri: str, keys: tuple[str, str] | None) -> dict[str, str]:
    """What the Secret holds, decoded: the scoring URI, and the keys when the service takes keys."""
    data = {"scoringUri": scoring_uri}
    if keys is not None:
        data["primaryKey"], data["secondaryKey"] = keys
    return data


def keys_secret_body(namespace: str, name: str, uid: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret owned by the resource (garbage-collected with it on a real cluster), holding ``data``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": keys_secret_name(name),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "gpu-model-operator", "gpumodel.io/deployment": name},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
