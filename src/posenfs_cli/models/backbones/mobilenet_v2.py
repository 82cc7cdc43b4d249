"""MobileNetV2 (width 1.0, ReLU6) truncated after the last stride-32 block with 160 channels.

Built with torchvision's module names (``features.0.0``, ``features.1.conv.0.0``, ...) so a
torchvision state dict loads with an identity map; timm's ``mobilenetv2_100`` names
(``conv_stem``, ``blocks.i.j.conv_pw``, ...) and the original MobileNetV2 repository's flat
``features.k.conv.N`` names (used by the PoseNFS authors) are mapped explicitly. Only
``features[0..16]`` are built; the 160->320 block (``features.17`` / timm ``blocks.6``), the
1x1 1280 conv and the classifier are not. The pyramid taps are the outputs of
``features[3, 6, 13, 16]`` (strides 4, 8, 16, 32; 24, 32, 96, 160 channels). 1,337,792
parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path

from torch import Tensor, nn

from posenfs_cli.models.backbones import register_pretrainable
from posenfs_cli.models.backbones.pretrained import (
    apply_checkpoint,
    identity_map,
    prefix_matcher,
    read_checkpoint,
)

# (expansion t, output channels c, repeats n, first stride s) of the built stages.
_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
]
_STEM_CHANNELS = 32
# Indices into ``features`` whose outputs form the pyramid.
TAPS = (3, 6, 13, 16)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias) + BN + ReLU6, as torchvision's ``Conv2dNormActivation`` (keys .0, .1)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, momentum=bn_momentum),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when t=1) -> depthwise 3x3 -> linear 1x1 projection (+ identity)."""

    def __init__(
        self, cin: int, cout: int, stride: int, expand: int, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU6(cin, hidden, 1, bn_momentum=bn_momentum))
        layers += [
            ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden, bn_momentum=bn_momentum),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout, momentum=bn_momentum),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 features[0..16]; ``forward`` returns maps at strides 4, 8, 16, 32."""

    def __init__(self, bn_momentum: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, _STEM_CHANNELS, 3, 2, bn_momentum=bn_momentum)]
        cin = _STEM_CHANNELS
        channels: list[int] = []
        for t, c, n, s in _STAGES:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t, bn_momentum))
                cin = c
                channels.append(c)
        self.features = nn.Sequential(*layers)
        self.out_channels: list[int] = [channels[i - 1] for i in TAPS]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                outs.append(x)
        return outs


# --- checkpoint key maps ------------------------------------------------------------------------

# torchvision: identity for features.0..16; the rest is known and dropped.
TORCHVISION_UNUSED = prefix_matcher("features.17", "features.18", "classifier")

# timm (efficientnet.py builder): blocks.<stage>.<index>; stage 0 is the t=1 block.
_TIMM_STAGE_START = [1]
for _t, _c, _n, _s in _STAGES:
    _TIMM_STAGE_START.append(_TIMM_STAGE_START[-1] + _n)
# timm stage 6 (160->320) and the head: conv_head, the top-level bn2, classifier.
TIMM_UNUSED = prefix_matcher("blocks.6", "conv_head", "bn2", "classifier")

# Sub-module renames inside a block: timm name -> torchvision name (after ``features.k.``).
_TIMM_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_TIMM_IR = {
    "conv_pw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_dw": "conv.1.0",
    "bn2": "conv.1.1",
    "conv_pwl": "conv.2",
    "bn3": "conv.3",
}
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)$")


def timm_key_map(key: str) -> str | None:
    """Map a timm ``mobilenetv2_100`` key onto our (torchvision) name, ``None`` if unknown."""
    if key.startswith("conv_stem."):
        return "features.0.0." + key[len("conv_stem.") :]
    if key.startswith("bn1."):
        return "features.0.1." + key[len("bn1.") :]
    m = _TIMM_BLOCK.match(key)
    if m is None:
        return None
    stage, index, sub, leaf = int(m[1]), int(m[2]), m[3], m[4]
    if stage >= len(_STAGES) or index >= _STAGES[stage][2]:
        return None
    renames = _TIMM_DS if stage == 0 else _TIMM_IR
    if sub not in renames:
        return None
    return f"features.{_TIMM_STAGE_START[stage] + index}.{renames[sub]}.{leaf}"


# The original MobileNetV2 repository's names (used by the PoseNFS authors): every block is one
# flat ``conv`` Sequential, ``conv.{0,1,3,4,6,7}`` = expand conv/BN, depthwise conv/BN,
# projection conv/BN (ReLU6s at 2 and 5); t=1 blocks have ``conv.{0,1,3,4}``.
_OFFICIAL_IR = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_OFFICIAL_DS = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_OFFICIAL_BLOCK = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(\w+)$")


def official_key_map(key: str) -> str | None:
    """Map an original-MobileNetV2-repo key (``features.k.conv.N.leaf``) onto ours."""
    if key.startswith("features.0."):
        return key  # the stem is features.0.{0,1} in both
    m = _OFFICIAL_BLOCK.match(key)
    if m is None:
        return None
    k, n, leaf = int(m[1]), m[2], m[3]
    renames = _OFFICIAL_DS if k == 1 else _OFFICIAL_IR
    if not 1 <= k <= sum(s[2] for s in _STAGES) or n not in renames:
        return None
    return f"features.{k}.conv.{renames[n]}.{leaf}"


def detect_naming(keys: Collection[str]) -> str:
    """``"timm"``, ``"official"`` (original MobileNetV2 repo) or ``"torchvision"``."""
    if any(k.startswith(("conv_stem.", "blocks.")) for k in keys):
        return "timm"
    if any(_OFFICIAL_BLOCK.match(k) and ".conv.0.weight" in k for k in keys):
        return "official"
    return "torchvision"


NAMINGS: dict[str, tuple[Callable[[str], str | None], Callable[[str], bool]]] = {
    "torchvision": (identity_map, TORCHVISION_UNUSED),
    "timm": (timm_key_map, TIMM_UNUSED),
    "official": (official_key_map, TORCHVISION_UNUSED),
}


def load_weights(model: MobileNetV2Backbone, path: str | Path) -> str:
    """Load torchvision- or timm-named MobileNetV2 weights (auto-detected); return the naming."""
    state = read_checkpoint(path)
    naming = detect_naming(state.keys())
    key_map, unused = NAMINGS[naming]
    apply_checkpoint(
        model, state, key_map, unused, source_name=f"{naming}-named MobileNetV2", path=path
    )
    return naming


build = register_pretrainable("mobilenet_v2", MobileNetV2Backbone, load_weights)
