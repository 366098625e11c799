"""The CRD in crds/ and the pydantic models must describe the same resource: names, types, defaults,
bounds, enums and required fields. This test is what keeps the hand-written schema honest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gpu_model_operator import models

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "gpumodel.io_gpumodeldeployments.yaml"
#: Fields the CRD declares only so that setting them is rejected with a clear CEL message.
REJECT_ONLY = {"spec.workspace.credentialsSecretRef.namespace"}
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


def compare(path: str, crd: dict[str, Any], py: dict[str, Any], defs: dict[str, Any], problems: list[str]) -> None:
    py = _resolve(py, defs)
    py_type = py.get("type", "object" if "properties" in py else None)
    if py.get("enum") and py_type is None:
        py_type = "string"
    if crd.get("type") != PY_TO_OPENAPI.get(str(py_type)):
        problems.append(f"{path}: CRD type {crd.get('type')} vs model type {py_type}")
    for key in ("minimum", "maximum", "minLength", "maxLength", "pattern", "enum"):
        crd_value, py_value = crd.get(key), py.get(key)
        if key == "minimum" and "exclusiveMinimum" in py:
            py_value = py["exclusiveMinimum"]
            if not crd.get("exclusiveMinimum"):
                problems.append(f"{path}: model bound is exclusive, CRD's is not")
        if crd_value != py_value:
            problems.append(f"{path}: {key} CRD={crd_value!r} model={py_value!r}")
    if "default" in crd and crd["default"] != py.get("default"):
        problems.append(f"{path}: default CRD={crd['default']!r} model={py.get('default')!r}")
    if crd.get("type") != "object" or path.startswith("status"):
        return
    crd_props, py_props = crd.get("properties", {}), py.get("properties", {})
    for name in sorted(set(crd_props) | set(py_props)):
        sub = f"{path}.{name}"
        if sub in REJECT_ONLY:
            continue
        if name not in py_props:
            problems.append(f"{sub}: in the CRD, not in the model")
        elif name not in crd_props:
            problems.append(f"{sub}: in the model, not in the CRD")
        else:
            compare(sub, crd_props[name], py_props[name], defs, problems)
    if sorted(crd.get("required", [])) != sorted(py.get("required", [])):
        problems.append(f"{path}: required CRD={crd.get('required')} model={py.get('required')}")


def test_spec_schema_matches_model() -> None:
    schema = models.GpuModelDeploymentSpec.model_json_schema(by_alias=True)
    problems: list[str] = []
    compare("spec", crd_schema()["properties"]["spec"], schema, schema.get("$defs", {}), problems)
    assert problems == []


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
