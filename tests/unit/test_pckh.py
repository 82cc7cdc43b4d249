"""MPII PCKh on hand-made cases with hand-computed expected values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import loadmat

from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.pckh import (
    HRNET_LABEL,
    compute_pckh,
    pckh_table_rows,
    save_pred_mat,
)

# Person A: head box 30 x 40 -> diagonal 50 -> head size 0.6 * 50 = 30 px
#   (correct @0.5 if d <= 15, @0.1 if d <= 3, @0.11 if d <= 3.3).
# Person B: head box 60 x 80 -> diagonal 100 -> head size 60 px
#   (correct @0.5 if d <= 30, @0.1 if d <= 6, @0.11 if d <= 6.6).
HEADBOXES = np.array([[0.0, 0.0, 30.0, 40.0], [100.0, 100.0, 160.0, 180.0]])
# displacement (px) per joint, MPII order; None = joint not labelled
DIST_A = [10, 20, 0, 5, 2.5, None, 100, 0, 5, 20, 14, 16, 1, 30, None, 3.2]
DIST_B = [40, 25, 35, 5, None, 10, None, 70, 31, 29, 50, 20, 3, 4, 60, None]
# Per-joint correct/labelled @0.5 (A, B):
#  0 r_ank 1/2, 1 r_knee 1/2, 2 r_hip 1/2, 3 l_hip 2/2, 4 l_knee 1/1, 5 l_ank 1/1,
#  6 pelvis 0/1, 7 thorax 1/2, 8 neck 1/2, 9 head 1/2, 10 r_wri 1/2, 11 r_elb 1/2,
#  12 r_sho 2/2, 13 l_sho 1/2, 14 l_elb 0/1, 15 l_wri 1/1
PER_JOINT_05 = [50, 50, 50, 100, 100, 100, 0, 50, 50, 50, 50, 50, 100, 50, 0, 100]
EXPECTED_COLUMNS = {
    "Head": 50.0,  # joint 9
    "Shoulder": 75.0,  # (100 + 50) / 2
    "Elbow": 25.0,  # (50 + 0) / 2
    "Wrist": 75.0,  # (50 + 100) / 2
    "Hip": 75.0,  # (50 + 100) / 2
    "Knee": 75.0,  # (50 + 100) / 2
    "Ankle": 75.0,  # (50 + 100) / 2
    # 14 joints without pelvis/thorax: 15 correct of 24 labelled (the unweighted mean of the
    # per-joint values would be 900 / 14 = 64.29)
    "Mean": 62.5,
    # @0.1: A joints 2, 4, 12 and B joints 3, 12, 13 -> 6 / 24
    "Mean@0.1": 25.0,
    # @0.11: additionally A's l_wrist at 3.2 px -> 7 / 24
    HRNET_LABEL: 100.0 * 7 / 24,
}


def make_case(seed: int = 0, invisible_offset: float = 0.0):
    rng = np.random.default_rng(seed)
    gt = np.concatenate([rng.uniform(0, 30, (1, 16, 2)), rng.uniform(100, 200, (1, 16, 2))], axis=0)
    dist = np.array([DIST_A, DIST_B], dtype=object)
    visible = dist != None  # noqa: E711 (elementwise)
    d = np.where(visible, dist, invisible_offset).astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi, d.shape)
    pred = gt + d[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    return pred, gt, visible.astype(bool)


def test_hand_made_case_columns_and_per_joint():
    pred, gt, vis = make_case()
    res = compute_pckh(pred, gt, vis, HEADBOXES)
    np.testing.assert_allclose(res.per_joint[0], PER_JOINT_05)
    np.testing.assert_array_equal(res.joint_count, vis.sum(0))
    rows = pckh_table_rows(res)
    assert [name for name, _ in rows] == list(EXPECTED_COLUMNS)
    for name, value in rows:
        assert value == pytest.approx(EXPECTED_COLUMNS[name], abs=1e-9), name
    assert res.mean == pytest.approx(62.5)
    assert res.mean_at(0.11) == pytest.approx(100 * 7 / 24)
    np.testing.assert_allclose(res.per_joint[1], res.per_joint_at(0.1))


def test_invisible_joints_are_excluded():
    pred, gt, vis = make_case(invisible_offset=0.0)
    far_pred, _, _ = make_case(invisible_offset=1e4)
    a = compute_pckh(pred, gt, vis, HEADBOXES)
    b = compute_pckh(far_pred, gt, vis, HEADBOXES)
    assert pckh_table_rows(a) == pckh_table_rows(b)
    # making everything visible changes the numbers (the invisible ones at 1e4 px are wrong)
    c = compute_pckh(far_pred, gt, np.ones_like(vis), HEADBOXES)
    assert c.mean < a.mean


def test_gt_as_prediction_is_100():
    _, gt, vis = make_case(seed=3)
    res = compute_pckh(gt, gt, vis, HEADBOXES, hrnet_compatible=False)
    assert dict(pckh_table_rows(res)) == {k: 100.0 for k in EXPECTED_COLUMNS if k != HRNET_LABEL}


def test_threshold_is_inclusive_and_scales_with_head_size():
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[0, :, 0] = 15.0  # exactly 0.5 * head size 30
    vis = np.ones((1, 16), bool)
    assert compute_pckh(pred, gt, vis, HEADBOXES[:1]).mean == 100.0
    pred[0, :, 0] = 15.01
    assert compute_pckh(pred, gt, vis, HEADBOXES[:1]).mean == 0.0
    assert compute_pckh(pred, gt, vis, HEADBOXES[1:]).mean == 100.0  # bigger head


def test_errors_for_missing_head_boxes_and_other_layouts():
    pred, gt, vis = make_case()
    with pytest.raises(PosenfsError, match="head boxes"):
        compute_pckh(pred, gt, vis, None)
    coco = np.zeros((2, 17, 2))
    with pytest.raises(PosenfsError, match="MPII"):
        compute_pckh(coco, coco, np.ones((2, 17), bool), HEADBOXES)
    with pytest.raises(PosenfsError, match="head box"):
        compute_pckh(pred, gt, vis, np.zeros((2, 4)))


def test_save_pred_mat_is_one_based(tmp_path):
    preds = np.random.default_rng(0).uniform(0, 100, (3, 16, 2))
    path = save_pred_mat(tmp_path / "out" / "pred.mat", preds)
    loaded = loadmat(str(path))["preds"]
    assert loaded.shape == (3, 16, 2)
    np.testing.assert_allclose(loaded, preds + 1.0)
    with pytest.raises(PosenfsError):
        save_pred_mat(tmp_path / "bad.mat", np.zeros((3, 17, 2)))
