"""Answers shaped as the REST specification's documented examples (``tests/azure_examples``, each citing its example
file) hold to the contract schemas the emulator is checked against, and azure-ai-ml's generated models read them
without loss. Why both: the schemas are written by hand from the specification, so they are checked against what
Azure documents it answers and against what the SDK the backend runs expects to read; a schema stricter than Azure's
own example, or a field the SDK does not know, would make the emulator's conformance check prove the wrong thing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml._restclient.arm_ml_service import models
from azure.ai.ml._restclient.arm_ml_service._utils.model_base import Model, _deserialize

from gpu_model_operator_dev.azureml_emulator.contract import operations, validation

EXAMPLES = Path(__file__).resolve().parents[1] / "azure_examples"


@dataclass(frozen=True)
class Example:
    """One fixture: the specification example it follows, the api-version and definition of the answer, the SDK
    model that reads it (``Name[]``: a page whose ``value`` the SDK reads as a list of ``Name``; None: azure-core's
    long-running-operation poller reads it, no generated model) and the body."""

    source: str
    api_version: str
    definition: str
    model: str | None
    body: dict[str, Any]


def _load(path: Path) -> Example:
    raw = json.loads(path.read_text())
    return Example(raw["source"], raw["apiVersion"], raw["definition"], raw["model"], raw["body"])


CASES: dict[str, Example] = {path.stem: _load(path) for path in sorted(EXAMPLES.glob("*.json"))}


def _document(example: Example) -> str:
    """The schema document of the operation that answers with the example's definition at its api-version: the
    operation table decides, so a fixture whose version no operation is called at fails here."""
    found = {
        op.versions[example.api_version]
        for op in operations.OPERATIONS
        if example.api_version in op.versions and example.definition in op.responses.values()
    }
    assert len(found) == 1, f"{example.definition} at {example.api_version}: answered by {found or 'no operation'}"
    return found.pop()


def _unread(value: Any, raw: Any, where: str) -> list[str]:
    """The JSON paths in ``raw`` that the deserialized ``value`` has no field for, walking models, lists and maps
    (reading each attribute runs the SDK's lazy deserialization, so a wrong type raises here too)."""
    if isinstance(value, Model):
        fields = {rf._rest_name: attr for attr, rf in type(value)._attr_to_rest_field.items()}
        missing = [f"{where}/{key}" for key in raw if key not in fields]
        for key, item in raw.items():
            if key in fields:
                missing += _unread(getattr(value, fields[key]), item, f"{where}/{key}")
        return missing
    if isinstance(value, list):
        return [m for i, (v, r) in enumerate(zip(value, raw, strict=True)) for m in _unread(v, r, f"{where}/{i}")]
    if isinstance(value, dict):
        return [m for key, item in raw.items() for m in _unread(value[key], item, f"{where}/{key}")]
    return []


def test_every_fixture_cites_a_specification_example() -> None:
    assert CASES, "no fixtures found"
    uncited = {name for name, ex in CASES.items() if not ex.source.startswith("Azure/azure-rest-api-specs, ")}
    assert uncited == set()


@pytest.mark.parametrize("name", CASES)
def test_example_holds_to_the_contract_schema(name: str) -> None:
    example = CASES[name]
    ref = validation.schema_ref(_document(example), example.definition)
    assert validation.violations("response", ref, example.body) == []


@pytest.mark.parametrize("name", [name for name, ex in CASES.items() if ex.model is not None])
def test_sdk_models_read_the_example_without_loss(name: str) -> None:
    example = CASES[name]
    assert example.model is not None
    if example.model.endswith("[]"):
        # The SDK's pager reads ``value`` as a list of the item model and ``nextLink`` as the next page's address.
        assert set(example.body) <= {"value", "nextLink"}
        item = getattr(models, example.model[:-2])
        read: Any = _deserialize(list[item], example.body["value"])  # type: ignore[valid-type]
        raw: Any = example.body["value"]
        assert [entry.as_dict() for entry in read] == raw
    else:
        read = _deserialize(getattr(models, example.model), example.body)
        raw = example.body
        assert read.as_dict() == raw
    assert _unread(read, raw, "") == []
