"""The keypoint codec: the one place that knows how joints become heatmaps and back.

Three frames are involved, all with the same pixel convention (HRNet/SimpleBaseline, and what
``cv2.warpAffine`` uses): pixel ``(i, j)`` of an image or map sits at ``x = j, y = i``, so a
coordinate *is* a pixel index and resampling is a plain affine, with no half-pixel terms.

- image: the original picture, 0-based pixels;
- crop: the model input (``input_size`` = (h, w)), cut from the image by the crop affine of
  :mod:`posenfs_cli.data.affine`;
- heatmap: the model output (``heatmap_size`` = (h, w), normally the crop over
  :data:`HEATMAP_STRIDE`). crop = heatmap × stride per axis, which is also exactly the crop
  affine built for the heatmap resolution, so heatmap → image goes through that affine.

Training encodes crop joints as Gaussians (:meth:`HeatmapCodec.encode`); evaluation, prediction
and drawing decode maps with argmax + a quarter-pixel step (:meth:`HeatmapCodec.decode`) and
map the result with :meth:`HeatmapCodec.to_image` / :meth:`HeatmapCodec.heatmap_to_crop`.
Flip testing (:func:`flip_test`) averages the maps of a crop and of its mirror.

Decoding functions accept numpy arrays or torch tensors and return the same kind, so decoding
can stay on the accelerator until the final mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast, overload

import numpy as np
import torch

from posenfs_cli.data.affine import PIXEL_STD

ArrayLike = np.ndarray | torch.Tensor

HEATMAP_STRIDE = 4  # every model head outputs maps at 1/4 of the input resolution


# --- encoding ---------------------------------------------------------------------------------


def gaussian_heatmaps(
    joints_hm: np.ndarray,
    visible: np.ndarray,
    heatmap_size: Sequence[int],
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Target heatmaps [K, h, w] and weights [K, 1], both float32.

    ``joints_hm`` [K, 2] are (x, y) in heatmap pixels, ``visible`` [K] marks labelled joints
    (any value > 0), ``heatmap_size`` is (h, w). The peak (value 1) sits at the *rounded*
    position ``mu = floor(p + 0.5)``, evaluated on integer offsets and cut to the square
    (6σ+1)-pixel window around ``mu``. The weight is 1 for a labelled joint whose rounded
    position lies on the map, else 0, so joints that left the crop neither pull the loss nor
    produce a clipped half-Gaussian. The Gaussian is separable, so it is built as the outer
    product of a row and a column profile: exact, and K·(h+w) exponentials instead of K·h·w.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = int(heatmap_size[0]), int(heatmap_size[1])
    pts = np.asarray(joints_hm, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(visible).reshape(-1) > 0
    finite = np.asarray(np.isfinite(pts).all(axis=1))
    mu = np.floor(np.where(finite[:, None], pts, -1e9) + 0.5)
    inside = (mu[:, 0] >= 0) & (mu[:, 0] < w) & (mu[:, 1] >= 0) & (mu[:, 1] < h)
    weight = (vis & finite & inside).astype(np.float32)

    radius = 3.0 * sigma
    dx = np.arange(w, dtype=np.float64)[None, :] - mu[:, :1]
    dy = np.arange(h, dtype=np.float64)[None, :] - mu[:, 1:]
    gx = np.where(np.abs(dx) <= radius, np.exp(-(dx**2) / (2.0 * sigma**2)), 0.0)
    gy = np.where(np.abs(dy) <= radius, np.exp(-(dy**2) / (2.0 * sigma**2)), 0.0)
    target = gy[:, :, None] * gx[:, None, :] * weight[:, None, None]
    return target.astype(np.float32), weight[:, None]


# --- decoding ---------------------------------------------------------------------------------


def _to_tensor(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    """Tensor view of ``x`` (no copy for numpy) and whether the caller gave a tensor."""
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.from_numpy(np.ascontiguousarray(x)), False


def _back(x: torch.Tensor, was_tensor: bool) -> ArrayLike:
    return x if was_tensor else x.numpy()


def _as_numpy(x: ArrayLike | float) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


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


def get_max_preds(heatmaps: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Per-channel argmax: coords [N, K, 2] as (x, y) heatmap pixels and peak values [N, K].

    Unlike HRNet, coordinates of non-positive peaks are not zeroed: the score already says the
    joint is unreliable, and keeping the location is more useful for visualisation.
    """
    t, was_tensor = _to_tensor(heatmaps)
    coords, maxvals, flat = _max_preds(t)
    coords, maxvals = _mark_non_finite(coords, maxvals, flat)
    return _back(coords, was_tensor), _back(maxvals, was_tensor)


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


