"""MPII in the common JSON layout (HRNet/SimpleBaseline's ``annot/*.json``).

Layout::

    ROOT/annot/train.json, ROOT/annot/valid.json   one record per person:
        {image, center [x, y], scale, joints 16×[x, y], joints_vis 16×0/1, [headbox]}
    ROOT/annot/gt_valid.mat                          optional: headboxes_src [2, 2, N]
    ROOT/images/<image>

File coordinates are MATLAB's 1-based pixels, and ``center``/``scale`` are MPII's rough person
position and height/200. At load (as HRNet): center_y += 15·scale, scale ×= 1.25, then
center, joints and head boxes -1 → 0-based. Unlabelled joints (joints_vis 0, e.g. [-1, -1])
are stored as (0, 0, 0). Head boxes come from ``gt_valid.mat`` (index-aligned with the
records) or a per-record ``headbox`` [x1, y1, x2, y2] (1-based like the joints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self, Unpack

import numpy as np

from posenfs_cli.data.base import (
    CropKwargs,
    ImageSource,
    PoseDataset,
    PoseRecords,
    image_ids_by_first_use,
)
from posenfs_cli.data.jsonio import expect_file, first_file, read_json, split_names, stack_field
from posenfs_cli.data.layouts import MPII, KeypointLayout
from posenfs_cli.errors import PosenfsError

LAYOUT_HINT = (
    "ROOT/annot/{train,valid}.json with records {image, center, scale, joints, joints_vis} "
    "and images in ROOT/images/"
)
# The HRNet release names the validation split "valid"; "val" finds it too.
SPLIT_ALIASES = (("valid", "val"),)


def parse_mpii_records(raw: Any, source: str, layout: KeypointLayout = MPII) -> PoseRecords:
    """Validate and convert common-layout MPII records (1-based) into 0-based PoseRecords."""
    if not isinstance(raw, list):
        raise PosenfsError(
            f"{source}: expected a JSON list of person records, found {type(raw).__name__}"
        )
    k = layout.num_joints
    n = len(raw)
    not_dict = [i for i, r in enumerate(raw) if not isinstance(r, dict)]
    if not_dict:
        raise PosenfsError(f"{source}: record {not_dict[0]} is not a JSON object")
    for key in ("image", "center", "scale", "joints", "joints_vis"):
        lacking = [i for i, r in enumerate(raw) if key not in r]
        if lacking:
            raise PosenfsError(f"{source}: record {lacking[0]} has no {key!r}")
    bad_img = [i for i, r in enumerate(raw) if not isinstance(r["image"], str)]
    if bad_img:
        raise PosenfsError(f"{source}: record {bad_img[0]} has a non-string 'image'")
    lens = np.fromiter(
        (len(r["joints"]) if isinstance(r["joints"], list) else -1 for r in raw),
        dtype=np.int64,
        count=n,
    )
    if (lens != k).any():
        i = int(np.flatnonzero(lens != k)[0])
        raise PosenfsError(
            f"{source}: record {i} has {lens[i]} joints, expected {k} ({layout.name} layout)"
        )
    joints = stack_field([r["joints"] for r in raw], (k, 2), source, "joints", f"[{k}, 2]")
    vis = stack_field([r["joints_vis"] for r in raw], (k,), source, "joints_vis", f"[{k}]")
    center = stack_field([r["center"] for r in raw], (2,), source, "center", "[x, y]")
    scale = stack_field([r["scale"] for r in raw], (), source, "scale", "a number")
    if n and (scale <= 0).any():
        i = int(np.flatnonzero(scale <= 0)[0])
        raise PosenfsError(f"{source}: record {i} has scale {scale[i]}, expected > 0")

    has_c = center[:, 0] != -1
    center[has_c, 1] += 15.0 * scale[has_c]
    scale = np.where(has_c, scale * 1.25, scale)
    center -= 1.0
    labelled = vis > 0
    xy = np.where(labelled[..., None], joints - 1.0, 0.0)
    j3 = np.concatenate([xy, labelled[..., None].astype(np.float64)], axis=2)

    headboxes = np.zeros((n, 4), dtype=np.float64)
    with_hb = [i for i, r in enumerate(raw) if r.get("headbox") is not None]
    if with_hb:
        hb = stack_field(
            [raw[i]["headbox"] for i in with_hb],
            (4,),
            source,
            "headbox",
            "[x1, y1, x2, y2]",
            indices=with_hb,
        )
        headboxes[with_hb] = hb - 1.0
    images = [r["image"] for r in raw]
    return PoseRecords(
        images=images,
        image_ids=image_ids_by_first_use(images) if n else np.zeros(0),
        centers=center,
        scales=np.stack([scale, scale], axis=1) if n else np.zeros((0, 2)),
        joints=j3 if n else np.zeros((0, k, 3)),
        headboxes=headboxes,
        areas=np.zeros(n),
        scores=np.ones(n),
    )


def load_headboxes_mat(path: Path) -> np.ndarray:
    """``gt_valid.mat``'s ``headboxes_src`` [2, 2, N] (1-based) -> [N, 4] 0-based x1 y1 x2 y2."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for bad files
        raise PosenfsError(f"cannot read head boxes from {path}: {exc}") from None
    if "headboxes_src" not in mat:
        raise PosenfsError(f"{path} has no 'headboxes_src' (MPII gt_valid.mat layout)")
    hb = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if hb.ndim != 3 or hb.shape[:2] != (2, 2):
        raise PosenfsError(f"{path}: headboxes_src has shape {hb.shape}, expected [2, 2, N]")
    return np.concatenate([hb[0].T, hb[1].T], axis=1) - 1.0


