"""COCO person keypoints through pycocotools.

Layout::

    ROOT/annotations/person_keypoints_<split>.json
    ROOT/images/<split>/<file_name>

Records are the non-crowd person annotations with at least one labelled keypoint and a usable
box (HRNet's cleaning: clipped to the image, width/height > 0). A box becomes center/scale with
the model aspect ratio and ×1.25 padding. For evaluation with detected boxes, a detection
results file (list of {image_id, category_id, bbox, score}) replaces the GT boxes; those records
carry no joints (all weights 0) and the detection score in ``meta['score']``.
Keypoints are used as stored ((x, y) pixels, v 0/1/2); unlabelled ones are (0, 0, 0).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self, Unpack

import numpy as np
from pycocotools.coco import COCO as CocoApi

from posenfs_cli.data.affine import PIXEL_STD
from posenfs_cli.data.base import (
    CropKwargs,
    ImageSource,
    PoseDataset,
    PoseRecords,
)
from posenfs_cli.data.jsonio import (
    expect_file,
    first_file,
    load_detections,
    read_json,
    split_names,
    stack_field,
)
from posenfs_cli.data.layouts import COCO, KeypointLayout
from posenfs_cli.errors import PosenfsError

LAYOUT_HINT = (
    "ROOT/annotations/person_keypoints_<split>.json (COCO keypoints) "
    "and images in ROOT/images/<split>/"
)
# Split names that mean the same files: COCO's own (val2017), and posenfs data synth's (val).
SPLIT_ALIASES = (("train", "train2017"), ("val", "valid", "val2017"))
PERSON = 1


def coco_from_dict(data: dict[str, Any], source: str = "<in-memory>") -> CocoApi:
    """A pycocotools COCO object from an already-loaded annotation dict (quietly)."""
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise PosenfsError(
            f"{source}: not a COCO annotation file (needs 'images' and 'annotations')"
        )
    data.setdefault("categories", [])
    coco = CocoApi()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco.createIndex()
        except (KeyError, TypeError) as exc:
            raise PosenfsError(f"{source}: malformed COCO annotation file ({exc!r})") from None
    return coco


def load_coco(ann_file: str | Path) -> CocoApi:
    """COCO object for a keypoint annotation JSON, with one-line errors."""
    path = Path(ann_file)
    expect_file(path, "COCO annotation file", LAYOUT_HINT)
    return coco_from_dict(read_json(path), str(path))


def boxes_to_center_scale(
    boxes: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``affine.box_to_center_scale``: xywh [N, 4] -> centers, scales [N, 2]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    center = b[:, :2] + b[:, 2:] * 0.5
    w, h = b[:, 2].copy(), b[:, 3].copy()
    wide = w > aspect_ratio * h
    h = np.where(wide, w / aspect_ratio, h)
    w = np.where(~wide & (w < aspect_ratio * h), h * aspect_ratio, w)
    scale = np.stack([w, h], axis=1) / PIXEL_STD * padding
    return center.astype(np.float32), scale.astype(np.float32)


def clean_boxes(boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """HRNet's box cleaning: clip xywh boxes to the image; invalid ones get w or h <= 0."""
    x, y, w, h = np.asarray(boxes, dtype=np.float64).T
    x1 = np.maximum(0.0, x)
    y1 = np.maximum(0.0, y)
    x2 = np.minimum(widths - 1.0, x1 + np.maximum(0.0, w - 1.0))
    y2 = np.minimum(heights - 1.0, y1 + np.maximum(0.0, h - 1.0))
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def _person_category(coco: CocoApi, source: str, layout: KeypointLayout, notes: list[str]) -> int:
    """The person category id; a category listing more keypoint names than the layout is
    accepted (the annotation values are checked next) with a note."""
    cats = coco.dataset.get("categories") or []
    person = [c for c in cats if isinstance(c, dict) and c.get("name") == "person"]
    cat = person[0] if person else None
    names = cat.get("keypoints") if cat is not None else None
    k, lname = layout.num_joints, layout.name.upper()
    if isinstance(names, list) and len(names) != k:
        if len(names) < k:
            raise PosenfsError(
                f"{source}: the person category lists {len(names)} keypoint names, "
                f"fewer than the {k} of the {lname} layout"
            )
        notes.append(
            f"{source}: the person category lists {len(names)} keypoint names; using the first "
            f"{k} (the annotations carry {k} × [x, y, v] values, the {lname} layout)"
        )
    return int(cat["id"]) if cat is not None and "id" in cat else PERSON


