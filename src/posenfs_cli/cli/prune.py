"""``posenfs prune CKPT``: physically remove dead cells, input slots and ops, verified.

Writes ``<out>`` (default ``<ckpt stem>.pruned.safetensors`` beside the input) and its genotype
as ``<out stem>.genotype.json``. When nothing can be removed nothing is written (a copy under a
"pruned" name would only mislead); the command says so, shows the smallest weights still kept
as a hint for ``--threshold``, and exits 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import typer
from rich.markup import escape
from rich.table import Table

from posenfs_cli import profiling
from posenfs_cli.cli.common import console, resolve_device_option, user_errors
from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet


def default_out(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.stem}.pruned.safetensors")


def genotype_path(out: Path) -> Path:
    return out.with_suffix(".genotype.json")


def _sizes(model: PoseNet, size: list[int], device: torch.device) -> dict[str, Any]:
    total, backbone, parts, _arch = profiling.count_params(model)
    macs, macs_bb, macs_parts = profiling.conv_macs(model, size, device)
    return {
        "params": {"total": total, "backbone": backbone, **parts},
        "macs": {"total": macs, "backbone": macs_bb, **macs_parts},
    }


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


def render_sizes(before: dict, after: dict, lat_before: dict | None, lat_after: dict | None):
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


def render_removed(report) -> Table:
    table = Table(title="removed", title_justify="left")
    for col in ("CNF", "cells", "input slots", "ops", "pyramid inputs"):
        table.add_column(col)
    for name, r in report.removed.items():
        cells = ", ".join(f"({j},{s})" for j, s in r.cells) or "-"
        slots = "; ".join(f"({k[0]},{k[1]}): {'/'.join(v)}" for k, v in r.slots.items()) or "-"
        levels = ", ".join(f"1/{4 * 2**lvl}" for lvl in r.inputs) or "-"
        table.add_row(name, cells, slots, ", ".join(r.ops) or "-", levels)
    return table


def _nice_above(x: float) -> float:
    """The smallest 1/2/5·10^k strictly above ``x``: a threshold that removes the weakest one."""
    k = math.floor(math.log10(max(x, 1e-12)))
    return next(m * 10.0**e for e in (k, k + 1) for m in (1, 2, 5) if m * 10.0**e > x)


def _nothing_hint(report, recipe) -> str:
    sk = report.smallest_kept
    weakest = min(sk.values())
    parts = [
        f"smallest kept: op weight {sk['op_weight']:.3g}, slot weight {sk['slot_weight']:.3g}."
    ]
    nxt = _nice_above(weakest)
    if nxt < 1 / 3:
        parts.append(
            f"--threshold {nxt:g} would remove at least the weakest and report the change."
        )
    kind = recipe.train.sparsity
    if kind == "none":
        parts.append("A sparsity penalty while searching (train.sparsity=entropy) helps.")
    elif kind == "gap":
        parts.append("train.sparsity=gap has not reached exact zeros yet (more steps/weight).")
    return " ".join(parts)


def prune_command(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(..., help="A posenfs .safetensors checkpoint."),
    threshold: float = typer.Option(
        0.0,
        "--threshold",
        "-t",
        help="Also remove ops/slots whose softmax weight is <= this (0: exact zeros only; "
        "must be < 1/3). Above 0 the output change is reported, not required to be 0.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output checkpoint (default: <ckpt stem>.pruned.safetensors)."
    ),
    input_size: str | None = typer.Option(
        None, "--input-size", help="N or HxW for MACs/latency/verification (default: recipe's)."
    ),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Random inputs to verify on."),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Measure bs1 latency."),
    runs: int = typer.Option(10, "--runs", help="Timed runs per latency (fastest shown)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda[:N]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
) -> None:
    """Remove cells, input slots and ops whose weight is 0 (or <= --threshold), physically.

    A cell goes when every slot reading it (duplicated slots included) is dead; an op when its
    α weight is dead on every edge. Outputs are compared on random inputs: at threshold 0 they
    must match to 1e-6. Writes a smaller checkpoint and its genotype JSON; nothing is written
    when there is nothing to prune.

    Examples:
      posenfs prune runs/search/exp/best.safetensors
      posenfs prune runs/search/exp/best.safetensors --threshold 1e-3 -o best_t1e-3.safetensors
    """
    _prune(ctx, checkpoint, threshold, out, input_size, batch_size, timing, runs, device, as_json)


@user_errors
def _prune(ctx, checkpoint, threshold, out, input_size, batch_size, timing, runs, device, as_json):
    from posenfs_cli.config import parse_input_size
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.checkpoint import build_from_checkpoint, save_checkpoint
    from posenfs_cli.nas.genotype import model_genotype, save_genotype
    from posenfs_cli.nas.prune import check_threshold, prune_model

    check_threshold(threshold)
    if batch_size < 1 or runs < 1:
        raise PosenfsError("--batch-size and --runs must be >= 1")
    out = out or default_out(checkpoint)
    if out.resolve() == checkpoint.resolve():
        raise PosenfsError(f"--out {out} is the input checkpoint; choose another file")
    for target in (out, genotype_path(out)):
        if target.is_dir():
            raise PosenfsError(f"--out: {target} is a folder; give a .safetensors file name")
    dev = select_device(resolve_device_option(ctx, device))
    model, ckpt = build_from_checkpoint(checkpoint, dev)
    model.eval()
    recipe = ckpt.recipe
    size = parse_input_size(input_size) if input_size else list(recipe.data.input_size)

    status = console.status("pruning and verifying ...", spinner="dots")
    if not as_json:
        status.start()
    try:
        pruned, report = prune_model(
            model, recipe, threshold, input_size=size, batch_size=batch_size
        )
        pruned.eval()
        before, after = _sizes(model, size, dev), _sizes(pruned, size, dev)
        lat_b = lat_a = None
        if timing and not report.nothing_removed:
            lat_b, lat_a = profiling.part_latencies([model, pruned], size, dev, runs)
    finally:
        if not as_json:
            status.stop()

    written: dict[str, str] = {}
    if not report.nothing_removed:
        save_checkpoint(
            out,
            pruned,
            recipe,
            epoch=ckpt.epoch,
            metrics=ckpt.metrics,
            extra={
                "pruned_from": str(checkpoint),
                "prune_threshold": threshold,
                "prune_max_abs_diff": report.max_abs_diff,
            },
        )
        gpath = save_genotype(genotype_path(out), model_genotype(pruned, recipe.data.keypoints))
        written = {"checkpoint": str(out), "genotype": str(gpath)}

    if as_json:
        print(
            json.dumps(
                {
                    **report.to_dict(),
                    "nothing_removed": report.nothing_removed,
                    "before": before,
                    "after": after,
                    "latency_ms": {"before": lat_b, "after": lat_a},
                    "written": written,
                }
            )
        )
        return

    console.print(
        f"[bold]prune[/] {escape(str(checkpoint))}  (threshold {threshold:g}, input "
        f"{size[0]}x{size[1]})"
    )
    if report.nothing_removed:
        console.print(
            "[yellow]nothing to prune:[/] no cell, input slot or op has weight "
            + ("exactly 0" if threshold == 0 else f"<= {threshold:g}")
            + ". Nothing was written. "
            + _nothing_hint(report, recipe)
        )
        return
    console.print(render_sizes(before, after, lat_b, lat_a))
    console.print(render_removed(report))
    diff = report.max_abs_diff
    verdict = (
        "[green]verified[/] (<= 1e-6 required at threshold 0)"
        if threshold == 0
        else "[yellow]not exact[/]: check accuracy with posenfs eval"
        if diff > 1e-6
        else "[green]no visible change[/]"
    )
    console.print(
        f"max |output difference| on {report.batch_size} random inputs: [bold]{diff:.3g}[/] "
        f"(outputs up to {report.max_abs_output:.3g}) - {verdict}"
    )
    size_b = checkpoint.stat().st_size / 2**20
    size_a = out.stat().st_size / 2**20
    console.print(
        f"checkpoint -> [bold]{escape(written['checkpoint'])}[/] ({size_b:.2f} MiB -> "
        f"{size_a:.2f} MiB)\ngenotype   -> [bold]{escape(written['genotype'])}[/]"
    )


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_command)
