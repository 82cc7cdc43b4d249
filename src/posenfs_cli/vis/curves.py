"""Training curves from run folders' ``metrics.jsonl`` (OpenCV line charts, no matplotlib).

One panel per metric, every run overlaid in its own colour with a shared legend. Missing or null
values break a line instead of being drawn as 0; a loss spanning more than a decade gets a log
axis, so the late epochs stay readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posenfs_cli.errors import PosenfsError
from posenfs_cli.vis.primitives import INK, MUTED, make_grid, put_text, text_size

DEFAULT_KEYS = ("train_loss", "val_loss", "pckh", "alpha_entropy", "beta_entropy")
METRICS_FILE = "metrics.jsonl"
# Tableau-10 in BGR
PALETTE = (
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (127, 127, 127),
    (34, 189, 188),
    (207, 190, 23),
)
Run = tuple[str, list[dict[str, Any]]]


def read_metrics_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``<run_dir>/metrics.jsonl``; a clear PosenfsError when there are none."""
    run = Path(run_dir)
    p = run / METRICS_FILE if run.is_dir() or not run.suffix else run
    if not p.is_file():
        why = "no such folder" if not run.exists() else f"no {METRICS_FILE} in it"
        raise PosenfsError(
            f"{run}: {why} (give a run folder such as runs/search/exp; metrics.jsonl is "
            "written after each epoch)"
        )
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PosenfsError(f"{p}:{n}: not a JSON line ({exc.msg})") from exc
        if isinstance(row, dict):
            rows.append(row)
    if not rows:
        raise PosenfsError(f"{p} is empty (no epoch finished yet)")
    return rows


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, value) with NaN where the value is missing; epoch defaults to the row number."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        x = _finite(row.get("epoch"))
        xs.append(float(i + 1) if x is None else x)
        y = _finite(row.get(key))
        ys.append(math.nan if y is None else y)
    return np.asarray(xs), np.asarray(ys)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    count = math.ceil((hi - start) / step - 1e-9)
    ticks = [round(start + i * step, 12) for i in range(count + 1)]
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-4:
        return f"{v:.0e}"
    return f"{v:.4g}"


