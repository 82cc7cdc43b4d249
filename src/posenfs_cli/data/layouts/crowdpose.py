"""CrowdPose: 14 joints (COCO's limbs plus head top and neck), COCO-style files, OKS AP.

Names and order are those of the CrowdPose annotation files (the person category lists
``head`` and ``neck`` last); the sigmas are CrowdPose's own (its evaluation tool's, /10 as
written there), which reuse COCO's limb values and 0.079 for head and neck.

Part groups are our assumption, not the paper's (it has no CrowdPose model): Table I's COCO
grouping with the five face points replaced by head and neck. Only P=1, 3 and 5 are defined.
"""

from __future__ import annotations

from posenfs_cli.data.layouts.coco import COCO
from posenfs_cli.data.layouts.layout import KeypointLayout, table_one

_SIGMAS_X10 = (0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79)

# The names: COCO's twelve limb joints (all but the five face points), then head and neck.
CROWDPOSE = KeypointLayout(
    name="crowdpose",
    names=COCO.names[5:] + ("head", "neck"),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (12, 13),
        (13, 0),
        (13, 1),
        (0, 1),
        (0, 2),
        (2, 4),
        (1, 3),
        (3, 5),
        (0, 6),
        (1, 7),
        (6, 7),
        (6, 8),
        (8, 10),
        (7, 9),
        (9, 11),
    ),
    sigmas=tuple(s / 10.0 for s in _SIGMAS_X10),
    lower_body=COCO.lower_body,
    part_groups=table_one(head=("head", "neck"), counts=(3, 5)),
)
