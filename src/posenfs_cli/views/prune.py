"""How ``posenfs prune`` shows a result: before/after sizes, what went, the verification."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from posenfs_cli.engine.prune_run import PruneResult


def _short(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.4g}{unit}"
    return f"{n:.4g}"


def _cmp(a: float, b: float) -> str:
    if a == b:
        return f"{_short(a)} [dim](same)[/]"
    pct = 100.0 * (b - a) / a if a else 0.0
    return f"{_short(a)} -> {_short(b)} [green]{pct:+.1f}%[/]"


def render_sizes(
    before: dict[str, Any],
    after: dict[str, Any],
    lat_before: dict[str, float] | None,
    lat_after: dict[str, float] | None,
) -> Table:
    table = Table(title="before -> after", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("params", justify="right")
    table.add_column("conv MACs", justify="right")
    if lat_before is not None:
        table.add_column("bs1 ms (min)", justify="right")
    for name in before["params"]:
        row = [
            name,
            _cmp(before["params"][name], after["params"][name]),
            _cmp(before["macs"][name], after["macs"][name]),
        ]
        if lat_before is not None and lat_after is not None:
            row.append(f"{lat_before[name]:.3g} -> {lat_after[name]:.3g}")
        table.add_row(*row)
    return table


def render_removed(report: Any) -> Table:
    table = Table(title="removed", title_justify="left")
    for col in ("CNF", "cells", "input slots", "ops", "pyramid inputs"):
        table.add_column(col)
    for name, r in report.removed.items():
        cells = ", ".join(f"({j},{s})" for j, s in r.cells) or "-"
        slots = "; ".join(f"({k[0]},{k[1]}): {'/'.join(v)}" for k, v in r.slots.items()) or "-"
        levels = ", ".join(f"1/{4 * 2**lvl}" for lvl in r.inputs) or "-"
        table.add_row(name, cells, slots, ", ".join(r.ops) or "-", levels)
    return table


def show(console: Console, res: PruneResult) -> None:
    threshold, size = res.threshold, res.input_size
    console.print(
        f"[bold]prune[/] {escape(str(res.checkpoint))}  (threshold {threshold:g}, input "
        f"{size[0]}x{size[1]})"
    )
    if res.nothing_removed:
        console.print(
            "[yellow]nothing to prune:[/] no cell, input slot or op has weight "
            + ("exactly 0" if threshold == 0 else f"<= {threshold:g}")
            + ". Nothing was written. "
            + res.hint()
        )
        return
    console.print(render_sizes(res.before, res.after, res.latency_before, res.latency_after))
    console.print(render_removed(res.report))
    diff = res.report.max_abs_diff
    verdict = (
        "[green]verified[/] (<= 1e-6 required at threshold 0)"
        if threshold == 0
        else "[yellow]not exact[/]: check accuracy with posenfs eval"
        if diff > 1e-6
        else "[green]no visible change[/]"
    )
    console.print(
        f"max |output difference| on {res.report.batch_size} random inputs: [bold]{diff:.3g}[/] "
        f"(outputs up to {res.report.max_abs_output:.3g}) - {verdict}"
    )
    size_b = res.checkpoint.stat().st_size / 2**20
    size_a = res.out.stat().st_size / 2**20
    console.print(
        f"checkpoint -> [bold]{escape(res.written['checkpoint'])}[/] ({size_b:.2f} MiB -> "
        f"{size_a:.2f} MiB)\ngenotype   -> [bold]{escape(res.written['genotype'])}[/]"
    )