# --- crop/heatmap -> image --------------------------------------------------------------------


def crop_to_image_coords(
    coords: ArrayLike,
    center: ArrayLike,
    scale: ArrayLike,
    rotation: ArrayLike | float | None,
    crop_size: Sequence[int],
) -> np.ndarray:
    """Map points [N, K, 2] of a crop of ``crop_size`` = (w, h) back to image pixels (float64).

    Each sample has its own ``center`` [N, 2], ``scale`` [N, 2] (units of 200 px) and
    ``rotation`` ([N], a scalar, or None for 0), as used to crop it. This is the batched inverse
    of ``data.affine.get_affine_transform(center, scale, rotation, crop_size)``:
    p = c + R(θ)ᵀ (q − o) / s with s = crop_w / (scale_w · 200) and o the crop centre. It serves
    any resolution of the same crop: the model input, or the heatmap (crop over the stride).
    """
    q = _as_numpy(coords)
    c = _as_numpy(center).reshape(-1, 2)
    sc = _as_numpy(scale).reshape(-1, 2)
    n = q.shape[0]
    rot = np.zeros(n) if rotation is None else np.broadcast_to(_as_numpy(rotation), (n,))
    out_w, out_h = float(crop_size[0]), float(crop_size[1])
    s = out_w / (sc[:, 0] * PIXEL_STD)
    theta = np.radians(rot)
    cos, sin = np.cos(theta), np.sin(theta)
    # rows of the inverse linear part R(θ)ᵀ / s, per sample: [[cos, -sin], [sin, cos]] / s
    a_inv = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2) / s[:, None, None]
    rel = q - np.array([out_w * 0.5, out_h * 0.5])
    image_xy: np.ndarray = c[:, None, :] + np.einsum("nkj,nij->nki", rel, a_inv)
    return image_xy


# --- flip testing -----------------------------------------------------------------------------


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


def model_heatmaps(
    model: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]],
    x: torch.Tensor,
    flip_pairs: Sequence[Sequence[int]],
    flip: bool = True,
    shift: bool = True,
) -> torch.Tensor:
    """The maps evaluation and prediction decode: flip-tested, or the (last) plain output."""
    if flip:
        return flip_test(model, x, flip_pairs, shift=shift)
    out = model(x)
    return cast(torch.Tensor, out[-1] if isinstance(out, (list, tuple)) else out)


# --- the codec --------------------------------------------------------------------------------


def _hw(size: Sequence[int], what: str) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be positive (h, w), got {tuple(size)}")
    return h, w


