"""Training targets: Gaussian heatmaps and per-joint weights (HRNet/SimpleBaseline style).

A joint at heatmap position (x, y) gets a Gaussian with peak 1 at the *rounded* position
``mu = floor((x, y) + 0.5)``, evaluated on integer pixel offsets and cut to the square
(6σ+1)-pixel window around ``mu`` (|dx|, |dy| ≤ 3σ), zero elsewhere. The weight is 1 for a
labelled joint whose rounded position lies on the heatmap and 0 otherwise, so joints that left
the crop neither pull the loss nor produce a clipped half-Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def heatmap_positions(
    joints_input: np.ndarray,
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
) -> np.ndarray:
    """Input-pixel joints [K, 2] -> heatmap coordinates [K, 2] (per-axis stride input/heatmap).

    Sizes are (height, width). The stride is the ratio of sizes (4 in this project), as HRNet's
    ``feat_stride``; no half-pixel offset is applied, matching the decoder's inverse.
    """
    stride = np.array(
        [input_size[1] / heatmap_size[1], input_size[0] / heatmap_size[0]], dtype=np.float64
    )
    return np.asarray(joints_input, dtype=np.float64)[..., :2] / stride


def gaussian_heatmaps(
    joints_hm: np.ndarray,
    visible: np.ndarray,
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Target heatmaps [K, h, w] and weights [K, 1], both float32.

    ``joints_hm`` [K, 2] are (x, y) in heatmap pixels, ``visible`` [K] marks labelled joints
    (any value > 0), ``heatmap_size`` is (h, w). The Gaussian is separable, so it is built as
    the outer product of a row and a column profile: exp(-(dx²+dy²)/2σ²) = exp(-dx²/2σ²)
    exp(-dy²/2σ²) — exact, and K·(h+w) exponentials instead of K·h·w.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = int(heatmap_size[0]), int(heatmap_size[1])
    pts = np.asarray(joints_hm, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    finite = np.asarray(np.isfinite(pts).all(axis=1))
    mu = np.floor(np.where(finite[:, None], pts, -1e9) + 0.5)
    inside = (mu[:, 0] >= 0) & (mu[:, 0] < w) & (mu[:, 1] >= 0) & (mu[:, 1] < h)
    weight = (vis & finite & inside).astype(np.float32)

    radius = 3.0 * sigma
    dx = np.arange(w, dtype=np.float64)[None, :] - mu[:, :1]
    dy = np.arange(h, dtype=np.float64)[None, :] - mu[:, 1:]
    gx = np.where(np.abs(dx) <= radius, np.exp(-(dx**2) / (2.0 * sigma**2)), 0.0)
    gy = np.where(np.abs(dy) <= radius, np.exp(-(dy**2) / (2.0 * sigma**2)), 0.0)
    target = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
    return target.astype(np.float32), weight[:, None]


__all__ = ["gaussian_heatmaps", "heatmap_positions"]
