"""``posenfs prune CKPT``: physically remove dead cells, input slots and ops, verified.

Writes ``<out>`` (default ``<ckpt stem>.pruned.safetensors`` beside the input) and its genotype
as ``<out stem>.genotype.json``; nothing when nothing can be removed (see engine/prune_run.py).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import typer

from posenfs_cli.cli.common import O_DEVICE, O_JSON, console, resolve_device_option, user_errors
from posenfs_cli.options import PruneOptions


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
    device: str | None = O_DEVICE,
    as_json: bool = O_JSON,
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
    params = locals()
    opts = PruneOptions(**{f.name: params[f.name] for f in fields(PruneOptions)})
    opts.device = resolve_device_option(ctx, device)
    _prune(checkpoint, opts, as_json)


@user_errors
def _prune(checkpoint: Path, opts: PruneOptions, as_json: bool) -> None:
    from posenfs_cli import api
    from posenfs_cli.views.prune import show

    if as_json:
        print(json.dumps(api.prune(checkpoint, options=opts).to_dict()))
        return
    with console.status("pruning and verifying ...", spinner="dots"):
        result = api.prune(checkpoint, options=opts)
    show(console, result)


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_command)
