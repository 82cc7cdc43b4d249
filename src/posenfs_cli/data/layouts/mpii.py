"""MPII Human Pose: 16 joints in the order of the official annotations, scored by PCKh."""

from __future__ import annotations

from posenfs_cli.data.layouts.layout import KeypointLayout, table_one

_NAMES = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "pelvis",
    "thorax",
    "upper_neck",
    "head_top",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
)

MPII = KeypointLayout(
    name="mpii",
    names=_NAMES,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ),
    lower_body=_NAMES[:7],  # ankles, knees, hips and the pelvis
    # Table I: the head is head top, neck and thorax; the pelvis goes with the hips.
    part_groups=table_one(head=("head_top", "upper_neck", "thorax"), pelvis=("pelvis",)),
    # HRNet's table: each column averages its joints with equal weight (0.5 * (l + r)).
    pckh_columns=(
        ("Head", ("head_top",)),
        ("Shoulder", ("left_shoulder", "right_shoulder")),
        ("Elbow", ("left_elbow", "right_elbow")),
        ("Wrist", ("left_wrist", "right_wrist")),
        ("Hip", ("left_hip", "right_hip")),
        ("Knee", ("left_knee", "right_knee")),
        ("Ankle", ("left_ankle", "right_ankle")),
    ),
    # The official Mean leaves out pelvis and thorax (HRNet masks indices 6:8).
    pckh_mean_excludes=("pelvis", "thorax"),
)
