"""Synthetic people: procedurally rendered, annotated pose images.

Each image is a pure function of (seed, split, index): a ``numpy`` Generator seeded with that
triple draws a *scene* (people, background, clutter, occluders) and :func:`render_scene` draws it
with OpenCV, so the same seed gives bit-identical images and annotations.

The person model is a 2D kinematic skeleton (pelvis root; torso lean; head tilt; shoulder,
elbow, hip and knee angles; per-person limb lengths, thickness and body width) with
superset joints that cover MPII's 16 and COCO's 17 (face points included). Limbs are thick
capsules, the torso a shirt quad with a pants band over the hips, hands and shoes mark wrists
and ankles, and colour changes mark elbows and knees.

Left/right is decidable from appearance in a way that *survives horizontal flips* (flip
augmentation and the flip test mirror the image and swap labels, so a cue like "left limbs are
blue" would be contradicted by half of the training data):

- facing: 80% of people face the camera (a face with eyes, nose and a collar mark: their left
  is on the image right), 20% turn their back (hair-covered head, no collar);
- chirality: every limb carries a thin stripe along one edge, on the side given by
  ``±perp(proximal -> distal)`` with the sign set by the anatomical side. A mirror reverses the
  sign and the label swap reverses it back, so the cue stays consistent, like real human
  chirality.

Clutter (random shapes, a few limb-like bars, texture and sensor noise, blur, exposure) and
foreground occluders on a minority of people keep the task from being trivial; COCO-style
images hold several people that may overlap and be cut by the border. Visibility flags come
from exact painter's-order geometry: a joint is *visible* (2) when the topmost shape covering it
belongs to its own body part, *occluded* (1) when something else is drawn over it, and
*unlabelled* (0) outside the image (and, for people seen from the back, nose and eyes).

Joints are quantised to 1/16 px (what OpenCV's ``shift=4`` draws), so 1-based MPII files
round-trip exactly.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
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
        if self.size < 32:
            raise PosenfsError(f"synthetic image size must be >= 32, got {self.size}")
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


# ---------------------------------------------------------------------------------------------
# the person model


def _skeleton(rng: np.random.Generator, height: float) -> dict[str, Any]:
    """Superset joints around a pelvis at the origin, plus the geometry the shapes need."""
    u = rng.uniform
    H = height
    rot = float(np.clip(rng.normal(0, 10), -25, 25))
    lean = float(np.clip(rng.normal(0, 7), -20, 20))
    tilt = float(np.clip(rng.normal(0, 10), -25, 25))
    front = bool(rng.random() < _FRONT_PROB)
    side_l = 1.0 if front else -1.0
    wf = u(0.75, 1.05)
    torso, neck, R = H * u(0.28, 0.32), H * u(0.04, 0.055), H * u(0.068, 0.08)
    sh_w, hip_w = H * u(0.105, 0.125) * wf, H * u(0.06, 0.075) * wf
    fs = u(0.8, 1.0, size=(2, 4))  # foreshortening per side: upper arm, forearm, thigh, shin
    seg = np.array([u(0.15, 0.18), u(0.13, 0.16), u(0.21, 0.25), u(0.2, 0.24)]) * H
    t_arm, t_leg = H * u(0.065, 0.085), H * u(0.08, 0.1)
    active = rng.random(2) < 0.5
    phi_up = np.where(active, u(-30, 170, size=2), u(-10, 50, size=2))
    phi_fore = phi_up + np.clip(rng.normal(0, 55, size=2), -150, 150)
    kick = rng.random(2) < 0.12
    phi_th = np.where(kick, u(35, 95, size=2), u(-12, 35, size=2))
    phi_sh = phi_th + np.clip(rng.normal(-5, 25, size=2), -90, 90)
    yaw = u(-0.35, 0.35)
    behind = rng.random(2) < 0.12

    u_l, u_t, u_h = _unit(rot), _unit(rot + lean), _unit(rot + lean + tilt)
    r_l, r_t, r_h = _perp(u_l), _perp(u_t), _perp(u_h)
    j = np.zeros((len(SUPER_NAMES), 2))
    j[_J["thorax"]] = u_t * torso
    j[_J["upper_neck"]] = j[_J["thorax"]] + u_t * neck
    head_c = j[_J["upper_neck"]] + u_h * R
    j[_J["head_top"]] = head_c + u_h * R
    j[_J["nose"]] = head_c + r_h * (yaw * 0.6 * R) - u_h * (0.15 * R)
    for k, side in enumerate(("left", "right")):
        sg = side_l if side == "left" else -side_l
        j[_J[f"{side}_eye"]] = head_c + u_h * 0.18 * R + r_h * (sg * 0.38 + yaw * 0.5) * R
        j[_J[f"{side}_ear"]] = head_c + r_h * (sg * 0.95 + yaw * 0.25) * R
        sho = j[_J["thorax"]] + r_t * sg * sh_w - u_t * 0.02 * H
        d_up = np.cos(np.radians(phi_up[k])) * -u_t + np.sin(np.radians(phi_up[k])) * sg * r_t
        d_fo = np.cos(np.radians(phi_fore[k])) * -u_t + np.sin(np.radians(phi_fore[k])) * sg * r_t
        d_th = np.cos(np.radians(phi_th[k])) * -u_l + np.sin(np.radians(phi_th[k])) * sg * r_l
        d_sh = np.cos(np.radians(phi_sh[k])) * -u_l + np.sin(np.radians(phi_sh[k])) * sg * r_l
        j[_J[f"{side}_shoulder"]] = sho
        j[_J[f"{side}_elbow"]] = sho + d_up * seg[0] * fs[k, 0]
        j[_J[f"{side}_wrist"]] = j[_J[f"{side}_elbow"]] + d_fo * seg[1] * fs[k, 1]
        hip = r_l * sg * hip_w
        j[_J[f"{side}_hip"]] = hip
        j[_J[f"{side}_knee"]] = hip + d_th * seg[2] * fs[k, 2]
        j[_J[f"{side}_ankle"]] = j[_J[f"{side}_knee"]] + d_sh * seg[3] * fs[k, 3]
    return {
        "joints": j,
        "front": front,
        "side_l": side_l,
        "R": R,
        "t_arm": t_arm,
        "t_leg": t_leg,
        "u_l": u_l,
        "u_t": u_t,
        "u_h": u_h,
        "H": H,
        "behind": behind,
        "head_offset": head_c - j[_J["upper_neck"]],
    }


_SKIN = np.array(
    [
        [0.07, 0.35, 0.95],
        [0.06, 0.45, 0.85],
        [0.07, 0.55, 0.7],
        [0.06, 0.6, 0.5],
        [0.05, 0.55, 0.35],
    ]
)
_HAIR = np.array([[0.08, 0.6, 0.12], [0.07, 0.7, 0.3], [0.1, 0.6, 0.75], [0.0, 0.0, 0.5]])


def _palette(rng: np.random.Generator) -> dict[str, tuple[int, int, int]]:
    """Clothes and skin colours (HSV draws, one vectorised conversion)."""
    u = rng.uniform
    skin = _SKIN[rng.integers(len(_SKIN))] + u(-0.02, 0.02, 3) * [0.5, 1, 1]
    hair = _HAIR[rng.integers(len(_HAIR))]
    shirt = np.array([u(0, 1), u(0.35, 1.0), u(0.45, 1.0)])
    pants_h = (shirt[0] + u(0.15, 0.85)) % 1.0
    pants = np.array([pants_h, u(0.2, 0.9), u(0.25, 0.85)])
    upper = shirt * [1, 1, 0.82]
    fore = skin if rng.random() < 0.5 else shirt * [1, 0.9, 0.6] + [0, 0, 0.05]
    shin = pants * [1, 1, 0.7] if rng.random() < 0.6 else skin
    shoe = np.array([u(0, 1), u(0, 0.6), u(0.08, 0.3)])
    collar = np.array([u(0, 1), u(0, 0.25), u(0.85, 1.0)])
    thigh = pants * [1, 1, 0.85]
    hsv = np.stack(
        [skin, hair, shirt, pants, upper, fore, shin, shoe, collar, skin * [1, 1, 0.7], thigh]
    )
    hsv[:, 0] %= 1.0
    bgr = hsv_to_bgr(np.clip(hsv, 0, 1))
    names = (
        "skin",
        "hair",
        "shirt",
        "pants",
        "upper",
        "fore",
        "shin",
        "shoe",
        "collar",
        "nose",
        "thigh",
    )
    out = {n: _col(c) for n, c in zip(names, bgr, strict=True)}
    out["eye"] = (30, 25, 20)
    return out


def _stripe_color(c: tuple[int, int, int]) -> tuple[int, int, int]:
    lum = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
    return (235, 235, 235) if lum < 110 else (25, 25, 25)


def _limb(
    a: np.ndarray,
    b: np.ndarray,
    r: float,
    color: tuple[int, int, int],
    person: int,
    part: str,
    left: bool,
) -> list[Shape]:
    """A capsule a->b plus the chirality stripe (side = sign(left) · perp(a->b))."""
    shapes = [Shape("capsule", np.stack([a, b]), r, color, person, _P[part])]
    d = b - a
    n = np.linalg.norm(d)
    if n > 1e-6 and r >= 1.5:
        side = (1.0 if left else -1.0) * np.array([-d[1], d[0]]) / n
        off = side * 0.55 * r
        shapes.append(
            Shape("line", np.stack([a + off, b + off]), max(1.0, 0.5 * r), _stripe_color(color))
        )
    return shapes


def _person_shapes(sk: dict[str, Any], person: int, pal: dict[str, Any]) -> list[Shape]:
    """Painter's-order shapes for one placed skeleton."""
    j = sk["joints"]
    R, t_arm, t_leg, H = sk["R"], sk["t_arm"], sk["t_leg"], sk["H"]
    u_l, u_t, u_h = sk["u_l"], sk["u_t"], sk["u_h"]
    r_l, r_t = _perp(u_l), _perp(u_t)
    out: list[Shape] = []

    def arm(side: str) -> None:
        c = side[0]
        sho, elb, wri = j[_J[f"{side}_shoulder"]], j[_J[f"{side}_elbow"]], j[_J[f"{side}_wrist"]]
        left = side == "left"
        out.extend(_limb(sho, elb, t_arm / 2, pal["upper"], person, f"upper_arm_{c}", left))
        out.extend(_limb(elb, wri, t_arm * 0.45, pal["fore"], person, f"forearm_{c}", left))
        d = wri - elb
        d = d / max(np.linalg.norm(d), 1e-6)
        hand = wri + d * 0.25 * t_arm
        out.append(
            Shape(
                "capsule",
                np.stack([hand, hand]),
                0.62 * t_arm,
                pal["skin"],
                person,
                _P[f"hand_{c}"],
            )
        )

    sides = ("left", "right")

    def legs() -> None:
        for side in sides:
            c, left = side[0], side == "left"
            sg = sk["side_l"] if left else -sk["side_l"]
            hip, knee, ank = j[_J[f"{side}_hip"]], j[_J[f"{side}_knee"]], j[_J[f"{side}_ankle"]]
            out.extend(_limb(hip, knee, t_leg / 2, pal["thigh"], person, f"thigh_{c}", left))
            out.extend(_limb(knee, ank, t_leg * 0.45, pal["shin"], person, f"shin_{c}", left))
            fdir = sg * r_l * 0.9 - u_l * 0.35
            toe = ank + fdir / np.linalg.norm(fdir) * 0.07 * H
            foot = _P[f"foot_{c}"]
            out.append(
                Shape("capsule", np.stack([ank, toe]), 0.3 * t_leg, pal["shoe"], person, foot)
            )

    for k, side in enumerate(sides):
        if sk["behind"][k]:
            arm(side)
    # torso: shirt quad, pants band over the hips, collar mark when facing the camera
    corners = []
    for side in sides:
        sg = sk["side_l"] if side == "left" else -sk["side_l"]
        top = j[_J[f"{side}_shoulder"]] + u_t * 0.3 * t_arm + r_t * sg * 0.25 * t_arm
        bot = j[_J[f"{side}_hip"]] + r_l * sg * 0.5 * t_leg - u_l * 0.15 * t_leg
        corners.append((top, bot))
    (tl, bl), (tr, br) = corners
    torso = _P["torso"]
    out.append(Shape("poly", np.stack([tl, tr, br, bl]), 0.0, pal["shirt"], person, torso))
    band_l, band_r = bl + (tl - bl) * 0.22, br + (tr - br) * 0.22
    out.append(Shape("poly", np.stack([band_l, band_r, br, bl]), 0.0, pal["pants"], person, torso))
    legs()  # over the pants band, so each hip is the top end of a visible thigh
    thorax = j[_J["thorax"]]
    if sk["front"]:
        w = np.linalg.norm(tl - tr) * 0.2
        v = np.stack(
            [
                thorax + r_t * w + u_t * 0.01 * H,
                thorax - u_t * 0.1 * H,
                thorax - r_t * w + u_t * 0.01 * H,
            ]
        )
        out.append(Shape("poly", v, 0.0, pal["collar"]))
    neck_top = j[_J["upper_neck"]] + u_h * 0.3 * R
    out.append(
        Shape("capsule", np.stack([thorax, neck_top]), 0.42 * R, pal["skin"], person, _P["neck"])
    )
    for k, side in enumerate(sides):
        if not sk["behind"][k]:
            arm(side)
    head = _P["head"]
    for side in sides:
        ear = j[_J[f"{side}_ear"]]
        out.append(Shape("capsule", np.stack([ear, ear]), 0.28 * R, pal["skin"], person, head))
    hc = j[_J["upper_neck"]] + sk["head_offset"]
    if sk["front"]:
        out.append(Shape("capsule", np.stack([hc, hc]), R, pal["skin"], person, head))
        hair_c = hc + u_h * 0.15 * R
        out.append(
            Shape("capsule", np.stack([hair_c, hair_c]), 0.85 * R, pal["hair"], person, head)
        )
        face_c = hc - u_h * 0.18 * R
        out.append(Shape("capsule", np.stack([face_c, face_c]), 0.76 * R, pal["skin"]))
        for e in ("left_eye", "right_eye"):
            p = j[_J[e]]
            out.append(Shape("capsule", np.stack([p, p]), 0.12 * R, pal["eye"]))
        p = j[_J["nose"]]
        out.append(Shape("capsule", np.stack([p, p]), 0.1 * R, pal["nose"]))
        m = p - u_h * 0.35 * R
        rh = _perp(u_h)
        out.append(
            Shape(
                "line",
                np.stack([m - rh * 0.2 * R, m + rh * 0.2 * R]),
                max(1.0, 0.08 * R),
                pal["nose"],
            )
        )
    else:
        out.append(Shape("capsule", np.stack([hc, hc]), R, pal["hair"], person, head))
    return out