def _check_file_names(coco: CocoApi, source: str, image_ids: np.ndarray) -> None:
    for i in dict.fromkeys(image_ids.tolist()):
        name = coco.imgs[i].get("file_name")
        if not isinstance(name, str) or not name:
            raise PosenfsError(
                f"{source}: image record id {i} has no 'file_name' (each entry of 'images' "
                "needs {id, file_name, width, height})"
            )


def fill_missing_areas(coco: CocoApi, source: str, notes: list[str]) -> int:
    """Give annotations without ``area`` the box area w·h (as other toolboxes do), in place.

    COCOeval needs ``area`` for OKS, and video datasets often leave it out. Returns how many
    were filled (and adds a note).
    """
    filled = 0
    for a in coco.dataset.get("annotations", []):
        if isinstance(a, dict) and a.get("area") is None:
            box = a.get("bbox")
            if isinstance(box, list) and len(box) == 4:
                try:
                    a["area"] = max(0.0, float(box[2])) * max(0.0, float(box[3]))
                except (TypeError, ValueError):
                    continue
                filled += 1
    if filled:
        notes.append(f"{source}: {filled} annotation(s) have no 'area'; using the box area w·h")
    return filled


def parse_coco_records(
    coco: CocoApi,
    source: str,
    aspect_ratio: float,
    layout: KeypointLayout = COCO,
    notes: list[str] | None = None,
) -> PoseRecords:
    """GT person records, validated (keypoint count, NaN) with the annotation index in errors.

    ``notes`` collects one-line remarks for the user (extra keypoint names, filled areas).
    When the filters leave no record, the error names each filter and what it removed.
    """
    notes = notes if notes is not None else []
    k = layout.num_joints
    cat = _person_category(coco, source, layout, notes)
    fill_missing_areas(coco, source, notes)
    anns_all = coco.dataset["annotations"]
    idx = [i for i, a in enumerate(anns_all) if a.get("category_id") == cat]
    anns = [anns_all[i] for i in idx]
    n = len(anns)
    lens = np.fromiter(
        (len(a["keypoints"]) if isinstance(a.get("keypoints"), list) else -1 for a in anns),
        dtype=np.int64,
        count=n,
    )
    if (lens != 3 * k).any():
        j = int(np.flatnonzero(lens != 3 * k)[0])
        found = max(int(lens[j]), 0)
        per = f" ({found // 3} keypoints)" if found % 3 == 0 and found else ""
        raise PosenfsError(
            f"{source}: annotation {idx[j]} (id {anns[j].get('id')}) has {found} "
            f"keypoint values{per}, expected {3 * k} ({k} × [x, y, v], "
            f"{layout.name.upper()} layout)"
        )
    kps = stack_field(
        [a["keypoints"] for a in anns],
        (3 * k,),
        source,
        "keypoints",
        f"{3 * k} numbers",
        idx,
        "annotation",
    ).reshape(n, k, 3)
    boxes = stack_field(
        [a.get("bbox") for a in anns], (4,), source, "bbox", "[x, y, w, h]", idx, "annotation"
    ).reshape(n, 4)
    missing_img = [j for j, a in enumerate(anns) if a.get("image_id") not in coco.imgs]
    if missing_img:
        j = missing_img[0]
        raise PosenfsError(
            f"{source}: annotation {idx[j]} refers to image_id {anns[j].get('image_id')}, "
            "which is not in 'images'"
        )
    image_ids = np.array([a["image_id"] for a in anns], dtype=np.int64)
    wh = np.array(
        [[coco.imgs[i].get("width", 0), coco.imgs[i].get("height", 0)] for i in image_ids],
        dtype=np.float64,
    ).reshape(n, 2)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    area = np.array([float(a.get("area") or 0.0) for a in anns], dtype=np.float64)
    clean = clean_boxes(boxes, wh[:, 0], wh[:, 1])
    cw, ch = clean[:, 2], clean[:, 3]
    # HRNet's filters, in order; a record is counted under the first one that removes it. A
    # box clipped to a point (w = h = 0) is dropped too: it has no scale to crop with.
    filters = (
        ("iscrowd", crowd),
        ("area <= 0", ~(area > 0)),
        ("box outside the image or empty", (cw < 0) | (ch < 0) | ((cw <= 0) & (ch <= 0))),
        ("no labelled keypoint", ~(kps[:, :, 2].max(axis=1, initial=0) > 0)),
    )
    keep = np.ones(n, dtype=bool)
    removed: list[str] = []
    for name, drop in filters:
        hit = keep & drop
        if hit.any():
            removed.append(f"{name}: {int(hit.sum())}")
        keep &= ~drop
    if n and not keep.any():
        raise PosenfsError(
            f"{source}: all {n} person annotation(s) were filtered out ({'; '.join(removed)})"
        )
    # Order by image (as listed in the file), then annotation order: stable and HRNet-like.
    order_of_image = {img_id: r for r, img_id in enumerate(coco.imgs)}
    sel = np.flatnonzero(keep)
    sel = sel[np.argsort([order_of_image[i] for i in image_ids[sel]], kind="stable")]
    _check_file_names(coco, source, image_ids[sel])
    centers, scales = boxes_to_center_scale(clean[sel], aspect_ratio)
    jts = kps[sel]
    labelled = jts[:, :, 2] > 0
    jts[:, :, :2] = np.where(labelled[..., None], jts[:, :, :2], 0.0)
    jts[:, :, 2] = np.where(labelled, jts[:, :, 2], 0.0)
    return PoseRecords(
        images=[coco.imgs[i]["file_name"] for i in image_ids[sel]],
        image_ids=image_ids[sel],
        centers=centers,
        scales=scales,
        joints=jts,
        headboxes=np.zeros((len(sel), 4)),
        areas=area[sel],
        scores=np.ones(len(sel)),
    )


