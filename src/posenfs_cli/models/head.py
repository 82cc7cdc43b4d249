"""Vector-in-pixel head (paper §III-D) and the per-keypoint merge of part maps (Eq. 7)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def squash_score(v: Tensor, dim: int) -> Tensor:
    """Length of the squashed vector: ``‖v‖² / (1 + ‖v‖²)`` along ``dim`` (no sqrt needed)."""
    n2 = v.square().sum(dim)
    return n2 / (1.0 + n2)


def vector_scores(raw: Tensor, num_joints: int, dim: int) -> Tensor:
    """[N, K·d, h, w] keypoint-major channels -> [N, K, h, w] scores; d = 1 is a plain heatmap."""
    if dim == 1:
        return raw
    n, _, h, w = raw.shape
    return squash_score(raw.reshape(n, num_joints, dim, h, w), dim=2)


class VectorHead(nn.Module):
    """ReLU -> 1x1 conv (bias) -> K_p·d channels -> per-keypoint scores."""

    def __init__(self, in_channels: int, num_joints: int, vector_dim: int):
        super().__init__()
        self.num_joints, self.vector_dim = num_joints, vector_dim
        self.conv = nn.Conv2d(in_channels, num_joints * vector_dim, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return vector_scores(self.conv(torch.relu(x)), self.num_joints, self.vector_dim)


def merge_parts(part_maps: list[Tensor], index: Tensor, num_joints: int) -> Tensor:
    """Sum part maps per keypoint: a keypoint in two parts gets the sum of both maps."""
    stacked = part_maps[0] if len(part_maps) == 1 else torch.cat(part_maps, dim=1)
    n, _, h, w = stacked.shape
    out = stacked.new_zeros(n, num_joints, h, w)
    return out.index_add(1, index, stacked)
