"""CrowdPose: COCO-style keypoint JSON with 14 joints, read by the COCO loader.

Layout (as CrowdPose ships it: one image folder for every split)::

    ROOT/annotations/crowdpose_<split>.json     (or ROOT/json/, the download's folder name)
    ROOT/images/<file_name>

``<split>`` is train, val, trainval or test ('valid' reads val). Records, filters, detection
boxes and OKS evaluation are the COCO ones (``coco.py``) with the CROWDPOSE layout, so AP is
pycocotools' COCOeval with CrowdPose's sigmas. Annotations without ``area`` get the box area.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pycocotools.coco import COCO as CocoApi

from posenfs_cli.data.base import ImageSource
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.jsonio import first_file, split_names
from posenfs_cli.data.layouts import CROWDPOSE, KeypointLayout
from posenfs_cli.errors import PosenfsError

LAYOUT_HINT = (
    "ROOT/annotations/crowdpose_<split>.json (CrowdPose keypoints, 14 joints) "
    "and images in ROOT/images/"
)
SPLIT_ALIASES = (("val", "valid"),)
ANNOTATION_DIRS = ("annotations", "json")


class CrowdPoseDataset(COCODataset):
    """COCO-style person crops in the CrowdPose layout (14 joints)."""

    label = "CrowdPose"
    layout_hint = LAYOUT_HINT

    def __init__(
        self,
        coco: CocoApi,
        source: ImageSource,
        *,
        layout: KeypointLayout = CROWDPOSE,
        **kwargs: Any,
    ) -> None:
        super().__init__(coco, source, layout=layout, **kwargs)

    @classmethod
    def from_root(cls, root: str | Path, split: str, **kwargs: Any) -> COCODataset:
        """From ``ROOT/annotations/crowdpose_<split>.json`` + ``ROOT/images``."""
        ann, image_dir = crowdpose_paths(root, split)
        return cls.from_files(ann, image_dir, **kwargs)


def _missing(what: str, path: Path) -> PosenfsError:
    return PosenfsError(f"{what} not found: {path} (expected layout: {LAYOUT_HINT})")


def crowdpose_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) for a CrowdPose root, with one-line errors."""
    base = Path(root)
    if not base.is_dir():
        raise _missing("data root", base)
    names = split_names(split, SPLIT_ALIASES)
    ann = first_file(base / d / f"crowdpose_{n}.json" for d in ANNOTATION_DIRS for n in names)
    if not ann.is_file():
        raise _missing("CrowdPose annotation file", ann)
    image_dir = base / "images"
    if not image_dir.is_dir():
        raise _missing("CrowdPose image folder", image_dir)
    return ann, image_dir


__all__ = ["LAYOUT_HINT", "CrowdPoseDataset", "crowdpose_paths"]
