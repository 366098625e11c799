"""The backend's hot reads (a service, a compute, the workspace's AKS services, a service's keys) over one session.

Why: azureml-core opens a new ``requests.Session``, so a new TLS connection, for almost every call, and a
thousand resources polling are mostly these four reads. Here they go over one long-lived ``requests.Session``
whose connections are kept alive (a pool as large as the backend's worker threads), to the same URLs the SDK
uses, with the SDK's own public parts: ``auth.get_authentication_header()`` per request, and the SDK's
deserializers (``AksWebservice.deserialize``, ``AksCompute.deserialize``) to turn Azure's answer into the objects
the SDK's own getters return. Writes (deploy, update, delete, create) stay on the SDK.

A failure is raised as the SDK raises it: the same exception class with the same text (``Response Code``,
``Headers`` with ``Retry-After``, ``Content``), or the ``requests`` exception itself, so ``errors.classify``
decides exactly as for the SDK's calls. The session retries nothing (a 429's Retry-After is the operator's to
honour); urllib3 only checks that a kept-alive connection is still open before it reuses it.
A service or compute of a kind the operator does not manage (not AKS) is read with the SDK's own getter.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from urllib3.util.retry import Retry

from ... import __version__
from ..azure.tls import SharedContextAdapter
from . import sdk

ARM_PATH = "subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}"
#: The API versions azureml-core 1.61 sends (``MMS_ROUTE_API_VERSION``, ``MLC_WORKSPACE_API_VERSION``).
MMS_VERSION, COMPUTE_API_VERSION = "v1.0", "2020-02-02"
#: The SDK's timeout for the services listing (``MMS_SYNC_TIMEOUT_SECONDS``); its single GETs have none.
LIST_TIMEOUT = 80.0
USER_AGENT = f"gpu-model-operator/{__version__} (azureml backend)"


@dataclass(frozen=True)
class Endpoints:
    """Where one workspace's reads go: its Model Management root and its compute resource provider root."""

    mms: str
    computes: str


def _bad_response(service: str, response: requests.Response) -> str:
    """The SDK's text for a refused call (``Webservice._get``, ``ComputeTarget._get``, ``get_keys``, ``list``)."""
    return (
        f"Received bad response from {service}:\n"
        f"Response Code: {response.status_code}\n"
        f"Headers: {response.headers}\n"
        f"Content: {response.content!r}"
    )


class Reads:
    """The hot reads and the health probe, thread-safe, over one session shared by every workspace."""

    def __init__(self, workers: int, timeout: float) -> None:
        self._timeout = timeout
        self._session = requests.Session()
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # nothing shared between calls
        self._session.headers["User-Agent"] = USER_AGENT
        # Nothing is retried here, as the SDK retries nothing with its retries off: an HTTP answer is the
        # operator's to honour (urllib3 would retry a 429 or 503 carrying Retry-After itself), and a connection
        # error is raised as the SDK's would be. urllib3 still replaces a kept-alive connection it finds closed.
        retry = Retry(0, read=False, redirect=0, status_forcelist=(), respect_retry_after_header=False)
        adapter = SharedContextAdapter(pool_connections=4, pool_maxsize=max(1, workers), max_retries=retry)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._endpoints: dict[str, Endpoints] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def endpoints(self, ws: Any) -> Endpoints:
        """The workspace's API root from its discovery document (as the SDK reads it), once per workspace."""
        key = str(ws.discovery_url)
        with self._lock:
            known = self._endpoints.get(key)
        if known is None:
            response = self._session.get(key, timeout=self._timeout)
            response.raise_for_status()
            api = str(response.json()["api"]).rstrip("/")
            scope = ARM_PATH.format(ws.subscription_id, ws.resource_group, ws.name)
            known = Endpoints(f"{api}/modelmanagement/{MMS_VERSION}/{scope}", f"{api}/rp/workspaces/{scope}/computes")
            with self._lock:
                self._endpoints[key] = known
        return known

    def _send(self, method: str, url: str, auth: Any, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Content-Type": "application/json", "x-ms-client-request-id": str(uuid.uuid4())}
        headers.update(auth.get_authentication_header())
        return self._session.request(method, url, headers=headers, timeout=timeout or self._timeout, **kwargs)

    def service(self, ws: Any, auth: Any, name: str) -> Any | None:
        """``Webservice(ws, name)``, or None where the SDK raises WebserviceNotFound."""
        response = self._send("GET", f"{self.endpoints(ws).mms}/services/{name}", auth, params={"expand": "true"})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise sdk.WebserviceException(_bad_response("Model Management Service", response))
        payload = json.loads(response.content)
        if payload.get("computeType") != "AKS":
            return sdk.Webservice(ws, name)  # not an AKS service: the SDK picks its class
        return sdk.AksWebservice.deserialize(ws, payload)

    def compute(self, ws: Any, auth: Any, name: str) -> Any | None:
        """``ComputeTarget(ws, name)``, or None where the SDK raises ComputeTargetNotFound."""
        url = f"{self.endpoints(ws).computes}/{name}"
        response = self._send("GET", url, auth, params={"api-version": COMPUTE_API_VERSION})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise sdk.ComputeTargetException(_bad_response("Resource Provider", response))
        payload = json.loads(response.content)
        if (payload.get("properties") or {}).get("computeType") != "AKS":
            return sdk.ComputeTarget(ws, name)  # not an AKS cluster: the SDK picks its class
        return sdk.AksCompute.deserialize(ws, payload)

    def aks_services(self, ws: Any, auth: Any) -> list[Any]:
        """``AksWebservice.list(ws, compute_type="AKS")``, every page of it."""
        url: str | None = f"{self.endpoints(ws).mms}/services"
        params: dict[str, str] | None = {"expand": "true", "computeType": "AKS"}
        services = []
        while url:
            try:
                response = self._send("GET", url, auth, LIST_TIMEOUT, params=params)
            except requests.Timeout:
                raise sdk.WebserviceException(f"Error, request to MMS timed out to URL: {url}") from None
            if response.status_code >= 400:
                raise sdk.WebserviceException(_bad_response("Model Management Service", response))
            page = json.loads(response.content)
            if "value" not in page:
                raise sdk.WebserviceException(f'Error, invalid paginated response payload, missing "value":\n{page}')
            services += [sdk.AksWebservice.deserialize(ws, s) for s in page["value"] if s.get("computeType") == "AKS"]
            url, params = page.get("nextLink"), None
        return services

    def probe(self, url: str, headers: dict[str, str], timeout: float) -> requests.Response:
        """A GET of a service's health route (its scoring host), on a kept-alive connection where there is one."""
        return self._session.get(url, headers=headers, timeout=timeout)

    def keys(self, ws: Any, auth: Any, name: str) -> tuple[str, str]:
        """``service.get_keys()``: the primary and secondary key."""
        response = self._send("POST", f"{self.endpoints(ws).mms}/services/{name}/listkeys", auth)
        if response.status_code >= 400:
            raise sdk.WebserviceException(_bad_response("Model Management Service", response))
        keys = json.loads(response.content)
        for field in ("primaryKey", "secondaryKey"):
            if field not in keys:
                raise sdk.WebserviceException(f"Invalid response key: {field}")
        return str(keys["primaryKey"]), str(keys["secondaryKey"])
