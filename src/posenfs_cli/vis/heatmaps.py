"""Per-part heatmaps of a pose model on one person crop, drawn as a labelled grid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np
import torch

from posenfs_cli.data.keypoints import KeypointLayout
from posenfs_cli.vis.draw import draw_skeleton, make_grid, put_label

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PartNet, PoseNet


@dataclass
class PartMaps:
    name: str
    joints: tuple[int, ...]
    maps: np.ndarray  # [K_p, h, w] scores of this part alone


@torch.inference_mode()
def part_heatmaps(model: PoseNet, x: torch.Tensor) -> tuple[np.ndarray, list[PartMaps]]:
    """(merged maps [K, h, w], per-part maps) for one normalised input [1, 3, H, W]."""
    model.eval()
    pyramid = model.backbone(x)
    parts = [
        PartMaps(p.name, p.joints, p(pyramid)[0].float().cpu().numpy())
        for p in cast("Iterable[PartNet]", model.parts)
    ]
    merged = model(x)[0].float().cpu().numpy()
    return merged, parts


def _overlay(crop_bgr: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend a [h, w] map (stretched to its own min..max) over the crop with a JET colormap."""
    h, w = crop_bgr.shape[:2]
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = cv2.applyColorMap(
        cv2.resize((norm * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR),
        cv2.COLORMAP_JET,
    )
    return cv2.addWeighted(crop_bgr, 0.45, colour, 0.55, 0.0)


def _footer(img: np.ndarray, text: str, scale: float = 0.35) -> np.ndarray:
    """Small text on a dark strip along the bottom edge (keypoint names of a part)."""
    out = img.copy()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while w > out.shape[1] - 4 and len(text) > 4:
        text = text[: max(4, len(text) * (out.shape[1] - 4) // w - 1)] + "."
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y0 = out.shape[0] - h - base - 4
    cv2.rectangle(out, (0, y0), (w + 4, out.shape[0]), (0, 0, 0), -1)
    cv2.putText(
        out,
        text,
        (2, out.shape[0] - base - 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


def render_heatmaps(
    crop_bgr: np.ndarray,
    merged: np.ndarray,
    parts: list[PartMaps],
    layout: KeypointLayout,
    keypoints_crop: np.ndarray,
    scores: np.ndarray,
    kpt_thr: float = 0.3,
    tile: int = 256,
) -> np.ndarray:
    """Grid: the crop with its predicted skeleton, all keypoints, then one tile per part."""
    scale = tile / max(crop_bgr.shape[:2])
    size = (round(crop_bgr.shape[1] * scale), round(crop_bgr.shape[0] * scale))
    crop = cv2.resize(crop_bgr, size, interpolation=cv2.INTER_LINEAR)
    tiles = [
        put_label(
            draw_skeleton(crop, keypoints_crop * scale, scores, layout, thr=kpt_thr), "prediction"
        ),
        put_label(_overlay(crop, merged.max(axis=0)), f"all {merged.shape[0]} keypoints"),
    ]
    for p in parts:
        names = ", ".join(layout.names[j] for j in p.joints)
        label = f"{p.name}: {len(p.joints)} kpts, peak {p.maps.max():.2f}"
        tiles.append(_footer(put_label(_overlay(crop, p.maps.max(axis=0)), label), names))
    return make_grid(tiles, ncols=min(4, len(tiles)))
