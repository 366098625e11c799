"""The JSON schemas of ``schemas/`` loaded into one registry, and the two ways a body is held to them.

Why two validators: Azure's specification marks what the server owns ``readOnly`` (a client that sends it is
outside the contract) and what it never returns ``x-ms-secret`` with ``x-ms-mutability: [create]`` (written here as
``writeOnly``: a response that carries it is outside the contract). A request is validated with ``readOnly``
enforced, a response with ``writeOnly`` enforced; both with the formats the specification names (``date-time``,
``duration``, ``uuid``, ``uri``).

Why :func:`project`: an ARM resource provider answers in the model of the request's api-version, so a property a
later version added is absent from an older version's answer (an ``additionalProperties: false`` model cannot carry
it). The emulator keeps its resources in the newest shape and projects each answer onto the schema of the
api-version asked for.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: ISO 8601 durations as the specification's ``format: duration`` fields carry them ("PT5S", "PT0.5S", "P1DT2H").
_DURATION = re.compile(
    r"^P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"
)


def _formats() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return "T" in value.upper() and parsed.tzinfo is not None

    @checker.checks("duration")
    def duration(value: object) -> bool:
        return not isinstance(value, str) or bool(_DURATION.match(value))

    @checker.checks("uuid", raises=ValueError)
    def is_uuid(value: object) -> bool:
        return not isinstance(value, str) or bool(uuid.UUID(value))

    @checker.checks("uri")
    def uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlparse(value)
        return bool(parts.scheme and parts.netloc)

    return checker


def _read_only(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if value and instance is not None:
        yield ValidationError("is read-only (the server sets it); a request does not carry it")


def _write_only(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if value and instance is not None:
        yield ValidationError("is create-only and secret; the specification says it is always returned as null")


RequestValidator = validators.extend(Draft202012Validator, {"readOnly": _read_only})  # type: ignore[no-untyped-call]
ResponseValidator = validators.extend(Draft202012Validator, {"writeOnly": _write_only})  # type: ignore[no-untyped-call]


@functools.cache
def registry() -> Registry[Any]:
    """Every schema document under ``schemas/``, by its ``$id``."""
    found: Registry[Any] = Registry()
    for path in sorted(SCHEMAS.glob("*.json")):
        document = json.loads(path.read_text())
        found = found.with_resource(
            document["$id"], Resource.from_contents(document, default_specification=DRAFT202012)
        )
    return found.crawl()


def schema_ref(document: str, name: str) -> str:
    """The URI of a definition: ``name`` in ``document`` (``urn:gmo:...``), or ``name`` itself if it is absolute."""
    return name if "#" in name else f"{document}#/$defs/{name}"


@functools.cache
def _validator(kind: str, ref: str) -> Any:
    cls = RequestValidator if kind == "request" else ResponseValidator
    return cls({"$ref": ref}, registry=registry(), format_checker=_formats())


def violations(kind: str, ref: str, body: Any) -> list[str]:
    """What is wrong with ``body`` as a ``kind`` ("request" or "response") of the definition ``ref``: one line per
    error, the JSON path first."""
    found = []
    for error in sorted(_validator(kind, ref).iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        found.append(f"{where}: {error.message}")
    return found


def project(body: Any, ref: str) -> Any:
    """``body`` with what the definition ``ref`` cannot hold left out (see the module's docstring)."""
    resolver = registry().resolver()
    resolved = resolver.lookup(ref)
    return _prune(body, resolved.contents, resolved.resolver)


def _prune(value: Any, schema: Any, resolver: Any) -> Any:
    if not isinstance(schema, Mapping):
        return value
    if "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        return _prune(value, resolved.contents, resolved.resolver)
    if "anyOf" in schema and value is not None:
        branch = next((b for b in schema["anyOf"] if b.get("type") != "null"), None)
        return _prune(value, branch, resolver)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_prune(item, schema["items"], resolver) for item in value]
    if not isinstance(value, dict):
        return value
    allowed, strict, extra = _members(value, schema, resolver)
    kept = {}
    for key, item in value.items():
        if key in allowed:
            kept[key] = _prune(item, *allowed[key])
        elif extra is not None:
            kept[key] = _prune(item, *extra)
        elif not strict:
            kept[key] = item
    return kept


def _members(value: dict[str, Any], schema: Mapping[str, Any], resolver: Any) -> tuple[dict[str, Any], bool, Any]:
    """The properties an object schema defines (with its ``allOf``, ``$ref`` and a matching ``if``/``then``),
    whether it is closed (``unevaluatedProperties: false``), and its ``additionalProperties`` schema if any."""
    allowed: dict[str, Any] = {}
    strict = schema.get("unevaluatedProperties") is False or schema.get("additionalProperties") is False
    extra = (
        (schema["additionalProperties"], resolver) if isinstance(schema.get("additionalProperties"), Mapping) else None
    )
    for name, sub in (schema.get("properties") or {}).items():
        allowed[name] = (sub, resolver)
    parts = [(s, resolver) for s in schema.get("allOf") or []]
    if "if" in schema:
        matched = Draft202012Validator(schema["if"], registry=registry()).is_valid(value)
        branch = schema.get("then") if matched else schema.get("else")
        if branch is not None:
            parts.append((branch, resolver))
    for part, part_resolver in parts:
        if "$ref" in part:
            resolved = part_resolver.lookup(part["$ref"])
            part, part_resolver = resolved.contents, resolved.resolver
        sub_allowed, _, sub_extra = _members(value, part, part_resolver)
        allowed.update(sub_allowed)
        extra = extra or sub_extra
    return allowed, strict, extra
