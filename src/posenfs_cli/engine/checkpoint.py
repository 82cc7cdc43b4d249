"""Model checkpoints: safetensors weights + metadata (config, genotype, ...), written atomically.

Metadata keys: ``format_version``, ``posenfs_version``, ``config`` (the resolved
recipe as JSON), ``genotype`` (JSON), ``dataset``, ``keypoints``, ``input_format``, ``epoch``,
``metrics``. A checkpoint alone rebuilds its model: the config gives the structure and the
genotype's pruning record gives what is physically absent.

``format_version`` (an integer, as a string like every safetensors metadata value) numbers the
layout of weights and metadata. Files without it were written before it existed and are
format 1; a file newer than :data:`FORMAT_VERSION` is refused with one line naming both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from posenfs_cli import __version__
from posenfs_cli.atomic import atomic_write
from posenfs_cli.config import ConfigError, Recipe, recipe_from_dict
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError, existing_file
from posenfs_cli.nas.genotype import Genotype, model_genotype, prune_specs

META_KEYS = ("posenfs_version", "config", "genotype", "dataset", "keypoints", "input_format")
INPUT_FORMATS = ("rgb", "bgr")
"""The channel orders a checkpoint's ``input_format`` may name."""
FORMAT_VERSION = 2  # 2: all-or-nothing pyramid adapters (format 1 files: per level)
"""The checkpoint format this posenfs writes and the newest it reads (CHANGELOG lists them)."""


def checkpoint_format_version(metadata: dict[str, str], source: Path | str) -> int:
    """The format of a checkpoint's metadata: 1 when absent; newer than we read is an error."""
    raw = metadata.get("format_version", "1")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise PosenfsError(f"{source}: checkpoint format_version {raw!r} is not a positive integer")
    version = int(raw)
    if version > FORMAT_VERSION:
        raise PosenfsError(
            f"{source}: checkpoint format {version} is newer than posenfs {__version__} reads "
            f"(formats up to {FORMAT_VERSION}): upgrade posenfs"
        )
    return version


def atomic_save_file(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]
) -> Path:
    """Safetensors written atomically (see ``posenfs_cli.atomic``)."""
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    recipe: Recipe,
    epoch: int = 0,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights with everything needed to rebuild and use it."""
    p = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP / compiled wrappers
    model = getattr(model, "_orig_mod", model)
    metadata = {
        "format_version": str(FORMAT_VERSION),
        "posenfs_version": __version__,
        "config": json.dumps(recipe.to_dict()),
        "genotype": json.dumps(model_genotype(model, recipe.data.keypoints).to_json()),
        "dataset": recipe.data.dataset,
        "keypoints": recipe.data.keypoints,
        "input_format": "rgb",
        "epoch": str(epoch),
        "metrics": json.dumps(metrics or {}),
    }
    for k, v in (extra or {}).items():
        metadata[k] = v if isinstance(v, str) else json.dumps(v)
    atomic_save_file(state_tensors(model), p, metadata)
    return p


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    recipe: Recipe
    genotype: Genotype

    @property
    def format_version(self) -> int:
        return int(self.metadata.get("format_version", "1"))

    @property
    def input_format(self) -> str:
        """The channel order the model reads: rgb, or bgr for models imported from the authors'
        code (their loader feeds OpenCV's BGR images). Eval, predict and export follow it, and
        this is the one place that refuses any other value (one line, naming the file)."""
        value = self.metadata.get("input_format", "rgb")
        if value not in INPUT_FORMATS:
            raise PosenfsError(
                f"{self.path}: checkpoint input_format {value!r} is not one of "
                f"{', '.join(INPUT_FORMATS)} (the channel order the model reads)"
            )
        return value

    @property
    def epoch(self) -> int:
        return int(self.metadata.get("epoch", "0"))

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.metadata.get("metrics", "{}"))


def read_checkpoint(path: str | Path) -> Checkpoint:
    p = existing_file(
        path, "checkpoint not found: {p}", "{p} is a folder; give a .safetensors checkpoint file"
    )
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PosenfsError(f"{p} is not a safetensors checkpoint ({reason})") from exc
    version = checkpoint_format_version(metadata, p)  # first: a newer format may have other keys
    missing = [k for k in META_KEYS if k not in metadata]
    if missing:
        raise PosenfsError(
            f"{p} is a safetensors file but not a posenfs checkpoint (metadata lacks "
            f"{', '.join(missing)})"
        )
    try:
        config = json.loads(metadata["config"])
        if not isinstance(config, dict):
            raise ConfigError("the config is not a mapping")
        if version < 2 and isinstance(config.get("model"), dict):
            config["model"].setdefault("adapters", "per_level")  # how 0.1.0 built them
        recipe = recipe_from_dict(config)
        genotype = json.loads(metadata["genotype"])
        int(metadata.get("epoch", "0"))
        if not isinstance(json.loads(metadata.get("metrics", "{}")), dict):
            raise ConfigError("the metrics are not a mapping")
    except (json.JSONDecodeError, ConfigError, ValueError, TypeError, RecursionError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PosenfsError(f"{p}: unreadable metadata ({reason})") from exc
    typed = Genotype.from_json(
        genotype, f"{p} (genotype metadata)", allow_empty=recipe.model.head != "cnf"
    )
    return Checkpoint(p, tensors, metadata, recipe, typed)


def build_from_checkpoint(ckpt: Checkpoint | str | Path, device: torch.device | str = "cpu"):
    """Rebuild the (possibly pruned) model of a checkpoint and load its weights strictly."""
    from posenfs_cli.models.build import build_model

    if not isinstance(ckpt, Checkpoint):
        ckpt = read_checkpoint(ckpt)
    layout = get_layout(ckpt.recipe.data.keypoints)
    model = build_model(
        ckpt.recipe.model, layout, prune=prune_specs(ckpt.genotype), load_pretrained=False
    )
    load_weights(model, ckpt.tensors, ckpt.path)
    return model.to(device), ckpt


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    found = (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
    parts = [f"{label} {', '.join(keys[:5])}" for label, keys in found if keys]
    if parts:
        raise PosenfsError(f"{source}: weights do not fit the model structure ({'; '.join(parts)})")
    model.load_state_dict(tensors, strict=True)
