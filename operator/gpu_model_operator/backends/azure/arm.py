"""Plain ARM requests through azure-mgmt-core's public ``ARMPipelineClient``, the pipeline the Azure SDKs themselves
run: ARM's challenge-based bearer authentication with the credential, resource provider registration, request ids,
ARM's redacting HTTP log. Requests are ``azure.core.rest.HttpRequest``; refusals are raised as azure-core's typed
errors, mapped as the SDKs' generated operations map them (401, 404, 409, 304, else ``HttpResponseError`` in ARM's
error format), so :mod:`.failures` reads them the same.

What differs from the SDKs' own clients: no retry (``RetryPolicy(retry_total=0)``). azure-core would retry a 429
or 5xx itself, sleeping inside a pass whatever the operator's backoff decided; the operator honours Retry-After
in :mod:`.calls` instead.

Which ARM: the azureml SDKs' own way to a custom or sovereign cloud, Azure's cloud metadata document
(``/metadata/endpoints``) that ``ARM_CLOUD_METADATA_URL`` names, with the cloud ``AZUREML_CURRENT_CLOUD`` picks
(default ``AzureCloud``); without a document, azure-mgmt-core's table of the built-in clouds.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from azure.core import AzureClouds
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.pipeline import policies
from azure.core.rest import HttpRequest
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import (
    ARMAutoResourceProviderRegistrationPolicy,
    ARMChallengeAuthenticationPolicy,
    ARMHttpLoggingPolicy,
)
from azure.mgmt.core.tools import get_arm_endpoints

METADATA_URL_ENV, CLOUD_ENV = "ARM_CLOUD_METADATA_URL", "AZUREML_CURRENT_CLOUD"
#: The azureml SDKs' names of the clouds azure-mgmt-core knows.
BUILT_IN = {
    "AzureCloud": AzureClouds.AZURE_PUBLIC_CLOUD,
    "AzureChinaCloud": AzureClouds.AZURE_CHINA_CLOUD,
    "AzureUSGovernment": AzureClouds.AZURE_US_GOVERNMENT,
}
#: How the SDKs' generated operations map a refusal to azure-core's errors (before ``HttpResponseError``).
ERROR_MAP: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


@dataclass(frozen=True)
class ResourceManager:
    """An ARM endpoint and the token scopes for it."""

    url: str
    scopes: tuple[str, ...]


def resource_manager() -> ResourceManager:
    """The ARM this process's SDKs talk to (see the module)."""
    return _resource_manager(os.environ.get(METADATA_URL_ENV) or "", os.environ.get(CLOUD_ENV) or "AzureCloud")


@functools.cache
def _resource_manager(metadata: str, name: str) -> ResourceManager:
    """Read once per document and cloud name (a failure is not kept)."""
    if metadata:
        response = requests.get(metadata, timeout=30)
        response.raise_for_status()
        clouds = response.json()
        for cloud in clouds if isinstance(clouds, list) else [clouds]:
            if cloud.get("name") == name and cloud.get("resourceManager"):
                url = str(cloud["resourceManager"]).rstrip("/")
                return ResourceManager(url, (f"{url}/.default",))
    endpoints = get_arm_endpoints(BUILT_IN.get(name, AzureClouds.AZURE_PUBLIC_CLOUD))
    return ResourceManager(str(endpoints["resource_manager"]).rstrip("/"), tuple(endpoints["credential_scopes"]))


class RemainingCalls(policies.SansIOHTTPPolicy[Any, Any]):
    """Hands every ARM answer's headers to ``observe``: the ``x-ms-ratelimit-remaining-*`` counts feed the
    operator's budget (:mod:`.arm_budget`), a 429's included."""

    def __init__(self, observe: Callable[[Mapping[str, str]], None]) -> None:
        self._observe = observe

    def on_response(self, request: Any, response: Any) -> None:
        self._observe(response.http_response.headers)


class Arm:
    """One principal's ARM client; thread-safe, its connections kept alive. ``observe`` gets every answer's
    headers (the budget's remaining-calls counts)."""

    def __init__(
        self,
        credential: TokenCredential,
        user_agent: str,
        manager: ResourceManager | None = None,
        observe: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        manager = manager or resource_manager()
        # The policies of azure-ai-ml's generated clients, in their order, with no retry (see the module).
        pipeline = [
            policies.RequestIdPolicy(),
            policies.HeadersPolicy(),
            policies.UserAgentPolicy(user_agent=user_agent),
            policies.ProxyPolicy(),
            policies.ContentDecodePolicy(),
            ARMAutoResourceProviderRegistrationPolicy(),
            policies.RedirectPolicy(),
            policies.RetryPolicy(retry_total=0),
            ARMChallengeAuthenticationPolicy(credential, *manager.scopes),
            policies.CustomHookPolicy(),
            policies.NetworkTraceLoggingPolicy(),
            policies.DistributedTracingPolicy(),
            policies.SensitiveHeaderCleanupPolicy(),
            ARMHttpLoggingPolicy(),
        ]
        if observe is not None:
            pipeline.append(RemainingCalls(observe))
        self._client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(base_url=manager.url, policies=pipeline)

    def send(
        self,
        method: str,
        path: str,
        api_version: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        """One request to ``path`` (a resource id, or a whole URL); Azure's JSON answer, or None without a body."""
        response = self._request(method, path, api_version, body, params, ok)
        return response.json() if response.content else None

    def start(self, method: str, path: str, api_version: str, body: Any, *, ok: tuple[int, ...]) -> str | None:
        """A write that starts a long-running operation: the URL of the operation's status Azure answered with
        (``Azure-AsyncOperation``, else ``Location``: ARM's asynchronous operations), where it gave one. The
        operation's outcome, a failure's reason included, is read there later (:meth:`operation`)."""
        response = self._request(method, path, api_version, body, None, ok)
        found = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
        return str(found) if found else None

    def operation(self, url: str) -> dict[str, Any] | None:
        """An asynchronous operation's status (``status``, and ``error`` once it failed), from the URL a write
        answered with; None once Azure has forgotten it (404)."""
        parsed = urllib.parse.urlparse(url)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        version = query.pop("api-version", "")
        return self.get(urllib.parse.urljoin(url, parsed.path), version) if not query else self.get(url, version)

    def _request(
        self,
        method: str,
        path: str,
        api_version: str,
        body: Any,
        params: Mapping[str, str] | None,
        ok: tuple[int, ...],
    ) -> Any:
        url = self._client.format_url(path)
        query = {**(params or {}), "api-version": api_version}
        content = {"json": body} if body is not None else {}
        request = HttpRequest(method, url, params=query, headers={"Accept": "application/json"}, **content)
        response = self._client.send_request(request)
        if response.status_code not in ok:
            map_error(response.status_code, response, ERROR_MAP)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        return response

    def get(self, path: str, api_version: str) -> dict[str, Any] | None:
        """A resource, or None where ARM answers 404."""
        try:
            return dict(self.send("GET", path, api_version))
        except ResourceNotFoundError:
            return None

    def list(self, path: str, api_version: str) -> list[dict[str, Any]]:
        """Every page of a listing (``value``, then ``nextLink`` with this api-version, as the SDKs follow it)."""
        found: list[dict[str, Any]] = []
        page = self.send("GET", path, api_version)
        while page:
            found += [dict(item) for item in page.get("value") or []]
            link = page.get("nextLink")
            if not link:
                break
            parsed = urllib.parse.urlparse(link)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            page = self.send("GET", urllib.parse.urljoin(link, parsed.path), api_version, params=query)
        return found

    def close(self) -> None:
        self._client.close()
