"""Heatmap decoding, mapping back to the image, and flip testing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posenfs_cli.data.affine import affine_points, get_affine_transform
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.evaluation.decode import (
    decode_heatmaps,
    flip_back,
    flip_test,
    get_max_preds,
    heatmap_to_image_coords,
    merge_flip,
)

H, W = 64, 48


def gaussian(cx: float, cy: float, h: int = H, w: int = W, sigma: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


CENTERS = [(20.3, 13.8), (31.0, 5.0), (10.45, 40.6), (7.7, 50.2), (40.1, 22.35), (24.6, 31.4)]


def test_get_max_preds_finds_the_peak_numpy_and_torch():
    hm = np.zeros((2, 3, H, W), dtype=np.float32)
    peaks = np.array([[[5, 7], [0, 0], [47, 63]], [[12, 30], [46, 1], [3, 62]]])  # (x, y)
    n_idx, k_idx = np.meshgrid(np.arange(2), np.arange(3), indexing="ij")
    hm[n_idx, k_idx, peaks[..., 1], peaks[..., 0]] = np.arange(1, 7).reshape(2, 3)
    coords, vals = get_max_preds(hm)
    assert isinstance(coords, np.ndarray)
    np.testing.assert_array_equal(coords, peaks)
    np.testing.assert_array_equal(vals, np.arange(1, 7).reshape(2, 3))
    coords_t, vals_t = get_max_preds(torch.from_numpy(hm))
    assert isinstance(coords_t, torch.Tensor)
    np.testing.assert_array_equal(coords_t.numpy(), peaks)
    np.testing.assert_array_equal(vals_t.numpy(), vals)


def test_subpixel_gaussians_decode_within_quarter_pixel():
    hm = np.stack([gaussian(cx, cy) for cx, cy in CENTERS])[None].astype(np.float32)
    truth = np.array(CENTERS)
    coords, scores = decode_heatmaps(hm)
    err = np.abs(coords[0] - truth)
    assert err.max() <= 0.25 + 1e-6
    # the shift must point the right way: it beats plain argmax wherever the true position is
    # more than 1/8 px off the grid (closer than that, a quarter step overshoots)
    raw, _ = decode_heatmaps(hm, shift=False)
    np.testing.assert_array_equal(raw[0], np.round(truth))
    off_grid = np.abs(truth - np.round(truth)) > 0.15
    assert np.all(err[off_grid] < np.abs(raw[0] - truth)[off_grid])
    # exact grid position, equal neighbours: no shift
    np.testing.assert_array_equal(coords[0, 1], [31.0, 5.0])
    np.testing.assert_allclose(scores[0], hm[0].reshape(len(CENTERS), -1).max(1))


def test_decode_torch_matches_numpy():
    rng = np.random.default_rng(0)
    hm = rng.random((3, 5, 16, 12)).astype(np.float32)
    c_np, s_np = decode_heatmaps(hm)
    c_t, s_t = decode_heatmaps(torch.from_numpy(hm))
    np.testing.assert_array_equal(c_t.numpy(), c_np)
    np.testing.assert_array_equal(s_t.numpy(), s_np)


@pytest.mark.parametrize(
    ("center", "expected"),
    [
        ((-0.3, 10.4), (0.0, 10.25)),  # left border: no outward x step, y still refined
        ((W - 1 + 0.3, 20.7), (W - 1.0, 20.75)),  # right border
        ((15.6, -0.4), (15.75, 0.0)),  # top border
        ((30.3, H - 1 + 0.4), (30.25, H - 1.0)),  # bottom border
        ((-0.4, -0.4), (0.0, 0.0)),  # corner
    ],
)
def test_border_peaks_do_not_shift_outward(center, expected):
    hm = gaussian(*center)[None, None]
    coords, _ = decode_heatmaps(hm)
    np.testing.assert_allclose(coords[0, 0], expected)


def test_heatmap_to_image_coords_round_trips_through_forward_affine():
    rng = np.random.default_rng(1)
    n, k = 6, 17
    center = rng.uniform(100, 500, (n, 2))
    scale = rng.uniform(0.5, 3.0, (n, 2))
    rotation = rng.uniform(-45, 45, n)
    img_pts = center[:, None, :] + rng.uniform(-150, 150, (n, k, 2))
    hm_pts = np.stack(
        [
            affine_points(
                img_pts[i], get_affine_transform(center[i], scale[i], rotation[i], (W, H))
            )
            for i in range(n)
        ]
    )
    back = heatmap_to_image_coords(hm_pts, center, scale, rotation, (W, H))
    np.testing.assert_allclose(back, img_pts, atol=1e-9)
    # torch coords and per-sample inverse matrices agree too
    back_t = heatmap_to_image_coords(torch.from_numpy(hm_pts), center, scale, rotation, (W, H))
    np.testing.assert_allclose(back_t, img_pts, atol=1e-9)
    inv = get_affine_transform(center[2], scale[2], rotation[2], (W, H), inverse=True)
    np.testing.assert_allclose(back[2], affine_points(hm_pts[2], inv), atol=1e-9)


def test_heatmap_to_image_coords_without_rotation_is_a_scale_and_offset():
    coords = np.array([[[W / 2, H / 2], [0.0, 0.0]]])
    out = heatmap_to_image_coords(coords, [[300.0, 200.0]], [[1.2, 1.6]], None, (W, H))
    s = 1.2 * 200 / W  # image px per heatmap px
    np.testing.assert_allclose(out[0], [[300.0, 200.0], [300 - s * W / 2, 200 - s * H / 2]])


def test_flip_back_mirrors_width_and_swaps_pairs():
    pairs = ((0, 2),)
    hm = torch.arange(3 * 2 * 3, dtype=torch.float32).reshape(1, 3, 2, 3)
    out = flip_back(hm, pairs)
    expected = torch.stack([hm[0, 2].flip(-1), hm[0, 1].flip(-1), hm[0, 0].flip(-1)])[None]
    torch.testing.assert_close(out, expected)
    assert out[0, 0, 0].tolist() == [14.0, 13.0, 12.0]  # channel 2 row 0, mirrored
    np.testing.assert_array_equal(flip_back(hm.numpy(), pairs), expected.numpy())


def test_merge_flip_shift_convention():
    a = torch.zeros(1, 1, 1, 4)
    b = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    assert merge_flip(a, b, shift=False)[0, 0, 0].tolist() == [0.5, 1.0, 1.5, 2.0]
    # out[..., 1:] = out[..., :-1]; column 0 keeps its value
    assert merge_flip(a, b, shift=True)[0, 0, 0].tolist() == [0.5, 0.5, 1.0, 1.5]


class MirrorPairConv(torch.nn.Module):
    """Fixed conv whose paired output channels use mirrored kernels: a flip-equivariant model."""

    def __init__(self, num_joints: int, flip_pairs, in_ch: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(num_joints, in_ch, 5, 5, generator=g)
        for a, b in flip_pairs:
            weight[b] = weight[a].flip(-1)
        centre = [j for j in range(num_joints) if all(j not in p for p in flip_pairs)]
        weight[centre] = 0.5 * (weight[centre] + weight[centre].flip(-1))
        self.conv = torch.nn.Conv2d(in_ch, num_joints, 5, padding=2, bias=False)
        self.conv.weight.data.copy_(weight)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.conv(x)


@pytest.mark.parametrize("layout", [MPII, COCO], ids=["mpii", "coco"])
def test_flip_test_single_forward_and_equivariance(layout):
    model = MirrorPairConv(layout.num_joints, layout.flip_pairs)
    x = torch.randn(2, 3, 16, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = model(x)
        model.calls.clear()
        merged = flip_test(model, x, layout.flip_pairs, shift=False)
        assert model.calls == [4]  # one forward of [x, flip(x)]
        # an equivariant model's flipped-back output equals its plain output
        torch.testing.assert_close(merged, plain)
        shifted = flip_test(model, x, layout.flip_pairs, shift=True)
    expected = 0.5 * (plain + torch.cat([plain[..., :1], plain[..., :-1]], dim=-1))
    torch.testing.assert_close(shifted, expected)


def test_flip_test_of_symmetric_input_is_symmetric():
    model = MirrorPairConv(MPII.num_joints, MPII.flip_pairs, seed=5)
    half = torch.randn(1, 3, 16, 6, generator=torch.Generator().manual_seed(7))
    x = torch.cat([half, half.flip(3)], dim=3)  # symmetric about the vertical axis
    assert torch.equal(x, x.flip(3))
    with torch.no_grad():
        out = flip_test(model, x, MPII.flip_pairs, shift=False)
    perm = MPII.flip_permutation()
    # left joint's map is the mirror of the right joint's map, centre joints are symmetric
    torch.testing.assert_close(out, out[:, perm].flip(3))
    assert not torch.allclose(out, out.flip(3))  # non-trivial: paired maps do differ


def test_flip_test_uses_last_output_of_a_list():
    model = MirrorPairConv(MPII.num_joints, MPII.flip_pairs)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        out = flip_test(lambda t: [t[:, :1] * 0, model(t)], x, MPII.flip_pairs, shift=False)
        torch.testing.assert_close(out, model(x))
