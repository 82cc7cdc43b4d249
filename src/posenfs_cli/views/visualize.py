"""Tables of ``posenfs visualize``: the largest weight changes between two genotypes."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def diff_table(rows: list[dict[str, Any]], a: str, b: str, top: int) -> Table:
    table = Table(title=escape(f"largest weight changes: {a} -> {b}"), title_justify="left")
    for col in ("CNF", "param", "where", "entry", "A", "B", "delta"):
        table.add_column(col, justify="right" if col in ("A", "B", "delta") else "left")
    for r in rows[:top]:
        color = "green" if r["delta"] > 0 else "red" if r["delta"] < 0 else "dim"
        table.add_row(
            escape(str(r["cnf"])),
            r["kind"],
            r["where"],
            r["entry"],
            f"{r['a']:.4f}",
            f"{r['b']:.4f}",
            f"[{color}]{r['delta']:+.4f}[/]",
        )
    return table
