"""The CRD in crds/ and the pydantic models must describe the same resource: names, types, defaults,
bounds, enums and required fields. This test is what keeps the hand-written schema honest.

The spec is a union with one member per backend (and unions inside it: spec.compute's provision or attach, or
managed or kubernetes; spec.workspace's two sign-ins), while the CRD has one schema for all, with CEL rules for
what each backend requires. So: every field of every member is in the CRD with the same type, bounds, enum and
default; every field of the CRD is in at least one member; what a member requires is what the CRD requires plus
what a CEL rule requires for that backend (the table below, each entry named in a rule's message)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpu_model_operator import models

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "gpumodel.io_gpumodeldeployments.yaml"
#: Fields the CRD declares only so that setting them is rejected with a clear CEL message.
REJECT_ONLY = {"spec.workspace.credentialsSecretRef.namespace"}
#: What each backend's model requires beyond the CRD's ``required``: what the CRD's CEL rules require for it.
#: "Exactly one of" fields are each required in their own alternative of the union.
REQUIRED_BY_CEL = {
    "local": {"spec.model.path"},
    "azureml": {
        "spec.workspace",
        "spec.workspace.credentialsSecretRef",
        "spec.compute",
        "spec.compute.name",
        "spec.compute.provision",
        "spec.compute.attach",
        "spec.model.name",
    },
    "azureml-v2": {
        "spec.workspace",
        "spec.workspace.credentialsSecretRef",
        "spec.workspace.workloadIdentity",
        "spec.compute",
        "spec.compute.managed",
        "spec.compute.kubernetes",
        "spec.model.name",
        "spec.model.version",
    },
}
PY_TO_OPENAPI = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**_resolve(defs[node["$ref"].split("/")[-1]], defs), **siblings}
    if "anyOf" in node:  # Optional[X] is anyOf [X, null]
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        assert len(options) == 1, node
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        return {**_resolve(options[0], defs), **merged}
    return node


def _alternatives(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of a union (``oneOf``, pydantic's tagged unions), each resolved; anything else is one."""
    if "oneOf" in node:
        return [alt for option in node["oneOf"] for alt in _alternatives(_resolve(option, defs), defs)]
    return [_resolve(node, defs)]


@dataclass
class Walk:
    """What comparing every member with the CRD found."""

    defs: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    #: Every path some member has.
    seen: set[str] = field(default_factory=set)
    #: The constant each member gives a field (``backend``), per path: together they must be the CRD's enum.
    consts: defaultdict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))
    #: What each member requires that the CRD does not, per backend.
    extra_required: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def compare(walk: Walk, backend: str, path: str, crd: dict[str, Any], node: dict[str, Any]) -> None:
    for py in _alternatives(node, walk.defs):
        _compare_one(walk, backend, path, crd, py)


def _compare_one(walk: Walk, backend: str, path: str, crd: dict[str, Any], py: dict[str, Any]) -> None:
    walk.seen.add(path)
    problems = walk.problems
    py_type = py.get("type", "object" if "properties" in py else None)
    if py.get("enum") and py_type is None:
        py_type = "string"
    if crd.get("type") != PY_TO_OPENAPI.get(str(py_type)):
        problems.append(f"{backend} {path}: CRD type {crd.get('type')} vs model type {py_type}")
    for key in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "enum"):
        crd_value, py_value = crd.get(key), py.get(key)
        if key == "minimum" and "exclusiveMinimum" in py:
            py_value = py["exclusiveMinimum"]
            if not crd.get("exclusiveMinimum"):
                problems.append(f"{backend} {path}: model bound is exclusive, CRD's is not")
        if key == "enum" and "const" in py:  # one member's value of the CRD's enum
            walk.consts[path].add(py["const"])
            continue
        if crd_value != py_value:
            problems.append(f"{backend} {path}: {key} CRD={crd_value!r} model={py_value!r}")
    if "default" in crd and crd["default"] != py.get("default"):
        problems.append(f"{backend} {path}: default CRD={crd['default']!r} model={py.get('default')!r}")
    if crd.get("type") == "array" and "items" in crd and "items" in py:
        compare(walk, backend, f"{path}[]", crd["items"], py["items"])
    if crd.get("type") != "object":
        return
    crd_props, py_props = crd.get("properties", {}), py.get("properties", {})
    for name in sorted(py_props):
        sub = f"{path}.{name}"
        if name not in crd_props:
            problems.append(f"{backend} {sub}: in the model, not in the CRD")
        elif sub not in REJECT_ONLY:
            compare(walk, backend, sub, crd_props[name], py_props[name])
    crd_required, py_required = set(crd.get("required", [])), set(py.get("required", []))
    if crd_required - py_required:
        problems.append(f"{backend} {path}: the CRD requires {sorted(crd_required - py_required)}, the model not")
    walk.extra_required[backend] |= {f"{path}.{name}" for name in py_required - crd_required}


