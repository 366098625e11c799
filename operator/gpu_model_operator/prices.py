"""The price table the cost estimate is computed from: a price per hour for each VM size, in one currency, with where
the prices come from. The installation may give its own (``--price-table FILE``: a ConfigMap mounted into the pod,
README "What it costs"); without one, the shipped default below.

A table is data, read from text here (no I/O): the controller reads the file, the core computes with the table.

The default: Azure's pay-as-you-go prices for Linux VMs in East US, as the Azure Retail Prices API publishes them
(``https://prices.azure.com/api/retail/prices``, the items of ``serviceName`` "Virtual Machines", ``armRegionName``
"eastus", ``type`` "Consumption", the meters without "Spot" or "Low Priority" of the products without "Windows"),
compiled in December 2026 from that API's answers as public repositories record them, for the current sizes of
``backends/vm_sizes.py``. It was not read live from the API: prices change, and differ by region, agreement and
currency, so it is an estimate, and an installation that needs its own prices gives its table. Sizes whose price
could not be confirmed that way are left out (the estimate then says it has no price for them): NC H100 v5, ND H100
v5 without InfiniBand, ND H200 v5 (not on the managed SKU list), NVadsA10 v5's adms and 72 sizes, and NVv3 (retired
in 2026). Retired sizes have no price: they can no longer be created.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel


class PriceTable(BaseModel):
    """VM sizes' prices per hour. Its YAML (what ``--price-table`` reads)::

    currency: USD
    source: "Azure Retail Prices API, pay-as-you-go, Linux"
    region: eastus
    asOf: "2026-12"
    prices:
      Standard_NC4as_T4_v3: 0.526
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    currency: Annotated[str, Field(min_length=1, max_length=8)] = "USD"
    source: str = ""
    region: str = ""
    as_of: str = ""
    #: Price of one VM per hour, by size (Azure's names are case-insensitive: looked up in lower case). Finite: the
    #: status is JSON, which has no infinity, and one such price would make every status patch of its users refused.
    prices: Mapping[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(default_factory=dict)

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_as_written(cls, value: object) -> object:
        """``asOf: 2026-12-01`` unquoted is a date to YAML: take it as the day it names."""
        return value.isoformat() if isinstance(value, datetime.date) else value

    @field_validator("prices")
    @classmethod
    def _lower_case(cls, prices: Mapping[str, float]) -> Mapping[str, float]:
        return MappingProxyType({size.lower(): float(price) for size, price in prices.items()})

    def price(self, size: str) -> float | None:
        return self.prices.get(size.lower())

    @property
    def described(self) -> str:
        """Where the prices come from, in one line for the status."""
        parts = [self.source or "the installation's price table", self.region, self.as_of and f"as of {self.as_of}"]
        return ", ".join(part for part in parts if part)


class PriceTableError(ValueError):
    """A price table that cannot be read: the message says why, never the file's content."""


def parse_price_table(text: str) -> PriceTable:
    """A table from its YAML (or JSON) text."""
    try:
        data = yaml.safe_load(text)
        return PriceTable.model_validate(data if data is not None else {})
    except yaml.YAMLError as exc:
        raise PriceTableError(f"not YAML: {type(exc).__name__}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PriceTableError(f"{where}: {first['msg']}") from exc


DEFAULT = PriceTable(
    currency="USD",
    source=(
        "default table: Azure pay-as-you-go Linux VM prices of the Azure Retail Prices API, compiled from public "
        "records of its answers, not read live"
    ),
    region="eastus",
    as_of="2026-12",
    prices={
        # NCasT4_v3 (T4)
        "Standard_NC4as_T4_v3": 0.526,
        "Standard_NC8as_T4_v3": 0.752,
        "Standard_NC16as_T4_v3": 1.204,
        "Standard_NC64as_T4_v3": 4.352,
        # NC A100 v4
        "Standard_NC24ads_A100_v4": 3.673,
        "Standard_NC48ads_A100_v4": 7.346,
        "Standard_NC96ads_A100_v4": 14.692,
        # NDv2 (V100), ND A100 v4, NDm A100 v4, ND H100 v5 (with InfiniBand)
        "Standard_ND40rs_v2": 22.032,
        "Standard_ND96asr_v4": 27.197,
        "Standard_ND96amsr_A100_v4": 32.77,
        "Standard_ND96isr_H100_v5": 98.32,
        # NVadsA10 v5 (A10)
        "Standard_NV36ads_A10_v5": 3.2,
    },
)