def _shape_bounds(shapes: Sequence[Shape]) -> np.ndarray:
    """x1, y1, x2, y2 covering the given capsules and polygons."""
    pts = np.concatenate([s.pts for s in shapes])
    pad = np.repeat(
        [s.r if s.kind == "capsule" else 0.0 for s in shapes], [len(s.pts) for s in shapes]
    )[:, None]
    return np.concatenate([(pts - pad).min(axis=0), (pts + pad).max(axis=0)])


def _shape_area(shapes: Sequence[Shape]) -> float:
    """Approximate silhouette area: capsules + polygons (overlaps counted twice)."""
    area = 0.0
    for s in shapes:
        if s.part < 0:
            continue
        if s.kind == "capsule":
            area += 2 * s.r * float(np.linalg.norm(s.pts[1] - s.pts[0])) + np.pi * s.r**2
        elif s.kind == "poly":
            x, y = s.pts[:, 0], s.pts[:, 1]
            area += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


# ---------------------------------------------------------------------------------------------
# occlusion


def top_shape(points: np.ndarray, shapes: Sequence[Shape], tol: float = 0.5) -> np.ndarray:
    """Index (in ``shapes``) of the topmost occluding shape covering each point, or -1.

    Capsules by point-segment distance, convex polygons by signed edge distances; vectorised
    over points × shapes.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    covered = np.zeros((len(pts), len(shapes)), dtype=bool)
    cap = [i for i, s in enumerate(shapes) if s.kind == "capsule" and s.part >= 0]
    if cap:
        a = np.stack([shapes[i].pts[0] for i in cap])
        b = np.stack([shapes[i].pts[1] for i in cap])
        r = np.array([shapes[i].r for i in cap])
        v = b - a
        w = pts[:, None, :] - a[None]
        t = np.clip((w * v).sum(-1) / np.maximum((v * v).sum(-1), 1e-12), 0.0, 1.0)
        dist = np.linalg.norm(w - t[..., None] * v, axis=-1)
        covered[:, cap] = dist <= r + tol
    poly = [i for i, s in enumerate(shapes) if s.kind == "poly" and s.part >= 0]
    if poly:
        verts = np.stack([np.concatenate([shapes[i].pts, shapes[i].pts[-1:]])[:4] for i in poly])
        e = np.roll(verts, -1, axis=1) - verts
        n = np.linalg.norm(e, axis=-1)
        rel = pts[:, None, None, :] - verts[None]
        cross = e[None, ..., 0] * rel[..., 1] - e[None, ..., 1] * rel[..., 0]
        sd = np.where(n[None] > 0, cross / np.maximum(n[None], 1e-12), 0.0)
        inside = (sd >= -tol).all(-1) | (sd <= tol).all(-1)
        covered[:, poly] = inside
    idx = np.arange(len(shapes))
    top = np.where(covered, idx[None], -1).max(axis=1, initial=-1)
    return top


# ---------------------------------------------------------------------------------------------
# scenes


def _clutter(rng: np.random.Generator, size: int) -> list[Shape]:
    """Random background shapes; a few thick bars look like limbs on purpose."""
    n = int(rng.integers(3, 11))
    kinds = rng.choice(5, size=n, p=[0.3, 0.2, 0.2, 0.15, 0.15])
    cols = hsv_to_bgr(np.stack([rng.random(n), rng.uniform(0, 0.9, n), rng.uniform(0.15, 1, n)], 1))
    out: list[Shape] = []
    for k, c in zip(kinds, cols, strict=True):
        ctr = rng.uniform(0, size, 2)
        ext = rng.uniform(0.03, 0.25) * size
        col = _col(c)
        if k == 0 or k == 4:
            m = 4 if k == 0 else 3
            ang = rng.uniform(0, 2 * np.pi) + np.arange(m) * 2 * np.pi / m
            rad = ext * rng.uniform(0.6, 1.0, m)
            pts = ctr + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
            out.append(Shape("poly", pts, 0.0, col))
        elif k == 1:
            out.append(Shape("capsule", np.stack([ctr, ctr]), ext * 0.6, col))
        elif k == 2:
            out.append(
                Shape(
                    "ellipse",
                    ctr[None],
                    float(rng.uniform(0, 180)),
                    col,
                    extra=(ext, ext * rng.uniform(0.2, 0.8)),
                )
            )
        else:
            d = _unit(rng.uniform(0, 360)) * ext * 1.5
            out.append(
                Shape("capsule", np.stack([ctr - d, ctr + d]), size * rng.uniform(0.01, 0.035), col)
            )
    return out


def _occluder(rng: np.random.Generator, target: np.ndarray, height: float) -> Shape:
    """A foreground box or disc over ``target`` (a joint), partially hiding the person."""
    ctr = target + rng.normal(0, 0.08 * height, 2)
    ext = rng.uniform(0.1, 0.22) * height
    col = _col(hsv_to_bgr(np.array([[rng.random(), rng.uniform(0, 0.8), rng.uniform(0.2, 1)]]))[0])
    if rng.random() < 0.5:
        return Shape("capsule", np.stack([ctr, ctr]), ext, col, -1, _P["occluder"])
    ang = rng.uniform(0, np.pi / 2) + np.arange(4) * np.pi / 2
    asp = np.array([1.0, rng.uniform(0.5, 1.5)] * 2)
    pts = ctr + np.stack([np.cos(ang), np.sin(ang)], 1) * (ext * asp)[:, None]
    return Shape("poly", pts, 0.0, col, -1, _P["occluder"])


def _place(rng: np.random.Generator, bounds: np.ndarray, size: int, slack: float) -> np.ndarray:
    """Translation putting ``bounds`` inside the image (up to ``slack`` of it may stick out)."""
    w, h = bounds[2] - bounds[0], bounds[3] - bounds[1]
    lo = -bounds[:2] - np.array([w, h]) * slack
    hi = size - 1 - bounds[2:] + np.array([w, h]) * slack
    t = np.where(
        hi >= lo,
        rng.uniform(0, 1, 2) * (hi - lo) + lo,
        (size - 1) / 2 - (bounds[:2] + bounds[2:]) / 2,
    )
    return t


def generate_scene(split: SynthSplit, index: int) -> SynthScene:
    """The scene of image ``index`` of ``split`` (pure function of seed, split, index)."""
    rng = split.rng(index)
    size = split.size
    n = int(rng.integers(1, split.max_people + 1))
    coco = split.style == "coco"
    if n == 1:
        heights = [rng.uniform(0.45, 0.85) if coco else rng.uniform(0.55, 0.85)]
    else:
        heights = [rng.uniform(0.45, 0.75)] + list(rng.uniform(0.3, 0.6, n - 1))
    heights = sorted(float(h) * size for h in heights)  # small (far) people drawn first
    slack = 0.12 if coco else 0.0
    occ_prob = 0.25 if coco else 0.2

    persons_sk, shapes, occluders = [], [], []
    for p, height in enumerate(heights):
        sk = _skeleton(rng, height)
        sk["joints"] = _quant(sk["joints"])
        pal = _palette(rng)
        local = _person_shapes(sk, p, pal)
        # a translation on the 1/16 grid keeps the joints quantised
        t = _quant(_place(rng, _shape_bounds([s for s in local if s.part >= 0]), size, slack))
        sk["joints"] = sk["joints"] + t
        local = [s._replace(pts=s.pts + t) for s in local]
        persons_sk.append(sk)
        shapes.extend(local)
        if rng.random() < occ_prob:  # centred near a random limb joint (shoulders .. ankles)
            target = sk["joints"][rng.integers(_J["left_shoulder"], len(SUPER_NAMES))]
            occluders.append(_occluder(rng, target, height))
    shapes.extend(occluders)

    pts = np.concatenate([sk["joints"] for sk in persons_sk])
    top = top_shape(pts, shapes)
    top_person = np.array([s.person for s in shapes] + [-1])[top]
    top_part = np.array([s.part for s in shapes] + [0])[top]
    nj = len(SUPER_NAMES)
    owner = np.repeat(np.arange(len(persons_sk)), nj)
    jidx = np.tile(np.arange(nj), len(persons_sk))
    visible = (top < 0) | ((top_person == owner) & OWNER_TABLE[jidx, np.maximum(top_part, 0)])
    inside = ((pts >= 0) & (pts <= size - 1)).all(axis=1)
    vis = np.where(inside, np.where(visible, 2, 1), 0).reshape(len(persons_sk), nj)

    persons = []
    for p, sk in enumerate(persons_sk):
        if not sk["front"]:
            vis[p, [_J["nose"], _J["left_eye"], _J["right_eye"]]] = 0
        own = [s for s in shapes if s.person == p]
        hc = sk["joints"][_J["upper_neck"]] + sk["head_offset"]
        hb = np.concatenate([hc - 1.2 * sk["R"], hc + 1.2 * sk["R"]])
        persons.append(
            SynthPerson(
                joints=sk["joints"],
                vis=vis[p].astype(np.int64),
                front=sk["front"],
                head_box=_quant(hb),
                extent=_shape_bounds(own),
                area=_shape_area(own),
            )
        )

    grid = rng.uniform(30, 220, (4, 4, 3))
    gray = grid.mean(axis=2, keepdims=True)
    grid = gray + (grid - gray) * rng.uniform(0.3, 1.0)
    return SynthScene(
        size=size,
        persons=persons,
        background=np.clip(grid, 0, 255).astype(np.uint8),
        clutter=_clutter(rng, size),
        shapes=shapes,
        noise_seed=int(rng.integers(2**62)),
        texture_amp=int(rng.integers(4, 30)),
        sensor_amp=int(rng.integers(0, 10)),
        gain=float(rng.uniform(0.85, 1.15)),
        bias=float(rng.uniform(-15, 15)),
        blur=bool(rng.random() < 0.3),
    )


def _draw(img: np.ndarray, s: Shape) -> None:
    if s.kind == "capsule":
        a, b = s.pts[0], s.pts[1]
        if np.array_equal(a, b):
            cv2.circle(img, _fx(a), int(round(s.r * QUANT)), s.color, -1, cv2.LINE_AA, _SHIFT)
        else:
            th = max(1, int(round(2 * s.r)))
            cv2.line(img, _fx(a), _fx(b), s.color, th, cv2.LINE_AA, _SHIFT)
    elif s.kind == "poly":
        pts = np.round(s.pts * QUANT).astype(np.int32)
        cv2.fillConvexPoly(img, pts, s.color, cv2.LINE_AA, _SHIFT)
    elif s.kind == "line":
        th = max(1, int(round(s.r)))
        cv2.line(img, _fx(s.pts[0]), _fx(s.pts[1]), s.color, th, cv2.LINE_AA, _SHIFT)
    elif s.kind == "ellipse":
        axes = (int(round(s.extra[0] * QUANT)), int(round(s.extra[1] * QUANT)))
        cv2.ellipse(img, _fx(s.pts[0]), axes, s.r, 0, 360, s.color, -1, cv2.LINE_AA, _SHIFT)


def render_scene(scene: SynthScene) -> np.ndarray:
    """Draw a scene: BGR uint8 [size, size, 3]. Deterministic (noise from ``noise_seed``)."""
    size = scene.size
    img = cv2.resize(scene.background, (size, size), interpolation=cv2.INTER_LINEAR)
    noise_rng = np.random.default_rng(scene.noise_seed)
    if scene.texture_amp:
        tex = noise_rng.integers(0, scene.texture_amp + 1, (size, size, 3), dtype=np.uint8)
        # a scalar tuple (cv::Scalar) is a valid operand; OpenCV's stubs list only arrays
        img = cv2.subtract(cv2.add(img, tex), (scene.texture_amp // 2,) * 3 + (0,))  # type: ignore[call-overload]
    for s in scene.clutter:
        _draw(img, s)
    for s in scene.shapes:
        _draw(img, s)
    if scene.sensor_amp:
        sen = noise_rng.integers(0, scene.sensor_amp + 1, (size, size, 3), dtype=np.uint8)
        img = cv2.subtract(cv2.add(img, sen), (scene.sensor_amp // 2,) * 3 + (0,))  # type: ignore[call-overload]  # as above
    img = cv2.convertScaleAbs(img, alpha=scene.gain, beta=scene.bias)
    if scene.blur:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


def generate_image(split: SynthSplit, index: int) -> tuple[np.ndarray, SynthScene]:
    """Rendered BGR image and its scene."""
    scene = generate_scene(split, index)
    return render_scene(scene), scene


# ---------------------------------------------------------------------------------------------
# annotations in the real formats


def layout_joints(person: SynthPerson, layout: KeypointLayout) -> tuple[np.ndarray, np.ndarray]:
    """(joints [K, 2], visibility [K] 0/1/2) in ``layout`` order."""
    idx = [_J[n] for n in layout.names]
    return person.joints[idx], person.vis[idx]


def mpii_records(split: SynthSplit, index: int, scene: SynthScene) -> list[dict[str, Any]]:
    """Common-layout MPII records (1-based) for one scene; unlabelled joints are [-1, -1]."""
    out = []
    for p in scene.persons:
        joints, vis = layout_joints(p, MPII)
        lab = vis > 0
        if not lab.any():
            continue
        x1, y1, x2, y2 = p.extent
        s = round(float(max(x2 - x1, y2 - y1)) / 200.0, 4)
        cx = float(_quant((x1 + x2) / 2 + 1.0))
        cy = float(_quant((y1 + y2) / 2 - 15.0 * s + 1.0))
        xy = np.where(lab[:, None], joints + 1.0, -1.0)
        out.append(
            {
                "image": split.image_name(index),
                "center": [cx, cy],
                "scale": s,
                "joints": xy.tolist(),
                "joints_vis": lab.astype(int).tolist(),
                "headbox": (p.head_box + 1.0).tolist(),
            }
        )
    return out


def coco_entries(
    split: SynthSplit, index: int, scene: SynthScene, first_ann_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ``images`` entry and ``annotations`` for one scene."""
    image_id = index + 1
    size = scene.size
    img = {"id": image_id, "file_name": split.image_name(index), "width": size, "height": size}
    anns = []
    for k, p in enumerate(scene.persons):
        joints, vis = layout_joints(p, COCO)
        xy = np.where(vis[:, None] > 0, joints, 0.0)
        kps = np.concatenate([xy, vis[:, None].astype(np.float64)], axis=1)
        x1, y1 = np.clip(p.extent[:2], 0, size)
        x2, y2 = np.clip(p.extent[2:], 0, size)
        w, h = round(float(x2 - x1), 2), round(float(y2 - y1), 2)
        if w <= 1 or h <= 1:
            continue
        full = max((p.extent[2] - p.extent[0]) * (p.extent[3] - p.extent[1]), 1e-6)
        area = round(min(p.area * (w * h) / full, w * h), 2)
        bx, by = round(float(x1), 2), round(float(y1), 2)
        anns.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [bx, by, w, h],
                "area": area,
                "num_keypoints": int((vis > 0).sum()),
                "keypoints": [
                    float(v) if i % 3 != 2 else int(v)
                    for i, v in enumerate(kps.reshape(-1).tolist())
                ],
                "segmentation": [[bx, by, bx + w, by, bx + w, by + h, bx, by + h]],
            }
        )
    return img, anns


