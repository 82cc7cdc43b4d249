"""The dataset core shared by MPII, COCO and synthetic data: records in, training samples out.

A dataset is a table of person records (``PoseRecords``: one crop box and K joints each, in the
original image's 0-based pixel coordinates) plus an ``ImageSource`` that returns the BGR image a
record refers to (files on disk, or synthetic images rendered on demand). ``PoseDataset`` turns a
record into ``(image, target, target_weight, meta)``.

Unreadable images. A record whose image is missing or cannot be decoded never crashes an epoch:
a :class:`DataWarning` names it once per process, its index is added to ``skipped``, and

- in training (``train=True``) the next readable record is returned instead (``meta['index']``
  is the record actually used, ``meta['valid']`` is False so the substitution is visible);
- in evaluation (``train=False``) a black image with all target weights 0 is returned *for the
  requested record* with ``meta['valid']`` False, so an eval pass still produces a prediction
  for every record (it scores as a miss rather than disappearing) and can count the failures
  from ``meta['valid']`` even when worker processes hold their own ``skipped`` lists.
Missing files are also counted once at construction (``missing_images``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from posenfs_cli.config import AugmentConfig
from posenfs_cli.data.codec import HeatmapCodec
from posenfs_cli.data.jsonio import expect_file
from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.data.transforms import CropParams, crop_and_normalize, crop_joints, sample_crop
from posenfs_cli.errors import PosenfsError


class DataWarning(UserWarning):
    """A recoverable data problem (unreadable image) that was skipped and counted."""


@dataclass
class PoseRecords:
    """Person records, index-aligned arrays (N persons, K joints).

    ``joints`` [N, K, 3] holds (x, y, visibility) in original 0-based image pixels; the
    visibility is the dataset's own flag (MPII 0/1, COCO 0/1/2) and unlabelled joints have
    x = y = 0. ``headboxes`` [N, 4] is x1, y1, x2, y2 (zeros when unknown).
    """

    images: list[str]
    image_ids: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    joints: np.ndarray
    headboxes: np.ndarray
    areas: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        self.image_ids = np.asarray(self.image_ids, dtype=np.int64).reshape(n)
        self.centers = np.asarray(self.centers, dtype=np.float32).reshape(n, 2)
        self.scales = np.asarray(self.scales, dtype=np.float32).reshape(n, 2)
        self.joints = np.asarray(self.joints, dtype=np.float32)
        if self.joints.ndim != 3 or len(self.joints) != n or self.joints.shape[2] != 3:
            raise ValueError(f"joints must be [N={n}, K, 3], got {self.joints.shape}")
        self.headboxes = np.asarray(self.headboxes, dtype=np.float32).reshape(n, 4)
        self.areas = np.asarray(self.areas, dtype=np.float32).reshape(n)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)

    def __len__(self) -> int:
        return len(self.images)


class ImageSource(Protocol):
    """Where a record's image comes from."""

    def load(self, name: str) -> np.ndarray | None:
        """BGR uint8 [H, W, 3], or None when it cannot be read."""
        ...

    def describe(self, name: str) -> str:
        """The string stored in ``meta['image']`` (a file path or a synthetic name)."""
        ...

    def missing(self, names: Sequence[str]) -> list[str]:
        """Names known to be unavailable without decoding (e.g. files that do not exist)."""
        ...


@dataclass(frozen=True)
class FileImageSource:
    """Images read with OpenCV from ``root / name``."""

    root: str

    def load(self, name: str) -> np.ndarray | None:
        path = os.path.join(self.root, name)
        try:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
        except cv2.error:
            return None
        if img is None or img.ndim != 3 or img.size == 0:
            return None
        return img

    def describe(self, name: str) -> str:
        return os.path.join(self.root, name)

    def missing(self, names: Sequence[str]) -> list[str]:
        return [n for n in dict.fromkeys(names) if not os.path.isfile(os.path.join(self.root, n))]


def sample_seed() -> int:
    """A fresh seed from torch's RNG: per-worker seeded by the DataLoader, so reproducible."""
    return int(torch.randint(0, 2**62, (1,)).item())


