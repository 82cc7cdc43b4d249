"""Run a model over a loader and score it: PCKh for MPII-style data, COCO AP for COCO-style.

Shared by validation during search/train and by ``posenfs eval``. Predictions are decoded by the
keypoint codec (argmax + quarter offset, inverse crop affine back to original image pixels), the
same one ``posenfs predict`` uses, so the metrics are computed exactly as the standard tools do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from posenfs_cli.data.codec import HeatmapCodec, model_heatmaps
from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.coco_eval import (
    box_areas_from_scale,
    build_results,
    count_non_finite,
    evaluate_coco,
)
from posenfs_cli.evaluation.pckh import compute_pckh, pckh_table_rows
from posenfs_cli.models.loss import pose_loss

META_KEYS = (
    "index",
    "image_id",
    "joints",
    "headbox",
    "center",
    "scale",
    "rotation",
    "score",
    "valid",
)


@dataclass
class Predictions:
    """Per person: image-space keypoints/scores plus the meta needed to score them."""

    coords: np.ndarray  # [N, K, 2] original image pixels
    scores: np.ndarray  # [N, K]
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    loss: float | None = None

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @staticmethod
    def concat(parts: list[Predictions]) -> Predictions:
        """Join shards (e.g. from DDP ranks), dropping duplicated indices (sampler padding)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Predictions(np.zeros((0, 0, 2)), np.zeros((0, 0)))
        coords = np.concatenate([p.coords for p in parts])
        scores = np.concatenate([p.scores for p in parts])
        meta = {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta}
        _, keep = np.unique(meta["index"], return_index=True)
        losses = [(p.loss, len(p)) for p in parts if p.loss is not None]
        loss = sum(v * n for v, n in losses) / sum(n for _, n in losses) if losses else None
        return Predictions(coords[keep], scores[keep], {k: v[keep] for k, v in meta.items()}, loss)


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[Any],
    device: torch.device,
    layout: KeypointLayout,
    flip: bool = True,
    flip_shift: bool = True,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Predictions:
    """Forward every batch (one batched forward with its mirror when ``flip``) and decode."""
    was_training = model.training
    model.eval()
    coords, scores, loss_sum, n_loss = [], [], 0.0, 0
    meta: dict[str, list[np.ndarray]] = {k: [] for k in META_KEYS}
    try:
        for images, target, weight, m in batches:
            x = images.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp_dtype):
                hm = model_heatmaps(model, x, layout.flip_pairs, flip, flip_shift)
            hm = hm.float()
            if target is not None and target.numel():
                loss = pose_loss(hm, target.to(device), weight.to(device))
                loss_sum += float(loss) * x.shape[0]
                n_loss += x.shape[0]
            codec = HeatmapCodec.for_maps(x.shape[-2:], hm)
            img_xy, s = codec.decode_to_image(
                hm, m["center"].numpy(), m["scale"].numpy(), m["rotation"].numpy()
            )
            coords.append(img_xy)
            scores.append(s)
            for k in META_KEYS:
                v = m[k]
                meta[k].append(v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
            if on_batch is not None:
                on_batch(x.shape[0])
    finally:
        model.train(was_training)
    if not coords:
        return Predictions(np.zeros((0, layout.num_joints, 2)), np.zeros((0, layout.num_joints)))
    return Predictions(
        np.concatenate(coords).astype(np.float64),
        np.concatenate(scores).astype(np.float64),
        {k: np.concatenate(v) for k, v in meta.items()},
        loss_sum / n_loss if n_loss else None,
    )


def unreadable_count(preds: Predictions, dataset: Any = None) -> int:
    """Persons whose image could not be read (placeholders flagged ``valid`` False).

    Raises when no person could be scored at all: a table of zeros would look like a result.
    """
    if not len(preds) or "valid" not in preds.meta:
        return 0
    skipped = int((~preds.meta["valid"].astype(bool)).sum())
    if skipped == len(preds):
        missing = list(getattr(dataset, "missing_images", []) or [])
        source = getattr(dataset, "source", None)
        first = ""
        if missing and source is not None:
            first = f" (e.g. {source.describe(missing[0])} does not exist)"
        raise PosenfsError(
            f"none of the images of the {len(preds)} person(s) could be read{first}; "
            "nothing was scored: check --image-dir / --data-root"
        )
    return skipped


def uses_pckh(layout: KeypointLayout, preds: Predictions) -> bool:
    """PCKh needs MPII's 16 joints and head boxes (synthetic MPII-style data has them)."""
    return bool(layout.pckh_columns) and bool(np.any(preds.meta["headbox"][:, 2:] > 0))


def score(
    preds: Predictions,
    layout: KeypointLayout,
    dataset: Any = None,
    kpt_thr: float = 0.2,
    oks_thr: float = 0.9,
) -> dict[str, Any]:
    """Metrics dict. MPII: ``pckh`` (Mean@0.5), ``pckh@0.1``, per-column values;
    COCO: ``ap`` and the other nine COCOeval stats over every image of ``dataset``. ``main``
    names the headline metric; ``non_finite_keypoints`` counts NaN/inf predictions (misses)."""
    out: dict[str, Any] = {}
    if preds.loss is not None:
        out["val_loss"] = preds.loss
    if len(preds) == 0:
        return out
    if uses_pckh(layout, preds):
        joints = preds.meta["joints"]
        res = compute_pckh(
            preds.coords, joints[..., :2], joints[..., 2] > 0, preds.meta["headbox"], layout=layout
        )
        rows = dict(pckh_table_rows(res))
        out.update(
            {"main": "pckh", "pckh": res.mean, "pckh@0.1": res.mean_at(0.1), "pckh_columns": rows}
        )
        out["non_finite_keypoints"] = res.non_finite
        return out
    coco = getattr(dataset, "coco", None)
    if coco is not None:
        kpts = np.concatenate([preds.coords, preds.scores[..., None]], axis=-1)
        results = build_results(
            preds.meta["image_id"],
            kpts,
            preds.meta["score"],
            box_areas_from_scale(preds.meta["scale"]),
            kpt_thr=kpt_thr,
            oks_thr=oks_thr,
            sigmas=layout.sigmas,
        )
        # Every GT image of the split counts (HRNet, mmpose): an image where the detector found
        # nobody keeps its people as misses instead of leaving the ground truth.
        image_ids = getattr(dataset, "image_ids", None)
        if image_ids is None:
            image_ids = sorted(set(preds.meta["image_id"].tolist()))
        stats = evaluate_coco(coco, results, image_ids=image_ids, sigmas=layout.sigmas or None)
        out.update({"main": "ap", **{k.lower(): v for k, v in stats.items()}})
        out["non_finite_keypoints"] = count_non_finite(kpts)
        out["coco_results"] = results
    return out