def coco_categories() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(COCO.names),
            "skeleton": [[a + 1, b + 1] for a, b in COCO.skeleton],
        }
    ]


def split_annotations(split: SynthSplit) -> Any:
    """All annotations of a split without rendering: MPII record list or COCO dict."""
    if split.style == "mpii":
        recs: list[dict[str, Any]] = []
        for i in range(split.num_images):
            recs.extend(mpii_records(split, i, generate_scene(split, i)))
        return recs
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(split.num_images):
        img, a = coco_entries(split, i, generate_scene(split, i), len(anns) + 1)
        images.append(img)
        anns.extend(a)
    return {"images": images, "annotations": anns, "categories": coco_categories()}


@dataclass(frozen=True)
class SyntheticImageSource:
    """Renders synthetic images on demand by name (picklable, so DataLoader workers can)."""

    split: SynthSplit

    def index_of(self, name: str) -> int:
        stem = name.rsplit(".", 1)[0]
        num = int(stem.rsplit("_", 1)[-1])
        return num if self.split.style == "mpii" else num - 1

    def load(self, name: str) -> np.ndarray | None:
        return render_scene(generate_scene(self.split, self.index_of(name)))

    def describe(self, name: str) -> str:
        return f"synthetic:{self.split.style}/{self.split.split}/{name}"

    def missing(self, names: Sequence[str]) -> list[str]:
        return []


