"""What every stage of the synthetic generator shares: the superset joints and body parts, the
shape primitive, a split's parameters and the scene it samples, and small geometry helpers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from posenfs_cli.data.layouts import COCO, MPII, KeypointLayout
from posenfs_cli.errors import PosenfsError

# MPII's extra joints, then COCO's 17 in COCO order (the union of both layouts).
SUPER_NAMES: tuple[str, ...] = ("head_top", "upper_neck", "thorax", "pelvis", *COCO.names)
_J = {n: i for i, n in enumerate(SUPER_NAMES)}

# Body parts that shapes belong to (for visibility); index = part id.
PARTS: tuple[str, ...] = (
    "head",
    "neck",
    "torso",
    "upper_arm_l",
    "upper_arm_r",
    "forearm_l",
    "forearm_r",
    "hand_l",
    "hand_r",
    "thigh_l",
    "thigh_r",
    "shin_l",
    "shin_r",
    "foot_l",
    "foot_r",
    "occluder",
)
_P = {n: i for i, n in enumerate(PARTS)}
_OWNERS: dict[str, tuple[str, ...]] = {
    "head_top": ("head",),
    "upper_neck": ("head", "neck"),
    "thorax": ("torso", "neck"),
    "pelvis": ("torso",),
    "nose": ("head",),
    "left_eye": ("head",),
    "right_eye": ("head",),
    "left_ear": ("head",),
    "right_ear": ("head",),
}
for _s, _c in (("left", "l"), ("right", "r")):
    _OWNERS[f"{_s}_shoulder"] = ("torso", f"upper_arm_{_c}")
    _OWNERS[f"{_s}_elbow"] = (f"upper_arm_{_c}", f"forearm_{_c}")
    _OWNERS[f"{_s}_wrist"] = (f"forearm_{_c}", f"hand_{_c}")
    _OWNERS[f"{_s}_hip"] = ("torso", f"thigh_{_c}")
    _OWNERS[f"{_s}_knee"] = (f"thigh_{_c}", f"shin_{_c}")
    _OWNERS[f"{_s}_ankle"] = (f"shin_{_c}", f"foot_{_c}")
# OWNER_TABLE[j, p]: a shape of part p (of the same person) on top of joint j leaves it visible.
OWNER_TABLE = np.zeros((len(SUPER_NAMES), len(PARTS)), dtype=bool)
for _n, _ps in _OWNERS.items():
    OWNER_TABLE[_J[_n], [_P[p] for p in _ps]] = True

SPLIT_CODES = {"train": 0, "val": 1}
STYLES = ("mpii", "coco")
QUANT = 16.0  # joints are multiples of 1/16 px, OpenCV's shift=4 grid
_SHIFT = 4
_FRONT_PROB = 0.8


class Shape(NamedTuple):
    """One drawing primitive in painter's order.

    kind: 'capsule' (pts [2,2], r = radius), 'poly' (convex, pts [M,2]), 'ellipse' (pts [1,2]
    centre, axes in ``extra``, angle in ``r``), 'line' (decoration: pts [2,2], r = thickness).
    ``part`` < 0 marks a shape that does not occlude (decoration, background clutter).
    """

    kind: str
    pts: np.ndarray
    r: float
    color: tuple[int, int, int]
    person: int = -1
    part: int = -1
    extra: tuple[float, float] = (0.0, 0.0)


MAX_SIZE = 4096  # px per side; a larger image only exhausts memory


@dataclass(frozen=True)
class SynthSplit:
    """One synthetic split: style (keypoint layout), split name, seed, size, people per image."""

    style: str
    split: str
    seed: int
    num_images: int
    size: int = 256
    max_people: int = 1

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise PosenfsError(f"synthetic style must be mpii or coco, got {self.style!r}")
        if self.seed < 0:
            raise PosenfsError(f"synthetic seed must be >= 0, got {self.seed}")
        if not 32 <= self.size <= MAX_SIZE:
            raise PosenfsError(
                f"synthetic image size must be in 32..{MAX_SIZE} px, got {self.size}"
            )
        if self.max_people < 1:
            raise PosenfsError(f"synthetic max_people must be >= 1, got {self.max_people}")
        if self.num_images < 0:
            raise PosenfsError(f"number of synthetic images must be >= 0, got {self.num_images}")

    @property
    def layout(self) -> KeypointLayout:
        return MPII if self.style == "mpii" else COCO

    @property
    def split_code(self) -> int:
        code = SPLIT_CODES.get(self.split)
        return code if code is not None else 2 + zlib.crc32(self.split.encode()) % 1_000_000

    def image_name(self, index: int) -> str:
        """File name as written by ``posenfs data synth`` (and used in memory)."""
        if self.style == "mpii":
            return f"synth_{self.split}_{index:06d}.jpg"
        return f"{index + 1:012d}.jpg"

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), self.split_code, int(index)])


@dataclass
class SynthPerson:
    """One person: superset joints [21, 2] (0-based px), visibility 0/1/2, boxes, area."""

    joints: np.ndarray
    vis: np.ndarray
    front: bool
    head_box: np.ndarray
    extent: np.ndarray
    area: float


@dataclass
class SynthScene:
    """Everything needed to draw one image; ``render_scene`` is a pure function of it."""

    size: int
    persons: list[SynthPerson]
    background: np.ndarray
    clutter: list[Shape]
    shapes: list[Shape]
    noise_seed: int
    texture_amp: int
    sensor_amp: int
    gain: float
    bias: float
    blur: bool


# ---------------------------------------------------------------------------------------------
# colours and geometry helpers


def hsv_to_bgr(hsv: np.ndarray) -> np.ndarray:
    """[N, 3] HSV in [0, 1] -> [N, 3] BGR uint8 (vectorised, no OpenCV round trip)."""
    h, s, v = (np.asarray(hsv, dtype=np.float64)[:, i] for i in range(3))
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.clip(np.rint(np.stack([b, g, r], axis=1) * 255.0), 0, 255).astype(np.uint8)


def _col(c: np.ndarray) -> tuple[int, int, int]:
    return (int(c[0]), int(c[1]), int(c[2]))


def _unit(deg: float) -> np.ndarray:
    """'Up' rotated by ``deg`` (clockwise on screen): deg=0 -> (0, -1)."""
    t = np.radians(deg)
    return np.array([np.sin(t), -np.cos(t)])


def _perp(u: np.ndarray) -> np.ndarray:
    """Image-right for an 'up' vector u."""
    return np.array([-u[1], u[0]])


def _quant(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) * QUANT) / QUANT


def _fx(p: np.ndarray) -> tuple[int, int]:
    """Point -> OpenCV fixed point (shift=4)."""
    return (int(round(p[0] * QUANT)), int(round(p[1] * QUANT)))
