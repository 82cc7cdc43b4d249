"""The crop affine shared by data loading and decoding (HRNet/SimpleBaseline conventions).

A person box is given by ``center`` (x, y) in image pixels and ``scale`` (w, h) in units of
200 px (``PIXEL_STD``). The crop maps the box width ``scale[0] * 200`` onto the output width,
keeps the aspect ratio (boxes are padded to the output aspect beforehand), puts ``center`` at
the output centre, and rotates by ``rotation`` degrees (counter-clockwise in the image as seen,
i.e. a source direction rotated by ``rotation`` ends up pointing straight up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PIXEL_STD = 200.0


def get_affine_transform(
    center: np.ndarray | Sequence[float],
    scale: np.ndarray | Sequence[float],
    rotation: float,
    output_size: Sequence[int],
    inverse: bool = False,
) -> np.ndarray:
    """2x3 float64 matrix mapping image -> crop (or crop -> image with ``inverse``).

    ``output_size`` is (width, height) of the crop (input or heatmap resolution).
    """
    cx, cy = float(center[0]), float(center[1])
    src_w = float(scale[0]) * PIXEL_STD
    out_w, out_h = float(output_size[0]), float(output_size[1])
    s = out_w / src_w
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # forward: q = s * R(theta) @ (p - c) + o, with R the rotation that maps the source
    # direction rotated by theta back onto the axis (HRNet's get_dir convention).
    a = np.array([[cos, sin], [-sin, cos]], dtype=np.float64) * s
    o = np.array([out_w * 0.5, out_h * 0.5], dtype=np.float64)
    c = np.array([cx, cy], dtype=np.float64)
    if not inverse:
        t = o - a @ c
        return np.concatenate([a, t[:, None]], axis=1)
    a_inv = np.array([[cos, -sin], [sin, cos]], dtype=np.float64) / s
    t = c - a_inv @ o
    return np.concatenate([a_inv, t[:, None]], axis=1)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points [..., 2] (vectorised)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def box_to_center_scale(
    x: float, y: float, w: float, h: float, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """xywh box -> (center, scale) padded to ``aspect_ratio`` = width / height, times padding."""
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * padding
    return center, scale
