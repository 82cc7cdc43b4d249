"""Heatmap decoding and flip testing.

Heatmaps are [N, K, h, w]. Decoded coordinates are (x, y) in heatmap pixels, where pixel
``(i, j)`` sits at ``x = j, y = i`` (HRNet/SimpleBaseline convention, the same one the targets
are drawn in), then mapped back to image pixels through the inverse of the crop affine built
for the heatmap resolution. Functions accept numpy arrays or torch tensors and return the same
kind, so decoding can stay on the accelerator until the final mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast, overload

import numpy as np
import torch

from posenfs_cli.data.affine import PIXEL_STD

ArrayLike = np.ndarray | torch.Tensor


def _to_tensor(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    """Tensor view of ``x`` (no copy for numpy) and whether the caller gave a tensor."""
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.from_numpy(np.ascontiguousarray(x)), False


def _back(x: torch.Tensor, was_tensor: bool) -> ArrayLike:
    return x if was_tensor else x.numpy()


def _check_4d(t: torch.Tensor, what: str) -> None:
    if t.ndim != 4:
        raise ValueError(f"{what} must be [N, K, h, w], got shape {tuple(t.shape)}")


def _coord_dtype(t: torch.Tensor) -> torch.dtype:
    # float32 keeps quarter-pixel offsets exact at any realistic heatmap size (half would not).
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _max_preds(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(coords [N,K,2], maxvals [N,K], flat [N,K,h*w]) as tensors."""
    _check_4d(t, "heatmaps")
    n, k, h, w = t.shape
    flat = t.reshape(n, k, h * w)
    idx = flat.argmax(dim=2)  # first maximum on ties, so results are deterministic
    maxvals = flat.gather(2, idx.unsqueeze(-1)).squeeze(-1)
    coords = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1)
    return coords.to(_coord_dtype(t)), maxvals, flat


