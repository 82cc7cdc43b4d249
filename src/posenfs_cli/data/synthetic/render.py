"""Drawing a scene with OpenCV (sub-pixel, anti-aliased), and rendering images on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from posenfs_cli.data.synthetic.core import _SHIFT, QUANT, Shape, SynthScene, SynthSplit, _fx
from posenfs_cli.data.synthetic.scene import generate_scene


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