@dataclass
class Sample:
    """One prepared sample before collation (also what ``visualize dataset`` draws)."""

    image: torch.Tensor
    rgb: np.ndarray
    target: np.ndarray
    target_weight: np.ndarray
    joints_input: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


class CropKwargs(TypedDict, total=False):
    """The crop settings every dataset class takes as keywords, passed on to ``PoseDataset``:
    network ``input_size`` (h, w), target ``sigma`` (heatmap px), ``augment`` and ``train``
    (augment and flip at random), and the channel order the network reads, ``input_format``
    (``rgb``; ``bgr`` for checkpoints imported from the authors' code)."""

    input_size: Sequence[int]
    sigma: float
    augment: AugmentConfig | None
    train: bool
    input_format: str


class PoseDataset(Dataset):
    """Records + image source -> (image [3,H,W], target [K,h,w], weight [K,1], meta)."""

    # How ``from_files`` names the dataset's files in its errors, and the layout it expects.
    label: ClassVar[str] = "dataset"
    layout_hint: ClassVar[str] = "an annotation file and an image folder"

    @classmethod
    def from_files(cls, ann_file: str | Path, image_dir: str | Path, **kwargs: Any) -> Self:
        """From an explicit annotation file and image folder (any layout). Both paths are
        checked here, with one-line errors, before the subclass's ``open_files`` reads them."""
        ann, folder = Path(ann_file), Path(image_dir)
        expect_file(ann, f"{cls.label} annotation file", cls.layout_hint)
        expect_file(folder, f"{cls.label} image folder", cls.layout_hint)
        if not folder.is_dir():
            raise PosenfsError(f"{cls.label} image folder {folder} is a file, not a folder")
        return cls.open_files(ann, FileImageSource(str(folder)), **kwargs)

    @classmethod
    def open_files(cls, ann_file: Path, images: ImageSource, **kwargs: Any) -> Self:
        raise NotImplementedError(f"{cls.__name__} is not read from files")

    def __init__(
        self,
        records: PoseRecords,
        layout: KeypointLayout,
        source: ImageSource,
        *,
        name: str,
        input_size: Sequence[int],
        sigma: float = 2.0,
        augment: AugmentConfig | None = None,
        train: bool = False,
        input_format: str = "rgb",
    ) -> None:
        if input_format not in ("rgb", "bgr"):
            raise PosenfsError(f"input_format must be rgb or bgr, got {input_format!r}")
        self.input_format = input_format
        self.records = records
        self.layout = layout
        self.source = source
        self.codec = HeatmapCodec.for_input(input_size, sigma)
        self.augment = augment if augment is not None else AugmentConfig()
        self.train = bool(train)
        self.name = name
        # Fixed augmentation seed (None: draw from torch's per-worker RNG) and epoch for it.
        self.seed: int | None = None
        self.epoch = 0
        self.skipped: list[int] = []
        self._warned: set[int] = set()
        self.missing_images = source.missing(records.images)
        if self.missing_images:
            warnings.warn(
                f"{name}: {len(self.missing_images)} image(s) not found "
                f"(first: {source.describe(self.missing_images[0])}); their records are skipped "
                "in training and score as misses in evaluation",
                DataWarning,
                stacklevel=2,
            )

    # --- basic properties ---------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.codec.input_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.codec.heatmap_size

    @property
    def sigma(self) -> float:
        return self.codec.sigma

    @property
    def num_joints(self) -> int:
        return self.layout.num_joints

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[1] / self.input_size[0]

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Used with a fixed ``seed``: augmentation is a function of (seed, epoch, index)."""
        self.epoch = int(epoch)

    # --- sample preparation -------------------------------------------------------------
    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([int(self.seed), self.epoch, index])
        return np.random.default_rng([sample_seed(), index])

    def crop_params(self, index: int, image_width: int, rng: np.random.Generator) -> CropParams:
        r = self.records
        center, scale = r.centers[index], r.scales[index]
        if not self.train:
            return CropParams(center.copy(), scale.copy(), 0.0, None)
        return sample_crop(
            rng,
            self.augment,
            center,
            scale,
            r.joints[index],
            image_width,
            self.layout,
            self.aspect_ratio,
        )

    def _meta(self, index: int, params: CropParams, image_wh: tuple[int, int]) -> dict[str, Any]:
        r = self.records
        return {
            "index": int(index),
            "image_id": int(r.image_ids[index]),
            "image": self.source.describe(r.images[index]),
            "center": np.asarray(params.center, dtype=np.float32),
            "scale": np.asarray(params.scale, dtype=np.float32),
            "rotation": np.float32(params.rotation),
            "joints": r.joints[index].copy(),
            "headbox": r.headboxes[index].copy(),
            "area": np.float32(r.areas[index]),
            "score": np.float32(r.scores[index]),
            "flipped": bool(params.flipped),
            "image_size": np.asarray(image_wh, dtype=np.int64),
            "valid": True,
        }

    def prepare(self, index: int, image: np.ndarray) -> Sample:
        """Crop/augment one record given its BGR image."""
        rng = self._rng(index)
        params = self.crop_params(index, image.shape[1], rng)
        tensor, rgb = crop_and_normalize(image, params, self.input_size, self.input_format)
        joints_in = crop_joints(self.records.joints[index], params, self.input_size, self.layout)
        target, weight = self.codec.encode(joints_in, joints_in[:, 2])
        meta = self._meta(index, params, (image.shape[1], image.shape[0]))
        joints_input = np.concatenate([joints_in[:, :2], weight], axis=1).astype(np.float32)
        meta["joints_input"] = joints_input
        return Sample(tensor, rgb, target, weight, joints_input, meta)

    def blank(self, index: int) -> Sample:
        """Placeholder for an unreadable record in evaluation: black crop, zero weights."""
        image = np.zeros((self.input_size[0], self.input_size[1], 3), dtype=np.uint8)
        r = self.records
        params = CropParams(r.centers[index].copy(), r.scales[index].copy(), 0.0, None)
        tensor, rgb = crop_and_normalize(image, params, self.input_size, self.input_format)
        k = self.num_joints
        target = np.zeros((k, *self.heatmap_size), dtype=np.float32)
        weight = np.zeros((k, 1), dtype=np.float32)
        meta = self._meta(index, params, (0, 0))
        meta["joints_input"] = np.zeros((k, 3), dtype=np.float32)
        meta["valid"] = False
        return Sample(tensor, rgb, target, weight, meta["joints_input"], meta)

    def _note_unreadable(self, index: int) -> None:
        self.skipped.append(index)
        if index not in self._warned:
            self._warned.add(index)
            warnings.warn(
                f"{self.name}: cannot read image "
                f"{self.source.describe(self.records.images[index])} (record {index}); "
                + ("using the next readable record" if self.train else "scored as a miss"),
                DataWarning,
                stacklevel=3,
            )

    def get_sample(self, index: int) -> Sample:
        """The sample for ``index``, with the unreadable-image policy of the module docstring."""
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"record {index} out of range for {n} records")
        for step in range(n if self.train else 1):
            i = (index + step) % n
            image = self.source.load(self.records.images[i])
            if image is not None:
                sample = self.prepare(i, image)
                sample.meta["valid"] = step == 0
                return sample
            self._note_unreadable(i)
        if not self.train:
            return self.blank(index)
        raise PosenfsError(f"{self.name}: none of the {n} images can be read")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        s = self.get_sample(int(index))
        return s.image, torch.from_numpy(s.target), torch.from_numpy(s.target_weight), s.meta


def image_ids_by_first_use(images: Sequence[str]) -> np.ndarray:
    """A stable integer id per distinct image name (order of first appearance)."""
    _, first, inverse = np.unique(np.asarray(images, dtype=object).astype(str), True, True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


__all__ = [
    "DataWarning",
    "FileImageSource",
    "ImageSource",
    "PoseDataset",
    "PoseRecords",
    "Sample",
    "image_ids_by_first_use",
]
