"""``posenfs import FILE``: a checkpoint of the authors' PoseNFS code as a posenfs checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from posenfs_cli.cli.common import console, err_console, user_errors
from posenfs_cli.errors import PosenfsError

MAX_REPORT_LINES = 20


def parse_size(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        hw = [int(v) for v in parts]
    except ValueError:
        hw = []
    if len(hw) != 2 or min(hw) < 32 or any(v % 32 for v in hw):
        raise PosenfsError(
            f"--input-size {text!r}: give HxW, both multiples of 32 (e.g. 256x256, 384x288)"
        )
    return hw


def import_command(
    file: Path = typer.Argument(
        ..., help="The authors' checkpoint (best_ckpt.tar, previous_ckpt.tar, ...)."
    ),
    official_config: Path | None = typer.Option(
        None, "--official-config", "-c", help="The authors' YAML config the model was built with."
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", "-r", help="A posenfs recipe (path or name) instead of their YAML."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The posenfs checkpoint to write (.safetensors)."
    ),
    inspect: bool = typer.Option(
        False, "--inspect", help="Only print what was inferred from the file; write nothing."
    ),
    input_size: str | None = typer.Option(
        None, "--input-size", help="HxW network input, when neither the file nor a config says."
    ),
) -> None:
    """Convert a checkpoint of the authors' PoseNFS implementation into a posenfs checkpoint.

    The architecture is read from the file (backbone, parts, H, input nodes, C, d, op columns,
    pruned cells and ops); their YAML (or a recipe) only adds op names/order, input size and
    dataset, and any disagreement with the file is reported tensor by tensor. Tensors their
    forward never reads are listed and dropped.

    Examples:
      posenfs import best_ckpt.tar --inspect
      posenfs import best_ckpt.tar --official-config cfg.yaml --out model.safetensors
      posenfs eval model.safetensors --dataset mpii --data-root data/mpii
    """
    _import(file, official_config, recipe, out, inspect, input_size)


@user_errors
def _import(
    file: Path,
    config: Path | None,
    recipe_name: str | None,
    out: Path | None,
    inspect: bool,
    input_size: str | None,
) -> None:
    from posenfs_cli.official.importer import ImportMismatch, import_official

    recipe = None
    if recipe_name is not None:
        if config is not None:
            raise PosenfsError("give --official-config or --recipe, not both")
        from posenfs_cli.config import load_recipe
        from posenfs_cli.engine.train_run import resolve_recipe_path

        recipe = load_recipe(resolve_recipe_path(recipe_name))
    size = parse_size(input_size)
    try:
        result = import_official(
            file, config=config, recipe=recipe, input_size=size, out=out, inspect=inspect
        )
    except ImportMismatch as exc:
        _mismatch(exc, file)
        raise typer.Exit(2) from None
    _print(result, inspect)


def _mismatch(exc, file: Path) -> None:
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


def _tables(result) -> list[Table]:
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


def _say(text: str) -> None:
    console.print(text, soft_wrap=True)  # long paths stay on one line


def _print(result, inspect: bool) -> None:
    arch, res = result.arch, result.resolved
    _say(f"read {escape(str(result.path))}: {escape(result.wrapper)}, {result.tensors} tensors")
    _say(f"backbone: {arch.backbone} (from the backbone.* tensor names)")
    if res is not None:
        _say(
            f"dataset {res.dataset}, input {res.input_size[0]}x{res.input_size[1]}, "
            f"ops {', '.join(res.ops)} (from {escape(res.source)})"
        )
    for table in _tables(result):
        console.print(table)
    if res is not None:
        for note in res.notes:
            _say(f"[yellow]note:[/] {escape(note)}")
    if result.unresolved:
        _say(f"[yellow]not inferable from the file alone:[/] {escape(result.unresolved)}")
    conv = result.conversion
    unused = conv.unused if conv is not None else arch.unused
    _say(f"dropped, their forward never uses them ({len(unused)}):")
    for name, why in unused:
        _say(f"  - {escape(name)}: {escape(why)}")
    if inspect or conv is None:
        _say("[dim]--inspect: nothing written[/]")
        return
    if conv.zero_filled:
        _say(
            f"[yellow]note:[/] {len(conv.zero_filled)} tensors of ops removed from only some "
            "edges were set to exact-zero ops (posenfs removes an op from a whole CNF)"
        )
    pct = 100.0 * (result.params - result.params_unpruned) / max(result.params_unpruned, 1)
    pruned = (
        f", pruned: {result.params_unpruned:,} -> {result.params:,} params ({pct:+.1f}%)"
        if conv.prune
        else ""
    )
    _say(
        f"output channels: their {res.dataset} order mapped onto posenfs's native order; "
        f"parts matched by joint set"
    )
    _say(
        f"[green]wrote[/] {escape(str(result.out))} ({result.params:,} params{pruned})\n"
        f"  next: posenfs eval {escape(str(result.out))} --dataset {res.dataset} "
        "--data-root ...  |  posenfs profile " + escape(str(result.out))
    )


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
