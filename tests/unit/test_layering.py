"""Imports only point down the layers: a lower package never imports an upper one.

The order is written once, here (and explained in docs/architecture.md). Every import counts,
also the ones inside functions or under ``TYPE_CHECKING``: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "posenfs_cli"

# lowest first; names on one line are one layer and may import each other
LAYERS: list[set[str]] = [
    {"__init__", "errors", "atomic", "hub", "device"},
    {"config"},
    {"options"},
    {"data"},
    {"nas"},
    {"models"},
    {"evaluation", "profiling", "validation"},
    {"vis"},
    {"engine"},
    {"inference", "official"},
    {"api", "views", "envinfo", "shell_completion"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit_of(path: Path) -> str:
    """The layer unit of a source file: its top-level package, or the module's own name."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "posenfs_cli":
                continue
            if len(parts) > 1:
                out.add(parts[1])
            else:  # from posenfs_cli import x: x is a unit, or a name of __init__
                out |= {a.name if a.name in RANK else "__init__" for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "posenfs_cli" and len(parts) > 1:
                    out.add(parts[1])
    return out


SOURCES = sorted(PKG.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in SOURCES}
    assert units - RANK.keys() == set(), "place the new package in LAYERS (and the docs)"


def test_the_check_sees_an_upward_import():
    tree = ast.parse("def f():\n    from posenfs_cli.engine.checkpoint import read_checkpoint\n")
    assert imported_units(tree) == {"engine"} and RANK["engine"] > RANK["vis"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path: Path):
    src = unit_of(path)
    upward = sorted(
        u
        for u in imported_units(ast.parse(path.read_text(encoding="utf-8")))
        if u != src and RANK.get(u, -1) > RANK[src]
    )
    assert not upward, f"{src} (layer {RANK[src]}) imports upper layer(s) {upward}"
