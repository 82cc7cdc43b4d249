"""Typed configuration: dataclasses for model/data/train/eval, YAML recipes and overrides.

A recipe is one YAML file with the sections ``model``, ``data``, ``train`` and ``eval`` (and an
optional ``paper`` block with the numbers the paper reports). Every field has a default, so a
recipe only states what differs. Overrides use dotted paths (``train.lr=3e-4``) and are parsed
as YAML scalars, so ``model.ops=[skip,sep_conv_3x3]`` works too.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, cast

import yaml


class ConfigError(ValueError):
    """A user mistake in a recipe or an override; the CLI prints it as one line."""


SUBNET_OPS = ["zero", "skip", "sep_conv_3x3", "dil_conv_3x3"]
BACKBONE_OPS = SUBNET_OPS + ["avg_pool_3x3", "max_pool_3x3"]


@dataclass
class FabricBackboneConfig:
    """A CNF used as backbone: the first ``kept`` layers of an ``layers``-layer fabric."""

    layers: int = 7
    channels: int = 10
    hidden: int = 2
    kept: int = 3
    ops: list[str] = field(default_factory=lambda: list(BACKBONE_OPS))


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    fabric: FabricBackboneConfig = field(default_factory=FabricBackboneConfig)
    pretrained: str | None = None
    # Body-part grouping: 1/3/5/8 (paper Table I), "random" (seeded partition), or "custom"
    # with ``groups`` mapping part name -> keypoint names.
    parts: int | str = 3
    groups: dict[str, list[str]] | None = None
    random_parts: int = 3
    part_seed: int = 0
    layers: int = 6
    cut: int = 3
    hidden: int = 1
    channels: int = 10
    vector_dim: int = 8
    ops: list[str] = field(default_factory=lambda: list(SUBNET_OPS))
    bn_momentum: float = 0.1


@dataclass
class AugmentConfig:
    scale_factor: float = 0.3
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip: bool = True
    flip_prob: float = 0.5
    half_body_prob: float = 0.0
    half_body_min_joints: int = 8


@dataclass
class SyntheticConfig:
    train_images: int = 2000
    val_images: int = 200
    seed: int = 0
    max_people: int = 1
    # Side of the square synthetic images (px) and people per image for COCO-style images
    # (1..coco_max_people; ``max_people`` applies to MPII style).
    image_size: int = 256
    coco_max_people: int = 3


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    # Keypoint layout: "mpii" (16) or "coco" (17); synthetic data can produce either.
    keypoints: str = "mpii"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "valid"
    # (height, width) of the network input; heatmaps are input / 4.
    input_size: list[int] = field(default_factory=lambda: [256, 256])
    sigma: float = 2.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    workers: int = 2
    use_gt_boxes: bool = True
    boxes: str | None = None
    box_threshold: float = 0.0


@dataclass
class TrainConfig:
    strategy: str = "sync"
    epochs: int = 200
    batch_size: int = 24
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_steps: list[int] = field(default_factory=lambda: [90, 120, 150])
    lr_factor: float = 0.25
    arch_lr: float | None = None
    arch_lr_decay: bool = True
    arch_weight_decay: float = 0.0
    darts_arch_lr: float = 3e-3
    darts_arch_weight_decay: float = 1e-3
    sparsity: str = "none"
    sparsity_weight: float = 0.0
    seed: int = 0
    val_every: int = 1
    amp: str = "auto"
    channels_last: str = "auto"
    grad_clip: float = 0.0


@dataclass
class EvalConfig:
    flip: bool = True
    flip_shift: bool = True
    batch_size: int = 32
    oks_nms_threshold: float = 0.9
    keypoint_score_threshold: float = 0.2


@dataclass
class Recipe:
    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Numbers reported by the paper (and measured on the released code) for this recipe.
    paper: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a YAML value against a dataclass field type; raise ConfigError if wrong."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}"
        )
    if is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(cast(type, tp), value, where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return (
            [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else value
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        return {
            _coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    recipe: Recipe = _from_dict(Recipe, data or {}, "")
    return recipe


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Load a YAML recipe (or the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe not found: {p} (see recipes/ for the shipped recipes)")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"recipe {p} is not valid YAML: {exc}".splitlines()[0]) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"recipe {p} must be a YAML mapping")
        data.setdefault("name", p.stem)
    recipe = recipe_from_dict(data)
    return apply_overrides(recipe, overrides or [])


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_path(recipe: Recipe, path: list[str], value: Any) -> Recipe:
    """Return a copy of ``recipe`` with the field at ``path`` set (type-checked)."""
    data = recipe.to_dict()
    node = data
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown key {'.'.join(path[: i + 1])}")
        if node[part] is None:
            node[part] = {}
        node = node[part]
    if not isinstance(node, dict) or (path[-1] not in node and not _is_free_dict(path)):
        raise ConfigError(f"unknown key {'.'.join(path)}")
    node[path[-1]] = value
    return recipe_from_dict(data)


def _is_free_dict(path: list[str]) -> bool:
    # Mappings whose keys are user-chosen (part groups, paper numbers).
    return path[:2] == ["model", "groups"] or path[:1] == ["paper"]


def apply_overrides(recipe: Recipe, overrides: list[str]) -> Recipe:
    for text in overrides:
        path, value = parse_override(text)
        recipe = set_path(recipe, path, value)
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def clone(recipe: Recipe) -> Recipe:
    return copy.deepcopy(recipe)


def parse_input_size(text: str) -> list[int]:
    """'256' -> [256, 256]; '384x288' -> [384, 288] (height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"input size {text!r} must be N or HxW, e.g. 256 or 384x288") from exc
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 32 or any(n % 32 for n in nums):
        raise ConfigError(f"input size {text!r} must be N or HxW with multiples of 32 (>= 32)")
    return nums


__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FabricBackboneConfig",
    "ModelConfig",
    "Recipe",
    "SyntheticConfig",
    "TrainConfig",
    "apply_overrides",
    "clone",
    "load_recipe",
    "parse_input_size",
    "recipe_from_dict",
    "recipe_to_yaml",
]
