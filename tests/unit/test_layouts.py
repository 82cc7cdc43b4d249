"""Keypoint layouts: the registry, each layout's consistency, and the facts consumers read."""

from __future__ import annotations

import numpy as np
import pytest

from posenfs_cli.data.layouts import (
    COCO,
    CROWDPOSE,
    LAYOUTS,
    MPII,
    KeypointLayout,
    get_layout,
    table_one,
)
from posenfs_cli.data.transforms import lower_body_mask
from posenfs_cli.errors import PosenfsError
from posenfs_cli.evaluation.pckh import compute_pckh
from posenfs_cli.models.parts import resolve_parts
from posenfs_cli.vis.draw import draw_skeleton

ALL = [MPII, COCO, CROWDPOSE]


def test_registry():
    assert list(LAYOUTS) == ["mpii", "coco", "crowdpose"]
    assert get_layout("CrowdPose") is CROWDPOSE
    with pytest.raises(PosenfsError, match="choose from mpii, coco, crowdpose"):
        get_layout("aic")
    with pytest.raises(TypeError):
        LAYOUTS["aic"] = MPII  # type: ignore[index]


@pytest.mark.parametrize("layout", ALL, ids=lambda la: la.name)
def test_layout_is_consistent(layout: KeypointLayout):
    perm = layout.flip_permutation()
    assert [perm[p] for p in perm] == list(range(layout.num_joints))  # an involution
    for a, b in layout.flip_pairs:
        assert layout.side(a) != layout.side(b) != "center"
    assert len(layout.sigmas) in (0, layout.num_joints)
    assert len(layout.joint_colors) == layout.num_joints
    assert len(layout.link_colors) == len(layout.skeleton)
    for p in layout.part_counts:  # each defined grouping covers every joint
        groups = resolve_parts(layout, p)
        assert len(groups) == p
        assert {j for g in groups for j in g.joints} == set(range(layout.num_joints))


def test_crowdpose_facts():
    assert CROWDPOSE.names[:2] == ("left_shoulder", "right_shoulder")
    assert CROWDPOSE.names[-2:] == ("head", "neck") and CROWDPOSE.num_joints == 14
    assert CROWDPOSE.sigmas[12] == CROWDPOSE.sigmas[13] == pytest.approx(0.079)
    assert CROWDPOSE.part_counts == (1, 3, 5)
    head = resolve_parts(CROWDPOSE, 3)[0]
    assert head.name == "head" and head.names(CROWDPOSE) == ["head", "neck"]
    with pytest.raises(PosenfsError, match=r"parts must be 1, 3, 5 \(paper Table I, crowdpose"):
        resolve_parts(CROWDPOSE, 8)
    mask = lower_body_mask(CROWDPOSE)
    assert [n for n, m in zip(CROWDPOSE.names, mask, strict=True) if m] == [
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ]


def test_coco_sigmas_are_pycocotools_bit_for_bit():
    """COCOeval given COCO.sigmas must compute exactly what it computes with its defaults."""
    from pycocotools.cocoeval import Params

    assert np.array_equal(np.asarray(COCO.sigmas), Params(iouType="keypoints").kpt_oks_sigmas)


def test_mpii_pckh_columns_and_half_body():
    cols = dict(MPII.pckh_column_indices)
    assert cols["Head"] == (9,) and cols["Shoulder"] == (13, 12) and cols["Ankle"] == (5, 0)
    assert MPII.pckh_mean_indices == tuple(j for j in range(16) if j not in (6, 7))
    assert np.flatnonzero(lower_body_mask(MPII)).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert np.flatnonzero(lower_body_mask(COCO)).tolist() == list(range(11, 17))


def test_pckh_is_refused_for_layouts_without_columns():
    z = np.zeros((1, 14, 2))
    with pytest.raises(PosenfsError, match="not defined for the crowdpose layout"):
        compute_pckh(z, z, np.ones((1, 14), bool), np.array([[0, 0, 10, 10]]), layout=CROWDPOSE)


def test_inconsistent_layouts_fail_at_definition():
    names = ("left_a", "right_a", "mid")
    with pytest.raises(ValueError, match="no mirror pair"):
        KeypointLayout("bad", names, ((0, 2),), ())
    with pytest.raises(ValueError, match="unknown joint name"):
        KeypointLayout("bad", names, ((0, 1),), (), lower_body=("knee",))
    with pytest.raises(ValueError, match="3 sigmas"):
        KeypointLayout("bad", names[:2], ((0, 1),), (), sigmas=(0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="unknown joint name"):
        KeypointLayout("bad", names, ((0, 1),), (), part_groups=table_one(head=("mid",)))


def test_drawing_uses_the_layout_skeleton_and_colours():
    img = np.zeros((64, 64, 3), np.uint8)
    pts = np.array([[20 + 2 * j, 5 + 4 * j] for j in range(14)], dtype=np.float64)
    out = draw_skeleton(img, pts, None, CROWDPOSE, radius=1, thickness=1)
    left, right = CROWDPOSE.index("left_ankle"), CROWDPOSE.index("right_ankle")
    x, y = pts[left].astype(int)
    assert tuple(out[y, x]) == CROWDPOSE.palette.left
    x, y = pts[right].astype(int)
    assert tuple(out[y, x]) == CROWDPOSE.palette.right
