"""AKS clusters on Azure ML's legacy (SDK v1) path as Azure documents them in 2026: what a cluster Azure ML creates
or attaches must have, and which Kubernetes versions an attach accepts.

Sources:

- "Create and attach an Azure Kubernetes Service cluster with v1" (MicrosoftDocs/azure-ai-docs,
  articles/machine-learning/v1/how-to-create-attach-kubernetes.md at commit
  31c0eaf68efd248f21a69c8e608f859bd48c98e8), "Limitations": "When creating or attaching a cluster, if the cluster is
  used for production, then it must contain at least 3 nodes. For a dev-test cluster, it must contain at least 1
  node"; "If you don't specify the cluster purpose, a production cluster is created" (so an attach without one is
  FastProd). The 12 (production) and 2 (dev/test) vCPUs are the SDK reference's (azureml-sdk-for-r,
  ``attach_aks_compute``: "If your cluster has less than 12 virtual CPUs, you will need to specify 'DevTest' ... We
  recommend that your cluster have at least 2 virtual CPUs for dev/test usage"). The page gives no error code or wording
  for a refusal: the emulator answers 400 ``BadRequest`` with its own message, synchronously, for both create and
  attach.
- The same page, "Azure Kubernetes Service version": a cluster Azure ML creates gets AKS's default version (no
  choice); "When attaching an existing AKS cluster, we support all currently supported AKS versions", and for an
  older cluster "the attachment operation returns an error and list the currently supported versions". AKS supports
  the latest GA minor version and the two before it ("N-2", MicrosoftDocs/azure-aks-docs
  articles/aks/supported-kubernetes-versions.md at commit eece2bd0ab80e07f4749d9168fe27e14339cbb9b). Which minors
  form that window on a given day is AKS's release calendar, which the stored documentation follows only to 1.32:
  the emulator does not guess it. ``EmulatorConfig.aks_supported_versions`` names the window (empty: any version
  attaches), and a seeded cluster names its version. The failed operation's code and wording are the emulator's.
- Load balancer: the page says a cluster Azure ML creates has a Basic Load Balancer ("If you need a Standard Load
  Balancer (SLB) deployed in your cluster instead of a Basic Load Balancer (BLB), create a cluster in the AKS
  portal/CLI/SDK and then attach it"), and Azure retired the Basic Load Balancer on 2025-09-30; AKS no longer
  supports it (MicrosoftDocs/azure-aks-docs articles/aks/upgrade-basic-load-balancer-on-aks.md at commit
  f9204f3c4e2db4f645d080138f6200ac7ea29ac9). What Azure ML's create does since, the documentation does not say; the
  compute API has no load balancer SKU to show it (``loadBalancerType`` is PublicIp or InternalLoadBalancer), so the
  emulator creates clusters as before and the README tells users to attach a cluster they created with a Standard
  Load Balancer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu import MIN_VCPUS, retired_on, vcpus_per_vm
from .resources import ErrorBody

#: Nodes a cluster needs by purpose (lower case), created or attached (see the module's sources).
MIN_NODES = {"fastprod": 3, "devtest": 1}


@dataclass(frozen=True)
class AksCluster:
    """An AKS cluster outside Azure ML that ``ComputeTarget.attach`` may attach."""

    vm_size: str
    agent_count: int
    #: ``major.minor[.patch]``; None: a version the emulator treats as supported.
    kubernetes_version: str | None = None


def provisioning_refusal(vm_size: str, agent_count: int, cluster_purpose: str | None) -> str | None:
    """Why ARM refuses to create this AKS compute, or None: a retired size, or a cluster too small for its purpose."""
    retired = retired_on(vm_size)
    if retired:
        return (
            f"The VM size '{vm_size}' is not available: it was retired on {retired}. "
            "Choose a different VM size for the agent pool."
        )
    return size_refusal(vm_size, agent_count, cluster_purpose)


def size_refusal(vm_size: str, agent_count: int, cluster_purpose: str | None) -> str | None:
    """Why a cluster of ``agent_count`` x ``vm_size`` cannot serve ``cluster_purpose`` (FastProd when None), or None."""
    purpose = cluster_purpose or "FastProd"
    nodes = MIN_NODES.get(purpose.lower(), 1)
    if agent_count < nodes:
        return (
            f"An AKS cluster with cluster purpose '{purpose}' must have at least {nodes} nodes; it has {agent_count}. "
            "Use cluster purpose DevTest for a smaller cluster."
        )
    vcpus = vcpus_per_vm(vm_size)
    need = MIN_VCPUS.get(purpose.lower(), 0)
    if vcpus is not None and vcpus * agent_count < need:
        return (
            f"An AKS cluster with cluster purpose '{purpose}' must have at least {need} virtual CPUs in total; "
            f"{agent_count} x {vm_size} provide {vcpus * agent_count}."
        )
    return None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def version_refusal(version: str | None, supported: list[str]) -> ErrorBody | None:
    """The failed attach of a cluster whose Kubernetes minor version is outside ``supported`` (empty: no check)."""
    if not supported or version is None or _minor(version) in {_minor(v) for v in supported}:
        return None
    return {
        "code": "UnsupportedKubernetesVersion",
        "statusCode": 400,
        "message": (
            f"The AKS cluster runs Kubernetes {version}, which is no longer supported. Supported versions: "
            f"{', '.join(sorted(supported, reverse=True))}. Upgrade the cluster and attach it again."
        ),
    }
