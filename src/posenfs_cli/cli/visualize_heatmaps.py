"""``posenfs visualize heatmaps CKPT IMAGE``: the prediction and every part's heatmaps."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markup import escape

from posenfs_cli.cli.common import (
    check_image_out,
    checkpoint_or_latest,
    console,
    resolve_device_option,
    user_errors,
)
from posenfs_cli.errors import PosenfsError


def heatmaps_command(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Argument(
        None,
        help="A posenfs .safetensors checkpoint; with a single argument it is the IMAGE and the "
        "checkpoint is the newest runs/search|train/*/best.safetensors.",
        show_default=False,
    ),
    image: Path | None = typer.Argument(
        None, help="An image with one person (or use --box).", show_default=False
    ),
    box: str | None = typer.Option(
        None, "--box", help="Person box x1,y1,x2,y2 in pixels.", show_default="the whole image"
    ),
    kpt_thr: float = typer.Option(0.3, "--kpt-thr", help="Draw joints scoring above this."),
    out: Path | None = typer.Option(None, "--out", "-o", help="PNG path."),
    device: str | None = typer.Option(None, "--device"),
) -> None:
    """Draw the predicted skeleton and the heatmaps of each body part's CNF.

    Examples:
      posenfs visualize heatmaps runs/search/exp/best.safetensors person.jpg
      posenfs visualize heatmaps person.jpg   (the newest search/train run's best checkpoint)
    """
    _heatmaps(ctx, checkpoint, image, box, kpt_thr, out, device)


@user_errors
def _heatmaps(ctx, checkpoint, image, box, kpt_thr, out, device) -> None:
    import cv2

    from posenfs_cli.inference.heatmaps_run import check_box, heatmap_figure

    if image is None and checkpoint is not None and checkpoint.suffix.lower() == ".safetensors":
        raise PosenfsError(f"give an IMAGE after the checkpoint {checkpoint} (no image given)")
    if image is None:  # one argument: the image
        checkpoint, image = None, checkpoint
    if image is None:
        raise PosenfsError("give an IMAGE (and optionally a checkpoint before it)")
    check_box(box)
    if not math.isfinite(kpt_thr):
        raise PosenfsError(f"--kpt-thr must be a finite number, got {kpt_thr:g}")
    out = check_image_out(out or Path("runs/visualize") / f"heatmaps_{image.stem}.png")
    checkpoint = checkpoint_or_latest(checkpoint)
    fig = heatmap_figure(checkpoint, image, box, kpt_thr, resolve_device_option(ctx, device))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), fig.image):
        raise PosenfsError(f"cannot write {out}")
    console.print(f"{fig.parts} parts -> [bold]{escape(str(out))}[/]")


def register(app: typer.Typer) -> None:
    from posenfs_cli.cli.visualize import visualize_app

    visualize_app.command("heatmaps")(heatmaps_command)