@dataclass(frozen=True)
class HeatmapCodec:
    """Crop joints ↔ heatmaps for one model geometry; sizes are (h, w).

    ``sigma`` (heatmap pixels) only matters for :meth:`encode`. Build it with
    :meth:`for_input` (training: maps at 1/:data:`HEATMAP_STRIDE`) or :meth:`for_maps`
    (decoding: the size the model actually produced).
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", _hw(self.input_size, "input_size"))
        object.__setattr__(self, "heatmap_size", _hw(self.heatmap_size, "heatmap_size"))
        object.__setattr__(self, "sigma", float(self.sigma))

    @classmethod
    def for_input(
        cls, input_size: Sequence[int], sigma: float = 2.0, stride: int = HEATMAP_STRIDE
    ) -> HeatmapCodec:
        """The codec of a model input (h, w) whose maps are ``stride`` times smaller."""
        h, w = _hw(input_size, "input_size")
        return cls((h, w), (h // stride, w // stride), sigma)

    @classmethod
    def for_maps(
        cls, input_size: Sequence[int], maps: ArrayLike, sigma: float = 2.0
    ) -> HeatmapCodec:
        """The codec matching maps ``[..., h, w]`` a model produced for inputs of ``input_size``."""
        return cls(_hw(input_size, "input_size"), _hw(maps.shape[-2:], "heatmap_size"), sigma)

    # --- geometry ---------------------------------------------------------------------------
    @property
    def stride(self) -> np.ndarray:
        """Crop pixels per heatmap pixel, (x, y) float64 (4, 4 in this project)."""
        return np.array(
            [
                self.input_size[1] / self.heatmap_size[1],
                self.input_size[0] / self.heatmap_size[0],
            ],
            dtype=np.float64,
        )

    def crop_to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """Crop points [..., 2+] -> heatmap (x, y) [..., 2]: a division by the stride."""
        return np.asarray(points, dtype=np.float64)[..., :2] / self.stride

    def heatmap_to_crop(self, coords: ArrayLike) -> np.ndarray:
        """Heatmap (x, y) [..., 2] -> crop pixels (float64): a multiplication by the stride."""
        return _as_numpy(coords) * self.stride

    def heatmap_to_crop_matrix(self) -> np.ndarray:
        """2x3 affine heatmap -> crop, for ``cv2.warpAffine``-ing maps onto the crop."""
        sx, sy = self.stride
        return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]], dtype=np.float64)

    def to_image(
        self,
        coords: ArrayLike,
        center: ArrayLike,
        scale: ArrayLike,
        rotation: ArrayLike | float | None = None,
        grid: Literal["heatmap", "crop"] = "heatmap",
    ) -> np.ndarray:
        """Heatmap (or with ``grid="crop"``, crop) coords [N, K, 2] -> image pixels, through the
        crop affine at that grid's resolution."""
        h, w = self.heatmap_size if grid == "heatmap" else self.input_size
        return crop_to_image_coords(coords, center, scale, rotation, (w, h))

    # --- targets and predictions --------------------------------------------------------------
    def encode(
        self, joints_crop: np.ndarray, visibility: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop joints [K, 2+] and visibility [K] -> (target [K, h, w], weight [K, 1]) float32."""
        return gaussian_heatmaps(
            self.crop_to_heatmap(joints_crop), visibility, self.heatmap_size, self.sigma
        )

    @overload
    def decode(
        self, maps: torch.Tensor, shift: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def decode(self, maps: np.ndarray, shift: bool = True) -> tuple[np.ndarray, np.ndarray]: ...
    def decode(self, maps: ArrayLike, shift: bool = True) -> tuple[ArrayLike, ArrayLike]:
        """Maps [N, K, h, w] -> (heatmap coords [N, K, 2], scores [N, K]) (``decode_heatmaps``)."""
        if tuple(maps.shape[-2:]) != self.heatmap_size:
            raise ValueError(
                f"maps are {tuple(maps.shape[-2:])}, the codec expects {self.heatmap_size}"
            )
        return decode_heatmaps(maps, shift=shift)

    def decode_to_image(
        self,
        maps: ArrayLike,
        center: ArrayLike,
        scale: ArrayLike,
        rotation: ArrayLike | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Maps -> (image keypoints [N, K, 2], scores [N, K]), both float64 numpy.

        What evaluation and prediction both report, so the same crop scores what it predicts.
        """
        coords, scores = self.decode(maps, shift=True)
        return self.to_image(coords, center, scale, rotation), _as_numpy(scores)


__all__ = [
    "HEATMAP_STRIDE",
    "HeatmapCodec",
    "crop_to_image_coords",
    "decode_heatmaps",
    "flip_back",
    "flip_test",
    "gaussian_heatmaps",
    "get_max_preds",
    "merge_flip",
    "model_heatmaps",
]
