"""Sampling a scene: people placed in the image, occluders, background clutter, and the
visibility of every joint. A scene is a pure function of (seed, split, index)."""

from __future__ import annotations

import numpy as np

from posenfs_cli.data.synthetic.core import (
    _J,
    _P,
    OWNER_TABLE,
    SUPER_NAMES,
    Shape,
    SynthPerson,
    SynthScene,
    SynthSplit,
    _col,
    _quant,
    _unit,
    hsv_to_bgr,
)
from posenfs_cli.data.synthetic.occlusion import _shape_area, _shape_bounds, top_shape
from posenfs_cli.data.synthetic.person import _palette, _person_shapes, _skeleton


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
