"""Top-down pose prediction: person boxes -> affine crops -> one batched forward -> keypoints.

The crop, normalisation and decoding are exactly those of training and evaluation (box ->
center/scale with the model aspect ratio and x1.25 padding, ``cv2.warpAffine`` bilinear, RGB
ImageNet statistics, and the keypoint codec's decode: argmax + quarter offset, inverse affine), so
a checkpoint predicts here what it scores in ``posenfs eval``. Crops of many boxes and many
images share forwards (``predict_many``), which is what makes folders and videos fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from posenfs_cli.data.affine import box_to_center_scale, get_affine_transform
from posenfs_cli.data.codec import HeatmapCodec, model_heatmaps
from posenfs_cli.data.layouts import KeypointLayout, get_layout
from posenfs_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD, warp_crop
from posenfs_cli.device import use_channels_last
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.fold import inference_model

BOX_PADDING = 1.25


def _num(v: Any, digits: int) -> float | None:
    """A rounded float, or None for NaN/inf (JSON has no NaN; readers choke on a bare NaN)."""
    f = float(v)
    return round(f, digits) if math.isfinite(f) else None


@dataclass
class Instance:
    """One person: box (xyxy, image px), its score, keypoints [K, 2] in image px, scores [K].

    ``crop_area`` is the area of the padded crop box (what COCO rescoring/OKS-NMS use) and
    ``image_id`` the COCO image id when the box source knows it.
    """

    bbox: np.ndarray
    bbox_score: float
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    crop_area: float = 0.0
    image_id: int | None = None

    @property
    def non_finite(self) -> int:
        """Keypoints whose position or score is NaN/inf (written as null)."""
        kp = np.concatenate(
            [np.asarray(self.keypoints, np.float64), np.asarray(self.keypoint_scores)[:, None]], 1
        )
        return int((~np.isfinite(kp).all(axis=1)).sum())

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (plain Python floats; NaN/inf become null; ``image_id`` if known)."""
        out: dict[str, Any] = {} if self.image_id is None else {"image_id": int(self.image_id)}
        out.update(
            {
                "bbox": [_num(v, 2) for v in self.bbox],
                "bbox_score": _num(self.bbox_score, 5),
                "keypoints": [[_num(x, 2), _num(y, 2)] for x, y in self.keypoints],
                "keypoint_scores": [_num(s, 5) for s in self.keypoint_scores],
            }
        )
        return out


@dataclass
class CropBatch:
    """Crops of a set of boxes with what is needed to map heatmaps back to the image."""

    crops: np.ndarray  # [M, H, W, 3] uint8, model channel order
    centers: np.ndarray  # [M, 2]
    scales: np.ndarray  # [M, 2] (units of 200 px)