def get_max_preds(heatmaps: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Per-channel argmax: coords [N, K, 2] as (x, y) heatmap pixels and peak values [N, K].

    Unlike HRNet, coordinates of non-positive peaks are not zeroed: the score already says the
    joint is unreliable, and keeping the location is more useful for visualisation.
    """
    t, was_tensor = _to_tensor(heatmaps)
    coords, maxvals, flat = _max_preds(t)
    coords, maxvals = _mark_non_finite(coords, maxvals, flat)
    return _back(coords, was_tensor), _back(maxvals, was_tensor)


def _mark_non_finite(
    coords: torch.Tensor, maxvals: torch.Tensor, flat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN coords and score for channels holding NaN/inf, so a broken output cannot pass for a
    confident joint at (0, 0): metrics count it as a miss and writers can flag it."""
    bad = ~torch.isfinite(flat).all(dim=2)
    if not bool(bad.any()):
        return coords, maxvals
    nan = float("nan")
    return coords.masked_fill(bad.unsqueeze(-1), nan), maxvals.masked_fill(bad, nan)


@overload
def decode_heatmaps(
    heatmaps: torch.Tensor, shift: bool = True
) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def decode_heatmaps(heatmaps: np.ndarray, shift: bool = True) -> tuple[np.ndarray, np.ndarray]: ...
def decode_heatmaps(heatmaps: ArrayLike, shift: bool = True) -> tuple[ArrayLike, ArrayLike]:
    """Argmax plus a quarter-pixel step toward the higher neighbour on each axis.

    The step approximates the sub-pixel peak (the argmax is off by up to half a pixel). It is
    taken per axis only where both neighbours on that axis exist, so a peak on the border never
    moves outward; equal neighbours give no step. Score = peak value; a channel with any NaN/inf
    value decodes to NaN coords and a NaN score. Returns (coords [N,K,2]
    in heatmap pixels, scores [N,K]).
    """
    t, was_tensor = _to_tensor(heatmaps)
    coords, maxvals, flat = _max_preds(t)
    if shift:
        h, w = t.shape[2], t.shape[3]
        px = coords[..., 0].long()
        py = coords[..., 1].long()

        def value_at(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return flat.gather(2, (y * w + x).unsqueeze(-1)).squeeze(-1)

        dx = value_at((px + 1).clamp(max=w - 1), py) - value_at((px - 1).clamp(min=0), py)
        dy = value_at(px, (py + 1).clamp(max=h - 1)) - value_at(px, (py - 1).clamp(min=0))
        inside_x = (px > 0) & (px < w - 1)
        inside_y = (py > 0) & (py < h - 1)
        step = torch.stack(
            [torch.sign(dx) * inside_x.to(dx.dtype), torch.sign(dy) * inside_y.to(dy.dtype)],
            dim=-1,
        )
        coords = coords + 0.25 * step.to(coords.dtype)
    coords, maxvals = _mark_non_finite(coords, maxvals, flat)
    return _back(coords, was_tensor), _back(maxvals, was_tensor)


def heatmap_to_image_coords(
    coords: ArrayLike,
    center: ArrayLike,
    scale: ArrayLike,
    rotation: ArrayLike | float | None,
    heatmap_size: Sequence[int],
) -> np.ndarray:
    """Map heatmap coords [N, K, 2] back to original image pixels (float64 numpy).

    Each sample has its own ``center`` [N, 2], ``scale`` [N, 2] (units of 200 px) and
    ``rotation`` ([N], a scalar, or None for 0), as used to crop it. This is the batched inverse
    of ``data.affine.get_affine_transform(center, scale, rotation, heatmap_size)``:
    p = c + R(θ)ᵀ (q − o) / s with s = heatmap_w / (scale_w · 200) and o the heatmap centre.
    """
    q = _as_numpy(coords)
    c = _as_numpy(center).reshape(-1, 2)
    sc = _as_numpy(scale).reshape(-1, 2)
    n = q.shape[0]
    rot = np.zeros(n) if rotation is None else np.broadcast_to(_as_numpy(rotation), (n,))
    out_w, out_h = float(heatmap_size[0]), float(heatmap_size[1])
    s = out_w / (sc[:, 0] * PIXEL_STD)
    theta = np.radians(rot)
    cos, sin = np.cos(theta), np.sin(theta)
    # rows of the inverse linear part R(θ)ᵀ / s, per sample: [[cos, -sin], [sin, cos]] / s
    a_inv = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2) / s[:, None, None]
    rel = q - np.array([out_w * 0.5, out_h * 0.5])
    image_xy: np.ndarray = c[:, None, :] + np.einsum("nkj,nij->nki", rel, a_inv)
    return image_xy


def _as_numpy(x: ArrayLike | float) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _flip_perm(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
    perm = np.arange(num_joints)
    pairs = np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2)
    perm[pairs[:, 0]] = pairs[:, 1]
    perm[pairs[:, 1]] = pairs[:, 0]
    return perm


def flip_back(heatmaps_flipped: ArrayLike, flip_pairs: Sequence[Sequence[int]]) -> ArrayLike:
    """Undo a horizontal input flip on heatmaps: mirror along width and swap paired channels.

    After the flip, channel ``left_x`` holds the person's right x, so pairs must swap back.
    """
    t, was_tensor = _to_tensor(heatmaps_flipped)
    _check_4d(t, "heatmaps_flipped")
    perm = torch.from_numpy(_flip_perm(t.shape[1], flip_pairs)).to(t.device)
    return _back(t.index_select(1, perm).flip(3), was_tensor)


def merge_flip(hm: ArrayLike, hm_flipped_back: ArrayLike, shift: bool = True) -> ArrayLike:
    """Average original and flipped-back heatmaps.

    With ``shift`` the flipped-back map moves one pixel right first (``out[..., 1:] =
    out[..., :-1]``; column 0 keeps its value), the HRNet/SimpleBaseline correction for the
    misalignment that mirroring an even-width map introduces.
    """
    a, was_tensor = _to_tensor(hm)
    b, _ = _to_tensor(hm_flipped_back)
    _check_4d(a, "hm")
    if a.shape != b.shape:
        raise ValueError(f"heatmap shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if shift:
        b = torch.cat([b[..., :1], b[..., :-1]], dim=-1)
    return _back((a + b.to(a.dtype)) * 0.5, was_tensor)


def flip_test(
    model: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    x: torch.Tensor,
    flip_pairs: Sequence[Sequence[int]],
    shift: bool = True,
) -> torch.Tensor:
    """Flip-test heatmaps for a batch ``x`` [N, C, H, W] with ONE forward of [x, flip(x)].

    One batched forward keeps BatchNorm/other batch effects identical for both halves and halves
    the launch overhead. If the model returns a list/tuple (intermediate supervision), the last
    output is used.
    """
    n = x.shape[0]
    out = model(torch.cat([x, x.flip(3)], dim=0))
    if isinstance(out, (list, tuple)):
        out = out[-1]
    hm = cast(torch.Tensor, out)  # a list/tuple output was replaced by its last entry
    merged = merge_flip(hm[:n], flip_back(hm[n:], flip_pairs), shift=shift)
    return cast(torch.Tensor, merged)  # tensors in, tensor out
