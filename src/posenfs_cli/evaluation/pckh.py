"""MPII PCKh, computed as the official evaluation / HRNet's ``mpii.evaluate`` does.

Head size = 0.6 × head-box diagonal (``SC_BIAS``). A joint counts when its ground truth is
labelled (``visible``) and is correct when distance / head size ≤ threshold. Per-joint PCKh is
the percentage of correct labelled joints; the table columns (the layout's ``pckh_columns``)
average left and right (``0.5 * (l + r)``), and Mean is the count-weighted mean over the joints
not in ``pckh_mean_excludes`` (for MPII the 14 other than pelvis and thorax), which equals
correct / labelled over those joints. HRNet labels its threshold-0.11 mean
"Mean@0.1"; we report the true @0.1 and, optionally, the @0.11 value under an explicit label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import savemat

from posenfs_cli.data.layouts import MPII, KeypointLayout
from posenfs_cli.errors import PosenfsError

SC_BIAS = 0.6
HRNET_THRESHOLD = 0.11
HRNET_LABEL = "Mean@0.11 (HRNet-compatible)"


@dataclass(frozen=True)
class PCKhResult:
    """PCKh values in percent; ``per_joint[t]`` is [K] for threshold ``thresholds[t]``.

    ``normalized_errors`` [N, K] (distance / head size, NaN where unlabelled) is kept so other
    thresholds can be read off without recomputing (``mean_at``); ``mean_joints`` are the
    joints the Mean averages.
    """

    thresholds: tuple[float, ...]
    per_joint: np.ndarray
    joint_count: np.ndarray
    normalized_errors: np.ndarray
    columns: dict[str, float] = field(default_factory=dict)
    non_finite: int = 0  # labelled joints whose prediction was NaN/inf (scored as misses)
    mean_joints: tuple[int, ...] = MPII.pckh_mean_indices

    @property
    def mean(self) -> float:
        """Mean at the primary threshold (``thresholds[0]``, 0.5 by default)."""
        return self.mean_at(self.thresholds[0])

    def per_joint_at(self, threshold: float) -> np.ndarray:
        """Per-joint PCKh [K] in percent (NaN for joints never labelled)."""
        return _per_joint(self.normalized_errors, threshold)

    def mean_at(self, threshold: float) -> float:
        """Count-weighted mean over ``mean_joints`` (MPII: all but pelvis, thorax), in percent."""
        return _weighted_mean(self.normalized_errors, threshold, self.mean_joints)


def _correct_counts(norm_err: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per joint: labelled joints within ``threshold`` and labelled joints (NaN = unlabelled)."""
    labelled = ~np.isnan(norm_err)
    correct = (labelled & (np.nan_to_num(norm_err, nan=np.inf) <= threshold)).sum(axis=0)
    return correct, labelled.sum(axis=0)


def _per_joint(norm_err: np.ndarray, threshold: float) -> np.ndarray:
    correct, count = _correct_counts(norm_err, threshold)
    return np.where(count > 0, 100.0 * correct / np.maximum(count, 1), np.nan)


def _weighted_mean(norm_err: np.ndarray, threshold: float, joints: tuple[int, ...]) -> float:
    # Σ_j PCKh_j · count_j / Σ count_j (HRNet's jnt_ratio weighting) = Σ correct / Σ count.
    correct, count = _correct_counts(norm_err, threshold)
    sel = np.asarray(joints, dtype=np.int64)
    total = count[sel].sum()
    return float(100.0 * correct[sel].sum() / total) if total else float("nan")


def _mean_label(threshold: float, primary: bool) -> str:
    return "Mean" if primary and threshold == 0.5 else f"Mean@{threshold:g}"


