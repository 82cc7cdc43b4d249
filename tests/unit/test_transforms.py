"""Crop affine, flip with pair swap, augmentation ranges, normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posenfs_cli.config import AugmentConfig
from posenfs_cli.data.affine import affine_points
from posenfs_cli.data.base import PoseDataset, PoseRecords
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.data.transforms import (
    CropParams,
    crop_joints,
    crop_matrix,
    denormalize_image,
    flip_joints,
    half_body_center_scale,
    lower_body_mask,
    normalize_image,
    sample_crop,
    warp_crop,
)


class ArraySource:
    """Image source over in-memory arrays (for tests)."""

    def __init__(self, images: dict[str, np.ndarray]):
        self.images = images

    def load(self, name):
        return self.images.get(name)

    def describe(self, name):
        return name

    def missing(self, names):
        return [n for n in names if n not in self.images]


def test_flip_folded_into_the_matrix_equals_flipping_the_image():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(noise, (0, 0), 3)  # smooth: 1/32-px rounding barely matters
    c, s, rot = np.array([50.0, 40.0]), np.array([0.4, 0.4]), 17.0
    c_m = np.array([120 - 1 - c[0], c[1]])
    a = warp_crop(np.ascontiguousarray(img[:, ::-1]), crop_matrix(c_m, s, rot, (64, 64)), (64, 64))
    b = warp_crop(img, crop_matrix(c_m, s, rot, (64, 64), flip_width=120), (64, 64))
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05  # OpenCV's 1/32-px fixed-point rounding


def test_inverse_matrix_round_trip():
    m = crop_matrix([50.0, 40.0], [0.4, 0.4], 25.0, (48, 64), flip_width=120)
    inv = crop_matrix([50.0, 40.0], [0.4, 0.4], 25.0, (48, 64), flip_width=120, inverse=True)
    pts = np.random.default_rng(1).uniform(0, 100, (20, 2))
    np.testing.assert_allclose(affine_points(affine_points(pts, m), inv), pts, atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
def test_image_and_joints_move_together(flip):
    """Dots drawn at joints land where crop_joints puts the joints (rotation, scale, flip)."""
    h, w = 120, 160
    joints = np.array([[40.0, 30.0, 1], [120.0, 50.0, 1], [70.0, 100.0, 1]])
    layout = MPII
    k = layout.num_joints
    j16 = np.zeros((k, 3))
    ids = [layout.index("left_wrist"), layout.index("right_ankle"), layout.index("pelvis")]
    j16[ids] = joints
    params = CropParams(
        np.array([w - 1 - 80.0 if flip else 80.0, 60.0]),
        np.array([0.9, 0.9]),
        30.0,
        w if flip else None,
    )
    out = crop_joints(j16, params, (128, 128), layout)
    perm = layout.flip_permutation()
    m = crop_matrix(params.center, params.scale, params.rotation, (128, 128), params.flip_width)
    for src_id in ids:
        canvas = np.zeros((h, w), np.float32)
        x, y = j16[src_id, :2]
        cv2.circle(canvas, (int(x * 16), int(y * 16)), 3 * 16, 1.0, -1, cv2.LINE_AA, 4)
        crop = warp_crop(canvas, m, (128, 128))
        ys, xs = np.mgrid[0:128, 0:128]
        cx, cy = (crop * xs).sum() / crop.sum(), (crop * ys).sum() / crop.sum()
        dst = perm[src_id] if flip else src_id
        assert abs(out[dst, 0] - cx) < 0.5 and abs(out[dst, 1] - cy) < 0.5


def test_flip_swaps_pairs_asymmetric_pose():
    """Left wrist raised, right wrist low: after a flip the joint labelled left wrist is at the
    mirrored position of the former right wrist (and vice versa)."""
    width = 200
    j = np.zeros((16, 3))
    lw, rw = MPII.index("left_wrist"), MPII.index("right_wrist")
    j[lw] = [150.0, 20.0, 1]  # raised
    j[rw] = [40.0, 170.0, 1]  # low
    f = flip_joints(j, width, MPII)
    np.testing.assert_allclose(f[lw, :2], [width - 1 - 40.0, 170.0])
    np.testing.assert_allclose(f[rw, :2], [width - 1 - 150.0, 20.0])
    # COCO pairs too
    c = np.zeros((17, 3))
    c[COCO.index("left_eye")] = [10, 5, 2]
    fc = flip_joints(c, 100, COCO)
    np.testing.assert_allclose(fc[COCO.index("right_eye")], [89, 5, 2])


def test_flip_through_the_dataset_swaps_labels_and_targets():
    width, height = 200, 200
    j = np.zeros((1, 16, 3))
    lw, rw = MPII.index("left_wrist"), MPII.index("right_wrist")
    j[0, lw] = [150.0, 30.0, 1]
    j[0, rw] = [60.0, 170.0, 1]
    rec = PoseRecords(
        images=["a"],
        image_ids=[0],
        centers=[[100.0, 100.0]],
        scales=[[1.0, 1.0]],
        joints=j,
        headboxes=np.zeros((1, 4)),
        areas=[0],
        scores=[1],
    )
    aug = AugmentConfig(scale_factor=0.0, rotation=0.0, rotation_prob=0.0, flip_prob=1.0)
    src = ArraySource({"a": np.zeros((height, width, 3), np.uint8)})
    ds = PoseDataset(rec, MPII, src, name="t", input_size=(200, 200), augment=aug, train=True)
    s = ds.get_sample(0)
    assert s.meta["flipped"]
    # crop maps 200 px onto 200 px around the mirrored centre (99, 100) -> output centre
    # (100, 100): x' = mirrored x + 1, y' = y
    np.testing.assert_allclose(s.joints_input[lw, :2], [width - 1 - 60.0 + 1, 170.0], atol=1e-4)
    np.testing.assert_allclose(s.joints_input[rw, :2], [width - 1 - 150.0 + 1, 30.0], atol=1e-4)
    peak = np.unravel_index(np.argmax(s.target[lw]), s.target[lw].shape)
    assert peak == (43, 35)  # floor(170 / 4 + 0.5), floor(140 / 4 + 0.5)
    # meta keeps the original joints
    np.testing.assert_array_equal(s.meta["joints"], j[0].astype(np.float32))


def test_sample_crop_ranges_and_probabilities():
    aug = AugmentConfig(scale_factor=0.3, rotation=30.0, rotation_prob=0.6, flip_prob=0.5)
    j = np.zeros((16, 3))
    scales, rots, flips = [], [], []
    for i in range(400):
        p = sample_crop(
            np.random.default_rng(i),
            aug,
            np.array([50.0, 50.0]),
            np.array([1.0, 1.0]),
            j,
            100,
            MPII,
            1.0,
        )
        scales.append(p.scale[0])
        rots.append(p.rotation)
        flips.append(p.flipped)
        if p.flipped:
            assert p.center[0] == pytest.approx(49.0)
    scales, rots = np.array(scales), np.array(rots)
    assert scales.min() >= 0.7 - 1e-6 and scales.max() <= 1.3 + 1e-6
    assert np.abs(rots).max() <= 60.0
    assert 0.45 < (rots != 0).mean() < 0.75
    assert 0.4 < np.mean(flips) < 0.6
    a = sample_crop(np.random.default_rng(7), aug, np.array([5.0, 5]), np.ones(2), j, 9, MPII, 1)
    b = sample_crop(np.random.default_rng(7), aug, np.array([5.0, 5]), np.ones(2), j, 9, MPII, 1)
    assert a.rotation == b.rotation and a.flipped == b.flipped


def test_no_rotation_or_flip_when_disabled():
    aug = AugmentConfig(rotation_prob=0.0, flip=False)
    for i in range(50):
        p = sample_crop(
            np.random.default_rng(i), aug, np.zeros(2), np.ones(2), np.zeros((16, 3)), 10, MPII, 1
        )
        assert p.rotation == 0.0 and not p.flipped


def test_half_body_box():
    j = np.zeros((17, 3))
    j[:, 2] = 1
    j[:11, :2] = np.linspace([100, 100], [140, 180], 11)  # upper body
    j[11:, :2] = np.linspace([100, 300], [140, 400], 6)  # lower body
    lower = lower_body_mask(COCO)
    assert lower.tolist() == [False] * 11 + [True] * 6
    picks = set()
    for i in range(20):
        c, s = half_body_center_scale(j, j[:, 2], lower, np.random.default_rng(i), 0.75)
        picks.add(round(float(c[1])))
        assert s[0] / s[1] == pytest.approx(0.75, rel=1e-5)
    assert picks == {140, 350}


def test_normalisation_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    x = normalize_image(rgb)
    assert x.shape == (3, 8, 6) and x.dtype.is_floating_point
    assert float(x[0, 0, 0]) == pytest.approx((rgb[0, 0, 0] / 255 - 0.485) / 0.229, rel=1e-5)
    np.testing.assert_array_equal(denormalize_image(x), rgb)