def _panel(
    key: str, runs: list[tuple[int, np.ndarray, np.ndarray]], size: tuple[int, int]
) -> np.ndarray:
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 78, 18, 52, 46
    x0, x1, y0, y1 = left, w - right, top, h - bottom
    all_x = np.concatenate([x[np.isfinite(y)] for _, x, y in runs])
    all_y = np.concatenate([y[np.isfinite(y)] for _, _, y in runs])
    log = "loss" in key and all_y.min() > 0 and all_y.max() / all_y.min() >= 20
    ty = np.log10(all_y) if log else all_y
    if log:
        lo, hi = math.floor(ty.min()), math.ceil(ty.max())
        yticks = [float(t) for t in range(lo, hi + 1)]
    else:
        yticks = nice_ticks(float(ty.min()), float(ty.max()))
    ylo, yhi = yticks[0], yticks[-1]
    xticks = [t for t in nice_ticks(float(all_x.min()), float(all_x.max()), 6) if t == int(t)]
    xlo = min(xticks[0], float(all_x.min())) if xticks else float(all_x.min())
    xhi = max(xticks[-1], float(all_x.max())) if xticks else float(all_x.max())
    if xhi <= xlo:
        xlo, xhi = xlo - 1, xhi + 1

    def px(x: np.ndarray | float) -> np.ndarray:
        return x0 + (np.asarray(x, float) - xlo) / (xhi - xlo) * (x1 - x0)

    def py(y: np.ndarray | float) -> np.ndarray:
        v = np.log10(np.asarray(y, float)) if log else np.asarray(y, float)
        return y1 - (v - ylo) / (yhi - ylo) * (y1 - y0)

    put_text(img, key + ("  (log scale)" if log else ""), (x0, 28), 0.62, INK, 2)
    for t in yticks:
        yy = int(round(y1 - (t - ylo) / (yhi - ylo) * (y1 - y0)))
        cv2.line(img, (x0, yy), (x1, yy), (232, 232, 232), 1)
        put_text(img, _fmt(10**t if log else t), (x0 - 8, yy + 5), 0.42, MUTED, 1, "right")
    for t in xticks:
        if xlo <= t <= xhi:
            xx = int(round(float(px(t))))
            cv2.line(img, (xx, y0), (xx, y1), (240, 240, 240), 1)
            cv2.line(img, (xx, y1), (xx, y1 + 5), MUTED, 1)
            put_text(img, f"{int(t)}", (xx, y1 + 20), 0.42, MUTED, 1, "center")
    cv2.rectangle(img, (x0, y0), (x1, y1), (150, 150, 150), 1)
    put_text(img, "epoch", ((x0 + x1) // 2, h - 8), 0.45, MUTED, 1, "center")

    for idx, xs, ys in runs:
        color = PALETTE[idx % len(PALETTE)]
        ok = np.isfinite(ys)
        pts = np.stack([px(xs), np.where(ok, py(np.where(ok, ys, 1.0)), 0)], 1)
        # contiguous runs of finite values become polylines
        start = None
        for i in range(len(ys) + 1):
            good = i < len(ys) and ok[i]
            if good and start is None:
                start = i
            elif not good and start is not None:
                seg = pts[start:i].round().astype(np.int32)
                if len(seg) > 1:
                    cv2.polylines(img, [seg], False, color, 2, cv2.LINE_AA)
                start = None
        if ok.sum() <= 40:
            for p in pts[ok].round().astype(int):
                cv2.circle(img, (int(p[0]), int(p[1])), 3, color, -1, cv2.LINE_AA)
    return img


def _legend(labels: list[str], width: int) -> np.ndarray:
    rows: list[list[tuple[int, str]]] = [[]]
    used = 16
    for i, label in enumerate(labels):
        item = 40 + text_size(label, 0.5)[0] + 24
        if rows[-1] and used + item > width:
            rows.append([])
            used = 16
        rows[-1].append((i, label))
        used += item
    img = np.full((16 + 26 * len(rows), width, 3), 255, np.uint8)
    for r, items in enumerate(rows):
        x, y = 16, 24 + 26 * r
        for i, label in items:
            color = PALETTE[i % len(PALETTE)]
            cv2.line(img, (x, y - 5), (x + 30, y - 5), color, 3, cv2.LINE_AA)
            x += 40 + put_text(img, label, (x + 40, y), 0.5, INK, 1) + 24
    return img


def plot_curves(
    runs: Sequence[Run],
    keys: Sequence[str] = DEFAULT_KEYS,
    cols: int = 2,
    panel_size: tuple[int, int] = (560, 340),
) -> np.ndarray:
    """Line charts (one panel per key present in any run) of metric rows vs epoch, BGR uint8.

    ``runs`` is ``[(label, rows)]`` with rows as in ``metrics.jsonl``. Keys absent everywhere
    are skipped; when none is present a PosenfsError lists what the runs do contain.
    """
    if not runs:
        raise PosenfsError("plot_curves needs at least one run")
    panels = []
    for key in keys:
        series = []
        for i, (_label, rows) in enumerate(runs):
            xs, ys = _series(rows, key)
            if np.isfinite(ys).any():
                series.append((i, xs, ys))
        if series:
            panels.append(_panel(key, series, panel_size))
    if not panels:
        found = sorted({k for _, rows in runs for r in rows for k, v in r.items() if _finite(v)})
        raise PosenfsError(
            f"none of {', '.join(keys)} has values in these runs (they have: {', '.join(found)})"
        )
    body = make_grid(
        panels, min(cols, len(panels)), pad=8, pad_value=255, uniform=False, border=False
    )
    legend = _legend([label for label, _ in runs], body.shape[1])
    return np.concatenate([legend, body], 0)
