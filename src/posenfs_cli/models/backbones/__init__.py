"""Backbone registry. Every backbone returns a 4-level pyramid at strides 4, 8, 16, 32.

A backbone is an ``nn.Module`` with ``out_channels`` (4 ints) whose ``forward(x)`` returns a list
of 4 tensors. Builders take the ``ModelConfig`` and are registered by name; pretrained weights
load through :func:`posenfs_cli.models.backbones.pretrained.load_pretrained` with the explicit
key map each backbone module provides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:
    from posenfs_cli.config import ModelConfig

BackboneBuilder = Callable[["ModelConfig"], nn.Module]
_BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def deco(fn: BackboneBuilder) -> BackboneBuilder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = fn
        return fn

    return deco


def register_pretrainable(
    name: str, backbone: Callable[..., nn.Module], load_weights: Callable[[Any, str], object]
) -> BackboneBuilder:
    """Register ``name``: ``backbone(bn_momentum=...)`` with ``model.pretrained`` loaded by
    ``load_weights`` when the config names weights. Returns the builder."""

    def build(cfg: ModelConfig) -> nn.Module:
        model = backbone(bn_momentum=cfg.bn_momentum)
        if cfg.pretrained:
            load_weights(model, cfg.pretrained)
        return model

    return register_backbone(name)(build)


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_backbone decorators.
    from posenfs_cli.models.backbones import fabric, hrnet, mobilenet_v2, resnet  # noqa: F401


def backbone_names() -> list[str]:
    _ensure_loaded()
    return sorted(_BACKBONES)


def build_backbone(cfg: ModelConfig) -> nn.Module:
    _ensure_loaded()
    if cfg.backbone not in _BACKBONES:
        raise PosenfsError(
            f"unknown backbone {cfg.backbone!r} (choose from {', '.join(sorted(_BACKBONES))})"
        )
    return _BACKBONES[cfg.backbone](cfg)
