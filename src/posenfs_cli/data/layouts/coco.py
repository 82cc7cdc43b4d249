"""COCO person keypoints: 17 joints in the order of the annotation files, scored by OKS AP."""

from __future__ import annotations

from posenfs_cli.data.layouts.layout import KeypointLayout, table_one

# Written as pycocotools (and HRNet) write them, value / 10, so COCOeval given these sigmas
# computes bit for bit what it computes with its defaults.
_SIGMAS_X10 = (
    0.26,
    0.25,
    0.25,
    0.35,
    0.35,
    0.79,
    0.79,
    0.72,
    0.72,
    0.62,
    0.62,
    1.07,
    1.07,
    0.87,
    0.87,
    0.89,
    0.89,
)

COCO = KeypointLayout(
    name="coco",
    names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ),
    sigmas=tuple(s / 10.0 for s in _SIGMAS_X10),
    lower_body=("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    # Table I: the head is the five face points.
    part_groups=table_one(head=("nose", "left_eye", "right_eye", "left_ear", "right_ear")),
)
