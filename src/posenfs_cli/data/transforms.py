"""Crop affine, training augmentation and input normalisation.

Conventions follow HRNet/SimpleBaseline so that numbers stay comparable:

- the crop is ``cv2.warpAffine`` (bilinear, black border) with the matrix of
  :func:`posenfs_cli.data.affine.get_affine_transform` for (center, scale, rotation);
- augmentation order: half-body (optional) -> scale -> rotation -> flip;
- a flip mirrors the *source* image (x -> width - 1 - x), mirrors the center the same way and
  swaps left/right labels. It is folded into the crop matrix, so no full-size image copy is made;
- images are RGB and normalised with ImageNet mean/std.

Everything here is a pure function of its arguments (randomness comes in as a numpy Generator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from posenfs_cli.config import AugmentConfig
from posenfs_cli.data.affine import PIXEL_STD, affine_points, get_affine_transform
from posenfs_cli.data.layouts import KeypointLayout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CropParams:
    """Where one training/eval crop comes from.

    ``center`` is in the coordinates of the (possibly mirrored) source image, as HRNet stores it;
    ``flip_width`` is the source image width when the crop is mirrored, else None.
    """

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flip_width: int | None = None

    @property
    def flipped(self) -> bool:
        return self.flip_width is not None


def crop_matrix(
    center: np.ndarray | Sequence[float],
    scale: np.ndarray | Sequence[float],
    rotation: float,
    output_size: Sequence[int],
    flip_width: int | None = None,
    inverse: bool = False,
) -> np.ndarray:
    """2x3 matrix image -> crop (or crop -> image with ``inverse``); ``output_size`` = (w, h).

    With ``flip_width`` the source is mirrored first (x -> flip_width - 1 - x) and ``center`` is
    taken in the mirrored frame, i.e. exactly "flip the image, then crop" in one warp.
    """
    m = get_affine_transform(center, scale, rotation, output_size)
    if flip_width is not None:
        mirror = np.array([[-1.0, 0.0, flip_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        m = m @ mirror
    if inverse:
        full = np.vstack([m, [0.0, 0.0, 1.0]])
        m = np.linalg.inv(full)[:2]
    return m


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """Crop with a 2x3 matrix to ``output_size`` = (w, h); bilinear, black outside the image."""
    return cv2.warpAffine(
        image,
        matrix,
        (int(output_size[0]), int(output_size[1])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def flip_joints(joints: np.ndarray, width: int, layout: KeypointLayout) -> np.ndarray:
    """Mirror joints [K, C>=2] in an image of ``width`` px and swap left/right labels."""
    out = np.array(joints, dtype=np.float64, copy=True)
    out[:, 0] = width - 1.0 - out[:, 0]
    return out[layout.flip_permutation()]


def lower_body_mask(layout: KeypointLayout) -> np.ndarray:
    """[K] bool: the layout's lower-body joints (the half a half-body crop may pick)."""
    mask = np.zeros(layout.num_joints, dtype=bool)
    mask[list(layout.lower_body_indices)] = True
    return mask


def half_body_center_scale(
    joints: np.ndarray,
    visible: np.ndarray,
    lower: np.ndarray,
    rng: np.random.Generator,
    aspect_ratio: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body crop: the box of the upper or lower labelled joints, ×1.5.

    Returns None when the chosen half has fewer than 2 labelled joints (no usable box).
    """
    vis = np.asarray(visible) > 0
    upper_sel = vis & ~lower
    lower_sel = vis & lower
    pick_upper = rng.random() < 0.5 and upper_sel.sum() > 2
    sel = upper_sel if pick_upper else lower_sel
    if sel.sum() < 2:
        sel = upper_sel if sel is lower_sel else lower_sel
    if sel.sum() < 2:
        return None
    pts = np.asarray(joints, dtype=np.float64)[sel, :2]
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD]) * 1.5
    return center.astype(np.float32), scale.astype(np.float32)


def sample_crop(
    rng: np.random.Generator,
    aug: AugmentConfig,
    center: np.ndarray,
    scale: np.ndarray,
    joints: np.ndarray,
    image_width: int,
    layout: KeypointLayout,
    aspect_ratio: float,
) -> CropParams:
    """Draw one augmented crop (half-body, scale, rotation, flip) in HRNet's order.

    scale *= clip(N(0,1)·sf + 1, 1 - sf, 1 + sf); rotation = clip(N(0,1)·rf, -2rf, 2rf) with
    probability ``rotation_prob`` else 0; flip with ``flip_prob`` mirrors the center.
    """
    c = np.asarray(center, dtype=np.float64).copy()
    s = np.asarray(scale, dtype=np.float64).copy()
    vis = np.asarray(joints)[:, 2] > 0
    if (
        aug.half_body_prob > 0
        and vis.sum() > aug.half_body_min_joints
        and rng.random() < aug.half_body_prob
    ):
        hb = half_body_center_scale(joints, vis, lower_body_mask(layout), rng, aspect_ratio)
        if hb is not None:
            c, s = hb[0].astype(np.float64), hb[1].astype(np.float64)
    sf, rf = float(aug.scale_factor), float(aug.rotation)
    s = s * float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
    rot_draw = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
    rotation = rot_draw if rng.random() < aug.rotation_prob else 0.0
    flip_width = None
    if aug.flip and rng.random() < aug.flip_prob:
        flip_width = int(image_width)
        c[0] = image_width - 1.0 - c[0]
    return CropParams(c.astype(np.float32), s.astype(np.float32), rotation, flip_width)


def crop_joints(
    joints: np.ndarray, params: CropParams, input_size: Sequence[int], layout: KeypointLayout
) -> np.ndarray:
    """Original-image joints [K, 3] -> input-crop joints [K, 3] (labels swapped when flipped).

    ``input_size`` is (h, w). Column 2 keeps the visibility flag; whether the joint stays inside
    the crop is decided by the target builder.
    """
    j = np.asarray(joints, dtype=np.float64)
    if params.flipped:
        assert params.flip_width is not None  # set whenever flipped
        j = flip_joints(j, int(params.flip_width), layout)
    m = get_affine_transform(
        params.center, params.scale, params.rotation, (input_size[1], input_size[0])
    )
    out = j.copy()
    out[:, :2] = affine_points(j[:, :2], m)
    return out


def normalize_image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float32 tensor [3, H, W] with ImageNet mean/std."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0)
    x = (rgb.astype(np.float32) - mean) * inv_std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def denormalize_image(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_image`: [3, H, W] -> uint8 RGB [H, W, 3]."""
    x = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    rgb = (x * std + mean) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def crop_and_normalize(
    image_bgr: np.ndarray,
    params: CropParams,
    input_size: Sequence[int],
    input_format: str = "rgb",
) -> tuple[torch.Tensor, np.ndarray]:
    """Warp the BGR source into the crop; return (normalised tensor, uint8 RGB crop).

    The tensor's channels are RGB, or BGR for ``input_format="bgr"``: the authors' loader feeds
    OpenCV's BGR crops normalised with the (RGB) ImageNet statistics, and checkpoints imported
    from their code expect exactly that."""
    out_wh = (int(input_size[1]), int(input_size[0]))
    m = crop_matrix(params.center, params.scale, params.rotation, out_wh, params.flip_width)
    crop = warp_crop(image_bgr, m, out_wh)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return normalize_image(crop if input_format == "bgr" else rgb), rgb


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropParams",
    "crop_and_normalize",
    "crop_joints",
    "crop_matrix",
    "denormalize_image",
    "flip_joints",
    "half_body_center_scale",
    "lower_body_mask",
    "normalize_image",
    "sample_crop",
    "warp_crop",
]
