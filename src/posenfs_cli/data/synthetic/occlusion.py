"""Which shape lies on top of each joint (painter's order), and the extent of a set of shapes:
the geometry behind the visibility flags and the boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenfs_cli.data.synthetic.core import Shape


def _shape_bounds(shapes: Sequence[Shape]) -> np.ndarray:
    """x1, y1, x2, y2 covering the given capsules and polygons."""
    pts = np.concatenate([s.pts for s in shapes])
    pad = np.repeat(
        [s.r if s.kind == "capsule" else 0.0 for s in shapes], [len(s.pts) for s in shapes]
    )[:, None]
    return np.concatenate([(pts - pad).min(axis=0), (pts + pad).max(axis=0)])


def _shape_area(shapes: Sequence[Shape]) -> float:
    """Approximate silhouette area: capsules + polygons (overlaps counted twice)."""
    area = 0.0
    for s in shapes:
        if s.part < 0:
            continue
        if s.kind == "capsule":
            area += 2 * s.r * float(np.linalg.norm(s.pts[1] - s.pts[0])) + np.pi * s.r**2
        elif s.kind == "poly":
            x, y = s.pts[:, 0], s.pts[:, 1]
            area += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


def top_shape(points: np.ndarray, shapes: Sequence[Shape], tol: float = 0.5) -> np.ndarray:
    """Index (in ``shapes``) of the topmost occluding shape covering each point, or -1.

    Capsules by point-segment distance, convex polygons by signed edge distances; vectorised
    over points × shapes.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    covered = np.zeros((len(pts), len(shapes)), dtype=bool)
    cap = [i for i, s in enumerate(shapes) if s.kind == "capsule" and s.part >= 0]
    if cap:
        a = np.stack([shapes[i].pts[0] for i in cap])
        b = np.stack([shapes[i].pts[1] for i in cap])
        r = np.array([shapes[i].r for i in cap])
        v = b - a
        w = pts[:, None, :] - a[None]
        t = np.clip((w * v).sum(-1) / np.maximum((v * v).sum(-1), 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(w - t[..., None] * v, axis=-1)
        covered[:, cap] = dist <= r + tol
    poly = [i for i, s in enumerate(shapes) if s.kind == "poly" and s.part >= 0]
    if poly:
        verts = np.stack([np.concatenate([shapes[i].pts, shapes[i].pts[-1:]])[:4] for i in poly])
        e = np.roll(verts, -1, axis=1) - verts
        n = np.linalg.norm(e, axis=-1)
        rel = pts[:, None, None, :] - verts[None]
        cross = e[None, ..., 0] * rel[..., 1] - e[None, ..., 1] * rel[..., 0]
        sd = np.where(n[None] > 0, cross / np.maximum(n[None], 1e-12), 0.0)
        inside = (sd >= -tol).all(-1) | (sd <= tol).all(-1)
        covered[:, poly] = inside
    idx = np.arange(len(shapes))
    top = np.where(covered, idx[None], -1).max(axis=1, initial=-1)
    return top
