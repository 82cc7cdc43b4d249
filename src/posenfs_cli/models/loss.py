"""The training loss."""

from __future__ import annotations

from torch import Tensor


def pose_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """0.5 × mean over batch, joints and pixels of w·(pred − gt)²; w is [N, K, 1] (0/1)."""
    w = weight.reshape(weight.shape[0], weight.shape[1], 1, 1).to(pred.dtype)
    return 0.5 * (w * (pred - target).square()).mean()
