"""Keypoint layouts: joint names in each dataset's native order, flip pairs, skeletons, colours.

Names are shared between datasets where the joint is the same (``left_shoulder``), so body-part
groups can be written once by name and mapped to either layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posenfs_cli.errors import PosenfsError

# BGR colours for drawing (OpenCV): left = blue-ish, right = orange, centre = green.
LEFT_COLOR = (255, 128, 0)
RIGHT_COLOR = (0, 128, 255)
CENTER_COLOR = (0, 200, 0)


@dataclass(frozen=True)
class KeypointLayout:
    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] = field(default=())

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise PosenfsError(
                f"keypoint {name!r} is not in the {self.name} layout ({', '.join(self.names)})"
            ) from None

    def side(self, joint: int) -> str:
        """'left', 'right' or 'center' from the joint name."""
        n = self.names[joint]
        if n.startswith("left_"):
            return "left"
        if n.startswith("right_"):
            return "right"
        return "center"

    def color(self, joint: int) -> tuple[int, int, int]:
        return {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}[self.side(joint)]

    def link_color(self, a: int, b: int) -> tuple[int, int, int]:
        sa, sb = self.side(a), self.side(b)
        side = sa if sa == sb else "center"
        return {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}[side]

    def flip_permutation(self) -> list[int]:
        """perm[i] = index of the joint that joint i becomes after a horizontal flip."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


MPII = KeypointLayout(
    name="mpii",
    names=(
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
    ),
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
    # COCO OKS sigmas (pycocotools' defaults for person keypoints).
    sigmas=(
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ),
)

LAYOUTS: dict[str, KeypointLayout] = {"mpii": MPII, "coco": COCO}


def get_layout(name: str) -> KeypointLayout:
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise PosenfsError(
            f"unknown keypoint layout {name!r} (choose from {', '.join(LAYOUTS)})"
        ) from None
