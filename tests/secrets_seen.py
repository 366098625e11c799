"""Every secret value the session's Kubernetes Secrets ever held, for the secrets-hygiene audit.

A watch on Secrets in all namespaces (started with the session's control plane) records the values of the
keys that are secret by contract: the service principal's ``clientSecret`` and what the operator publishes for
scoring (``primaryKey``, ``secondaryKey``, an Azure ML token's ``accessToken``), whichever backend issued them and
whether or not a test read them. ``tests/e2e/test_secrets_hygiene.py`` then looks for each value in everything the
operator wrote.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

SECRET_KEYS = ("clientSecret", "primaryKey", "secondaryKey", "accessToken")

_lock = threading.Lock()
_values: dict[str, set[str]] = {key: set() for key in SECRET_KEYS}


def values() -> dict[str, set[str]]:
    with _lock:
        return {key: set(found) for key, found in _values.items()}


def _record(secret: Any) -> None:
    data = {k: base64.b64decode(v).decode(errors="replace") for k, v in (secret.data or {}).items()}
    with _lock:
        for key in SECRET_KEYS:
            if data.get(key):
                _values[key].add(data[key])


def start_recording(api: client.ApiClient, stop: threading.Event) -> threading.Thread:
    """Watch Secrets until ``stop`` is set; a watch that expires is started again from where it ended."""
    core = client.CoreV1Api(api)

    def run() -> None:
        version = ""
        while not stop.is_set():
            try:
                # kubernetes.watch is unannotated.
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    core.list_secret_for_all_namespaces, resource_version=version, timeout_seconds=5
                )
                for event in stream:
                    _record(event["object"])
                    version = event["object"].metadata.resource_version
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: start over from now
                    raise
                version = ""
            except Exception:  # the control plane stopping at the end of the session
                if stop.is_set():
                    return
                raise

    thread = threading.Thread(target=run, name="secrets-seen", daemon=True)
    thread.start()
    return thread
