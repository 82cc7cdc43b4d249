"""``posenfs eval``: standard metrics for a checkpoint (MPII PCKh, COCO AP via pycocotools)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from posenfs_cli.cli.common import (
    O_CHECKPOINT,
    O_DEVICE,
    O_PROJECT,
    checkpoint_or_latest,
    console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.options import EvalOptions
from posenfs_cli.views.evaluate import show_result
from posenfs_cli.views.progress import EvalBar


def eval_command(
    ctx: typer.Context,
    checkpoint: Path | None = O_CHECKPOINT,
    dataset: str | None = typer.Option(
        None, "--dataset", help="mpii | coco | synthetic.", show_default="the checkpoint's"
    ),
    data_root: str | None = typer.Option(None, "--data-root", help="Dataset folder."),
    split: str | None = typer.Option(None, "--split", help="Split name (valid, val2017, ...)."),
    ann_file: Path | None = typer.Option(
        None, "--ann-file", help="An annotation JSON in any folder (with --image-dir)."
    ),
    image_dir: Path | None = typer.Option(None, "--image-dir", help="Images for --ann-file."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Flip test (one batched forward)."),
    flip_shift: bool = typer.Option(
        True, "--flip-shift/--no-flip-shift", help="Shift the flipped map one pixel (HRNet)."
    ),
    boxes: Path | None = typer.Option(
        None, "--boxes", help="COCO: person detections (results JSON) instead of GT boxes."
    ),
    box_thr: float = typer.Option(0.0, "--box-thr", help="COCO: minimum detection score."),
    head_boxes: Path | None = typer.Option(
        None,
        "--head-boxes",
        help="MPII with --ann-file: head boxes for PCKh (gt_valid.mat, or a JSON list with one "
        "x1, y1, x2, y2 box per record).",
    ),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    workers: int = typer.Option(2, "--workers", "-j"),
    sets: list[str] = typer.Option([], "--set", help="Override a data/eval key: key.path=value."),
    name: str | None = typer.Option(None, "--name", help="Run name under runs/eval/."),
    project: Path = O_PROJECT,
    device: str | None = O_DEVICE,
    compile: str | None = typer.Option(
        None,
        "--compile",
        help="auto | on | off: torch.compile the model (auto: off; compiling takes minutes).",
    ),
) -> None:
    """Evaluate a checkpoint: PCKh (MPII, as the official code) or COCO keypoint AP.

    Examples:
      posenfs eval   (the newest search/train run's best checkpoint)
      posenfs eval runs/search/exp/best.safetensors
      posenfs eval best.safetensors --dataset mpii --data-root data/mpii --split valid
      posenfs eval best.safetensors --dataset coco --data-root data/coco --boxes dets.json
      posenfs eval best.safetensors --ann-file valid.json --image-dir images \\
        --head-boxes gt_valid.mat
    """
    params = locals()
    opts = EvalOptions(**{f.name: params[f.name] for f in fields(EvalOptions)})
    opts.device = resolve_device_option(ctx, device)
    _eval(checkpoint, opts)


@user_errors
def _eval(checkpoint: Path | None, opts: EvalOptions) -> None:
    from posenfs_cli import api

    checkpoint = checkpoint_or_latest(checkpoint, opts.project)
    bar = EvalBar(console)
    try:
        res = api.evaluate(checkpoint, options=opts, on_start=bar.start, on_batch=bar.advance)
    finally:
        bar.stop()
    show_result(console, res)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
