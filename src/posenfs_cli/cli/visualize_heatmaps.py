"""``posenfs visualize heatmaps CKPT IMAGE``: the prediction and every part's heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

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

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet


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
        None, "--box", help="Person box x1,y1,x2,y2 in pixels [default: the whole image]."
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
    import numpy as np
    import torch

    from posenfs_cli.device import select_device
    from posenfs_cli.inference.predictor import Predictor
    from posenfs_cli.vis.heatmaps import crop_keypoints, part_heatmaps, render_heatmaps

    if image is None:  # one argument: the image
        checkpoint, image = None, checkpoint
    if image is None:
        raise PosenfsError("give an IMAGE (and optionally a checkpoint before it)")
    checkpoint = checkpoint_or_latest(checkpoint)
    out = check_image_out(out or Path("runs/visualize") / f"heatmaps_{image.stem}.png")
    dev = select_device(resolve_device_option(ctx, device))
    pred = Predictor.from_checkpoint(checkpoint, dev, flip=False, channels_last=False)
    img = cv2.imread(str(image), cv2.IMREAD_COLOR) if image.is_file() else None
    if img is None:
        raise PosenfsError(f"cannot read image {image}")
    if box:
        try:
            xyxy = np.array([float(v) for v in box.split(",")], dtype=np.float64)
        except ValueError:
            xyxy = np.zeros(0)
        if xyxy.shape != (4,) or xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1]:
            raise PosenfsError(f"--box {box!r} must be x1,y1,x2,y2 with x2 > x1 and y2 > y1")
    else:
        xyxy = np.array([0, 0, img.shape[1], img.shape[0]], dtype=np.float64)
    batch = pred.crop(img, xyxy[None])
    x = torch.from_numpy(batch.crops).to(dev).permute(0, 3, 1, 2).float()
    x = (x - pred._mean) / pred._std
    merged, parts = part_heatmaps(cast("PoseNet", pred.model), x)  # a posenfs checkpoint
    keypoints, scores = crop_keypoints(merged, batch.crops.shape[1:3])
    crop_bgr = batch.crops[0][..., ::-1] if pred.input_format == "rgb" else batch.crops[0]
    grid = render_heatmaps(
        np.ascontiguousarray(crop_bgr),
        merged,
        parts,
        pred.layout,
        keypoints,
        scores,
        kpt_thr,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid):
        raise PosenfsError(f"cannot write {out}")
    console.print(f"{len(parts)} parts -> [bold]{escape(str(out))}[/]")


def register(app: typer.Typer) -> None:
    from posenfs_cli.cli.visualize import visualize_app

    visualize_app.command("heatmaps")(heatmaps_command)
