"""The heatmap figure of one person: the predicted skeleton and each body part's heatmaps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet


def check_box(text: str | None) -> np.ndarray | None:
    """'x1,y1,x2,y2' in pixels -> [4] finite floats with x2 > x1 and y2 > y1; None/'' -> None."""
    if text is None or not text.strip():
        return None
    try:
        xyxy = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        xyxy = np.zeros(0)
    if (
        xyxy.shape != (4,)
        or not np.isfinite(xyxy).all()
        or not (xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1])
    ):
        raise PosenfsError(
            f"--box {text!r} must be x1,y1,x2,y2: four finite numbers with x2 > x1 and y2 > y1"
        )
    return xyxy


def parse_box(text: str | None, image: np.ndarray) -> np.ndarray:
    """'x1,y1,x2,y2' in pixels -> [4] floats; None -> the whole image."""
    xyxy = check_box(text)
    if xyxy is None:
        return np.array([0, 0, image.shape[1], image.shape[0]], dtype=np.float64)
    return xyxy


@dataclass
class HeatmapFigure:
    image: np.ndarray  # BGR, ready for cv2.imwrite
    parts: int


def heatmap_figure(
    checkpoint: Path, image: Path, box: str | None, kpt_thr: float, device: str
) -> HeatmapFigure:
    import cv2

    from posenfs_cli.device import select_device
    from posenfs_cli.inference.predictor import Predictor
    from posenfs_cli.vis.heatmaps import crop_keypoints, part_heatmaps, render_heatmaps

    dev = select_device(device)
    pred = Predictor.from_checkpoint(checkpoint, dev, flip=False, channels_last=False)
    img = cv2.imread(str(image), cv2.IMREAD_COLOR) if image.is_file() else None
    if img is None:
        raise PosenfsError(f"cannot read image {image}")
    xyxy = parse_box(box, img)
    batch = pred.crop(img, xyxy[None])
    x = pred.normalize(batch.crops)
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
    return HeatmapFigure(grid, len(parts))
