"""Annotations of synthetic scenes in the real formats: MPII records and COCO entries."""

from __future__ import annotations

from typing import Any

import numpy as np

from posenfs_cli.data.layouts import COCO, MPII, KeypointLayout
from posenfs_cli.data.synthetic.core import _J, SynthPerson, SynthScene, SynthSplit, _quant
from posenfs_cli.data.synthetic.scene import generate_scene


def layout_joints(person: SynthPerson, layout: KeypointLayout) -> tuple[np.ndarray, np.ndarray]:
    """(joints [K, 2], visibility [K] 0/1/2) in ``layout`` order."""
    idx = [_J[n] for n in layout.names]
    return person.joints[idx], person.vis[idx]


def mpii_records(split: SynthSplit, index: int, scene: SynthScene) -> list[dict[str, Any]]:
    """Common-layout MPII records (1-based) for one scene; unlabelled joints are [-1, -1]."""
    out = []
    for p in scene.persons:
        joints, vis = layout_joints(p, MPII)
        lab = vis > 0
        if not lab.any():
            continue
        x1, y1, x2, y2 = p.extent
        s = round(float(max(x2 - x1, y2 - y1)) / 200.0, 4)
        cx = float(_quant((x1 + x2) / 2 + 1.0))
        cy = float(_quant((y1 + y2) / 2 - 15.0 * s + 1.0))
        xy = np.where(lab[:, None], joints + 1.0, -1.0)
        out.append(
            {
                "image": split.image_name(index),
                "center": [cx, cy],
                "scale": s,
                "joints": xy.tolist(),
                "joints_vis": lab.astype(int).tolist(),
                "headbox": (p.head_box + 1.0).tolist(),
            }
        )
    return out


def coco_entries(
    split: SynthSplit, index: int, scene: SynthScene, first_ann_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ``images`` entry and ``annotations`` for one scene."""
    image_id = index + 1
    size = scene.size
    img = {"id": image_id, "file_name": split.image_name(index), "width": size, "height": size}
    anns = []
    for k, p in enumerate(scene.persons):
        joints, vis = layout_joints(p, COCO)
        xy = np.where(vis[:, None] > 0, joints, 0.0)
        kps = np.concatenate([xy, vis[:, None].astype(np.float64)], axis=1)
        x1, y1 = np.clip(p.extent[:2], 0, size)
        x2, y2 = np.clip(p.extent[2:], 0, size)
        w, h = round(float(x2 - x1), 2), round(float(y2 - y1), 2)
        if w <= 1 or h <= 1:
            continue
        full = max((p.extent[2] - p.extent[0]) * (p.extent[3] - p.extent[1]), 1e-6)
        area = round(min(p.area * (w * h) / full, w * h), 2)
        bx, by = round(float(x1), 2), round(float(y1), 2)
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [bx, by, w, h],
                "area": area,
                "num_keypoints": int((vis > 0).sum()),
                "keypoints": [
                    float(v) if i % 3 != 2 else int(v)
                    for i, v in enumerate(kps.reshape(-1).tolist())
                ],
                "segmentation": [[bx, by, bx + w, by, bx + w, by + h, bx, by + h]],
            }
        )
    return img, anns


def coco_categories() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(COCO.names),
            "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
        }
    ]


def split_annotations(split: SynthSplit) -> Any:
    """All annotations of a split without rendering: MPII record list or COCO dict."""
    if split.style == "mpii":
        recs: list[dict[str, Any]] = []
        for i in range(split.num_images):
            recs.extend(mpii_records(split, i, generate_scene(split, i)))
        return recs
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(split.num_images):
        img, a = coco_entries(split, i, generate_scene(split, i), len(anns) + 1)
        images.append(img)
        anns.extend(a)
    return {"images": images, "annotations": anns, "categories": coco_categories()}