# ---------------------------------------------------------------------------------------------
# writing a dataset


@dataclass
class WriteSummary:
    out: Path
    style: str
    images: dict[str, int]
    persons: dict[str, int]
    files: list[Path]


def write_synthetic(
    out: str | Path,
    style: str,
    train_images: int,
    val_images: int,
    seed: int,
    size: int = 256,
    max_people: int = 1,
    quality: int = 95,
    progress: Callable[[int], None] | None = None,
) -> WriteSummary:
    """Write a synthetic dataset in the real MPII or COCO layout (JSON + JPEGs + head boxes).

    MPII: ``annot/{train,valid}.json``, ``annot/gt_valid.mat``, ``images/*.jpg``.
    COCO: ``annotations/person_keypoints_{train,val}.json``, ``images/{train,val}/*.jpg``.
    ``progress`` is called with the number of images just written.
    """
    root = Path(out)
    splits = [
        SynthSplit(style, "train", seed, train_images, size, max_people),
        SynthSplit(style, "val", seed, val_images, size, max_people),
    ]
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    files: list[Path] = []
    images: dict[str, int] = {}
    persons: dict[str, int] = {}
    for sp in splits:
        img_dir = root / "images" if style == "mpii" else root / "images" / sp.split
        img_dir.mkdir(parents=True, exist_ok=True)
        mpii_recs: list[dict[str, Any]] = []
        coco_imgs: list[dict[str, Any]] = []
        coco_anns: list[dict[str, Any]] = []
        for i in range(sp.num_images):
            img, scene = generate_image(sp, i)
            path = img_dir / sp.image_name(i)
            if not cv2.imwrite(str(path), img, params):
                raise PosenfsError(f"cannot write {path}")
            if style == "mpii":
                mpii_recs.extend(mpii_records(sp, i, scene))
            else:
                entry, anns = coco_entries(sp, i, scene, len(coco_anns) + 1)
                coco_imgs.append(entry)
                coco_anns.extend(anns)
            if progress is not None:
                progress(1)
        images[sp.split] = sp.num_images
        if style == "mpii":
            name = "train" if sp.split == "train" else "valid"
            ann = root / "annot" / f"{name}.json"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text(json.dumps(mpii_recs, separators=(",", ":")))
            files.append(ann)
            persons[sp.split] = len(mpii_recs)
            if sp.split == "val":
                files.append(write_gt_mat(root / "annot" / "gt_valid.mat", mpii_recs))
        else:
            data = {"images": coco_imgs, "annotations": coco_anns, "categories": coco_categories()}
            ann = root / "annotations" / f"person_keypoints_{sp.split}.json"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text(json.dumps(data, separators=(",", ":")))
            files.append(ann)
            persons[sp.split] = len(coco_anns)
        files.append(img_dir)
    return WriteSummary(root, style, images, persons, files)