def load_headboxes(path: str | Path) -> np.ndarray:
    """Head boxes [N, 4] (0-based x1 y1 x2 y2) from ``gt_valid.mat`` or a JSON file.

    The JSON form is a list with one ``[x1, y1, x2, y2]`` per record (1-based pixels, as the
    MPII annotations), or an object holding that list under ``headboxes``.
    """
    p = Path(path)
    if not p.is_file():
        raise PosenfsError(f"head-box file not found: {p} (give gt_valid.mat or a JSON list)")
    if p.suffix.lower() != ".json":
        return load_headboxes_mat(p)
    data = read_json(p)
    if isinstance(data, dict):
        data = data.get("headboxes")
    if not isinstance(data, list):
        raise PosenfsError(
            f"{p}: expected a JSON list of [x1, y1, x2, y2] head boxes (or {{'headboxes': [...]}})"
        )
    return stack_field(data, (4,), str(p), "headbox", "[x1, y1, x2, y2]") - 1.0


class MPIIDataset(PoseDataset):
    """MPII-layout person crops. ``headboxes`` is None when no head box is known at all."""

    label = "MPII"
    layout_hint = LAYOUT_HINT

    def __init__(
        self,
        raw: Any,
        source: ImageSource,
        *,
        ann_name: str,
        headboxes: np.ndarray | None = None,
        layout: KeypointLayout = MPII,
        **crop: Unpack[CropKwargs],
    ) -> None:
        crop.setdefault("input_size", (256, 256))
        records = parse_mpii_records(raw, ann_name, layout)
        has_any = any(isinstance(r, dict) and r.get("headbox") is not None for r in raw)
        if headboxes is not None:
            if len(headboxes) != len(records):
                raise PosenfsError(
                    f"{ann_name}: {len(records)} records but {len(headboxes)} head boxes "
                    "(the head-box file must be index-aligned with the records)"
                )
            records.headboxes = np.asarray(headboxes, dtype=np.float32)
            has_any = True
        super().__init__(records, layout, source, name=ann_name, **crop)
        self._has_headboxes = has_any

    @classmethod
    def open_files(
        cls,
        ann_file: Path,
        images: ImageSource,
        *,
        headbox_file: str | Path | None = None,
        **kwargs: Any,
    ) -> Self:
        """Head boxes from ``headbox_file`` (``gt_*.mat`` or JSON) when given; else from the
        records' own ``headbox`` fields, where they have them."""
        hb = load_headboxes(headbox_file) if headbox_file is not None else None
        return cls(read_json(ann_file), images, ann_name=str(ann_file), headboxes=hb, **kwargs)

    @classmethod
    def from_root(cls, root: str | Path, split: str, **kwargs: Any) -> MPIIDataset:
        """From ``ROOT/annot/<split>.json`` + ``ROOT/images``; 'val' and 'valid' are aliases.

        ``ROOT/annot/gt_<split>.mat`` supplies head boxes when present.
        """
        ann, image_dir = mpii_paths(root, split)
        mat = ann.parent / f"gt_{ann.stem}.mat"
        return cls.from_files(ann, image_dir, headbox_file=mat if mat.is_file() else None, **kwargs)

    @property
    def headboxes(self) -> np.ndarray | None:
        return self.records.headboxes if self._has_headboxes else None

    @property
    def joints_gt(self) -> np.ndarray:
        """[N, K, 2] 0-based ground-truth joints (zeros where unlabelled)."""
        return self.records.joints[:, :, :2]

    @property
    def visibility(self) -> np.ndarray:
        """[N, K] bool: joint labelled."""
        return self.records.joints[:, :, 2] > 0


def mpii_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) for an MPII-layout root, with clear errors."""
    base = Path(root)
    expect_file(base, "data root", LAYOUT_HINT)
    expect_file(base / "annot", "MPII annotation folder", LAYOUT_HINT)
    ann = first_file(base / "annot" / f"{n}.json" for n in split_names(split, SPLIT_ALIASES))
    expect_file(ann, "MPII annotation file", LAYOUT_HINT)
    expect_file(base / "images", "MPII image folder", LAYOUT_HINT)
    return ann, base / "images"


__all__ = [
    "LAYOUT_HINT",
    "MPIIDataset",
    "load_headboxes",
    "load_headboxes_mat",
    "mpii_paths",
    "parse_mpii_records",
    "read_json",
    "stack_field",
]
