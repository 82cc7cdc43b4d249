"""HRNet-W32 from the stem through stage 3, plus transition3's new 256-channel branch.

The structure and module names follow the HRNet authors' pose code (``pose_hrnet.py``):
``conv1``/``bn1``/``conv2``/``bn2`` stem, ``layer1`` (4 bottlenecks, 256 ch), ``transition1``,
``stage2`` (1 module, branches 32/64), ``transition2``, ``stage3`` (4 modules, branches
32/64/128) and ``transition3`` of which only entry 3 exists (3x3 s2 conv 128->256, BN, ReLU on
the last stage-3 branch; entries 0-2 are ``None`` in the original too). Stage 4 and the heads
are not built, so their checkpoint keys (``stage4``, ``final_layer``, and the ImageNet model's
``incre_modules``/``downsamp_modules``/``classifier``) are dropped on load.

Outputs: the three stage-3 branches and the new branch, at strides 4, 8, 16, 32 with 32, 64,
128, 256 channels. 8,128,320 parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import cast

from torch import Tensor, nn

from posenfs_cli.models.backbones import register_pretrainable
from posenfs_cli.models.backbones.pretrained import identity_map, load_pretrained, prefix_matcher
from posenfs_cli.models.backbones.resnet import make_bottleneck_layer

WIDTH = 32
STAGE2_MODULES = 1
STAGE3_MODULES = 4
BLOCKS_PER_BRANCH = 4
UNUSED = prefix_matcher(
    "stage4", "final_layer", "incre_modules", "downsamp_modules", "classifier", "head"
)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and an identity shortcut (channels never change inside HRNet)."""

    def __init__(self, channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        y: Tensor = self.relu(out + x)
        return y


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int, relu: bool, bn_momentum: float
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(cout, momentum=bn_momentum),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by all-to-all multi-resolution fusion.

    ``fuse_layers[i][j]`` brings branch ``j`` to branch ``i``'s resolution and width: a 1x1
    conv + BN + nearest upsampling when ``j > i``, nothing when ``j == i``, and ``i - j``
    strided 3x3 conv+BN steps (ReLU on all but the last) when ``j < i``.
    """

    def __init__(self, channels: list[int], blocks: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, bn_momentum) for _ in range(blocks)]) for c in channels
        )
        n = len(channels)
        fuse_layers = []
        for i in range(n):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False),
                            nn.BatchNorm2d(channels[i], momentum=bn_momentum),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps = [
                        _conv_bn(channels[j], channels[j], 3, 2, True, bn_momentum)
                        for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, False, bn_momentum))
                    row.append(nn.Sequential(*steps))
            # None (identity) entries keep the original HRNet state-dict indices; ModuleList
            # accepts None at run time although torch's annotation says Module
            fuse_layers.append(nn.ModuleList(row))  # type: ignore[arg-type]
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        fused = []
        for row in self.fuse_layers:
            # Summed in branch order, as the original does.
            entries = cast("Iterable[nn.Module | None]", row)
            terms = [xs[j] if layer is None else layer(xs[j]) for j, layer in enumerate(entries)]
            y = terms[0]
            for term in terms[1:]:
                y = y + term
            fused.append(self.relu(y))
        return fused


class HRNetW32Backbone(nn.Module):
    """HRNet-W32 stem..stage3 + transition3[3]; returns 4 maps at strides 4, 8, 16, 32."""

    def __init__(self, bn_momentum: float = 0.1) -> None:
        super().__init__()
        c = [WIDTH, 2 * WIDTH, 4 * WIDTH, 8 * WIDTH]
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_bottleneck_layer(64, 64, 4, bn_momentum=bn_momentum)
        # transition1: 256 -> 32 (3x3 s1) for branch 0, 256 -> 64 (3x3 s2) for the new branch 1.
        self.transition1 = nn.ModuleList(
            [
                _conv_bn(256, c[0], 3, 1, True, bn_momentum),
                nn.Sequential(_conv_bn(256, c[1], 3, 2, True, bn_momentum)),
            ]
        )
        self.stage2 = nn.Sequential(
            *[
                HighResolutionModule(c[:2], BLOCKS_PER_BRANCH, bn_momentum)
                for _ in range(STAGE2_MODULES)
            ]
        )
        # transition2/3: existing branches pass through (None); a new one from the last branch.
        self.transition2 = nn.ModuleList(
            # None: branch passes through; keeps the original indices (see fuse_layers above)
            [None, None, nn.Sequential(_conv_bn(c[1], c[2], 3, 2, True, bn_momentum))]  # type: ignore[list-item]
        )
        self.stage3 = nn.Sequential(
            *[
                HighResolutionModule(c[:3], BLOCKS_PER_BRANCH, bn_momentum)
                for _ in range(STAGE3_MODULES)
            ]
        )
        self.transition3 = nn.ModuleList(
            [None, None, None, nn.Sequential(_conv_bn(c[2], c[3], 3, 2, True, bn_momentum))]  # type: ignore[list-item]  # as transition2
        )
        self.out_channels: list[int] = c

    @staticmethod
    def _transition(transition: nn.ModuleList, ys: list[Tensor]) -> list[Tensor]:
        return [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = self.stage2([t(x) for t in self.transition1])
        ys = self.stage3(self._transition(self.transition2, ys))
        return self._transition(self.transition3, ys)


def load_weights(model: HRNetW32Backbone, path: str | Path) -> None:
    """Load the HRNet authors' W32 weights (pose or ImageNet); unbuilt parts are dropped."""
    load_pretrained(model, path, identity_map, UNUSED, source_name="HRNet-W32")


build = register_pretrainable("hrnet_w32", HRNetW32Backbone, load_weights)
