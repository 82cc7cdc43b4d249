"""A grid of dataset samples with their ground-truth skeletons (``posenfs visualize dataset``).

Images are the network inputs, de-normalised; left, right and centre joints have their own
colours and "F" marks a flipped sample.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posenfs_cli.errors import PosenfsError


@dataclass
class GridOptions:
    dataset: str = "synthetic"
    data_root: Path | None = None
    keypoints: str | None = None  # synthetic style; default: the dataset's
    split: str = "train"
    augment: bool = True
    num: int = 16
    input_size: str = "256"
    seed: int = 0
    cols: int | None = None

    def check(self) -> None:
        """Option mistakes, before any output path is looked at."""
        self.dataset = self.dataset.lower()
        if self.dataset not in ("synthetic", "mpii", "coco"):
            raise PosenfsError(f"--dataset must be synthetic, mpii or coco, got {self.dataset!r}")
        if self.split not in ("train", "val"):
            raise PosenfsError(f"--split must be train or val, got {self.split!r}")
        if self.num < 1:
            raise PosenfsError(f"--num must be >= 1, got {self.num}")
        if self.cols is not None and self.cols < 1:
            raise PosenfsError(f"--cols must be >= 1, got {self.cols}")


@dataclass
class DatasetGrid:
    image: np.ndarray  # BGR
    samples: int
    name: str  # the dataset's
    layout: str
    size: list[int]
    warnings: list[str] = field(default_factory=list)  # data problems met while drawing


def _from_files(dataset: str, ann_file: Path, image_dir: Path | None, cfg: Any, augment: bool):
    """A dataset from an explicit annotation file + image folder (e.g. shared samples)."""
    from posenfs_cli.data.coco import COCODataset
    from posenfs_cli.data.mpii import MPIIDataset

    if image_dir is None:
        raise PosenfsError("--ann-file needs --image-dir (the folder its images are in)")
    common = {
        "input_size": cfg.input_size,
        "sigma": cfg.sigma,
        "augment": cfg.augment,
        "train": augment,
    }
    if dataset == "mpii":
        return MPIIDataset.from_files(ann_file, image_dir, **common)
    if dataset == "coco":
        return COCODataset.from_files(ann_file, image_dir, **common)
    raise PosenfsError("--ann-file works with --dataset mpii or coco")


def dataset_grid(
    o: GridOptions, ann_file: Path | None = None, image_dir: Path | None = None
) -> DatasetGrid:
    import cv2

    from posenfs_cli.config import DataConfig, SyntheticConfig, parse_input_size
    from posenfs_cli.data.build import build_dataset
    from posenfs_cli.data.transforms import denormalize_image
    from posenfs_cli.vis.draw import draw_skeleton, make_grid, put_label

    o.check()
    kp = (o.keypoints or ("mpii" if o.dataset == "synthetic" else o.dataset)).lower()
    size = parse_input_size(o.input_size)
    cfg = DataConfig(
        dataset=o.dataset,
        keypoints=kp,
        root=str(o.data_root) if o.data_root is not None else None,
        input_size=size,
        synthetic=SyntheticConfig(train_images=o.num, val_images=o.num, seed=o.seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ann_file is not None:
            ds = _from_files(o.dataset, ann_file, image_dir, cfg, o.augment)
        else:
            ds = build_dataset(cfg, o.split, train=o.augment)
        if len(ds) == 0:
            raise PosenfsError(f"the {o.split} split of {o.dataset} has no person records")
        ds.seed = o.seed
        rng = np.random.default_rng(o.seed)
        n = len(ds)
        pick = np.arange(n) if n <= o.num else np.sort(rng.choice(n, o.num, False))
        radius = max(2, round(min(size) / 85))
        thick = max(1, round(min(size) / 128))
        tiles = []
        for i in pick:
            s = ds.get_sample(int(i))
            img = cv2.cvtColor(denormalize_image(s.image), cv2.COLOR_RGB2BGR)
            img = draw_skeleton(
                img, s.joints_input[:, :2], s.joints_input[:, 2], ds.layout, 0.5, radius, thick
            )
            flag = " F" if s.meta["flipped"] else ""
            tiles.append(put_label(img, f"#{s.meta['index']}{flag}"))
    grid = make_grid(tiles, o.cols if o.cols is not None else math.ceil(math.sqrt(len(tiles))))
    notes = [str(w.message) for w in caught]
    return DatasetGrid(grid, len(tiles), ds.name, ds.layout.name, size, notes)