def compute_pckh(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    headboxes: np.ndarray | None,
    thresholds: tuple[float, ...] = (0.5, 0.1),
    hrnet_compatible: bool = True,
    layout: KeypointLayout = MPII,
) -> PCKhResult:
    """PCKh of ``pred`` [N,K,2] against ``gt`` [N,K,2] (same pixel frame, ``layout`` order).

    ``visible`` [N,K] marks labelled GT joints; ``headboxes`` [N,4] is [x1, y1, x2, y2]. A
    non-finite prediction of a labelled joint counts as wrong (``non_finite`` says how many).
    Columns use ``thresholds[0]``; each further threshold adds a ``Mean@t`` column, and
    ``hrnet_compatible`` adds "Mean@0.11 (HRNet-compatible)", the number HRNet prints as
    "Mean@0.1".
    """
    if headboxes is None:
        raise PosenfsError(
            "PCKh needs MPII head boxes (annot/gt_valid.mat or a per-record 'headbox'); "
            "this dataset has none — use COCO AP for COCO-layout data"
        )
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    vis = np.asarray(visible).astype(bool)
    boxes = np.asarray(headboxes, dtype=np.float64)
    k = layout.num_joints
    if not layout.pckh_columns:
        raise PosenfsError(
            f"PCKh is not defined for the {layout.name} layout (it is scored with OKS AP)"
        )
    if pred.ndim != 3 or pred.shape[1:] != (k, 2):
        raise PosenfsError(
            f"PCKh is defined for the {layout.name.upper()} {k}-joint layout; got predictions "
            f"of shape {pred.shape} (COCO-layout data is evaluated with COCO AP)"
        )
    n = pred.shape[0]
    if gt.shape != pred.shape or vis.shape != (n, k) or boxes.shape != (n, 4):
        raise PosenfsError(
            f"PCKh inputs disagree: pred {pred.shape}, gt {gt.shape}, visible {vis.shape}, "
            f"headboxes {boxes.shape} (expected [N,{k},2], [N,{k},2], [N,{k}], [N,4])"
        )
    if not thresholds:
        raise ValueError("at least one PCKh threshold is needed")
    headsize = SC_BIAS * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)
    bad = vis.any(axis=1) & ~(np.isfinite(headsize) & (headsize > 0))
    if bad.any():
        raise PosenfsError(
            f"{int(bad.sum())} person(s) with labelled joints have an empty or invalid head box "
            f"(first at index {int(np.flatnonzero(bad)[0])}); PCKh cannot be normalised"
        )
    dist = np.linalg.norm(pred - gt, axis=2)
    # A labelled joint without a finite prediction is wrong (as in the official code), never
    # unlabelled: +inf error keeps it in the count and outside every threshold.
    broken = vis & ~np.isfinite(dist)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_err = np.where(vis, np.where(broken, np.inf, dist / headsize[:, None]), np.nan)

    thresholds = tuple(float(t) for t in thresholds)
    per_joint = np.stack([_per_joint(norm_err, t) for t in thresholds])
    columns: dict[str, float] = {}
    mean_joints = layout.pckh_mean_indices
    for name, joints in layout.pckh_column_indices:
        vals = per_joint[0, list(joints)]
        # HRNet: 0.5 * (l + r). If one side was never labelled, report the other one.
        columns[name] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    for i, t in enumerate(thresholds):
        columns[_mean_label(t, primary=i == 0)] = _weighted_mean(norm_err, t, mean_joints)
    if hrnet_compatible:
        columns[HRNET_LABEL] = _weighted_mean(norm_err, HRNET_THRESHOLD, mean_joints)
    return PCKhResult(
        thresholds=thresholds,
        per_joint=per_joint,
        joint_count=vis.sum(axis=0),
        normalized_errors=norm_err,
        columns=columns,
        non_finite=int(broken.sum()),
        mean_joints=mean_joints,
    )


def pckh_table_rows(result: PCKhResult) -> list[tuple[str, float]]:
    """Ordered (column, value) pairs: Head … Ankle, Mean, Mean@0.1[, Mean@0.11 (HRNet-…)]."""
    return list(result.columns.items())


def save_pred_mat(path: str | Path, preds: np.ndarray) -> Path:
    """Write ``pred.mat`` for the official MATLAB / HRNet-style evaluation.

    ``preds`` [N,16,2] are 0-based image pixels in MPII order; like HRNet we store them 1-based
    under key ``preds`` with shape [N,16,2] (the evaluation script transposes to [16,2,N]).
    """
    arr = np.asarray(preds, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1] != MPII.num_joints or arr.shape[2] < 2:
        raise PosenfsError(f"pred.mat needs MPII predictions [N,16,2], got shape {arr.shape}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(out), {"preds": arr[:, :, :2] + 1.0})
    return out
