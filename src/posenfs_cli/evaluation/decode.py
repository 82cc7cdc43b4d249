"""Heatmap decoding and flip testing, as used by evaluation.

The implementation is the keypoint codec (:mod:`posenfs_cli.data.codec`): coordinates are (x, y)
in heatmap pixels, pixel ``(i, j)`` at ``x = j, y = i``, mapped back to image pixels through the
inverse of the crop affine built for the heatmap resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posenfs_cli.data.codec import (
    ArrayLike,
    crop_to_image_coords,
    decode_heatmaps,
    flip_back,
    flip_test,
    get_max_preds,
    merge_flip,
)


def heatmap_to_image_coords(
    coords: ArrayLike,
    center: ArrayLike,
    scale: ArrayLike,
    rotation: ArrayLike | float | None,
    heatmap_size: Sequence[int],
) -> np.ndarray:
    """Heatmap coords [N, K, 2] -> image pixels; ``heatmap_size`` is (w, h).

    ``HeatmapCodec.to_image`` without a codec at hand.
    """
    return crop_to_image_coords(coords, center, scale, rotation, heatmap_size)


__all__ = [
    "decode_heatmaps",
    "flip_back",
    "flip_test",
    "get_max_preds",
    "heatmap_to_image_coords",
    "merge_flip",
]