def detection_records(
    detections: Sequence[dict[str, Any]],
    coco: CocoApi,
    aspect_ratio: float,
    layout: KeypointLayout = COCO,
    notes: list[str] | None = None,
    source: str = "detections",
) -> PoseRecords:
    """Records from person detections (already filtered by score) for images in ``coco``.

    Boxes of zero width or height cannot be cropped: they are skipped and counted in ``notes``.
    Boxes reaching outside the image are kept as given (HRNet and mmpose do not clip them, so
    the numbers stay comparable) and counted.
    """
    notes = notes if notes is not None else []
    in_gt = [d for d in detections if d["image_id"] in coco.imgs]
    if len(in_gt) < len(detections):
        notes.append(
            f"{source}: {len(detections) - len(in_gt)} detection(s) name an image_id that is "
            "not in the annotation file; left out"
        )
    dets = [d for d in in_gt if d["bbox"][2] > 0 and d["bbox"][3] > 0]
    if len(dets) < len(in_gt):
        notes.append(f"{source}: skipped {len(in_gt) - len(dets)} detection(s) of zero size")
    n = len(dets)
    boxes = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(n, 4)
    ids = np.array([d["image_id"] for d in dets], dtype=np.int64)
    _check_file_names(coco, source, ids)
    wh = np.array(
        [[coco.imgs[i].get("width") or np.inf, coco.imgs[i].get("height") or np.inf] for i in ids],
        dtype=np.float64,
    ).reshape(n, 2)
    outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, :2] + boxes[:, 2:] > wh).any(1)
    if outside.any():
        notes.append(
            f"{source}: {int(outside.sum())} detection box(es) reach outside their image "
            "(used as given, like HRNet/mmpose)"
        )
    centers, scales = boxes_to_center_scale(boxes, aspect_ratio)
    return PoseRecords(
        images=[coco.imgs[i]["file_name"] for i in ids],
        image_ids=ids,
        centers=centers,
        scales=scales,
        joints=np.zeros((n, layout.num_joints, 3)),
        headboxes=np.zeros((n, 4)),
        areas=boxes[:, 2] * boxes[:, 3],
        scores=np.array([d["score"] for d in dets], dtype=np.float64),
    )


