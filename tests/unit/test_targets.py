"""Gaussian heatmap targets and weights against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posenfs_cli.data.targets import gaussian_heatmaps, heatmap_positions


def one(x: float, y: float, size=(64, 48), sigma: float = 2.0, vis: float = 1.0):
    t, w = gaussian_heatmaps(np.array([[x, y]]), np.array([vis]), size, sigma)
    return t[0], float(w[0, 0])


def test_shapes_and_dtypes():
    t, w = gaussian_heatmaps(np.zeros((17, 2)) + 5, np.ones(17), (64, 48), 2.0)
    assert t.shape == (17, 64, 48) and t.dtype == np.float32
    assert w.shape == (17, 1) and w.dtype == np.float32


def test_peak_is_one_at_the_rounded_position():
    t, w = one(10.3, 7.6)
    assert w == 1.0
    assert t[8, 10] == 1.0  # rows are y, columns x; (10.3, 7.6) rounds to (10, 8)
    assert np.unravel_index(np.argmax(t), t.shape) == (8, 10)
    t, _ = one(10.5, 7.5)  # halves round up, as floor(x + 0.5)
    assert t[8, 11] == 1.0


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_values_follow_sigma(sigma):
    t, _ = one(20, 30, sigma=sigma)
    assert t[30, 21] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert t[29, 20] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert t[31, 22] == pytest.approx(math.exp(-5 / (2 * sigma**2)), rel=1e-6)


def test_cut_at_three_sigma_square_window():
    t, _ = one(20, 30, sigma=2.0)
    r = 6  # 3 sigma
    assert t[30, 20 + r] == pytest.approx(math.exp(-36 / 8), rel=1e-6)
    assert t[30, 20 + r + 1] == 0.0
    assert t[30 - r - 1, 20] == 0.0
    assert t[30 + r, 20 + r] == pytest.approx(math.exp(-72 / 8), rel=1e-5)  # corner kept
    assert (t > 0).sum() == (2 * r + 1) ** 2


def test_weights_at_and_after_borders():
    h, w = 64, 48
    assert one(w - 0.51, 10, (h, w))[1] == 1.0  # rounds to the last column
    assert one(w - 0.5, 10, (h, w))[1] == 0.0  # rounds onto the border line -> out
    assert one(-0.5, 10, (h, w))[1] == 1.0  # rounds to column 0
    assert one(-0.51, 10, (h, w))[1] == 0.0
    assert one(10, h - 0.5, (h, w))[1] == 0.0
    assert one(10, -3, (h, w))[1] == 0.0
    t, wt = one(w + 2, 10, (h, w))
    assert wt == 0.0 and not t.any()  # no clipped half-Gaussian either


def test_unlabelled_and_nan_give_zero():
    t, w = one(10, 10, vis=0)
    assert w == 0.0 and not t.any()
    t, w = gaussian_heatmaps(np.array([[np.nan, 3.0]]), np.array([1]), (16, 16), 1.0)
    assert w[0, 0] == 0.0 and not t.any()


def test_vectorised_over_joints_matches_single():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 60, (16, 2))
    vis = rng.integers(0, 2, 16)
    t, w = gaussian_heatmaps(pts, vis, (64, 48), 2.0)
    for k in range(16):
        tk, wk = one(pts[k, 0], pts[k, 1], vis=vis[k])
        np.testing.assert_array_equal(t[k], tk)
        assert w[k, 0] == wk


def test_heatmap_positions_use_the_stride():
    hm = heatmap_positions(np.array([[100.0, 40.0, 1.0]]), (256, 192), (64, 48))
    np.testing.assert_allclose(hm, [[25.0, 10.0]])
