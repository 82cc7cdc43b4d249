"""Writing a synthetic dataset to disk in the real MPII or COCO layout."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posenfs_cli.data.synthetic.annotations import coco_categories, coco_entries, mpii_records
from posenfs_cli.data.synthetic.core import SynthSplit
from posenfs_cli.data.synthetic.render import generate_image
from posenfs_cli.errors import PosenfsError, folder_out


@dataclass
class WriteSummary:
    out: Path
    style: str
    images: dict[str, int]
    persons: dict[str, int]
    files: list[Path]


@dataclass(frozen=True)
class SynthPlan:
    """A dataset to write: checked in full by :func:`plan_synthetic` before anything exists."""

    out: Path
    style: str
    splits: list[SynthSplit]
    quality: int


def plan_synthetic(
    out: str | Path,
    style: str,
    train_images: int,
    val_images: int,
    seed: int,
    size: int = 256,
    max_people: int = 1,
    quality: int = 95,
) -> SynthPlan:
    """The train and val splits to write to ``out``, every argument checked."""
    folder_out(out)
    if not 1 <= quality <= 100:
        raise PosenfsError(f"JPEG quality must be in 1..100, got {quality}")
    splits = [
        SynthSplit(style, "train", seed, train_images, size, max_people),
        SynthSplit(style, "val", seed, val_images, size, max_people),
    ]
    return SynthPlan(Path(out), style, splits, quality)


def write_synthetic(plan: SynthPlan, progress: Callable[[int], None] | None = None) -> WriteSummary:
    """Write a synthetic dataset in the real MPII or COCO layout (JSON + JPEGs + head boxes).

    MPII: ``annot/{train,valid}.json``, ``annot/gt_valid.mat``, ``images/*.jpg``.
    COCO: ``annotations/person_keypoints_{train,val}.json``, ``images/{train,val}/*.jpg``.
    ``progress`` is called with the number of images just written.
    """
    root, style, splits = plan.out, plan.style, plan.splits
    params = [cv2.IMWRITE_JPEG_QUALITY, int(plan.quality)]
    files: list[Path] = []
    images: dict[str, int] = {}
    persons: dict[str, int] = {}
    for sp in splits:
        img_dir = root / "images" if style == "mpii" else root / "images" / sp.split
        img_dir.mkdir(parents=True, exist_ok=True)
        mpii_recs: list[dict[str, Any]] = []
        coco_imgs: list[dict[str, Any]] = []
        coco_anns: list[dict[str, Any]] = []
        for i in range(sp.num_images):
            img, scene = generate_image(sp, i)
            path = img_dir / sp.image_name(i)
            if not cv2.imwrite(str(path), img, params):
                raise PosenfsError(f"cannot write {path}")
            if style == "mpii":
                mpii_recs.extend(mpii_records(sp, i, scene))
            else:
                entry, anns = coco_entries(sp, i, scene, len(coco_anns) + 1)
                coco_imgs.append(entry)
                coco_anns.extend(anns)
            if progress is not None:
                progress(1)
        images[sp.split] = sp.num_images
        if style == "mpii":
            name = "train" if sp.split == "train" else "valid"
            ann = root / "annot" / f"{name}.json"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text(json.dumps(mpii_recs, separators=(",", ":")))
            files.append(ann)
            persons[sp.split] = len(mpii_recs)
            if sp.split == "val":
                files.append(write_gt_mat(root / "annot" / "gt_valid.mat", mpii_recs))
        else:
            data = {"images": coco_imgs, "annotations": coco_anns, "categories": coco_categories()}
            ann = root / "annotations" / f"person_keypoints_{sp.split}.json"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text(json.dumps(data, separators=(",", ":")))
            files.append(ann)
            persons[sp.split] = len(coco_anns)
        files.append(img_dir)
    return WriteSummary(root, style, images, persons, files)


def write_gt_mat(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """MPII-style ``gt_valid.mat`` (1-based, as the official files): head boxes, GT, missing."""
    from scipy.io import savemat

    n = len(records)
    hb = np.array([r["headbox"] for r in records], dtype=np.float64).reshape(n, 4)
    pos = np.array([r["joints"] for r in records], dtype=np.float64).reshape(n, 16, 2)
    vis = np.array([r["joints_vis"] for r in records], dtype=np.float64).reshape(n, 16)
    savemat(
        str(path),
        {
            "headboxes_src": np.stack([hb[:, :2].T, hb[:, 2:].T]),
            "pos_gt_src": pos.transpose(1, 2, 0),
            "jnt_missing": (1 - vis).T,
            "jnt_visible": vis.T,
        },
    )
    return path
