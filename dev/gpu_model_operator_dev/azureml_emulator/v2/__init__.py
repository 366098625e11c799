"""The Azure ML v2 surface (``azure-ai-ml`` 1.35, ``azure-identity`` 1.27) of the emulator.

Managed and Kubernetes online endpoints and deployments with ARM's long-running operations, keys and tokens,
scoring with traffic splits, versioned assets (models, environments, code) and the default datastore, attached
Kubernetes computes with instance types and per-node GPUs, quota usages and VM sizes, and workload identity
federation. :func:`install` wires it into the emulator's one aiohttp app; everything it keeps lives in
``EmulatorState.v2`` / ``EmulatorState.v2_config`` (see :mod:`.store`, :mod:`.model`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import admin, monitor, overlay, routes, scoring
from .payloads import INFERENCE_SUFFIX

if TYPE_CHECKING:
    from ..state import EmulatorState

__all__ = ["INFERENCE_SUFFIX", "PROXIED_SUFFIXES", "V2_CLOUD", "install", "tls_names"]

V2_CLOUD = overlay.V2_CLOUD

#: Host suffixes the CONNECT proxy must tunnel here for v2 clients: managed endpoints' scoring hosts.
PROXIED_SUFFIXES = (INFERENCE_SUFFIX,)

#: Regions whose scoring hosts the server certificate names (a wildcard covers one DNS label only, so each region
#: needs ``*.<region>.inference.ml.azure.com``); the configured location is added at start.
REGIONS = (
    "eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus",
    "westcentralus", "canadacentral", "brazilsouth", "northeurope", "westeurope", "uksouth", "francecentral",
    "germanywestcentral", "swedencentral", "switzerlandnorth", "norwayeast", "japaneast", "koreacentral",
    "southeastasia", "eastasia", "australiaeast", "centralindia", "uaenorth", "southafricanorth",
)  # fmt: skip


def tls_names(location: str) -> list[str]:
    return [f"*.{region}.{INFERENCE_SUFFIX}" for region in sorted({*REGIONS, location.lower()})]


def install(app: web.Application, state: EmulatorState) -> None:
    """Add the v2 routes, the managed scoring host and the admin routes to ``app`` (middleware: see server)."""
    app.add_domain(f"*.{INFERENCE_SUFFIX}", scoring.managed_app(state))
    app.add_routes(admin.admin_routes(state))
    app.add_routes(routes.routes(state))
    app.add_routes(monitor.routes(state))
    app.add_routes(scoring.kube_routes(state))


middleware = overlay.middleware
