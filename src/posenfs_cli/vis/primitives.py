"""Drawing primitives shared by the pictures posenfs makes (OpenCV, BGR uint8).

Text with anchors, dashed lines, word wrap and image grids live here once, so the fabric
diagrams, training curves and sample grids lay out text and tiles the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (40, 40, 40)
MUTED = (120, 120, 120)

Image = np.ndarray
Point = tuple[int, int]
Color = tuple[int, int, int]


def text_size(text: str, scale: float = 0.5, thickness: int = 1) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    return w, h


def put_text(
    img: Image,
    text: str,
    org: Point,
    scale: float = 0.5,
    color: Color = INK,
    thickness: int = 1,
    anchor: str = "left",
    box: Color | None = None,
) -> int:
    """Text with its baseline at ``org`` (x per ``anchor``: left/center/right); returns width."""
    w, h = text_size(text, scale, thickness)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    if box is not None:
        cv2.rectangle(img, (x - 2, y - h - 3), (x + w + 2, y + 4), box, -1)
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, thickness, cv2.LINE_AA)
    return w


def dashed_polyline(
    img: Image, pts: np.ndarray, color: Color, thickness: int = 1, dash: int = 7
) -> None:
    """A dashed line through ``pts`` (N×2 floats): dash, gap, dash ... by arc length."""
    seg = np.diff(pts, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    if arc[-1] <= 0:
        return
    for start in np.arange(0.0, arc[-1], 2 * dash):
        ts = np.linspace(start, min(start + dash, arc[-1]), 4)
        xs = np.interp(ts, arc, pts[:, 0])
        ys = np.interp(ts, arc, pts[:, 1])
        piece = np.stack([xs, ys], 1).round().astype(np.int32)
        cv2.polylines(img, [piece], False, color, thickness, cv2.LINE_AA)


def dashed_rect(img: Image, p0: Point, p1: Point, color: Color, t: int = 1) -> None:
    (x0, y0), (x1, y1) = p0, p1
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float64)
    dashed_polyline(img, corners, color, t, dash=6)


def wrap(text: str, width_px: int, scale: float = 0.5) -> list[str]:
    """Greedy word wrap to ``width_px`` at font ``scale``."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        cand = f"{line} {word}".strip()
        if line and text_size(cand, scale)[0] > width_px:
            lines.append(line)
            line = word
        else:
            line = cand
    if line:
        lines.append(line)
    return lines


def make_grid(
    images: Sequence[Image],
    ncols: int,
    pad: int = 2,
    pad_value: int = 32,
    *,
    uniform: bool = True,
    border: bool = True,
) -> Image:
    """Tile images into rows of ``ncols``, each image at the top-left of its cell.

    ``uniform``: every cell as large as the largest image (sample grids); otherwise each column
    is as wide as its widest image and each row as tall as its tallest (diagrams of different
    sizes). ``pad`` pixels of ``pad_value`` separate the cells, and surround the grid when
    ``border``. Grey images ([H, W]) give a grey grid.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    ncols = max(1, min(int(ncols), len(images)))
    rows = [list(images[i : i + ncols]) for i in range(0, len(images), ncols)]
    if uniform:
        h = max(im.shape[0] for im in images)
        w = max(im.shape[1] for im in images)
        heights, widths = [h] * len(rows), [w] * ncols
    else:
        heights = [max(im.shape[0] for im in r) for r in rows]
        widths = [max(r[c].shape[1] for r in rows if c < len(r)) for c in range(ncols)]
    edge = pad if border else 0
    ys = np.cumsum([edge] + [h + pad for h in heights])
    xs = np.cumsum([edge] + [w + pad for w in widths])
    c = images[0].shape[2] if images[0].ndim == 3 else 1
    grid = np.full((ys[-1] - pad + edge, xs[-1] - pad + edge, c), pad_value, dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = ys[r], xs[col]
        grid[y : y + im.shape[0], x : x + im.shape[1]] = im.reshape(im.shape[0], im.shape[1], c)
    return grid if c != 1 else grid[:, :, 0]
