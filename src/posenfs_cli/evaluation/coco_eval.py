"""COCO keypoint evaluation: rescoring, OKS-NMS, results JSON, COCOeval.

Follows HRNet's COCO pipeline: an instance's score is its box score times the mean of its
keypoint scores above 0.2 (0 when none is), instances of each image go through OKS-NMS at 0.9,
and pycocotools' COCOeval('keypoints') gives the ten standard stats. Other COCO-style layouts
(CrowdPose) go through the same code with their own OKS sigmas from the layout.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from posenfs_cli.data.jsonio import PERSON_CATEGORY
from posenfs_cli.data.layouts import COCO
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.oks_nms import oks_nms

# Where a non-finite keypoint is written: far enough from any image that its OKS term is 0 (a
# miss), finite so the results stay valid JSON and COCOeval can read them.
MISS_XY = -1.0e4
STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


def rescore(
    keypoints: np.ndarray, box_scores: Sequence[float] | np.ndarray, kpt_thr: float = 0.2
) -> np.ndarray:
    """Instance scores [N]: box score × mean of keypoint scores > ``kpt_thr`` (0 if none).

    ``keypoints`` is [N,K,3] with the decoded peak value as third column. Weighting by keypoint
    confidence ranks confident poses first, which is what AP rewards.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    s = kp[..., 2]
    mask = s > kpt_thr
    count = mask.sum(axis=1)
    mean = np.where(count > 0, (s * mask).sum(axis=1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64).reshape(-1) * mean


def count_non_finite(keypoints: np.ndarray) -> int:
    """Keypoints [N,K,3] whose x, y or score is NaN/inf."""
    kp = np.asarray(keypoints, dtype=np.float64)
    return int((~np.isfinite(kp).all(axis=-1)).sum()) if kp.size else 0


def sanitize_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """A copy where each non-finite keypoint is (MISS_XY, MISS_XY, 0): a scored miss."""
    kp = np.array(keypoints, dtype=np.float64)
    bad = ~np.isfinite(kp).all(axis=-1)
    kp[bad] = (MISS_XY, MISS_XY, 0.0)
    return kp


def box_areas_from_scale(scale: np.ndarray) -> np.ndarray:
    """Areas [N] of the crop boxes (scale in units of 200 px), the areas HRNet feeds to NMS."""
    sc = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    return sc[:, 0] * sc[:, 1] * 200.0**2


def build_results(
    image_ids: Sequence[int] | np.ndarray,
    keypoints: np.ndarray,
    box_scores: Sequence[float] | np.ndarray,
    areas: Sequence[float] | np.ndarray,
    *,
    kpt_thr: float = 0.2,
    oks_thr: float = 0.9,
    sigmas: Sequence[float] | np.ndarray = COCO.sigmas,
    nms: bool = True,
    category_id: int = PERSON_CATEGORY,
) -> list[dict[str, Any]]:
    """COCO results list from per-instance predictions.

    ``keypoints`` [N,K,3] are (x, y, score) in image pixels; ``areas`` [N] are the instance box
    areas used by OKS (e.g. ``box_areas_from_scale``). Instances are rescored (``rescore``),
    grouped per image and OKS-NMS'd at ``oks_thr``. Each result is ``{image_id, category_id,
    keypoints: [x, y, s] * K flat, score}`` with plain Python numbers (JSON-ready). Non-finite
    keypoints are written as misses (``sanitize_keypoints``) so the list is valid JSON.
    """
    kp = sanitize_keypoints(keypoints)
    ids = np.asarray(image_ids).reshape(-1)
    ar = np.asarray(areas, dtype=np.float64).reshape(-1)
    n = kp.shape[0] if kp.ndim == 3 else -1
    if kp.ndim != 3 or kp.shape[2] != 3 or ids.shape[0] != n or ar.shape[0] != n:
        raise ValueError(
            f"build_results: keypoints {kp.shape}, image_ids {ids.shape}, areas {ar.shape} "
            "(expected [N,K,3], [N], [N])"
        )
    scores = np.nan_to_num(rescore(kp, box_scores, kpt_thr), nan=0.0, posinf=0.0, neginf=0.0)
    results: list[dict[str, Any]] = []
    uniq, inverse = np.unique(ids, return_inverse=True)
    for u, image_id in enumerate(uniq):
        members = np.flatnonzero(inverse == u)
        if nms:
            members = members[oks_nms(kp[members], scores[members], ar[members], oks_thr, sigmas)]
        for i in members:
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_id),
                    "keypoints": kp[i].reshape(-1).tolist(),
                    "score": float(scores[i]),
                }
            )
    return results


def evaluate_coco(
    coco_gt: Any,
    results: Iterable[dict[str, Any]],
    image_ids: Iterable[int] | None = None,
    sigmas: Sequence[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """Run COCOeval(iouType='keypoints') and return the ten stats by name (AP … ARL).

    ``coco_gt`` is a ``pycocotools.coco.COCO``. ``image_ids`` restricts evaluation to those
    images (e.g. a ``--limit``ed run); by default every GT image counts, as in HRNet. ``sigmas``
    are the layout's OKS sigmas (None: pycocotools' COCO ones, which equal ``COCO.sigmas``).
    COCOeval's printing is captured so the CLI controls the output.
    """
    from pycocotools.cocoeval import COCOeval

    res = [dict(r) for r in results]  # loadRes adds keys in place; keep the caller's intact
    if not res:
        raise PosenfsError(
            "no keypoint results to evaluate: the model produced no person instances "
            "(check the detections file / score threshold)"
        )
    missing = {k for r in res for k in ("image_id", "keypoints", "score") if k not in r}
    if missing:
        raise PosenfsError(f"keypoint results lack the field(s): {', '.join(sorted(missing))}")
    want = 3 * len(COCO.sigmas if sigmas is None else sigmas)
    bad = next((r for r in res if len(r["keypoints"]) != want), None)
    if bad is not None:
        raise PosenfsError(
            f"a keypoint result has {len(bad['keypoints']) // 3} keypoints but {want // 3} OKS "
            "sigmas were given: evaluate with the sigmas of the model's keypoint layout"
        )
    unknown = {int(r["image_id"]) for r in res} - set(coco_gt.getImgIds())
    if unknown:
        raise PosenfsError(
            f"{len(unknown)} result image id(s) are not in the ground truth "
            f"(e.g. {sorted(unknown)[:5]}); was the wrong annotation file given?"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(res)
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            ev.params.imgIds = sorted({int(i) for i in image_ids})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
