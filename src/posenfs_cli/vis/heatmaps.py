"""Per-part heatmaps of a pose model on one person crop, drawn as a labelled grid.

Joints, maps and the crop are placed with the keypoint codec's pixel convention (pixel ``(i, j)``
at ``x = j, y = i``; heatmap → crop is × stride): maps and the crop are resampled with a plain
affine (``cv2.warpAffine``), not ``cv2.resize``, whose half-pixel-centre convention would put
a heatmap peak 1.5 crop pixels (stride 4) right/down of the decoded joint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import cv2
import numpy as np
import torch

from posenfs_cli.data.codec import HeatmapCodec
from posenfs_cli.data.layouts import KeypointLayout
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


def crop_keypoints(merged: np.ndarray, crop_hw: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [K, 2] in crop pixels, scores [K]) decoded from maps [K, h, w] of a crop.

    The same decode as evaluation and prediction, stopped at the crop instead of the image.
    """
    codec = HeatmapCodec.for_maps(crop_hw, merged)
    coords, scores = codec.decode(np.asarray(merged)[None], shift=True)
    return codec.heatmap_to_crop(coords[0]), scores[0]


def resample(img: np.ndarray, matrix: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``img`` warped by the 2x3 ``matrix`` (source -> destination) to ``size`` = (w, h).

    Bilinear with replicated borders, so the last rows/columns of an upsampled map keep the
    edge value instead of fading to black.
    """
    return cv2.warpAffine(
        img,
        np.asarray(matrix, dtype=np.float64),
        (int(size[0]), int(size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _overlay(tile_bgr: np.ndarray, heat: np.ndarray, heat_to_tile: np.ndarray) -> np.ndarray:
    """Blend a [h, w] map (stretched to its own min..max) over the tile with a JET colormap."""
    h, w = tile_bgr.shape[:2]
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    colour = cv2.applyColorMap(
        resample((norm * 255).astype(np.uint8), heat_to_tile, (w, h)), cv2.COLORMAP_JET
    )
    return cv2.addWeighted(tile_bgr, 0.45, colour, 0.55, 0.0)


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
    """Grid: the crop with its predicted skeleton, all keypoints, then one tile per part.

    ``keypoints_crop`` [K, 2] are crop pixels (:func:`crop_keypoints`).
    """
    codec = HeatmapCodec.for_maps(crop_bgr.shape[:2], merged)
    scale = tile / max(crop_bgr.shape[:2])
    size = (round(crop_bgr.shape[1] * scale), round(crop_bgr.shape[0] * scale))
    crop_to_tile = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    heat_to_tile = crop_to_tile @ np.vstack([codec.heatmap_to_crop_matrix(), [0.0, 0.0, 1.0]])
    crop = resample(crop_bgr, crop_to_tile, size)
    tiles = [
        put_label(
            draw_skeleton(crop, keypoints_crop * scale, scores, layout, thr=kpt_thr), "prediction"
        ),
        put_label(
            _overlay(crop, merged.max(axis=0), heat_to_tile), f"all {merged.shape[0]} keypoints"
        ),
    ]
    for p in parts:
        names = ", ".join(layout.names[j] for j in p.joints)
        label = f"{p.name}: {len(p.joints)} kpts, peak {p.maps.max():.2f}"
        overlay = _overlay(crop, p.maps.max(axis=0), heat_to_tile)
        tiles.append(_footer(put_label(overlay, label), names))
    return make_grid(tiles, ncols=min(4, len(tiles)))
