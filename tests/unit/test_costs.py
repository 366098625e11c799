"""What a resource runs costs (costs.py) at a price table's prices (prices.py): what is counted for each backend and
compute, the estimate's total (none when a size has no price), when a pass records it, and the tables themselves
(the installation's YAML, read again when its file changes; the shipped default's sizes)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gpu_model_operator import costs
from gpu_model_operator.backends import vm_sizes
from gpu_model_operator.backends.base import ComputeState, ObservedCompute
from gpu_model_operator.backends.endpoint import DeploymentSnapshot, EndpointSnapshot
from gpu_model_operator.decision import Problem
from gpu_model_operator.models import CostItem, CostStatus, GpuModelDeploymentSpec, Ownership, parse_spec
from gpu_model_operator.price_file import PriceFile
from gpu_model_operator.prices import DEFAULT, PriceTable, PriceTableError, parse_price_table
from gpu_model_operator.reconcile import decide
from tests.unit.test_reconcile import compute, facts, observe, service

TABLE = PriceTable(
    currency="EUR", source="test table", region="westeurope", as_of="2026-12", prices={"Standard_NC4as_T4_v3": 0.5}
)
DESCRIBED = "test table, westeurope, as of 2026-12"
WORKSPACE = {"subscriptionId": "sub", "resourceGroup": "rg", "name": "ws1", "credentialsSecretRef": {"name": "sp"}}
SOURCE = {"configMapRef": {"name": "src"}, "condaFile": "myenv.yml"}


def v1(compute_spec: dict[str, Any]) -> GpuModelDeploymentSpec:
    return parse_spec(
        {
            "backend": "azureml",
            "workspace": WORKSPACE,
            "compute": {"name": "gpu-cluster", **compute_spec},
            "model": {"name": "digits", "version": 1},
            "source": SOURCE,
            "service": {"name": "digits-svc"},
        }
    )


def v2(compute_spec: dict[str, Any]) -> GpuModelDeploymentSpec:
    return parse_spec(
        {
            "backend": "azureml-v2",
            "workspace": WORKSPACE,
            "compute": compute_spec,
            "model": {"name": "digits", "version": 1},
            "source": SOURCE,
            "service": {"name": "digits-ep"},
        }
    )


LOCAL = parse_spec({"backend": "local", "model": {"path": "/m"}, "source": SOURCE, "service": {"name": "digits"}})
PROVISIONED = v1({"provision": {"vmSize": "Standard_NC4as_T4_v3", "agentCount": 3}})
A100_CLUSTER = v1({"provision": {"vmSize": "Standard_NC24ads_A100_v4", "agentCount": 3}})
ATTACHED = v1({"attach": {"resourceGroup": "rg", "clusterName": "aks"}})
MANAGED = v2({"managed": {"instanceType": "Standard_NC4as_T4_v3"}})
KUBERNETES = v2({"kubernetes": {"computeName": "k8s", "instanceType": "gpu1", "nodeGpus": [1]}})
READY_NODES = ObservedCompute("gpu-cluster", ComputeState.READY, (1, 1, 1, 1))
NO_CLUSTER = ObservedCompute("gpu-cluster", ComputeState.ABSENT)
OURS = Ownership(compute_created=True, service_created=True)
FOUND = Ownership(compute_adopted=True, service_created=True)
ROLLING = EndpointSnapshot(
    "digits-ep",
    "Succeeded",
    deployments=(
        DeploymentSnapshot("gmo-old", "Succeeded", 2, "Standard_NC4as_T4_v3"),
        DeploymentSnapshot("gmo-new", "Creating", 1, "Standard_NC24ads_A100_v4"),
    ),
)


@dataclass(frozen=True)
class Case:
    spec: GpuModelDeploymentSpec
    compute: ObservedCompute
    endpoint: EndpointSnapshot | None
    ownership: Ownership
    want: CostStatus


def status(total: float | None, items: list[CostItem], counted: str, message: str = "") -> CostStatus:
    return CostStatus(per_hour=total, currency="EUR", items=items, prices=DESCRIBED, counted=counted, message=message)


T4_NODES = [CostItem(size="Standard_NC4as_T4_v3", count=4, unit_price=0.5, what="nodes of AKS cluster gpu-cluster")]
CASES: dict[str, Case] = {
    "the-nodes-of-a-cluster-the-operator-created-as-observed": Case(
        PROVISIONED,
        READY_NODES,
        None,
        OURS,
        status(2.0, T4_NODES, "the nodes of the AKS cluster the operator created"),
    ),
    "a-cluster-being-created-counts-the-nodes-asked-for-by-its-tag": Case(
        PROVISIONED,
        ObservedCompute("gpu-cluster", ComputeState.CREATING, created_by_operator=True),
        None,
        Ownership(),
        status(
            1.5,
            [CostItem(size="Standard_NC4as_T4_v3", count=3, unit_price=0.5, what="nodes of AKS cluster gpu-cluster")],
            "the nodes of the AKS cluster the operator created",
        ),
    ),
    "no-cluster-yet-costs-nothing": Case(PROVISIONED, NO_CLUSTER, None, OURS, status(0.0, [], "no AKS cluster yet")),
    "an-adopted-cluster-is-not-counted": Case(
        PROVISIONED,
        READY_NODES,
        None,
        FOUND,
        status(0.0, [], "the AKS cluster was not created by the operator: its nodes are not counted"),
    ),
    "an-attached-cluster-is-not-counted": Case(
        ATTACHED,
        READY_NODES,
        None,
        OURS,
        status(0.0, [], "the AKS cluster was not created by the operator: its nodes are not counted"),
    ),
    "a-size-without-a-price-has-no-total-and-says-so": Case(
        A100_CLUSTER,
        READY_NODES,
        None,
        OURS,
        status(
            None,
            [
                CostItem(
                    size="Standard_NC24ads_A100_v4", count=4, unit_price=None, what="nodes of AKS cluster gpu-cluster"
                )
            ],
            "the nodes of the AKS cluster the operator created",
            "the price table has no price for Standard_NC24ads_A100_v4: add it (README, What it costs)",
        ),
    ),
    "a-rollout-counts-both-deployments-at-their-own-sizes": Case(
        MANAGED,
        ObservedCompute("Standard_NC4as_T4_v3", ComputeState.READY),
        ROLLING,
        Ownership(service_created=True),
        status(
            None,
            [
                CostItem(size="Standard_NC4as_T4_v3", count=2, unit_price=0.5, what="deployment gmo-old"),
                CostItem(size="Standard_NC24ads_A100_v4", count=1, unit_price=None, what="deployment gmo-new"),
            ],
            "the instances of the endpoint's deployments",
            "the price table has no price for Standard_NC24ads_A100_v4: add it (README, What it costs)",
        ),
    ),
    "no-endpoint-yet-costs-nothing": Case(
        MANAGED,
        ObservedCompute("Standard_NC4as_T4_v3", ComputeState.READY),
        None,
        OURS,
        status(0.0, [], "no endpoint of the operator's: nothing counted"),
    ),
    "an-endpoint-that-is-not-the-operators-is-not-counted": Case(
        MANAGED,
        ObservedCompute("Standard_NC4as_T4_v3", ComputeState.READY),
        ROLLING,
        Ownership(service_adopted=True),
        status(0.0, [], "no endpoint of the operator's: nothing counted"),
    ),
    "a-kubernetes-computes-nodes-are-its-owners": Case(
        KUBERNETES,
        ObservedCompute("k8s", ComputeState.READY, (1,)),
        ROLLING,
        OURS,
        status(0.0, [], "a Kubernetes compute's nodes are its owner's: not counted"),
    ),
    "the-local-machine-is-not-priced": Case(
        LOCAL,
        ObservedCompute("local", ComputeState.READY, (1,)),
        None,
        OURS,
        status(0.0, [], "this machine: not priced"),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_estimate(name: str) -> None:
    case = CASES[name]
    found, counted = costs.running(case.spec, case.compute, case.endpoint, case.ownership)
    assert costs.estimate(found, counted, TABLE) == case.want


def test_a_pass_that_observed_records_the_cost_and_one_that_did_not_keeps_it() -> None:
    """The cost follows the ownership the pass itself records: a cluster the operator just created is counted."""
    observed = decide(replace(facts(observe(compute(gpus=2), service())), prices=TABLE)).status
    assert observed.cost == status(
        1.0,
        [CostItem(size="Standard_NC4as_T4_v3", count=2, unit_price=0.5, what="nodes of AKS cluster gpu-cluster")],
        "the nodes of the AKS cluster the operator created",
    )
    blip = Problem("BackendUnavailable", "Azure is down", transient=True)
    kept = decide(replace(facts(previous=observed, problem=blip), prices=DEFAULT)).status
    assert kept.cost == observed.cost


@dataclass(frozen=True)
class TableCase:
    text: str
    want: PriceTable | str


TABLES: dict[str, TableCase] = {
    "a-table-in-yaml": TableCase(
        "currency: EUR\nsource: test table\nregion: westeurope\nasOf: '2026-12'\n"
        "prices:\n  Standard_NC4as_T4_v3: 0.5\n",
        TABLE,
    ),
    "sizes-are-case-insensitive": TableCase(
        "prices: {standard_nc4as_t4_v3: 0.5}", PriceTable(prices={"Standard_NC4as_T4_v3": 0.5})
    ),
    "an-empty-file-is-an-empty-table": TableCase("", PriceTable()),
    "a-negative-price-is-refused": TableCase(
        "prices: {Standard_NC4as_T4_v3: -1}", "prices.Standard_NC4as_T4_v3: Input should be greater than or equal to 0"
    ),
    "an-infinite-price-is-refused": TableCase(
        "prices: {Standard_NC4as_T4_v3: .inf}", "prices.Standard_NC4as_T4_v3: Input should be a finite number"
    ),
    "a-price-past-a-double-is-refused": TableCase(
        "prices: {Standard_NC4as_T4_v3: 1.0e+309}", "prices.Standard_NC4as_T4_v3: Input should be a finite number"
    ),
    "an-unquoted-date-is-the-day-it-names": TableCase("asOf: 2026-12-01", PriceTable(as_of="2026-12-01")),
    "an-unknown-field-is-refused": TableCase("price: {}", "price: Extra inputs are not permitted"),
    "not-yaml-is-refused": TableCase("prices: [", "not YAML: ParserError"),
}


@pytest.mark.parametrize("name", TABLES)
def test_price_table(name: str) -> None:
    case = TABLES[name]
    if isinstance(case.want, str):
        with pytest.raises(PriceTableError) as refused:
            parse_price_table(case.text)
        assert str(refused.value) == case.want
    else:
        assert parse_price_table(case.text) == case.want


def test_the_default_table_prices_only_current_sizes_of_the_size_table() -> None:
    """Retired sizes cannot be created, so they have no price; every priced size is one the operator knows."""
    current = {name.lower() for name in vm_sizes.CURRENT}
    assert set(DEFAULT.prices) <= current
    assert DEFAULT.currency == "USD" and DEFAULT.region == "eastus" and DEFAULT.as_of == "2026-12"


def test_a_price_file_is_read_again_when_it_changes_and_kept_when_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("prices: {Standard_NC4as_T4_v3: 0.5}")
    file = PriceFile(path)
    assert file.table().price("Standard_NC4as_T4_v3") == 0.5
    path.write_text("prices: {Standard_NC4as_T4_v3: 0.75}")
    os.utime(path, ns=(1, 2))  # a new modification time, whatever the file system's clock resolution
    assert file.table().price("Standard_NC4as_T4_v3") == 0.75
    path.write_text("prices: [")
    os.utime(path, ns=(3, 4))
    assert file.table().price("Standard_NC4as_T4_v3") == 0.75
    assert PriceFile(None).table() == DEFAULT


def test_a_settled_resource_is_priced_again_at_the_table_s_prices_now() -> None:
    """A resync that finds nothing else changed keeps what runs, at the prices of the table as it is now."""
    before = status(2.0, T4_NODES, "the nodes of the AKS cluster the operator created")
    cheaper = PriceTable(
        currency="EUR", source="test table", region="westeurope", as_of="2026-12", prices={"Standard_NC4as_T4_v3": 0.25}
    )
    after = costs.repriced(before, cheaper)
    assert after == status(
        1.0,
        [T4_NODES[0].model_copy(update={"unit_price": 0.25})],
        "the nodes of the AKS cluster the operator created",
    )
    assert costs.repriced(None, cheaper) is None


def test_the_operator_does_not_start_with_a_price_table_it_cannot_read(tmp_path: Path) -> None:
    """A typo would otherwise price nothing, silently: the start stops and says why (never the file's content)."""
    from click.testing import CliRunner

    from gpu_model_operator.cli import main

    bad = tmp_path / "prices.yaml"
    bad.write_text("prices: {Standard_NC4as_T4_v3: free}")
    result = CliRunner().invoke(main, ["run", "--all-namespaces", "--price-table", str(bad)])
    assert result.exit_code == 2
    assert f"--price-table: price table {bad}: prices.Standard_NC4as_T4_v3: Input should be a valid number" in (
        result.output
    )
