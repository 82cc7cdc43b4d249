"""``posenfs profile``: params, conv MACs, thop, latency, throughput and memory of a model."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer

from posenfs_cli.cli.common import (
    LATEST,
    O_DEVICE,
    O_JSON,
    checkpoint_or_latest,
    console,
    err_console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.options import ProfileOptions


def profile_command(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Argument(
        None,
        help="A posenfs .safetensors checkpoint, or --recipe.",
        show_default=LATEST,
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
    device: str | None = O_DEVICE,
    as_json: bool = O_JSON,
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
    params = {**locals(), "sets": overrides}
    opts = ProfileOptions(**{f.name: params[f.name] for f in fields(ProfileOptions)})
    opts.device = resolve_device_option(ctx, device)
    _profile(checkpoint, opts, as_json)


@user_errors
def _profile(checkpoint: Path | None, opts: ProfileOptions, as_json: bool) -> None:
    from posenfs_cli import api
    from posenfs_cli.engine.profile_run import check
    from posenfs_cli.views.profile import show_static, show_timing

    check(checkpoint, opts)
    if opts.recipe is None:  # --json keeps stdout pure JSON: the note goes to stderr
        checkpoint = checkpoint_or_latest(checkpoint, out=err_console if as_json else console)
    status = console.status("timing forward (bs1) and train step ...", spinner="dots")

    def static(job: Any) -> None:
        if not as_json:
            show_static(console, job)
        if opts.timing:
            status.start()

    try:
        job = api.profile(checkpoint, options=opts, on_static=static)
    finally:
        status.stop()
    if as_json:
        print(json.dumps(job.to_dict()))
    else:
        show_timing(console, job)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)
