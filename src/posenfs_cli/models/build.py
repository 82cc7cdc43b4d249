"""Config -> model. The one place that turns a ``ModelConfig`` into a ``PoseNet``."""

from __future__ import annotations

from typing import cast

from torch import nn

from posenfs_cli.config import HEADS, ModelConfig, Recipe
from posenfs_cli.data.layouts import KeypointLayout, get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.backbones import build_backbone
from posenfs_cli.models.backbones.fabric import FabricBackbone
from posenfs_cli.models.fused_parts import PARTS_EXEC
from posenfs_cli.models.parts import PartGroup, resolve_parts
from posenfs_cli.models.posenet import PartNet, PoseNet
from posenfs_cli.nas.fabric import FabricSpec, PruneSpec
from posenfs_cli.nas.ops import check_ops


def subnet_spec(cfg: ModelConfig) -> FabricSpec:
    return FabricSpec(
        total_layers=cfg.layers,
        first_layer=cfg.cut,
        last_layer=cfg.layers,
        channels=cfg.channels,
        hidden=cfg.hidden,
        ops=tuple(cfg.ops),
        in_width=4,
    )


def validate_model_config(cfg: ModelConfig) -> None:
    if cfg.head not in HEADS:
        raise PosenfsError(f"model.head must be one of {', '.join(HEADS)}; got {cfg.head!r}")
    check_ops(cfg.ops, "model.ops")
    if cfg.backbone == "fabric":
        check_ops(cfg.fabric.ops, "model.fabric.ops")
    if not 0 <= cfg.cut < cfg.layers:
        raise PosenfsError(f"model.cut must be in [0, layers={cfg.layers}), got {cfg.cut}")
    if cfg.parts_exec not in PARTS_EXEC:
        raise PosenfsError(
            f"model.parts_exec must be {' or '.join(PARTS_EXEC)}; got {cfg.parts_exec!r}"
        )
    for name in ("hidden", "channels", "vector_dim"):
        if getattr(cfg, name) < 1:
            raise PosenfsError(f"model.{name} must be >= 1, got {getattr(cfg, name)}")


def part_groups(cfg: ModelConfig, layout: KeypointLayout) -> list[PartGroup]:
    return resolve_parts(layout, cfg.parts, cfg.groups, cfg.random_parts, cfg.part_seed)


def build_model(
    cfg: ModelConfig,
    layout: KeypointLayout,
    prune: dict[str, PruneSpec] | None = None,
    load_pretrained: bool = True,
) -> PoseNet:
    """Backbone + one CNF per body part; ``prune`` maps part name or 'backbone' -> absent parts."""
    validate_model_config(cfg)
    prune = prune or {}
    if cfg.pretrained and load_pretrained:  # "imagenet" -> the downloaded, verified file
        from posenfs_cli.hub import resolve_pretrained

        path = resolve_pretrained(cfg.pretrained, cfg.backbone)
        cfg = ModelConfig(**{**cfg.__dict__, "pretrained": str(path)})
    if cfg.backbone == "fabric":
        backbone: nn.Module = FabricBackbone(cfg.fabric, cfg.bn_momentum, prune.get("backbone"))
        if cfg.pretrained and load_pretrained:
            from posenfs_cli.models.backbones.pretrained import identity_map
            from posenfs_cli.models.backbones.pretrained import load_pretrained as load_into

            load_into(backbone, cfg.pretrained, identity_map, source_name="posenfs fabric")
    else:
        if not load_pretrained and cfg.pretrained:
            cfg = ModelConfig(**{**cfg.__dict__, "pretrained": None})
        backbone = build_backbone(cfg)
    groups = part_groups(cfg, layout)
    unknown = set(prune) - {g.name for g in groups} - {"backbone"}
    if unknown:
        raise PosenfsError(f"pruning names unknown parts: {', '.join(sorted(unknown))}")
    if cfg.head != "cnf":
        from posenfs_cli.models.baselines import build_baseline_parts

        if set(prune) - {"backbone"}:
            raise PosenfsError(f"model.head={cfg.head} has no CNF parts to prune")
        baseline = build_baseline_parts(
            cfg.head,
            groups,
            list(cast("list[int]", backbone.out_channels)),
            cfg.branchnet,
            cfg.deconv,
            cfg.vector_dim,
            cfg.bn_momentum,
        )
        return PoseNet(backbone, baseline, layout.num_joints, cfg.parts_exec)
    spec = subnet_spec(cfg)
    # pruned parts differ in structure, so they run one after another (an execution mode only)
    pruned = any(not p.is_empty() for name, p in prune.items() if name != "backbone")
    parts = [
        PartNet(
            g,
            spec,
            list(cast("list[int]", backbone.out_channels)),  # every backbone sets out_channels
            cfg.vector_dim,
            cfg.bn_momentum,
            prune.get(g.name),
            cfg.adapters,
        )
        for g in groups
    ]
    return PoseNet(backbone, parts, layout.num_joints, "separate" if pruned else cfg.parts_exec)


def build_from_recipe(recipe: Recipe, load_pretrained: bool = True) -> PoseNet:
    return build_model(
        recipe.model, get_layout(recipe.data.keypoints), load_pretrained=load_pretrained
    )
