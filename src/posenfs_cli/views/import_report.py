"""How ``posenfs import`` reports a conversion: the file's architecture, per part, and the
disagreements with a config (the file is the truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

MAX_REPORT_LINES = 20


def show_mismatch(err_console: Console, exc: Any, file: Path) -> None:
    lines = exc.lines
    err_console.print(
        f"[bold red]error:[/] {escape(exc.source)} disagrees with {escape(str(file))} "
        f"in {len(lines)} place(s):",
        soft_wrap=True,
    )
    for line in lines[:MAX_REPORT_LINES]:
        err_console.print(f"  - {escape(line)}", soft_wrap=True)
    if len(lines) > MAX_REPORT_LINES:
        err_console.print(f"  ... and {len(lines) - MAX_REPORT_LINES} more", soft_wrap=True)
    err_console.print(
        "  The file is the truth: fix the config, or import without one (--inspect shows "
        "what the file says).",
        soft_wrap=True,
    )


def _tables(result: Any) -> list[Table]:
    """One small two-column table per part (fits an 80-column terminal)."""
    tables = []
    unused = result.conversion.unused if result.conversion is not None else result.arch.unused
    for r in result.rows:
        ours = f" -> posenfs part {r.ours}" if r.ours else ""
        joints = f" ({r.joints} joints)" if r.joints is not None else ""
        t = Table(
            title=escape(f"{r.name}{ours}{joints}"),
            title_justify="left",
            show_header=False,
            box=None,
            padding=(0, 2),
        )
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        removed = ", ".join(r.removed_cells) or "none"
        t.add_row("cells", f"{r.cells_kept} of {r.cells_total} kept; removed: {removed}")
        if r.dead_slots:
            t.add_row("dead inputs", escape(", ".join(r.dead_slots)))
        read = "all" if r.rows_read == list(range(r.alpha_shape[0])) else str(r.rows_read)
        t.add_row("alpha", f"{r.alpha_shape}, rows read by their forward: {read}")
        t.add_row("ops", escape(", ".join(r.ops)))
        d = "?" if r.vector_dim is None else str(r.vector_dim)
        t.add_row("structure", f"input nodes {r.input_nodes}, H={r.hidden}, C={r.channels}, d={d}")
        mine = [n for n, _ in unused if n.startswith(r.name + ".") or n.startswith("reduce.")]
        mine = [n for n in mine if not n.startswith("reduce.") or _reduce_of(n, r.index)]
        t.add_row("unused", escape(", ".join(mine) or "none"))
        tables.append(t)
    return tables


def _reduce_of(name: str, index: int) -> bool:
    return name.startswith(f"reduce.{index}.")


def _say(console: Console, text: str) -> None:
    console.print(text, soft_wrap=True)  # long paths stay on one line


def show(console: Console, result: Any, inspect: bool) -> None:
    """What was read from the file, what was dropped, and what was written."""
    arch, res = result.arch, result.resolved
    _say(
        console,
        f"read {escape(str(result.path))}: {escape(result.wrapper)}, {result.tensors} tensors",
    )
    _say(console, f"backbone: {arch.backbone} (from the backbone.* tensor names)")
    if res is not None:
        _say(
            console,
            f"dataset {res.dataset}, input {res.input_size[0]}x{res.input_size[1]}, "
            f"ops {', '.join(res.ops)} (from {escape(res.source)})",
        )
    for table in _tables(result):
        console.print(table)
    if res is not None:
        for note in res.notes:
            _say(console, f"[yellow]note:[/] {escape(note)}")
    if result.unresolved:
        _say(console, f"[yellow]not inferable from the file alone:[/] {escape(result.unresolved)}")
    conv = result.conversion
    unused = conv.unused if conv is not None else arch.unused
    _say(console, f"dropped, their forward never uses them ({len(unused)}):")
    for name, why in unused:
        _say(console, f"  - {escape(name)}: {escape(why)}")
    if inspect or conv is None:
        _say(console, "[dim]--inspect: nothing written[/]")
        return
    if conv.zero_filled:
        _say(
            console,
            f"[yellow]note:[/] {len(conv.zero_filled)} tensors of ops removed from only some "
            "edges were set to exact-zero ops (posenfs removes an op from a whole CNF)",
        )
    pct = 100.0 * (result.params - result.params_unpruned) / max(result.params_unpruned, 1)
    pruned = (
        f", pruned: {result.params_unpruned:,} -> {result.params:,} params ({pct:+.1f}%)"
        if conv.prune
        else ""
    )
    _say(
        console,
        f"output channels: their {res.dataset} order mapped onto posenfs's native order; "
        f"parts matched by joint set",
    )
    _say(
        console,
        f"[green]wrote[/] {escape(str(result.out))} ({result.params:,} params{pruned})\n"
        f"  next: posenfs eval {escape(str(result.out))} --dataset {res.dataset} "
        "--data-root ...  |  posenfs profile " + escape(str(result.out)),
    )