def write_gt_mat(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    """MPII-style ``gt_valid.mat`` (1-based, as the official files): head boxes, GT, missing."""
    from scipy.io import savemat

    n = len(records)
    hb = np.array([r["headbox"] for r in records], dtype=np.float64).reshape(n, 4)
    pos = np.array([r["joints"] for r in records], dtype=np.float64).reshape(n, 16, 2)
    vis = np.array([r["joints_vis"] for r in records], dtype=np.float64).reshape(n, 16)
    savemat(
        str(path),
        {
            "headboxes_src": np.stack([hb[:, :2].T, hb[:, 2:].T]),
            "pos_gt_src": pos.transpose(1, 2, 0),
            "jnt_missing": (1 - vis).T,
            "jnt_visible": vis.T,
        },
    )
    return path


__all__ = [
    "OWNER_TABLE",
    "PARTS",
    "SUPER_NAMES",
    "Shape",
    "SynthPerson",
    "SynthScene",
    "SynthSplit",
    "SyntheticImageSource",
    "WriteSummary",
    "coco_categories",
    "coco_entries",
    "generate_image",
    "generate_scene",
    "hsv_to_bgr",
    "layout_joints",
    "mpii_records",
    "render_scene",
    "split_annotations",
    "top_shape",
    "write_gt_mat",
    "write_synthetic",
]
