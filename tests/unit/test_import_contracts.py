"""The package's layout rules. The layering itself is declared as import-linter contracts in pyproject.toml
(``[tool.importlinter]``) and checked on the real tree by ``make lint``; what is tested here is that each
contract catches the break it is there for. A copy of the two packages gets forbidden imports, one or more per
contract, and each contract must name its own in the report: a contract that a misspelt module or a reordered
layer had made vacuous would otherwise stay green forever.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "gpu_model_operator"
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}
G, D = "gpu_model_operator", "gpu_model_operator_dev"

#: (contract id, the importing module of the copy (made when missing), the import added at its end, the module
#: the contract must report it importing).
BREAKS = [
    ("layers", f"{G}.capacity", "from . import controller", f"{G}.controller"),
    ("layers", f"{G}.reconcile", "from . import handlers", f"{G}.handlers"),
    ("layers", f"{G}.conditions", "from . import models", f"{G}.models"),
    ("pure-core", f"{G}.reconcile", "import kopf", "kopf"),
    ("pure-core", f"{G}.models", "from azure.identity import DefaultAzureCredential", "azure"),
    ("pure-core", f"{G}.conditions", "import azureml.core", "azureml"),
    ("pure-core", f"{G}.backends.base", "import requests", "requests"),
    ("pure-core", f"{G}.capacity", "import aiohttp", "aiohttp"),
    ("kopf", f"{G}.settings", "import kopf", "kopf"),
    ("kopf", f"{G}.metrics", "from kopf import TemporaryError", "kopf"),
    ("backends", f"{G}.backends.local.logs", "from ..azureml import errors", f"{G}.backends.azureml.errors"),
    ("backends", f"{G}.backends.azureml_v2", "from ..local import logs", f"{G}.backends.local.logs"),
    ("backends", f"{G}.backends.vm_sizes", "from .azureml import errors", f"{G}.backends.azureml.errors"),
    ("backends", f"{G}.backends.azure.calls", "from ..azureml_v2 import errors", f"{G}.backends.azureml_v2.errors"),
    ("azure-plumbing", f"{G}.backends.azure.failures", "import azureml.core", "azureml"),
    ("backends-not-kube", f"{G}.backends.azureml.backend", "from ... import controller", f"{G}.controller"),
    ("backends-not-kube", f"{G}.backends.local.gpus", "import kubernetes", "kubernetes"),
    ("product-not-dev", f"{G}.settings", "import tests.polling", "tests"),
    ("product-not-dev", f"{G}.keys", "from gpu_model_operator_dev import controlplane", f"{D}.controlplane"),
    ("emulator-not-product", f"{D}.azureml_emulator.faults", "from gpu_model_operator import models", f"{G}.models"),
]


def _source(root: Path, module: str) -> Path:
    """The file of ``module`` under ``root`` (a copy of the repository): a module, or a package's __init__."""
    parts = module.split(".")
    base = root / ("dev" if parts[0] == D else "operator") / Path(*parts)
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"


def _report_sections(report: str) -> dict[str, str]:
    """Each broken contract's part of the report, by contract id (a header is its name over a line of dashes)."""
    headers = {cid: re.search(rf"^{re.escape(name)}\n-+\n", report, re.MULTILINE) for cid, name in CONTRACTS.items()}
    starts = sorted((m.start(), m.end(), cid) for cid, m in headers.items() if m)
    ends = [start for start, _, _ in starts[1:]] + [len(report)]
    return {cid: report[body:end] for (_, body, cid), end in zip(starts, ends, strict=True)}


def test_every_contract_is_tried() -> None:
    assert {cid for cid, *_ in BREAKS} == set(CONTRACTS)


def test_each_contract_reports_the_break_it_is_there_for(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "reference", "*.md", "*.jsonl")
    for package in (f"operator/{G}", f"dev/{D}"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for _, importer, line, _ in BREAKS:
        path = _source(tmp_path, importer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + f"\n{line}\n")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter comes with the dev extra"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'operator'}{os.pathsep}{tmp_path / 'dev'}", "COLUMNS": "400"}
    result = subprocess.run(
        [lint, "--no-cache", "--no-logo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    sections = _report_sections(result.stdout)
    missed = [(cid, f"{importer} -> {imported}") for cid, importer, _, imported in BREAKS]
    missed = [(cid, link) for cid, link in missed if link not in sections.get(cid, "")]
    assert missed == [], result.stdout


@pytest.mark.parametrize("name", ["operator.py", "operator"])
def test_no_module_is_named_operator(name: str) -> None:
    """A package or module named `operator` would shadow the standard library's."""
    assert not (PACKAGE / name).exists()
    assert not [p for p in PACKAGE.rglob(name) if p.name == name]
