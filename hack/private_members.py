#!/usr/bin/env python3
"""Fails when the product reaches for a library's private members (the Azure SDKs' above all).

Why: ``azure-ai-ml`` and ``azureml-core`` change their private modules and attributes in any release; a product
that calls ``MLClient._code`` or ``AksCompute._build_create_payload`` breaks on an update that its users take
for a patch. import-linter sees imports only, and only of top-level external packages, so this reads the source:

- an import of another package's private module or name: ``import azure.ai.ml._utils``, ``from
  azure.ai.ml.entities._assets import Code``, ``from azureml.core import _helper`` (a relative import, or one of
  the product's own package, is the product's business);
- an attribute whose name has one leading underscore (``_code``, not ``__init__``) read from anything but
  ``self``, ``cls`` or ``super()``, or named as a literal to ``getattr``, ``setattr``, ``hasattr`` or ``delattr``.

A static check cannot know an object's type, and a list of the SDKs' private names would always lag behind them.
It needs neither: the product's own classes reach their private state through ``self`` and ``cls`` only, so a
private attribute of any other object, the SDKs' or the product's, is refused alike, and nothing of the product's
own way of writing is reported. Allowed by name: the standard library's documented members that start with an
underscore (``os._exit``, and a named tuple's ``_replace``, ``_asdict``, ``_fields``, ``_make``,
``_field_defaults``).

Usage: ``private_members.py [--own PACKAGE] PATH...`` (a directory is read for ``*.py``); prints
``path:line:col: what`` for each finding and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

#: Documented public members whose names start with an underscore.
ALLOWED = frozenset({"_exit", "_replace", "_asdict", "_fields", "_make", "_field_defaults"})
OWNERS = frozenset({"self", "cls"})
DYNAMIC = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def private(name: str) -> bool:
    """One leading underscore: private by Python's convention (a dunder is the language's, not private)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in ALLOWED


def _own_object(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in OWNERS
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


class Finder(ast.NodeVisitor):
    """The findings of one module, as (line, column, what)."""

    def __init__(self, own: str) -> None:
        self.own = own
        self.found: list[tuple[int, int, str]] = []

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), getattr(node, "col_offset", 0) + 1, what))

    def _foreign(self, module: str) -> bool:
        return module.split(".")[0] != self.own

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._foreign(alias.name) and any(private(part) for part in alias.name.split(".")):
                self._add(node, f"import of a private module: {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and self._foreign(module):
            if any(private(part) for part in module.split(".")):
                self._add(node, f"import from a private module: {module}")
            for alias in node.names:
                if private(alias.name):
                    self._add(node, f"import of a private name: {module}.{alias.name}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if private(node.attr) and not _own_object(node.value):
            self._add(node, f"private member: {ast.unparse(node)}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in DYNAMIC and len(node.args) >= 2:
            target, name = node.args[0], node.args[1]
            literal = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else ""
            if private(literal) and not _own_object(target):
                self._add(node, f"private member by name: {func.id}({ast.unparse(target)}, {literal!r})")
        self.generic_visit(node)


def findings(source: str, path: str, own: str) -> list[str]:
    finder = Finder(own)
    finder.visit(ast.parse(source, filename=path))
    return [f"{path}:{line}:{col}: {what}" for line, col, what in sorted(finder.found)]


def sources(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--own", default="gpu_model_operator", help="the product's own top-level package")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    found = [line for path in sources(args.paths) for line in findings(path.read_text(), str(path), args.own)]
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} use(s) of a private member: call the library's public API instead", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
