"""Typed options shared by the CLI and the Python API (``posenfs_cli.api``).

A CLI command parses its flags into one of these and hands it to the library; a Python caller
builds the same object (or passes keyword arguments). ``None`` always means "the recipe's /
the checkpoint's value", so an option only says what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

from posenfs_cli.config import check_input_size, parse_input_size

# RecipeOptions field -> recipe key; search and train share them.
RECIPE_KEYS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "keypoints": "data.keypoints",
    "input_size": "data.input_size",
    "workers": "data.workers",
    "strategy": "train.strategy",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "arch_lr": "train.arch_lr",
    "arch_lr_decay": "train.arch_lr_decay",
    "seed": "train.seed",
    "val_every": "train.val_every",
    "grad_clip": "train.grad_clip",
    "amp": "train.amp",
    "compile": "train.compile",
    "parts": "model.parts",
    "backbone": "model.backbone",
    "pretrained": "model.pretrained",
}


def option_flag(name: str) -> str:
    """The command-line flag of a RecipeOptions field, for messages (``data_root`` ->
    ``--data-root``, ``sets`` -> ``--set``)."""
    return "--set" if name == "sets" else f"--{name.replace('_', '-')}"


def size_value(size: str | list[int] | tuple[int, int] | None) -> list[int] | None:
    """'256', '384x288' or [384, 288] -> [h, w], checked by the one input-size rule."""
    if size is None:
        return None
    if isinstance(size, str):
        return parse_input_size(size)
    # numpy integers are integers too; anything else (256.0, True) is left for the rule to refuse
    hw = (
        [int(v) if isinstance(v, Integral) and not isinstance(v, bool) else v for v in size]
        if isinstance(size, list | tuple)
        else size
    )
    return list(check_input_size(hw, "input_size"))


@dataclass
class RecipeOptions:
    """What ``search`` and ``train`` let a caller change about a recipe."""

    recipe: str | None = None  # a YAML path or a shipped name; None: the dataset's default
    dataset: str | None = None
    data_root: str | None = None
    keypoints: str | None = None
    input_size: str | list[int] | None = None
    workers: int | None = None
    strategy: str | None = None  # search only
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    arch_lr: float | None = None  # search only
    arch_lr_decay: bool | None = None  # search only
    seed: int | None = None
    val_every: int | None = None
    grad_clip: float | None = None
    amp: str | None = None
    compile: str | None = None
    parts: int | str | None = None
    backbone: str | None = None
    pretrained: str | None = None  # "none" clears the recipe's
    sets: list[str] = field(default_factory=list)  # the user's own key.path=value strings

    def values(self) -> dict[str, Any]:
        """The given options as typed recipe values, keyed by dotted path."""
        out: dict[str, Any] = {}
        for name, key in RECIPE_KEYS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "input_size":
                value = size_value(value)
            elif name == "parts" and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            elif name == "pretrained" and value.strip().lower() in ("none", "null", ""):
                value = None
            out[key] = value
        return out


@dataclass
class RunOptions:
    """Where a search/train run goes and how it is shown."""

    name: str | None = None
    project: Path = Path("runs")
    exist_ok: bool = False
    resume: Path | None = None  # continue the run in this folder exactly
    device: str = "auto"
    progress: bool = True


@dataclass
class EvalOptions:
    dataset: str | None = None  # default: the checkpoint's
    data_root: str | None = None
    split: str | None = None
    ann_file: Path | None = None  # any annotation JSON (with image_dir)
    image_dir: Path | None = None
    flip: bool = True
    flip_shift: bool = True
    boxes: Path | None = None  # COCO detections instead of GT boxes
    box_thr: float = 0.0
    head_boxes: Path | None = None  # MPII head boxes for an ann_file
    batch_size: int = 32
    workers: int = 2
    sets: list[str] = field(default_factory=list)
    name: str | None = None
    project: Path = Path("runs")
    device: str = "auto"
    compile: str | None = None


@dataclass
class PredictOptions:
    boxes: Path | None = None  # COCO-results detections
    image_ids: Path | None = None
    box_thr: float = 0.3
    detector: str | None = None  # "hog"
    whole_image: bool = False
    overlay: bool = False
    kpt_thr: float = 0.3
    flip: bool = True
    batch_size: int = 32
    out: Path | None = None  # default runs/predict/<source name>
    device: str = "auto"
    max_frames: int | None = None
    coco_results: Path | None = None
    compile: str = "auto"


@dataclass
class PruneOptions:
    threshold: float = 0.0
    out: Path | None = None  # default <ckpt stem>.pruned.safetensors
    input_size: str | list[int] | None = None
    batch_size: int = 4
    timing: bool = True
    runs: int = 10
    device: str = "auto"


@dataclass
class ProfileOptions:
    recipe: str | None = None  # instead of a checkpoint
    input_size: str | list[int] | None = None
    batch_size: int = 8
    runs: int = 10
    timing: bool = True
    threads: int | None = None
    channels_last: bool = True
    sets: list[str] = field(default_factory=list)
    device: str = "auto"
    compile: str = "auto"
