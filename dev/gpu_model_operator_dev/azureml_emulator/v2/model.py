"""The v2 (``azure-ai-ml``) resources as plain data: online endpoints and deployments, Kubernetes computes,
versioned assets, and the v2 configuration (latencies, quota limits, federated credentials).

Why apart from :mod:`..resources`: the v1 types belong to another surface (MMS services, AKS computes) that is
edited separately; the v2 store, routes and renderers share these without import cycles.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..resources import WsKey
from .skus import DEFAULT_FAMILY_LIMITS

#: The audience Microsoft Entra ID requires in a federated identity credential's assertion
#: (learn.microsoft.com/entra/workload-id/workload-identity-federation: "api://AzureADTokenExchange").
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


@dataclass
class V2Latencies:
    """How long each v2 long-running operation stays in progress, in seconds (0: done at the first poll)."""

    endpoint_create_s: float = 1.0
    endpoint_update_s: float = 0.5
    endpoint_delete_s: float = 0.5
    deployment_create_s: float = 2.0
    deployment_update_s: float = 1.0
    deployment_delete_s: float = 0.5
    keys_regenerate_s: float = 0.2
    compute_attach_s: float = 0.5
    compute_delete_s: float = 0.5


@dataclass
class FederatedCredential:
    """A federated identity credential of an app registration: who may exchange which assertion for its tokens.

    Entra ID matches ``issuer`` and ``subject`` exactly and requires the assertion's ``aud`` to be one of
    ``audiences`` (learn.microsoft.com/graph/api/resources/federatedidentitycredentials-overview). ``jwks`` is
    the issuer's key set (what its ``/openid/v1/jwks`` serves, e.g. a kube-apiserver's service-account keys).
    """

    client_id: str
    issuer: str
    subject: str
    jwks: dict[str, Any]
    audiences: list[str] = field(default_factory=lambda: [TOKEN_EXCHANGE_AUDIENCE])
    name: str = "federated"


@dataclass
class V2Config:
    """What the v2 surface does; kept across ``reset`` like :class:`..resources.EmulatorConfig`."""

    latencies: V2Latencies = field(default_factory=V2Latencies)
    #: ``Retry-After`` on LRO answers, seconds. ARM clients sleep this long between polls (azure-core's
    #: ``get_retry_after``); without it they sleep their own interval (30 s for ARM clients, 5 s for deployments).
    retry_after_s: float = 1.0
    #: vCPU limit per quota family (same for every subscription and region), see :mod:`.skus`.
    family_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_FAMILY_LIMITS))
    #: Azure ML holds back 20% extra capacity for upgrades on managed deployments: 10 instances need quota for 12
    #: (learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Azure Machine Learning online endpoints
    #: and batch endpoints"), except on the SKU list's "Skip 20% Reservation" sizes (see :mod:`.quota`).
    quota_reserve: float = 0.2
    #: Workspace-level quota: ``"sub/rg/ws"`` (lower case) -> family -> vCPUs, never above the subscription's.
    workspace_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Compute clusters holding vCPUs of a family: ``[{workspace: "sub/rg/ws", compute, family, vcpus}]``.
    compute_usages: list[dict[str, Any]] = field(default_factory=list)
    #: How long Azure keeps a deleted endpoint's name (seconds); the documentation does not say, so tests choose.
    endpoint_name_hold_s: float = 0.0
    #: Instances per managed deployment ("Number of instances per deployment: 50"; an increase raises it).
    max_instances: int = 50
    federated_credentials: list[FederatedCredential] = field(default_factory=list)
    #: Seed of the traffic split's random choice, so a run's split repeats.
    traffic_seed: int = 0
    #: Seconds an Azure ML token of an AMLToken endpoint lives (Azure does not document it); refresh after half.
    aml_token_lifetime_s: float = 3600.0
    #: Seconds of a container's start (a model's load, its probes' delays and periods) per real second: 60 makes a
    #: model that loads in ten minutes Ready in ten real seconds, with its probes timed on the same clock.
    container_clock: float = 1.0
    #: Keep a trace of every request with its JSON body (secrets redacted) for ``GET /_emulator/v2/trace``.
    record_trace: bool = False
    #: Validate every ARM exchange against Azure's published contract and record what does not conform
    #: (``contract.conformance``); on by default where ``AZUREML_EMULATOR_CONFORMANCE=1``, as in the test suites.
    conformance: bool = field(default_factory=lambda: os.environ.get("AZUREML_EMULATOR_CONFORMANCE") == "1")


@dataclass
class ScoringBehaviour:
    """What a deployment's inference server answers: a real server to forward to, a canned answer, or an echo."""

    backend_url: str | None = None
    response: Any = None
    #: The model's server answers every request with this status (a ``run()`` that raises answers 500), which Azure
    #: turns into its 424 (how-to-troubleshoot-online-endpoints, "HTTP status codes": "If your model container returns
    #: a non-200 response, Azure returns a 424"). None: it answers.
    model_status: int | None = None


@dataclass
class OnlineEndpoint:
    ws: WsKey
    name: str
    location: str
    #: ``properties`` as sent (authMode, description, properties, traffic, mirrorTraffic, compute, ...).
    props: dict[str, Any]
    identity: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    state: str = "Creating"
    primary_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    secondary_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    @property
    def compute(self) -> str | None:
        value = self.props.get("compute")
        return str(value) if value else None

    @property
    def traffic(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in (self.props.get("traffic") or {}).items()}


@dataclass
class OnlineDeployment:
    ws: WsKey
    endpoint: str
    name: str
    location: str
    props: dict[str, Any]
    sku: dict[str, Any]
    kind: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "Creating"
    #: Instances answer requests: set when a create succeeds, kept through a failed update (the old instances
    #: go on serving), cleared when deleting.
    serving: bool = False
    error: dict[str, Any] | None = None
    #: Kubernetes deployments: the node each instance runs on.
    placement: list[str] = field(default_factory=list)
    #: Its container ran (so ``getLogs`` has a console): False until it starts, and for failures before start.
    started: bool = False
    #: The console of a container that crashed (``getLogs``), from the failure rule.
    console: list[str] = field(default_factory=list)
    scoring: ScoringBehaviour = field(default_factory=ScoringBehaviour)
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)

    @property
    def compute_type(self) -> str:
        return str(self.props.get("endpointComputeType") or "Managed")

    @property
    def instance_type(self) -> str | None:
        value = self.props.get("instanceType")
        return str(value) if value else None

    @property
    def instance_count(self) -> int:
        return int(self.sku.get("capacity") or 1)


@dataclass
class KubeNode:
    """A node of an attached cluster, as the Azure ML extension's scheduler sees it."""

    name: str
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class KubernetesCompute:
    """An attached Kubernetes compute (AKS or Arc-enabled cluster with the Azure ML extension)."""

    ws: WsKey
    name: str
    location: str
    resource_id: str
    namespace: str = "default"
    #: name -> ``{"nodeSelector": {...}, "resources": {"requests": {...}, "limits": {...}}}`` (InstanceType CRDs).
    instance_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_instance_type: str = "defaultinstancetype"
    nodes: list[KubeNode] = field(default_factory=list)
    state: str = "Creating"
    description: str | None = None
    identity: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)


@dataclass
class AssetVersion:
    """A version of a model, environment or code asset: its ARM ``properties`` as stored."""

    kind: str
    name: str
    version: str
    props: dict[str, Any]
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
