"""Test oracles: slow, obvious versions of the library's fast code, kept out of the package."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from posenfs_cli.data.layouts import COCO
from posenfs_cli.evaluation.oks_nms import EPS


def oks_nms_bruteforce(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: Sequence[float] | np.ndarray = COCO.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Plain double-loop OKS-NMS with scalar maths: slow but obviously right, to check
    ``oks_nms`` against."""
    kp = np.asarray(kpts, dtype=np.float64).tolist()
    ar = np.asarray(areas, dtype=np.float64).reshape(-1).tolist()
    sig = [float(s) for s in sigmas]

    def oks(i: int, j: int) -> float:
        total, count = 0.0, 0
        for k, s in enumerate(sig):
            (xi, yi, si), (xj, yj, sj) = kp[i][k][:3], kp[j][k][:3]
            if vis_thr is not None and not (si > vis_thr and sj > vis_thr):
                continue
            e = ((xi - xj) ** 2 + (yi - yj) ** 2) / (2 * s) ** 2 / ((ar[i] + ar[j]) / 2 + EPS) / 2
            total += math.exp(-e)
            count += 1
        return total / count if count else 0.0

    order = sorted(range(len(kp)), key=lambda i: (-float(scores[i]), i))
    suppressed = [False] * len(kp)
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[a + 1 :]:
            if not suppressed[j] and oks(i, j) > threshold:
                suppressed[j] = True
    return np.asarray(keep, dtype=np.int64)