class COCODataset(PoseDataset):
    """COCO-layout person crops; ``coco`` is the GT COCO object, ``image_ids`` its images
    (all of them count in COCO AP); ``notes`` holds remarks about the file for the user."""

    label = "COCO"
    layout_hint = LAYOUT_HINT

    def __init__(
        self,
        coco: CocoApi,
        source: ImageSource,
        *,
        ann_name: str,
        detections: Sequence[dict[str, Any]] | None = None,
        layout: KeypointLayout = COCO,
        **crop: Unpack[CropKwargs],
    ) -> None:
        input_size = crop.setdefault("input_size", (256, 192))
        aspect = float(input_size[1]) / float(input_size[0])
        self.notes: list[str] = []
        if detections is None:
            records = parse_coco_records(coco, ann_name, aspect, layout, self.notes)
        else:
            fill_missing_areas(coco, ann_name, self.notes)  # COCOeval's OKS needs GT areas
            records = detection_records(detections, coco, aspect, layout, self.notes)
        self.coco = coco
        self.image_ids = sorted(coco.getImgIds())
        self.uses_detections = detections is not None
        super().__init__(records, layout, source, name=ann_name, **crop)

    @classmethod
    def open_files(
        cls,
        ann_file: Path,
        images: ImageSource,
        detections_file: str | Path | None = None,
        box_threshold: float = 0.0,
        **kwargs: Any,
    ) -> Self:
        """Person boxes from the GT, or from ``detections_file`` (a COCO results JSON) scored
        at least ``box_threshold``."""
        coco = load_coco(ann_file)
        dets = None
        if detections_file is not None:
            dets = load_detections(detections_file, box_threshold)
        return cls(coco, images, ann_name=str(ann_file), detections=dets, **kwargs)

    @classmethod
    def from_root(cls, root: str | Path, split: str, **kwargs: Any) -> COCODataset:
        """From ``ROOT/annotations/person_keypoints_<split>.json`` + ``ROOT/images/<split>``."""
        ann, image_dir = coco_paths(root, split)
        return cls.from_files(ann, image_dir, **kwargs)


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) for a COCO-layout root; 'val'/'valid'/'val2017' alias."""
    base = Path(root)
    expect_file(base, "data root", LAYOUT_HINT)
    expect_file(base / "annotations", "COCO annotation folder", LAYOUT_HINT)
    names = split_names(split, SPLIT_ALIASES)
    ann = first_file(base / "annotations" / f"person_keypoints_{n}.json" for n in names)
    expect_file(ann, "COCO annotation file", LAYOUT_HINT)
    image_dir = base / "images" / ann.stem.removeprefix("person_keypoints_")
    expect_file(image_dir, "COCO image folder", LAYOUT_HINT)
    return ann, image_dir


__all__ = [
    "LAYOUT_HINT",
    "COCODataset",
    "boxes_to_center_scale",
    "clean_boxes",
    "coco_from_dict",
    "coco_paths",
    "detection_records",
    "fill_missing_areas",
    "load_coco",
    "parse_coco_records",
]
