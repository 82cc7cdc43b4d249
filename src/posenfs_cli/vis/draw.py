"""Skeleton drawing and image grids (OpenCV, BGR), shared by visualize, predict and eval.

Colours come from the keypoint layout: left joints/links in one colour, right in another,
centre (or mixed) links in a third, so a left/right swap is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.vis.primitives import make_grid

_SHIFT = 4
_ONE = 1 << _SHIFT


BOX_COLOR = (0, 220, 255)  # BGR yellow: distinct from the left/right/centre skeleton colours


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> OpenCV fixed point (sub-pixel accurate drawing)."""
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int64)


def draw_skeleton(
    img_bgr: np.ndarray,
    joints: np.ndarray,
    scores_or_vis: np.ndarray | Sequence[float] | None,
    layout: KeypointLayout,
    thr: float = 0.5,
    radius: int = 3,
    thickness: int = 2,
) -> np.ndarray:
    """A copy of ``img_bgr`` with links and joints drawn where score/visibility > ``thr``.

    ``joints`` [K, 2+] are pixel (x, y) in the image's frame; ``scores_or_vis`` [K] (None:
    draw all). Joints are outlined in black so they stay visible on any background.
    """
    out = np.ascontiguousarray(img_bgr).copy()
    pts = np.asarray(joints, dtype=np.float64)[:, :2]
    k = len(pts)
    score = np.ones(k) if scores_or_vis is None else np.asarray(scores_or_vis, np.float64)
    ok = (score.reshape(k) > thr) & np.isfinite(pts).all(axis=1)
    fx = _fixed(np.where(np.isfinite(pts), pts, 0.0))
    for a, b in layout.skeleton:
        if a < k and b < k and ok[a] and ok[b]:
            cv2.line(
                out,
                (int(fx[a, 0]), int(fx[a, 1])),
                (int(fx[b, 0]), int(fx[b, 1])),
                layout.link_color(a, b),
                thickness,
                cv2.LINE_AA,
                _SHIFT,
            )
    for j in np.flatnonzero(ok):
        c = (int(fx[j, 0]), int(fx[j, 1]))
        cv2.circle(out, c, (radius + 1) * _ONE, (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(out, c, radius * _ONE, layout.color(int(j)), -1, cv2.LINE_AA, _SHIFT)
    return out


def put_label(img_bgr: np.ndarray, text: str, scale: float = 0.4) -> np.ndarray:
    """A copy with ``text`` in the top-left corner on a dark strip (readable anywhere)."""
    out = np.ascontiguousarray(img_bgr).copy()
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (w + 4, h + base + 4), (0, 0, 0), -1)
    cv2.putText(
        out, text, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def draw_instances(
    image_bgr: np.ndarray, instances: Sequence[Any], layout: KeypointLayout, kpt_thr: float
) -> np.ndarray:
    """Boxes with their scores and skeletons (joints under ``kpt_thr`` not drawn)."""
    h, w = image_bgr.shape[:2]
    unit = max(1, round(min(h, w) / 240))
    out = np.ascontiguousarray(image_bgr).copy()
    for inst in instances:
        x1, y1, x2, y2 = (round(float(v)) for v in inst.bbox)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOR, unit, cv2.LINE_AA)
        cv2.putText(
            out,
            f"{inst.bbox_score:.2f}",
            (x1 + 2, max(y1 - 3, 10 * unit)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * unit,
            BOX_COLOR,
            1,
            cv2.LINE_AA,
        )
    for inst in instances:
        out = draw_skeleton(
            out,
            inst.keypoints,
            inst.keypoint_scores,
            layout,
            thr=kpt_thr,
            radius=unit + 1,
            thickness=unit + 1,
        )
    return out


__all__ = ["BOX_COLOR", "draw_instances", "draw_skeleton", "make_grid", "put_label"]
