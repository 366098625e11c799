"""The layering the package is read by: only the wiring imports kopf, and the pure core imports neither
kopf, nor the Kubernetes client, nor the Azure SDK (what keeps it unit-testable as plain functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "gpu_model_operator"
PURE = ["reconcile.py", "models.py", "conditions.py", "backends/base.py"]
FRAMEWORKS = ("kopf", "kubernetes", "azureml")
KOPF_ALLOWED = {"handlers.py", "cli.py"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_the_core_imports_no_framework(module: str) -> None:
    assert imported(PACKAGE / module) & set(FRAMEWORKS) == set()


def test_only_the_wiring_imports_kopf() -> None:
    users = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "kopf" in imported(p)}
    assert users <= KOPF_ALLOWED


def test_no_module_is_named_operator() -> None:
    """A package or module named `operator` would shadow the standard library's."""
    assert not (PACKAGE / "operator.py").exists() and not (PACKAGE / "operator").exists()
