"""Hand-designed heads the paper compares against (``model.head: branchnet | deconv``).

Both sit on the same backbone pyramid as the CNFs, are built per body part, and end in the same
vector-in-pixel head (:class:`~posenfs_cli.models.head.VectorHead`, any d), so a ``PoseNet``
with them trains, evaluates, profiles and predicts like a CNF model. They have no α/β.

- **Branchnet** (paper Tab VI, after Tang & Wu's part-based branches): the four pyramid levels
  are upsampled (bilinear) to 1/4 and concatenated (HRNet-W32 stem→stage3: 32+64+128+256 = 480
  channels), a 1x1 conv (no bias) + BN + ReLU reduces them to W channels, then D residual
  blocks. The paper does not say which residual block; we assume the ResNet bottleneck with
  identity shortcut: 1x1 W→W/4, 3x3 W/4→W/4, 1x1 W/4→W, BN after each conv, ReLU after the first
  two and after the sum. With W=400/D=8 (×3 parts) and W=296/D=8 (×5 parts) this gives 12.82M /
  12.61M params and 23.67 / 22.83 "GFLOPs" (conv MACs / 2^30, the paper's unit) at 256x256 with
  d=1 — the paper's 12.8M/23.7G and 12.6M/22.8G. (A basic block, 2×3x3 W→W, would be 23M per
  branch; Newell's W/2 bottleneck 4.2M per branch: neither fits.)
- **Deconv** (SimpleBaseline): the coarsest level (1/32) → ``layers`` × [k×k ConvTranspose
  stride 2 (no bias), BN, ReLU] at ``channels`` → the vector head's 1x1 conv, at 1/4.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posenfs_cli.config import BranchnetConfig, DeconvConfig
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.head import VectorHead
from posenfs_cli.models.parts import PartGroup


class Bottleneck(nn.Module):
    """ResNet bottleneck, identity shortcut: 1x1 W→W/4, 3x3, 1x1 W/4→W; ReLU after the sum."""

    def __init__(self, width: int, bn_momentum: float = 0.1):
        super().__init__()
        mid = max(1, width // 4)
        self.conv1 = nn.Conv2d(width, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(mid, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width, momentum=bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + x)


class PartHead(nn.Module):
    """One body part's hand-designed head: its own layers on the pyramid (``build``, which
    returns their output channels), then the vector head for the part's joints."""

    def __init__(
        self,
        group: PartGroup,
        cfg: Any,
        in_channels: list[int],
        vector_dim: int,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        self.name = group.name
        self.joints = group.joints
        width = self.build(cfg, in_channels, bn_momentum)
        self.head = VectorHead(width, len(group.joints), vector_dim)

    def build(self, cfg: Any, in_channels: list[int], bn_momentum: float) -> int:
        raise NotImplementedError


class BranchNet(PartHead):
    """One body part: fused pyramid at 1/4 → 1x1 to W → D bottlenecks → vector head."""

    def build(self, cfg: BranchnetConfig, in_channels: list[int], bn_momentum: float) -> int:
        self.reduce = nn.Sequential(
            nn.Conv2d(sum(in_channels), cfg.width, 1, bias=False),
            nn.BatchNorm2d(cfg.width, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[Bottleneck(cfg.width, bn_momentum) for _ in range(cfg.depth)])
        return cfg.width

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        size = pyramid[0].shape[-2:]
        feats = [pyramid[0]] + [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid[1:]
        ]
        return cast(Tensor, self.head(self.blocks(self.reduce(torch.cat(feats, dim=1)))))


class DeconvHead(PartHead):
    """SimpleBaseline: coarsest level → N × [deconv k stride 2, BN, ReLU] → vector head (1x1)."""

    def build(self, cfg: DeconvConfig, in_channels: list[int], bn_momentum: float) -> int:
        pad, out_pad = {4: (1, 0), 3: (1, 1), 2: (0, 0)}[cfg.kernel]
        layers: list[nn.Module] = []
        c = in_channels[-1]
        for _ in range(cfg.layers):
            layers += [
                nn.ConvTranspose2d(
                    c,
                    cfg.channels,
                    cfg.kernel,
                    stride=2,
                    padding=pad,
                    output_padding=out_pad,
                    bias=False,
                ),
                nn.BatchNorm2d(cfg.channels, momentum=bn_momentum),
                nn.ReLU(inplace=True),
            ]
            c = cfg.channels
        self.deconv = nn.Sequential(*layers)
        return c

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        # The head's own ReLU is a no-op after the deconv stack's ReLU (kept: one head class).
        return cast(Tensor, self.head(self.deconv(pyramid[-1])))


def validate_baseline(head: str, branch: BranchnetConfig, deconv: DeconvConfig) -> None:
    if head == "branchnet":
        if branch.width < 4 or branch.depth < 0:
            raise PosenfsError(
                f"model.branchnet needs width >= 4 and depth >= 0, got width={branch.width}, "
                f"depth={branch.depth}"
            )
    elif head == "deconv":
        if deconv.kernel not in (2, 3, 4):
            raise PosenfsError(f"model.deconv.kernel must be 2, 3 or 4, got {deconv.kernel}")
        if deconv.layers != 3:
            # the pyramid's coarsest level is 1/32; three stride-2 deconvs bring it to 1/4
            raise PosenfsError(
                f"model.deconv.layers must be 3 (1/32 -> 1/4 heatmaps), got {deconv.layers}"
            )
        if deconv.channels < 1:
            raise PosenfsError(f"model.deconv.channels must be >= 1, got {deconv.channels}")


def build_baseline_parts(
    head: str,
    groups: list[PartGroup],
    in_channels: list[int],
    branch: BranchnetConfig,
    deconv: DeconvConfig,
    vector_dim: int,
    bn_momentum: float = 0.1,
) -> list[nn.Module]:
    validate_baseline(head, branch, deconv)
    if head == "branchnet":
        return [BranchNet(g, branch, in_channels, vector_dim, bn_momentum) for g in groups]
    return [DeconvHead(g, deconv, in_channels, vector_dim, bn_momentum) for g in groups]