def _crd_paths(node: dict[str, Any], path: str) -> set[str]:
    out = {path}
    for name, sub in node.get("properties", {}).items():
        out |= _crd_paths(sub, f"{path}.{name}")
    if "items" in node:
        out |= _crd_paths(node["items"], f"{path}[]")
    return out


def _members() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each backend's spec schema, by its ``backend`` value, and the definitions they refer to."""
    schema = models.spec_schema()
    defs = schema.get("$defs", {})
    members = _alternatives(schema, defs)
    return {member["properties"]["backend"]["const"]: member for member in members}, defs


def _cel_messages(node: dict[str, Any]) -> list[str]:
    found = [rule.get("message", "") for rule in node.get("x-kubernetes-validations", [])]
    for sub in node.get("properties", {}).values():
        found += _cel_messages(sub)
    return found


def test_spec_schema_matches_every_backends_model() -> None:
    crd = crd_schema()["properties"]["spec"]
    members, defs = _members()
    assert sorted(members) == sorted(crd["properties"]["backend"]["enum"])
    walk = Walk(defs)
    for backend, member in members.items():
        compare(walk, backend, "spec", crd, member)
    assert walk.problems == []
    assert _crd_paths(crd, "spec") - REJECT_ONLY - walk.seen == set(), "in the CRD, in no backend's model"
    for path, consts in walk.consts.items():
        crd_node = crd
        for name in path.split(".")[1:]:
            crd_node = crd_node["properties"][name]
        assert sorted(consts) == sorted(crd_node["enum"]), path


def test_what_each_backend_requires_is_what_the_cel_rules_require() -> None:
    crd = crd_schema()["properties"]["spec"]
    members, defs = _members()
    walk = Walk(defs)
    for backend, member in members.items():
        compare(walk, backend, "spec", crd, member)
    assert dict(walk.extra_required) == REQUIRED_BY_CEL
    messages = " ".join(_cel_messages(crd))
    assert [p for paths in REQUIRED_BY_CEL.values() for p in paths if p not in messages] == []


def _names(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> set[str]:
    node = _resolve(node, defs)
    out = set()
    for name, sub in node.get("properties", {}).items():
        out.add(f"{prefix}.{name}")
        out |= _names(sub, defs, f"{prefix}.{name}")
    items = node.get("items")
    if items:
        out |= _names(items, defs, f"{prefix}[]")
    return out


def test_status_fields_match_model() -> None:
    schema = models.GpuModelDeploymentStatus.model_json_schema(by_alias=True)
    crd_names = _names(crd_schema()["properties"]["status"], {}, "status")
    py_names = _names(schema, schema.get("$defs", {}), "status")
    assert crd_names == py_names


def _walk(node: dict[str, Any], path: str) -> list[str]:
    missing = [] if node.get("description") or path in ("metadata",) else [path]
    for name, sub in node.get("properties", {}).items():
        missing += _walk(sub, f"{path}.{name}" if path else name)
    if "items" in node:
        missing += [m for m in _walk(node["items"], f"{path}[]") if m != f"{path}[]"]
    return missing


def test_every_field_has_a_description() -> None:
    """Descriptions are what `kubectl explain gmd.spec` prints."""
    assert _walk(crd_schema(), "") == []


def test_default_gpu_image_is_the_sdks() -> None:
    from azureml.core.runconfig import DEFAULT_GPU_IMAGE

    assert models.DEFAULT_GPU_IMAGE == DEFAULT_GPU_IMAGE
