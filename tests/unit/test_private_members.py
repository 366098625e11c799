"""The check of ``make lint`` that keeps private SDK members out of the product (``hack/private_members.py``): what
it refuses, what it leaves alone (the product's own way of writing, the language's dunders, the standard library's
documented underscores), and that the product passes it. Each case is a module of its own; the script runs once
over all of them, as ``make lint`` runs it."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "hack" / "private_members.py"


@dataclass(frozen=True)
class Case:
    source: str
    #: "line:col: what" for each finding, in order.
    findings: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "the SDK v2's generated operations": Case(
        "ops = client.online_endpoints._online_operation\n",
        ("1:7: private member: client.online_endpoints._online_operation",),
    ),
    "an operations object's keyword arguments": Case(
        "kwargs = {**ops._init_kwargs}\n", ("1:13: private member: ops._init_kwargs",)
    ),
    "MLClient's code operations, in a chain": Case(
        "client._code.get('x', '1').id\n", ("1:1: private member: client._code",)
    ),
    "a private builder of the SDK v1": Case(
        "AksCompute._build_create_payload(config, 'eastus', 'sub')\n",
        ("1:1: private member: AksCompute._build_create_payload",),
    ),
    "a private module": Case(
        "from azure.ai.ml.entities._assets import Code\n",
        ("1:1: import from a private module: azure.ai.ml.entities._assets",),
    ),
    "a private module, imported whole": Case(
        "import azure.ai.ml._utils.utils\n", ("1:1: import of a private module: azure.ai.ml._utils.utils",)
    ),
    "a private name of a public module": Case(
        "from azureml.core import Workspace, _helper\n", ("1:1: import of a private name: azureml.core._helper",)
    ),
    "a private name given to getattr": Case(
        "code = getattr(client, '_code')\n", ("1:8: private member by name: getattr(client, '_code')",)
    ),
    "another object of the product's own": Case(
        "def same(a, other):\n    return a.x == other._x\n", ("2:19: private member: other._x",)
    ),
    "the object's own state": Case(
        "class A(B):\n"
        "    def f(self):\n"
        "        return self._x + super()._y() + getattr(self, '_z')\n"
        "    @classmethod\n"
        "    def g(cls):\n"
        "        return cls._registry\n"
    ),
    "the language's dunders": Case("from __future__ import annotations\nname = x.__class__.__name__\n"),
    "the standard library's documented underscores": Case(
        "import os\nos._exit(1)\np = point._replace(x=1)\nnames = Point._fields + tuple(p._asdict())\n"
    ),
    "the product's own package, and relative imports": Case(
        "from gpu_model_operator.backends.azure.failures import _get\nfrom .errors import _first_line\n"
    ),
}


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, ...]]:
    """Each case's findings, by case, from one run of the check over a module per case."""
    tree = tmp_path_factory.mktemp("product")
    files = {f"case{i}.py": name for i, name in enumerate(CASES)}
    for file, name in files.items():
        (tree / file).write_text(CASES[name].source)
    run = subprocess.run([sys.executable, str(CHECK), str(tree)], capture_output=True, text=True, timeout=60)
    by_case: defaultdict[str, list[str]] = defaultdict(list)
    for line in run.stdout.splitlines():
        path, rest = line.split(":", 1)
        by_case[files[Path(path).name]].append(rest)
    assert run.returncode == (1 if by_case else 0), run.stderr
    return {name: tuple(by_case[name]) for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_each_case(name: str, found: dict[str, tuple[str, ...]]) -> None:
    assert found[name] == CASES[name].findings


def test_the_product_uses_no_private_member() -> None:
    run = subprocess.run(
        [sys.executable, str(CHECK), str(ROOT / "operator" / "gpu_model_operator")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout) == (0, "")
