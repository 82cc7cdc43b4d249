"""Training targets: Gaussian heatmaps and per-joint weights (HRNet/SimpleBaseline style).

The implementation is the keypoint codec (:mod:`posenfs_cli.data.codec`); these names stay for
callers that build targets without a :class:`~posenfs_cli.data.codec.HeatmapCodec`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenfs_cli.data.codec import HeatmapCodec, gaussian_heatmaps


def heatmap_positions(
    joints_input: np.ndarray,
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
) -> np.ndarray:
    """Input-pixel joints [K, 2+] -> heatmap coordinates [K, 2]; sizes are (h, w).

    ``HeatmapCodec.crop_to_heatmap``: a division by the stride, no half-pixel offset.
    """
    codec = HeatmapCodec(
        (int(input_size[0]), int(input_size[1])), (int(heatmap_size[0]), int(heatmap_size[1]))
    )
    return codec.crop_to_heatmap(joints_input)


__all__ = ["gaussian_heatmaps", "heatmap_positions"]
