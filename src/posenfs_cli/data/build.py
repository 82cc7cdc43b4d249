"""Config -> dataset and DataLoader (the one entry point the engine and eval use).

``build_dataset(cfg, split, train)``: ``split`` is "train" or "val" (mapped to
``cfg.train_split`` / ``cfg.val_split`` for data on disk); ``train`` turns augmentation on.

- ``dataset: synthetic`` without ``root``: people rendered in memory on demand, deterministic per
  (seed, split, index); train and val draw from different seed streams. ``keypoints`` picks the
  MPII or COCO style. With ``root``: a folder written by ``posenfs data synth``, read through the
  real MPII/COCO loaders (layout detected from ``annot/`` or ``annotations/``).
- ``dataset: mpii | coco | crowdpose``: the real layouts under ``root`` (see ``mpii.py``,
  ``coco.py``, ``crowdpose.py``); ``keypoints`` must name the same layout. COCO-style
  evaluation with ``use_gt_boxes: false`` takes boxes from the detection file ``boxes``.

``build_loader`` makes runs reproducible: a seeded generator drives shuffling and the per-worker
seeds, from which each sample draws its augmentation.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from posenfs_cli.config import DataConfig, check_input_size
from posenfs_cli.data.base import PoseDataset
from posenfs_cli.data.coco import LAYOUT_HINT as COCO_HINT
from posenfs_cli.data.coco import COCODataset, coco_from_dict
from posenfs_cli.data.crowdpose import LAYOUT_HINT as CROWDPOSE_HINT
from posenfs_cli.data.crowdpose import CrowdPoseDataset
from posenfs_cli.data.layouts import KeypointLayout, get_layout
from posenfs_cli.data.mpii import LAYOUT_HINT as MPII_HINT
from posenfs_cli.data.mpii import MPIIDataset
from posenfs_cli.data.synthetic import SyntheticImageSource, SynthSplit, split_annotations
from posenfs_cli.errors import PosenfsError

DATASETS = ("synthetic", "mpii", "coco", "crowdpose")
_HINTS = {"mpii": MPII_HINT, "coco": COCO_HINT, "crowdpose": CROWDPOSE_HINT}
SPLITS = ("train", "val")


def dataset_layout(cfg: DataConfig) -> KeypointLayout:
    """The keypoint layout the dataset of ``cfg`` produces (checks dataset/keypoints agree)."""
    kind = cfg.dataset.lower()
    if kind not in DATASETS:
        raise PosenfsError(f"unknown dataset {cfg.dataset!r} (choose from {', '.join(DATASETS)})")
    layout = get_layout(cfg.keypoints)
    if kind != "synthetic" and layout.name != kind:
        raise PosenfsError(
            f"data.dataset={kind} has the {kind} keypoint layout but data.keypoints="
            f"{cfg.keypoints}; set data.keypoints={kind}"
        )
    return layout


def _check_input_size(cfg: DataConfig) -> tuple[int, int]:
    return check_input_size(list(cfg.input_size))  # the one rule, shared with validation.validate


def _dataset_options(cfg: DataConfig, train: bool, input_format: str) -> dict[str, Any]:
    """The keyword arguments every dataset class takes from the data config (and the channel
    order of the model that reads it)."""
    return {
        "input_size": _check_input_size(cfg),
        "sigma": cfg.sigma,
        "augment": cfg.augment,
        "train": train,
        "input_format": input_format,
    }


def synthetic_split(cfg: DataConfig, split: str) -> SynthSplit:
    """The in-memory synthetic split described by ``cfg`` (train and val seeds differ)."""
    syn = cfg.synthetic
    style = get_layout(cfg.keypoints).name
    people = syn.max_people if style == "mpii" else syn.coco_max_people
    n = syn.train_images if split == "train" else syn.val_images
    return SynthSplit(style, split, int(syn.seed), int(n), int(syn.image_size), int(people))


def _synthetic_in_memory(
    cfg: DataConfig, split: str, train: bool, input_format: str
) -> PoseDataset:
    sp = synthetic_split(cfg, split)
    if sp.num_images < 1:
        raise PosenfsError(f"data.synthetic.{split}_images must be >= 1, got {sp.num_images}")
    common = _dataset_options(cfg, train, input_format)
    source = SyntheticImageSource(sp)
    name = f"synthetic-{sp.style}/{split}"
    ann = split_annotations(sp)
    if sp.style == "mpii":
        return MPIIDataset(ann, source, ann_name=name, **common)
    detections = _detections(cfg, split, train)
    coco = coco_from_dict(ann, name)
    return COCODataset(coco, source, ann_name=name, detections=detections, **common)


def _detections(cfg: DataConfig, split: str, train: bool) -> list[dict[str, Any]] | None:
    """Detected boxes for COCO-style evaluation when ``use_gt_boxes`` is off."""
    if train or split != "val" or cfg.use_gt_boxes:
        return None
    if not cfg.boxes:
        raise PosenfsError(
            "data.use_gt_boxes is false but data.boxes (a COCO detection results JSON) is not set"
        )
    from posenfs_cli.data.jsonio import load_detections

    return load_detections(cfg.boxes, cfg.box_threshold)


def _detect_format(root: Path) -> str:
    if (root / "annot").is_dir():
        return "mpii"
    if (root / "annotations").is_dir():
        return "coco"
    if not root.exists():
        raise PosenfsError(
            f"data root not found: {root} (expected the MPII layout {MPII_HINT}, or the COCO "
            f"layout {COCO_HINT}; `posenfs data synth --out {root}` writes one to try)"
        )
    raise PosenfsError(
        f"{root} has neither annot/ (MPII layout: {MPII_HINT}) nor annotations/ (COCO layout: "
        f"{COCO_HINT}); `posenfs data synth` writes a dataset in either layout"
    )


def build_dataset(
    cfg: DataConfig, split: str, train: bool, input_format: str = "rgb"
) -> PoseDataset:
    """Dataset for ``split`` ("train" | "val"); ``train`` enables augmentation; images come in
    the channel order ``input_format`` (rgb | bgr) of the model that reads them."""
    if split not in SPLITS:
        raise PosenfsError(f"split must be 'train' or 'val', got {split!r}")
    layout = dataset_layout(cfg)
    kind = cfg.dataset.lower()
    if kind == "synthetic" and not cfg.root:
        return _synthetic_in_memory(cfg, split, train, input_format)
    if not cfg.root:
        hint = _HINTS[kind]
        raise PosenfsError(
            f"data.root is not set for dataset {kind}: pass --data-root DIR with {hint} "
            "(or `posenfs data synth` to make one)"
        )
    root = Path(cfg.root).expanduser()
    fmt = _detect_format(root) if kind == "synthetic" else kind
    if kind == "synthetic" and fmt != layout.name:
        raise PosenfsError(
            f"{root} holds a {fmt}-layout dataset but data.keypoints={cfg.keypoints}; "
            f"set data.keypoints={fmt}"
        )
    real_split = cfg.train_split if split == "train" else cfg.val_split
    common = _dataset_options(cfg, train, input_format)
    if fmt == "mpii":
        return MPIIDataset.from_root(root, real_split, **common)
    coco_style = CrowdPoseDataset if fmt == "crowdpose" else COCODataset
    dets_file = None
    if not train and split == "val" and not cfg.use_gt_boxes:
        if not cfg.boxes:
            raise PosenfsError(
                "data.use_gt_boxes is false but data.boxes (a COCO detection results JSON) "
                "is not set"
            )
        dets_file = cfg.boxes
    return coco_style.from_root(
        root,
        real_split,
        detections_file=dets_file,
        box_threshold=cfg.box_threshold,
        layout=layout,
        **common,
    )


def build_eval_dataset(
    cfg: DataConfig,
    ann_file: str | Path | None = None,
    image_dir: str | Path | None = None,
    head_boxes: str | Path | None = None,
    input_format: str = "rgb",
) -> PoseDataset:
    """The evaluation set: ``cfg``'s val split, or an annotation file anywhere (``ann_file`` +
    ``image_dir``, read in the checkpoint's keypoint layout), in the checkpoint's channel order
    ``input_format``. Refuses inputs that would be ignored (detections for MPII, head boxes for
    COCO) and, for MPII, a set without head boxes, so nothing is computed before a missing input
    is known.
    """
    layout = get_layout(cfg.keypoints)
    kind = layout.name
    dets = None if cfg.use_gt_boxes else cfg.boxes
    if kind == "mpii" and dets:
        raise PosenfsError(
            "--boxes applies to COCO-style evaluation only: MPII is scored on its annotated "
            "person positions (center/scale), so detections would be ignored"
        )
    if head_boxes is not None and kind != "mpii":
        raise PosenfsError("--head-boxes applies to MPII (PCKh) evaluation only")
    if head_boxes is not None and ann_file is None:
        raise PosenfsError(
            "--head-boxes goes with --ann-file (under --data-root, annot/gt_valid.mat is read)"
        )
    if ann_file is None:
        if image_dir is not None:
            raise PosenfsError("--image-dir goes with --ann-file")
        ds = build_dataset(cfg, "val", train=False, input_format=input_format)
    else:
        if image_dir is None:
            raise PosenfsError("--ann-file needs --image-dir")
        common = _dataset_options(cfg, False, input_format)
        if kind == "mpii":
            ds = MPIIDataset.from_files(ann_file, image_dir, headbox_file=head_boxes, **common)
        else:
            ds = COCODataset.from_files(
                ann_file,
                image_dir,
                detections_file=dets,
                box_threshold=cfg.box_threshold,
                layout=layout,
                **common,
            )
    if isinstance(ds, MPIIDataset) and len(ds) and ds.headboxes is None:
        raise PosenfsError(
            f"{ds.name} has no head boxes, which PCKh needs: pass --head-boxes gt_valid.mat "
            "(or a JSON list of [x1, y1, x2, y2]), or give records a 'headbox'"
        )
    missing = getattr(ds, "missing_images", [])
    if len(ds) and missing and len(missing) >= len(set(ds.records.images)):
        raise PosenfsError(
            f"none of the {len(set(ds.records.images))} image(s) of {ds.name} exist "
            f"(e.g. {ds.source.describe(missing[0])}); nothing can be scored: check --image-dir"
            " / --data-root"
        )
    if len(ds) == 0:
        if isinstance(ds, COCODataset) and ds.uses_detections:
            raise PosenfsError(
                f"the evaluation set is empty: no person detection with score >= "
                f"{cfg.box_threshold} falls on an image of {ds.name}"
            )
        raise PosenfsError(f"the evaluation set is empty ({ds.name} has no person records)")
    return ds


def worker_init_fn(worker_id: int) -> None:
    """Per-worker setup: seed numpy/random from torch's worker seed.

    Our datasets draw augmentation from torch's RNG; seeding the others keeps third-party code
    that uses them reproducible too. OpenCV's thread settings are deliberately left alone:
    ``cv2.setNumThreads`` in a forked worker can deadlock on the parent's thread pool.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A reproducible DataLoader: seeded generator, seeded workers, persistent workers if any.

    With a ``sampler`` (e.g. DistributedSampler) ``shuffle`` is left to the sampler.
    """
    if batch_size < 1:
        raise PosenfsError(f"batch size must be >= 1, got {batch_size}")
    if workers < 0:  # DataLoader would raise a ValueError; a clamp would hide the typo
        raise PosenfsError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=worker_init_fn)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=int(workers),
        drop_last=drop_last,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        **kwargs,
    )


__all__ = [
    "DATASETS",
    "build_dataset",
    "build_eval_dataset",
    "build_loader",
    "dataset_layout",
    "synthetic_split",
    "worker_init_fn",
]
