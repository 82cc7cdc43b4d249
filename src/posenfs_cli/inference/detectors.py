"""Person boxes for top-down prediction: a detections file, OpenCV's HOG people detector, or the
whole image.

Every source answers ``boxes(image_bgr, frame) -> (boxes [M, 4] xyxy float64, scores [M])`` so
the predictor never cares where boxes came from. The HOG detector ships inside OpenCV (no
download), which makes ``posenfs predict`` work on raw photos out of the box; a proper detector's
output can always be fed in through ``--boxes``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from posenfs_cli.data.jsonio import load_detections
from posenfs_cli.errors import PosenfsError
from posenfs_cli.inference.sources import Frame

Boxes = tuple[np.ndarray, np.ndarray]


def _empty() -> Boxes:
    return np.zeros((0, 4), dtype=np.float64), np.zeros((0,), dtype=np.float64)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip xyxy boxes to the image: (clipped boxes, keep mask, how many were changed).

    A box with no area left inside the image (zero/negative size, or entirely outside) is not
    kept: it has no person to crop, and a huge box would otherwise overflow the drawing code.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    c = b.copy()
    c[:, [0, 2]] = c[:, [0, 2]].clip(0.0, float(width))
    c[:, [1, 3]] = c[:, [1, 3]].clip(0.0, float(height))
    keep = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
    changed = int((keep & (c != b).any(axis=1)).sum())
    return c, keep, changed


class BoxSource(Protocol):
    """Anything that gives person boxes for a frame."""

    name: str

    def boxes(self, image_bgr: np.ndarray, frame: Frame) -> Boxes: ...


class WholeImage:
    """The whole image as one box with score 1: for inputs that are already person crops."""

    name = "whole image"

    def boxes(self, image_bgr: np.ndarray, frame: Frame) -> Boxes:
        h, w = image_bgr.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h)]]), np.ones(1)


def load_image_id_mapping(path: str | Path) -> dict[str, int]:
    """file name -> image_id from ``{"name.jpg": id, ...}`` or a COCO file's ``images`` list."""
    p = Path(path)
    if not p.is_file():
        raise PosenfsError(f"image-id mapping {p} does not exist")
    try:
        data: Any = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PosenfsError(f"image-id mapping {p} is not valid JSON: {exc}") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            return {str(im["file_name"]): int(im["id"]) for im in data["images"]}
        if isinstance(data, dict):
            return {str(k): int(v) for k, v in data.items()}
    except (KeyError, TypeError, ValueError):
        pass
    raise PosenfsError(
        f"image-id mapping {p} must be {{file_name: image_id}} or a COCO annotation file with "
        "an 'images' list of {file_name, id}"
    )


class BoxesFile:
    """Boxes from a COCO detection-results JSON, keyed by ``image_id``.

    An image file is matched to its id through an explicit mapping (file name or stem) or, by the
    COCO naming convention, the integer value of its stem (``000000000785.jpg`` -> 785). Video
    and webcam frames use the 0-based frame index as ``image_id``.
    """

    name = "boxes file"

    def __init__(
        self,
        path: str | Path,
        score_thr: float = 0.0,
        mapping: dict[str, int] | str | Path | None = None,
    ):
        self.path = Path(path)
        self.score_thr = float(score_thr)
        every = load_detections(self.path, float("-inf"))  # all persons, to count the dropped
        dets = [d for d in every if d["score"] >= self.score_thr]
        self._below: dict[int, int] = defaultdict(int)  # image_id -> boxes below score_thr
        for det in every:
            if det["score"] < self.score_thr:
                self._below[det["image_id"]] += 1
        if isinstance(mapping, str | Path):
            mapping = load_image_id_mapping(mapping)
        self.mapping: dict[str, int] = dict(mapping or {})
        grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for det in dets:
            grouped[det["image_id"]].append(det)
        self._by_id: dict[int, Boxes] = {}
        for image_id, items in grouped.items():
            xywh = np.array([d["bbox"] for d in items], dtype=np.float64)
            scores = np.array([d["score"] for d in items], dtype=np.float64)
            order = np.argsort(-scores, kind="stable")
            self._by_id[image_id] = xywh_to_xyxy(xywh[order]), scores[order]
        self.num_boxes = len(dets)
        self.matched_frames = 0  # frames whose image_id has boxes in the file
        self.clipped = 0  # boxes clipped to their image
        self.dropped = 0  # boxes with no area inside their image (zero size or outside)
        self.below_frames = 0  # frames whose boxes in the file all scored below score_thr
        self.below_thr = 0  # boxes of those frames (dropped by the threshold)

    def has(self, image_id: int) -> bool:
        return image_id in self._by_id

    def image_id(self, frame: Frame) -> int:
        """The image_id for a frame; raises with a how-to-fix line when a file cannot be matched."""
        if frame.path is None:
            return frame.index
        for key in (frame.path.name, frame.path.stem):
            if key in self.mapping:
                return self.mapping[key]
        try:
            return int(frame.path.stem)
        except ValueError:
            raise PosenfsError(
                f"cannot match image {frame.path.name} to an image_id of {self.path}: name it by "
                "its COCO id (e.g. 000000000785.jpg) or pass --image-ids with a "
                "{file_name: image_id} JSON or the COCO annotation file"
            ) from None

    def boxes(self, image_bgr: np.ndarray, frame: Frame) -> Boxes:
        """The frame's boxes clipped to the image; empty or outside ones dropped (counted)."""
        image_id = self.image_id(frame)
        found = self._by_id.get(image_id)
        if found is None:
            below = self._below.get(image_id, 0)
            if below:
                self.below_frames += 1
                self.below_thr += below
            return _empty()
        self.matched_frames += 1
        h, w = image_bgr.shape[:2]
        boxes, keep, changed = clip_boxes(found[0], w, h)
        self.clipped += changed
        self.dropped += int((~keep).sum())
        return boxes[keep], found[1][keep].copy()


