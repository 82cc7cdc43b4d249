"""Typed configuration: dataclasses for model/data/train/eval, YAML recipes and overrides.

A recipe is one YAML file with the sections ``model``, ``data``, ``train`` and ``eval`` (and an
optional ``paper`` block with the numbers the paper reports). Every field has a default, so a
recipe only states what differs. Overrides use dotted paths. The user's own ``--set train.lr=3e-4``
strings are parsed as YAML scalars (so ``model.ops=[skip,sep_conv_3x3]`` works); typed options
from the CLI or the Python API go through :func:`set_values` and are never re-parsed.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

from posenfs_cli.errors import ConfigError

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


HEADS = ("cnf", "branchnet", "deconv")


@dataclass
class BranchnetConfig:
    """Hand-designed part branch (paper Tab VI): 1x1 conv to ``width``, ``depth`` res. blocks."""

    width: int = 400
    depth: int = 8


@dataclass
class DeconvConfig:
    """SimpleBaseline head: ``layers`` x [k x k deconv stride 2, BN, ReLU] at ``channels``, 1x1."""

    channels: int = 256
    layers: int = 3
    kernel: int = 4


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2"
    # What sits on the backbone pyramid for each body part: "cnf" (the searched fabric, PoseNFS),
    # "branchnet" (hand-designed part branches, the paper's Baseline-1/2) or "deconv"
    # (SimpleBaseline's deconvolution head). Every head ends in the vector-in-pixel output.
    head: str = "cnf"
    branchnet: BranchnetConfig = field(default_factory=BranchnetConfig)
    deconv: DeconvConfig = field(default_factory=DeconvConfig)
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
    # 1x1 adapters from the backbone pyramid to each CNF: "all" (the authors' rule: convs on every
    # level unless the whole pyramid already has the CNF's widths) or "per_level" (an identity
    # for each level that matches; how posenfs 0.1.0 built them, kept to read its checkpoints).
    adapters: str = "all"
    # How the P part CNFs train: "separate" (one after another) or "fused" (one pass of grouped
    # convolutions over all parts; same parameters and outputs; needs identical parts, so a
    # pruned model runs separate). Inference copies (eval/predict) run fused whenever they can.
    parts_exec: str = "separate"


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
    # distributed runs: a collective waiting longer than this on a silent rank fails every rank
    dist_timeout_s: float = 300.0
    compile: str = (
        "auto"  # torch.compile for search/train: auto (CUDA runs of >= 5000 steps) | on | off
    )


@dataclass
class EvalConfig:
    flip: bool = True
    flip_shift: bool = True
    batch_size: int = 32
    oks_nms_threshold: float = 0.9
    keypoint_score_threshold: float = 0.2
    compile: str = (
        "auto"  # torch.compile for eval/predict/profile: auto (= off: never pays back) | on | off
    )


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


def recipes_dir() -> Path:
    """The folder of the recipes shipped inside the package (``posenfs_cli/recipes``)."""
    return Path(str(resources.files("posenfs_cli") / "recipes"))


def recipe_names() -> list[str]:
    """Every shipped recipe as ``group/name`` (``synthetic/tiny``, ``mpii/mbv2_p3_h1_c10_256``)."""
    root = recipes_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def find_recipe(text: str | Path) -> Path:
    """A recipe YAML path, or the name of a shipped recipe (with or without ``.yaml``).

    An existing file wins over a shipped name, so ``./synthetic/tiny.yaml`` is always yours.
    """
    p = Path(text).expanduser()
    if p.is_file():
        return p
    name = str(text).strip().replace("\\", "/")
    if name and not Path(name).is_absolute() and ".." not in Path(name).parts:
        root = recipes_dir()
        for cand in (root / name, root / f"{name}.yaml"):
            if cand.is_file():
                return cand
    groups = sorted({n.split("/")[0] for n in recipe_names()})
    raise ConfigError(
        f"recipe not found: {text} (a YAML file, or a shipped name such as synthetic/tiny "
        f"or mpii/mbv2_p3_h1_c10_256; shipped groups: {', '.join(groups)})"
    )


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe (a YAML path or a shipped name, or the defaults when ``path`` is None) and
    apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        if Path(path).is_dir():
            raise ConfigError(f"recipe {path} is a folder; give a recipe YAML file")
        p = find_recipe(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"recipe {p} is not a YAML text file (binary data)") from exc
        except (yaml.YAMLError, RecursionError) as exc:
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
    """Apply ``key.path=value`` strings typed by a user (values parsed as YAML)."""
    for text in overrides:
        path, value = parse_override(text)
        recipe = set_path(recipe, path, value)
    return recipe


def set_values(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """Set already-typed values by dotted key (type-checked, never re-parsed from text).

    ``--amp off`` must stay the string "off"; YAML would read it as ``False``.
    """
    for key, value in values.items():
        recipe = set_path(recipe, key.split("."), value)
    return recipe


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def _bad(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{key} must be {rule}, got {value!r}")


def _number_checks(recipe: Recipe) -> list[tuple[str, Any, str]]:
    """(key, value, rule) for every number whose range is known; rules: '>0', '>=0', '>=1'."""
    t, d, a, e = recipe.train, recipe.data, recipe.data.augment, recipe.eval
    return [
        ("train.lr", t.lr, ">=0"),
        ("train.arch_lr", t.arch_lr, ">=0"),
        ("train.darts_arch_lr", t.darts_arch_lr, ">=0"),
        ("train.lr_factor", t.lr_factor, ">0"),
        ("train.weight_decay", t.weight_decay, ">=0"),
        ("train.arch_weight_decay", t.arch_weight_decay, ">=0"),
        ("train.darts_arch_weight_decay", t.darts_arch_weight_decay, ">=0"),
        ("train.grad_clip", t.grad_clip, ">=0"),
        ("train.epochs", t.epochs, ">=1"),
        ("train.batch_size", t.batch_size, ">=1"),
        ("train.val_every", t.val_every, ">=1"),
        ("data.sigma", d.sigma, ">0"),
        ("data.workers", d.workers, ">=0"),
        ("data.augment.scale_factor", a.scale_factor, ">=0"),
        ("data.augment.rotation", a.rotation, ">=0"),
        ("eval.batch_size", e.batch_size, ">=1"),
    ]


_PROBABILITIES: tuple[tuple[str, Callable[[Recipe], float]], ...] = (
    ("data.augment.rotation_prob", lambda r: r.data.augment.rotation_prob),
    ("data.augment.flip_prob", lambda r: r.data.augment.flip_prob),
    ("data.augment.half_body_prob", lambda r: r.data.augment.half_body_prob),
    ("data.box_threshold", lambda r: r.data.box_threshold),
    ("eval.oks_nms_threshold", lambda r: r.eval.oks_nms_threshold),
    ("eval.keypoint_score_threshold", lambda r: r.eval.keypoint_score_threshold),
)


INPUT_STRIDE = 32  # the coarsest backbone feature map is input / 32; the heads fuse all levels
# Largest input side: far above any pose recipe (256, 384x288); a bigger one only fails in the
# allocator (100000x100000 asks for terabytes) or in OpenCV, with a raw error.
MAX_INPUT_SIDE = 4096
_SIZE_RULE = f"multiples of {INPUT_STRIDE} between {INPUT_STRIDE} and {MAX_INPUT_SIDE}"


def check_input_size(size: Any, key: str = "data.input_size") -> tuple[int, int]:
    """The one input-size rule: [height, width], both multiples of the backbone's stride 32,
    at most ``MAX_INPUT_SIDE``.

    Other sizes leave pyramid levels that do not halve evenly, and the fusion fails with a raw
    shape error deep in the network (100x100: 25 vs 26).
    """
    if not _size_ok(size):
        raise ConfigError(
            f"{key} must be [height, width], both {_SIZE_RULE}, "
            f"got {list(size) if isinstance(size, tuple) else size}"
        )
    return int(size[0]), int(size[1])


def _size_ok(size: Any) -> bool:
    return (
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
        and all(INPUT_STRIDE <= s <= MAX_INPUT_SIDE and s % INPUT_STRIDE == 0 for s in size)
    )


def _check_numbers(recipe: Recipe) -> None:
    rules: dict[str, tuple[str, Callable[[float], bool]]] = {
        ">0": ("a finite number > 0", lambda v: v > 0),
        ">=0": ("a finite number >= 0", lambda v: v >= 0),
        ">=1": ("an integer >= 1", lambda v: v >= 1),
    }
    for key, value, rule in _number_checks(recipe):
        if value is None:
            continue
        text, ok = rules[rule]
        if not math.isfinite(value) or not ok(value):
            raise _bad(key, value, text)
    for key, get in _PROBABILITIES:
        v = get(recipe)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise _bad(key, v, "in [0, 1]")
    if any(not isinstance(s, int) or s < 0 for s in recipe.train.lr_steps):
        raise _bad("train.lr_steps", recipe.train.lr_steps, "a list of epochs >= 0")
    check_seed(recipe.train.seed, "train.seed")


# Seeds are 64-bit: torch's generators take up to 2**64 - 1, and the samplers add the epoch to
# the seed, so the signed 64-bit range leaves room; a negative or larger seed failed with a
# traceback in torch or numpy.
SEED_MAX = 2**63 - 1


def check_seed(seed: Any, key: str = "train.seed") -> int:
    """The one seed rule: an integer in [0, 2**63 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise _bad(key, seed, f"an integer in [0, {SEED_MAX}]")
    return seed


def check_recipe_values(recipe: Recipe) -> Recipe:
    """The rules a recipe's own values must pass (numbers, input size); the model's rules are
    checked by ``posenfs_cli.validation.validate``, which also runs these."""
    _check_numbers(recipe)
    check_input_size(recipe.data.input_size)
    return recipe


def parse_input_size(text: str) -> list[int]:
    """'256' -> [256, 256]; '384x288' (or 384,288) -> [384, 288] (height x width)."""
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"input size {text!r} must be N or HxW, e.g. 256 or 384x288") from exc
    if len(nums) == 1:
        nums = nums * 2
    if not _size_ok(nums):
        raise ConfigError(f"input size {text!r} must be N or HxW with {_SIZE_RULE}")
    return nums


__all__ = [
    "HEADS",
    "MAX_INPUT_SIDE",
    "SEED_MAX",
    "AugmentConfig",
    "BranchnetConfig",
    "DeconvConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FabricBackboneConfig",
    "ModelConfig",
    "Recipe",
    "SyntheticConfig",
    "TrainConfig",
    "apply_overrides",
    "check_input_size",
    "check_recipe_values",
    "check_seed",
    "find_recipe",
    "load_recipe",
    "parse_input_size",
    "recipe_from_dict",
    "recipe_names",
    "recipe_to_yaml",
    "recipes_dir",
    "set_values",
]
