"""Object Keypoint Similarity and greedy OKS non-maximum suppression.

The released code's NMS faults are not copied.

OKS follows HRNet's ``oks_iou``: var = (2σ)², e = d² / var / (mean of the two areas + eps) / 2,
OKS = mean over joints of exp(−e), optionally over joints whose scores both exceed ``vis_thr``
(HRNet's ``list(a) and list(b)`` silently used only the second mask; we use both).
The NMS is the standard greedy one: the released PoseNFS code skipped the candidate after each
suppressed one, letting duplicates survive; this one does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenfs_cli.data.layouts import COCO

EPS = float(np.spacing(1))


def _variances(sigmas: Sequence[float] | np.ndarray, num_joints: int) -> np.ndarray:
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (num_joints,):
        raise ValueError(f"{sig.shape[0] if sig.ndim else 0} sigmas for {num_joints} keypoints")
    return (2.0 * sig) ** 2


def compute_oks(
    kpts: np.ndarray,
    kpts_many: np.ndarray,
    area: float,
    areas: np.ndarray,
    sigmas: Sequence[float] | np.ndarray = COCO.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """OKS [M] between one instance ``kpts`` [K,3] (x, y, score) and ``kpts_many`` [M,K,3].

    With ``vis_thr`` only joints scored above it in both instances count; no such joint → 0.
    """
    g = np.asarray(kpts, dtype=np.float64)
    d = np.asarray(kpts_many, dtype=np.float64).reshape(-1, *g.shape)
    var = _variances(sigmas, g.shape[0])
    d2 = ((d[..., :2] - g[None, :, :2]) ** 2).sum(-1)  # [M, K]
    scale = (float(area) + np.asarray(areas, dtype=np.float64).reshape(-1)) / 2.0 + EPS
    sim = np.exp(-(d2 / var / scale[:, None] / 2.0))
    if vis_thr is None:
        mean: np.ndarray = sim.mean(axis=1)
        return mean
    mask = (g[None, :, 2] > vis_thr) & (d[..., 2] > vis_thr)
    count = mask.sum(axis=1)
    oks: np.ndarray = np.where(count > 0, (sim * mask).sum(axis=1) / np.maximum(count, 1), 0.0)
    return oks


def _score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep input order (stable), as the tests' oracle does."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: Sequence[float] | np.ndarray = COCO.sigmas,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS over instances ``kpts`` [N,K,3]; returns kept indices (int64, best first).

    Repeatedly keep the best remaining instance and drop every remaining one whose OKS with it
    exceeds ``threshold``; each step is one vectorised OKS call against all remaining.
    """
    kpts = np.asarray(kpts, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    order = _score_order(scores)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if not rest.size:
            break
        ovr = compute_oks(kpts[best], kpts[rest], areas[best], areas[rest], sigmas, vis_thr)
        order = rest[ovr <= threshold]
    return np.asarray(keep, dtype=np.int64)