def hog_available() -> bool:
    """OpenCV 4.x has the HOG people detector; OpenCV 5 keeps it only in the contrib build."""
    return hasattr(cv2, "HOGDescriptor") and hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")


class HOGDetector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal-Triggs), with NMS.

    Scores are the SVM margins through a logistic, so 0.5 is the detector's own decision
    boundary and ``score_thr`` behaves like a detector confidence. Small images are upscaled so
    a person fills more than the 64x128 detection window; boxes are shrunk to the person inside
    the window's margin (as OpenCV's people-detect sample does).
    """

    name = "HOG people detector"

    def __init__(
        self,
        score_thr: float = 0.5,
        nms_thr: float = 0.45,
        min_side: int = 400,
        win_stride: int = 8,
        scale: float = 1.05,
    ):
        self.score_thr = float(score_thr)
        self.nms_thr = float(nms_thr)
        self.min_side = int(min_side)
        self.win_stride = int(win_stride)
        self.scale = float(scale)
        if not hog_available():
            raise PosenfsError(
                f"--detector hog needs OpenCV's HOG people detector, which OpenCV "
                f"{cv2.__version__} lacks (OpenCV 5 moved it to the contrib build): "
                "pip install 'opencv-python-headless<5' or opencv-contrib-python-headless, "
                "or pass --boxes"
            )
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector()))

    def boxes(self, image_bgr: np.ndarray, frame: Frame) -> Boxes:
        h, w = image_bgr.shape[:2]
        factor = max(1.0, self.min_side / max(1, min(h, w)))
        img = image_bgr
        if factor > 1.0:
            size = (round(w * factor), round(h * factor))
            img = cv2.resize(image_bgr, size, interpolation=cv2.INTER_LINEAR)
        if img.shape[0] < 128 or img.shape[1] < 64:
            return _empty()
        stride = (self.win_stride, self.win_stride)
        rects, weights = self._hog.detectMultiScale(
            img, winStride=stride, padding=(8, 8), scale=self.scale
        )
        if len(rects) == 0:
            return _empty()
        xywh = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / factor
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).reshape(-1)))
        keep: Sequence[int] | np.ndarray = cv2.dnn.NMSBoxes(
            xywh.tolist(), scores.tolist(), self.score_thr, self.nms_thr
        )
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        if keep.size == 0:
            return _empty()
        xywh, scores = xywh[keep], scores[keep]
        # the detection window has ~15% margin left/right and ~5% top/bottom around the person
        shrink = xywh[:, 2:] * np.array([0.15, 0.05])
        xyxy = np.concatenate([xywh[:, :2] + shrink, xywh[:, :2] + xywh[:, 2:] - shrink], axis=1)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        order = np.argsort(-scores, kind="stable")
        return xyxy[order], scores[order]


DETECTORS = {"hog": HOGDetector}


def make_detector(name: str, score_thr: float) -> HOGDetector:
    try:
        cls = DETECTORS[name.lower()]
    except KeyError:
        raise PosenfsError(
            f"unknown --detector {name!r} (choose from {', '.join(DETECTORS)}; or pass --boxes)"
        ) from None
    return cls(score_thr=score_thr)


__all__ = [
    "BoxSource",
    "BoxesFile",
    "HOGDetector",
    "WholeImage",
    "hog_available",
    "load_image_id_mapping",
    "clip_boxes",
    "make_detector",
    "xywh_to_xyxy",
]