def _as_boxes(boxes: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be [M, 4] (x1, y1, x2, y2), got shape {b.shape}")
    return b


class Predictor:
    """Keypoints for person boxes with a pose model (flip test and batching built in).

    ``input_size`` is (height, width) of the model input; heatmap size is read from the output.
    ``channels_last`` ("auto", True or False) runs convolutions in channels_last, 1.5x faster on
    CPU. The model runs as a folded eval-mode copy (``models.fold``; the argument is untouched).
    ``compile``: ``--compile auto|on|off`` (see ``device.resolve_compile``).
    """

    def __init__(
        self,
        model: nn.Module,
        layout: KeypointLayout,
        input_size: Sequence[int],
        device: torch.device | str = "cpu",
        flip: bool = True,
        flip_shift: bool = True,
        batch_size: int = 32,
        channels_last: bool | str = "auto",
        input_format: str = "rgb",
        compile: str | bool = "off",
    ):
        if batch_size < 1:
            raise PosenfsError("batch size must be >= 1")
        if input_format not in ("rgb", "bgr"):
            raise PosenfsError(f"input_format must be rgb or bgr, got {input_format!r}")
        self.device = torch.device(device)
        self.layout = layout
        self.input_h, self.input_w = int(input_size[0]), int(input_size[1])
        self.flip = flip
        self.flip_shift = flip_shift
        self.batch_size = int(batch_size)
        self.input_format = input_format
        self.keypoint_score_threshold = 0.2
        self.oks_nms_threshold = 0.9
        # a folded copy (eval BN and α/β baked into the convs); the caller's model is untouched
        self.model: nn.Module = inference_model(
            model, self.device, use_channels_last(self.device, channels_last), compile
        )
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0

    def normalize(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 crops [M, h, w, 3] -> the network's input [M, 3, h, w] on the device."""
        x = torch.from_numpy(crops).to(self.device).permute(0, 3, 1, 2).float()
        return (x - self._mean) / self._std

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: torch.device | str = "cpu", **kwargs: Any
    ) -> Predictor:
        """Rebuild the checkpoint's model and take layout, input size and format from it."""
        from posenfs_cli.engine.checkpoint import build_from_checkpoint

        model, ckpt = build_from_checkpoint(path, device)
        kwargs.setdefault("input_format", ckpt.input_format)
        predictor = cls(
            model,
            get_layout(ckpt.recipe.data.keypoints),
            list(ckpt.recipe.data.input_size),
            device,
            **kwargs,
        )
        # the checkpoint's COCO rescoring settings, so --coco-results scores as `eval` does
        predictor.keypoint_score_threshold = float(ckpt.recipe.eval.keypoint_score_threshold)
        predictor.oks_nms_threshold = float(ckpt.recipe.eval.oks_nms_threshold)
        return predictor

    @property
    def aspect_ratio(self) -> float:
        return self.input_w / self.input_h

    def crop(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> CropBatch:
        """Crop every box (padded to the model aspect, x1.25) to the model input size."""
        boxes = _as_boxes(boxes_xyxy)
        m = boxes.shape[0]
        crops = np.zeros((m, self.input_h, self.input_w, 3), dtype=np.uint8)
        centers = np.zeros((m, 2), dtype=np.float64)
        scales = np.zeros((m, 2), dtype=np.float64)
        wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)  # a degenerate box still gets a crop
        size = (self.input_w, self.input_h)
        for i in range(m):
            c, s = box_to_center_scale(
                boxes[i, 0], boxes[i, 1], wh[i, 0], wh[i, 1], self.aspect_ratio, BOX_PADDING
            )
            crops[i] = warp_crop(image_bgr, get_affine_transform(c, s, 0.0, size), size)
            centers[i], scales[i] = c, s
        if self.input_format == "rgb":
            crops = crops[..., ::-1]
        return CropBatch(np.ascontiguousarray(crops), centers, scales)

    @torch.inference_mode()
    def heatmaps(self, crops: np.ndarray) -> torch.Tensor:
        """Heatmaps [M, K, h, w] (flip-tested when enabled) for uint8 crops, in chunks."""
        outs = []
        for start in range(0, crops.shape[0], self.batch_size):
            chunk = torch.from_numpy(crops[start : start + self.batch_size]).to(self.device)
            x = (chunk.permute(0, 3, 1, 2).float() - self._mean) / self._std
            hm = model_heatmaps(self.model, x, self.layout.flip_pairs, self.flip, self.flip_shift)
            outs.append(hm.float())
        return torch.cat(outs)

    def _decode(self, batch: CropBatch) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints [M, K, 2] image px, scores [M, K]) for a crop batch."""
        hm = self.heatmaps(batch.crops)
        return self.codec(hm).decode_to_image(hm, batch.centers, batch.scales)

    def codec(self, maps: torch.Tensor) -> HeatmapCodec:
        """The codec of this model's input size and the map size ``maps`` [..., h, w] shows."""
        return HeatmapCodec.for_maps((self.input_h, self.input_w), maps)

    def predict_many(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        box_scores: Sequence[np.ndarray] | None = None,
    ) -> list[list[Instance]]:
        """Instances per image, with the crops of all images sharing forward batches."""
        if len(images) != len(boxes) or (box_scores is not None and len(box_scores) != len(boxes)):
            raise ValueError("images, boxes and box_scores must have the same length")
        per_image = [_as_boxes(b) for b in boxes]
        counts = [b.shape[0] for b in per_image]
        if sum(counts) == 0:
            return [[] for _ in images]
        batches = [self.crop(img, b) for img, b in zip(images, per_image, strict=True) if len(b)]
        merged = CropBatch(
            np.concatenate([b.crops for b in batches]),
            np.concatenate([b.centers for b in batches]),
            np.concatenate([b.scales for b in batches]),
        )
        xy, scores = self._decode(merged)
        all_boxes = np.concatenate(per_image)
        if box_scores is None:
            all_scores = np.ones(len(all_boxes))
        else:
            all_scores = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in box_scores])
            if all_scores.shape[0] != all_boxes.shape[0]:
                raise ValueError("box_scores must give one score per box")
        areas = merged.scales[:, 0] * merged.scales[:, 1] * 200.0**2
        instances = [
            Instance(all_boxes[i], float(all_scores[i]), xy[i], scores[i], float(areas[i]))
            for i in range(all_boxes.shape[0])
        ]
        out: list[list[Instance]] = []
        start = 0
        for n in counts:
            out.append(instances[start : start + n])
            start += n
        return out

    def predict_boxes(
        self,
        image_bgr: np.ndarray,
        boxes_xyxy: np.ndarray,
        box_scores: np.ndarray | None = None,
    ) -> list[Instance]:
        """Instances for the boxes of one BGR image (all boxes in batched forwards)."""
        return self.predict_many(
            [image_bgr], [boxes_xyxy], [box_scores] if box_scores is not None else None
        )[0]


def coco_results(instances: Sequence[Instance], predictor: Predictor) -> list[dict[str, Any]]:
    """One COCO keypoint-results list for instances with an ``image_id``: flat [x, y, s] × K,
    category 1, rescored and OKS-NMS'd per image exactly as ``posenfs eval`` does."""
    from posenfs_cli.evaluation.coco_eval import build_results

    k = predictor.layout.num_joints
    kept = [i for i in instances if i.image_id is not None]
    if not kept:
        return []
    kpts = np.stack(
        [np.concatenate([i.keypoints, np.asarray(i.keypoint_scores)[:, None]], 1) for i in kept]
    ).reshape(len(kept), k, 3)
    return build_results(
        cast("list[int]", [i.image_id for i in kept]),  # kept: image_id is not None
        kpts,
        [i.bbox_score for i in kept],
        [i.crop_area for i in kept],
        kpt_thr=predictor.keypoint_score_threshold,
        oks_thr=predictor.oks_nms_threshold,
        sigmas=predictor.layout.sigmas,
    )


__all__ = ["BOX_PADDING", "CropBatch", "Instance", "Predictor", "coco_results"]
