"""``posenfs profile``: params, conv MACs, thop, latency, throughput and memory of a model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer
from rich.markup import escape
from rich.table import Table

from posenfs_cli.cli.common import (
    checkpoint_or_latest,
    console,
    err_console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.cli.train_common import resolve_recipe_path
from posenfs_cli.config import load_recipe, parse_input_size, validate_recipe
from posenfs_cli.device import select_device
from posenfs_cli.errors import PosenfsError


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _fmt_g(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.4f}"


def _delta(ours: float, ref: float) -> str:
    return f"{100.0 * (ours - ref) / ref:+.2f}%"


def render(report, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("params", justify="right")
    table.add_column("conv GMACs", justify="right")
    table.add_row("total", _fmt_int(report.params_total), _fmt_g(report.macs_total))
    table.add_row("backbone", _fmt_int(report.params_backbone), _fmt_g(report.macs_backbone))
    for name, n in report.params_parts.items():
        table.add_row(f"part {name}", _fmt_int(n), _fmt_g(report.macs_parts[name]))
    table.add_row("thop (incl. BN/pool)", "", _fmt_g(report.thop_macs))
    paper = report.paper
    if "params" in paper:
        table.add_row(
            "paper table (released code)",
            f"{paper['params']:,} ({_delta(report.params_total, paper['params'])})",
            f"{paper['gmacs']:.4f} ({_delta(report.macs_total / 1e9, paper['gmacs'])})",
        )
    if "reported_params" in paper:
        table.add_row(
            "paper as printed",
            str(paper["reported_params"]),
            f"{paper.get('reported_gflops', '-')} GFLOPs (=MACs/2^30)",
        )
        if report.paper_gflops is not None:
            table.add_row(
                "ours in the paper's unit",
                f"{report.params_total / 1e6:.2f}M",
                f"{report.paper_gflops:.2f} GFLOPs",
            )
    return table


def profile_command(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Argument(
        None,
        help="A posenfs .safetensors checkpoint, or --recipe [default: the newest "
        "runs/search|train/*/best.safetensors].",
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", "-r", help="A recipe YAML or shipped name (mpii/mbv2_p3_h1_c10_256)."
    ),
    input_size: str | None = typer.Option(
        None, "--input-size", help="N or HxW (e.g. 256 or 384x288); default: the recipe's."
    ),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Batch for the train step."),
    runs: int = typer.Option(10, "--runs", help="Timed runs (median reported)."),
    timing: bool = typer.Option(True, "--timing/--no-timing", help="Measure speed/memory."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (torch)."),
    channels_last: bool = typer.Option(
        True, "--channels-last/--no-channels-last", help="Time in channels_last memory format."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key: key.path=value."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda[:N]."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead."),
    compile: str = typer.Option(
        "auto", "--compile", help="auto | on | off: time the torch.compiled model (auto: off)."
    ),
) -> None:
    """Count params and conv MACs, time the forward pass and a train step, report memory.

    Examples:
      posenfs profile   (the newest search/train run's best checkpoint)
      posenfs profile --recipe mpii/mbv2_p3_h1_c10_256
      posenfs profile runs/search/exp/best.safetensors --json
    """
    _profile(
        ctx,
        checkpoint,
        recipe,
        input_size,
        batch_size,
        runs,
        timing,
        threads,
        channels_last,
        overrides,
        device,
        as_json,
        compile,
    )


@user_errors
def _profile(
    ctx,
    checkpoint,
    recipe,
    input_size,
    batch_size,
    runs,
    timing,
    threads,
    channels_last,
    overrides,
    device,
    as_json,
    compile="auto",
) -> None:
    from posenfs_cli.engine.checkpoint import build_from_checkpoint
    from posenfs_cli.models.build import build_from_recipe
    from posenfs_cli.profiling import static_profile, time_model

    if checkpoint is not None and recipe is not None:
        raise PosenfsError("give either a checkpoint or --recipe, not both")
    if recipe is None:  # --json keeps stdout pure JSON: the note goes to stderr
        checkpoint = checkpoint_or_latest(checkpoint, out=err_console if as_json else console)
    if batch_size < 1 or runs < 1:
        raise PosenfsError("--batch-size and --runs must be >= 1")
    if threads is not None and threads < 1:
        raise PosenfsError(f"--threads must be >= 1, got {threads}")
    if checkpoint is not None and overrides:
        raise PosenfsError(
            "--set changes a recipe; a checkpoint's structure is fixed (use --recipe)"
        )
    size = parse_input_size(input_size) if input_size else None
    if recipe is not None:
        rec = validate_recipe(load_recipe(resolve_recipe_path(recipe), overrides))
    if threads is not None:
        torch.set_num_threads(threads)
    dev = select_device(resolve_device_option(ctx, device))
    if checkpoint is not None:
        model, ckpt = build_from_checkpoint(checkpoint, dev)
        rec = ckpt.recipe
        title = f"profile of {checkpoint}"
    else:
        model = build_from_recipe(rec, load_pretrained=False)
        title = f"profile of {rec.name} ({recipe})"
    size = size or list(rec.data.input_size)
    paper = rec.paper if size == list(rec.data.input_size) else {}
    report = static_profile(model, size, batch_size, dev, paper=paper)
    if not as_json:
        console.print(render(report, escape(f"{title} — input {size[0]}x{size[1]}, {dev}")))
    if timing:
        with console.status("timing forward (bs1) and train step ...", spinner="dots"):
            time_model(report, model, runs, channels_last, compile)
    if as_json:
        print(json.dumps({"name": rec.name, **report.to_dict()}))
    elif report.latency_ms is not None:
        console.print(
            f"forward bs1: [bold]{report.latency_ms:.1f} ms[/]   train step bs{batch_size}: "
            f"[bold]{report.train_step_ms:.1f} ms[/] ({report.train_images_per_s:.1f} img/s)   "
            f"peak memory: {report.peak_memory_mb:.0f} MiB ({report.memory_kind})"
            + ("   [dim]channels_last[/]" if channels_last else "")
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)
