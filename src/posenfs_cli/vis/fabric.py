"""Fabric diagrams of a genotype and the α/β difference between two genotypes (OpenCV, BGR).

A CNF is drawn as its grid of cells: layers left to right, scales top (1/4) to bottom (1/32),
its inputs (backbone pyramid or stem) in a first column. Every input slot is its own curve, so
duplicated slots (a top cell's finer slot, a bottom cell's coarser slot, a new bottom cell's
three slots) show as separate lines into separate ports of the cell; width and opacity follow the
slot's β weight. α is shared by all cells of a CNF, so each cell shows its strongest ops and a
table below gives the full α. Pruned cells and slots are grey and dashed.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.genotype import CnfGenotype, Genotype
from posenfs_cli.vis.primitives import (
    INK,
    MUTED,
    WHITE,
    Image,
    Point,
    dashed_polyline,
    dashed_rect,
    make_grid,
    put_text,
    text_size,
    wrap,
)

GREY = (185, 185, 185)
PALE = (238, 238, 238)
SLOT_COLORS = {"same": (200, 120, 30), "finer": (60, 150, 50), "coarser": (30, 130, 230)}
SLOT_HELP = {
    "same": "same scale (identity / conv s2)",
    "finer": "finer: 3x3 conv stride 2",
    "coarser": "coarser: 1x1 conv + upsample",
}
SCALE_NAMES = ("1/4", "1/8", "1/16", "1/32")
OP_SHORT = {
    "zero": "zero",
    "skip": "skip",
    "sep_conv_3x3": "sep3",
    "dil_conv_3x3": "dil3",
    "avg_pool_3x3": "avg3",
    "max_pool_3x3": "max3",
}


def short_op(name: str) -> str:
    return OP_SHORT.get(name, name.replace("_conv", "").replace("_3x3", "3")[:8])


# --- fabric diagram ----------------------------------------------------------------------------


def _check_cnf(g: Any) -> None:
    if not isinstance(g, CnfGenotype):
        raise PosenfsError(
            f"draw_fabric needs one CNF entry of a genotype, not a {type(g).__name__}; "
            "pass genotype.cnfs[i]"
        )


def _bezier(p0: Point, p3: Point, n: int = 40) -> np.ndarray:
    dx = max(30.0, (p3[0] - p0[0]) * 0.5)
    c1 = np.array([p0[0] + dx, p0[1]], float)
    c2 = np.array([p3[0] - dx, p3[1]], float)
    a, d = np.array(p0, float), np.array(p3, float)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * d


def _blend(img: Image, draw, opacity: float) -> None:
    """Run ``draw(overlay)`` and mix it in at ``opacity`` (cv2 has no per-primitive alpha)."""
    overlay = img.copy()
    draw(overlay)
    cv2.addWeighted(overlay, opacity, img, 1.0 - opacity, 0, dst=img)


def _alpha_lines(g: CnfGenotype, max_px: int, scale: float = 0.43) -> list[str]:
    """The strongest op(s) per edge, as many as fit in ``max_px``, shown inside every cell."""
    weights = np.asarray(g.alpha.weights, dtype=np.float64)
    pruned = set(g.pruned.ops)
    ops = g.ops
    lines = []
    for e, (a, b) in enumerate(g.edges):
        order = [o for o in np.argsort(-weights[e], kind="stable") if ops[o] not in pruned]
        for n in range(min(3, len(order)), 0, -1):
            txt = "  ".join(f"{short_op(ops[o])} {weights[e, o]:.2f}" for o in order[:n])
            line = f"{a}>{b}: {txt}"
            if text_size(line, scale)[0] <= max_px:
                break
        lines.append(line)
    return lines


def draw_fabric(cnf_genotype: CnfGenotype, title: str | None = None) -> Image:
    """One CNF of a genotype as a BGR uint8 image (see the module docstring for the encoding)."""
    g = cnf_genotype
    _check_cnf(g)
    st = g.structure
    first, last, in_width = st.first_layer, st.last_layer, st.in_width
    layers = list(range(first, last))
    cells = {c.key: c for c in g.cells}
    n_rows = max([in_width] + [c.scale + 1 for c in g.cells])
    box_w, line_h = 236, 19
    lines = _alpha_lines(g, box_w - 16)
    box_h = max(96, 30 + line_h * len(lines) + 6)  # ports >= 24 px apart for the labels
    in_w, in_h = 118, 40
    col_w, row_h = box_w + 120, box_h + 56
    left = 64

    # title block
    head: list[tuple[str, float, tuple[int, int, int], int]] = [(title or g.name, 0.85, INK, 2)]
    grid_w = left + in_w + 120 + col_w * (len(layers) - 1) + box_w + 16
    kps = g.keypoints
    if kps:
        for ln in wrap("keypoints: " + ", ".join(kps), grid_w - 40, 0.52):
            head.append((ln, 0.52, INK, 1))
    n_pruned = sum(1 for c in g.cells if c.pruned)
    head.append(
        (
            f"layers {first}-{last - 1} of {st.total_layers}   C={st.channels}   "
            f"H={st.hidden}   {len(g.cells)} cells ({n_pruned} pruned)   "
            f"ops: {', '.join(short_op(o) for o in g.ops)}",
            0.48,
            MUTED,
            1,
        )
    )
    steps = [text_size("Hg", s, th)[1] + 12 for _t, s, _c, th in head]
    grid_top = 14 + sum(steps) + 40
    grid_h = n_rows * row_h

    table_rows = len(g.edges) + 1
    table_h = 34 + table_rows * 24 + 16
    legend_h = 5 * 22 + 10
    height = grid_top + grid_h + max(table_h, legend_h) + 20
    width = max(grid_w + 20, 20 + 110 + 74 * len(g.ops) + 60 + 330)
    img = np.full((height, width, 3), 255, np.uint8)

    y = 14
    for (txt, scale, color, th), step in zip(head, steps, strict=True):
        y += step
        put_text(img, txt, (20, y), scale, color, th)

    # geometry
    def in_pos(level: int) -> tuple[int, int]:
        return left + 10, grid_top + level * row_h + (box_h - in_h) // 2

    def cell_pos(key: tuple[int, int]) -> tuple[int, int]:
        j, s = key
        return left + in_w + 120 + (j - first) * col_w, grid_top + s * row_h

    # column headers and scale labels
    hy = grid_top - 10
    put_text(img, "input", (left + 10 + in_w // 2, hy), 0.5, MUTED, 1, "center")
    for j in layers:
        x, _ = cell_pos((j, 0))
        put_text(img, f"layer {j}", (x + box_w // 2, hy), 0.5, MUTED, 1, "center")
    for s in range(n_rows):
        put_text(img, SCALE_NAMES[s], (10, grid_top + s * row_h + box_h // 2 + 6), 0.55, MUTED, 1)
        yline = grid_top + s * row_h + box_h // 2
        cv2.line(img, (left - 4, yline), (width - 12, yline), (246, 246, 246), 1)

    # which inputs the first layer still reads
    used_inputs = set()
    for key, c in cells.items():
        if key[0] == first and not c.pruned:
            for inp in c.inputs:
                if inp.slot not in c.pruned_inputs:
                    used_inputs.add(_src_index(inp.source))

    # edges, weakest first so strong ones end on top
    strokes = []
    for key, c in cells.items():
        j, s = key
        cx, cy = cell_pos(key)
        weights = c.beta.weights if c.beta is not None else (0.0, 0.0, 0.0)
        for k, inp in enumerate(c.inputs):
            src = _src_index(inp.source)
            if j == first:
                sx, sy = in_pos(src)
                p0 = (sx + in_w, sy + in_h // 2)
            else:
                sx, sy = cell_pos((j - 1, src))
                p0 = (sx + box_w, sy + box_h // 2)
            port = {"finer": 0.25, "same": 0.5, "coarser": 0.75}[inp.slot]
            p3 = (cx, cy + int(box_h * port))
            dead = c.pruned or inp.slot in c.pruned_inputs
            strokes.append((0.0 if dead else float(weights[k]), dead, inp.slot, p0, p3))
    strokes.sort(key=lambda t: (not t[1], t[0]))
    labels = []
    for w, dead, slot, p0, p3 in strokes:
        pts = _bezier(p0, p3)
        if dead:
            dashed_polyline(img, pts, GREY, 1)
            continue
        color = SLOT_COLORS[slot]
        thick = 1 + int(round(9 * w))
        ipts = pts.round().astype(np.int32)
        _blend(
            img,
            lambda o, ipts=ipts, color=color, thick=thick: cv2.polylines(
                o, [ipts], False, color, thick, cv2.LINE_AA
            ),
            0.3 + 0.7 * w,
        )
        labels.append((w, color, p3))
    for w, color, (lx, ly) in labels:  # at the port, just left of the cell
        put_text(img, f"{w:.2f}", (lx - 6, ly + 5), 0.42, color, 1, "right", box=WHITE)

    # input nodes
    levels = range(1) if in_width == 1 else range(in_width)
    for lvl in levels:
        x, y0 = in_pos(lvl)
        name = "stem" if in_width == 1 else f"pyramid {SCALE_NAMES[lvl]}"
        used = lvl in used_inputs
        cv2.rectangle(img, (x, y0), (x + in_w, y0 + in_h), PALE if used else WHITE, -1)
        if used:
            cv2.rectangle(img, (x, y0), (x + in_w, y0 + in_h), MUTED, 1)
        else:
            dashed_rect(img, (x, y0), (x + in_w, y0 + in_h), GREY)
        put_text(img, name, (x + in_w // 2, y0 + 25), 0.48, INK if used else GREY, 1, "center")

    # cells
    for key, c in cells.items():
        x, y0 = cell_pos(key)
        p1 = (x + box_w, y0 + box_h)
        label = f"cell {key[0]},{key[1]}  ({SCALE_NAMES[key[1]]})"
        if c.pruned:
            cv2.rectangle(img, (x, y0), p1, (246, 246, 246), -1)
            dashed_rect(img, (x, y0), p1, MUTED, 1)
            put_text(img, label, (x + 8, y0 + 20), 0.5, GREY, 1)
            put_text(img, "pruned", (x + box_w // 2, y0 + box_h // 2 + 14), 0.6, GREY, 1, "center")
            continue
        is_out = key[0] == last - 1
        cv2.rectangle(img, (x, y0), p1, WHITE, -1)
        cv2.rectangle(img, (x, y0), p1, INK, 3 if is_out else 1)
        put_text(img, label, (x + 8, y0 + 20), 0.5, INK, 1)
        if is_out:
            put_text(img, "output", (p1[0] - 8, y0 + 20), 0.45, MUTED, 1, "right")
        for i, ln in enumerate(lines):
            put_text(img, ln, (x + 8, y0 + 20 + line_h * (i + 1)), 0.43, (70, 70, 70), 1)

    _draw_alpha_table(img, g, 20, grid_top + grid_h + 6)
    lx = 20 + 110 + 74 * len(g.ops) + 50
    _draw_legend(img, (lx, grid_top + grid_h + 30))
    return img


def _src_index(source: str) -> int:
    """Index into the previous layer from a genotype ``from`` field (stem / pyramid[i] / cell)."""
    if source == "stem":
        return 0
    inner = source[source.index("[") + 1 : source.index("]")]
    return int(inner.split(",")[-1])


def _draw_alpha_table(img: Image, g: CnfGenotype, x0: int, y0: int) -> None:
    weights = np.asarray(g.alpha.weights, dtype=np.float64)
    pruned = set(g.pruned.ops)
    cw, ch, first_w = 74, 24, 110
    put_text(img, "alpha: op weights per edge (shared by all cells)", (x0, y0 + 18), 0.5, INK, 1)
    y = y0 + 30
    for o, op in enumerate(g.ops):
        cx = x0 + first_w + o * cw + cw // 2
        col = GREY if op in pruned else INK
        put_text(
            img, short_op(op) + ("*" if op in pruned else ""), (cx, y + 16), 0.45, col, 1, "center"
        )
    for e, (a, b) in enumerate(g.edges):
        ry = y + ch * (e + 1)
        put_text(img, f"{a} -> {b}", (x0 + 4, ry + 17), 0.45, INK, 1)
        best = int(np.argmax(weights[e]))
        for o in range(len(g.ops)):
            w = float(weights[e, o])
            cx = x0 + first_w + o * cw
            shade = np.array(WHITE, float) * (1 - w) + np.array((190, 110, 40), float) * w
            cv2.rectangle(img, (cx + 1, ry + 1), (cx + cw - 1, ry + ch - 1), shade.tolist(), -1)
            if o == best:
                cv2.rectangle(img, (cx + 1, ry + 1), (cx + cw - 1, ry + ch - 1), INK, 1)
            put_text(
                img,
                f"{w:.3f}",
                (cx + cw // 2, ry + 17),
                0.42,
                WHITE if w > 0.55 else INK,
                1,
                "center",
            )
    if pruned:
        ry = y + ch * (len(g.edges) + 1) + 16
        put_text(img, "* pruned op (removed from every cell)", (x0, ry), 0.42, MUTED, 1)


def _draw_legend(img: Image, org: Point) -> None:
    x, y = org
    for i, slot in enumerate(("same", "finer", "coarser")):
        yy = y + i * 22
        cv2.line(img, (x, yy - 5), (x + 34, yy - 5), SLOT_COLORS[slot], 4, cv2.LINE_AA)
        put_text(img, SLOT_HELP[slot], (x + 44, yy), 0.45, INK, 1)
    yy = y + 3 * 22
    dashed_polyline(img, np.array([[x, yy - 5], [x + 34, yy - 5]], float), GREY, 1)
    put_text(img, "pruned slot / cell", (x + 44, yy), 0.45, INK, 1)
    put_text(img, "line width & opacity = beta weight", (x, yy + 22), 0.45, MUTED, 1)


def draw_overview(genotype: Genotype, cols: int | None = None) -> Image:
    """Every CNF of a genotype in a grid (backbone first, then the parts), with a title."""
    if not isinstance(genotype, Genotype):
        raise PosenfsError(f"draw_overview needs a Genotype, not a {type(genotype).__name__}")
    cnfs = genotype.cnfs
    if not cnfs:
        raise PosenfsError(
            "this genotype has no CNF to draw (a baseline head: model.head=branchnet or deconv)"
        )
    tiles = [draw_fabric(c) for c in cnfs]
    cols = cols or (1 if len(tiles) == 1 else 2)
    body = make_grid(tiles, cols, pad=24, pad_value=255, uniform=False, border=False)
    layout = genotype.keypoint_layout or "?"
    names = ", ".join(c.name for c in cnfs)
    bar = np.full((50, body.shape[1], 3), 255, np.uint8)
    put_text(
        bar, f"genotype: {len(cnfs)} CNFs ({names}), {layout} keypoints", (16, 34), 0.8, INK, 2
    )
    return np.concatenate([bar, body], 0)


# --- genotype difference ---------------------------------------------------------------------


def _entries(g: Any, which: str) -> dict[str, CnfGenotype]:
    if not isinstance(g, Genotype):
        raise PosenfsError(f"genotype {which} is not a posenfs genotype ({type(g).__name__})")
    return {c.name: c for c in g.cnfs}


def genotype_diff(
    a: Genotype,
    b: Genotype,
    top: int = 20,
    labels: tuple[str, str] = ("A", "B"),
) -> tuple[list[dict[str, Any]], Image]:
    """Rows for every α/β weight (sorted by |Δ|, largest first) and a bar chart of the ``top``.

    Both genotypes must share the structure (CNF names, ops, edges, layers); pruning may
    differ: β rows are compared only for cells live in both.
    """
    ea, eb = _entries(a, labels[0]), _entries(b, labels[1])
    if sorted(ea) != sorted(eb):
        raise PosenfsError(
            f"genotypes have different CNFs: {labels[0]} {sorted(ea)}, {labels[1]} {sorted(eb)}"
        )
    rows: list[dict[str, Any]] = []
    for name in ea:
        ja, jb = ea[name].to_json(), eb[name].to_json()
        for key in ("ops", "edges", "structure"):
            if ja[key] != jb[key]:
                raise PosenfsError(
                    f"CNF {name!r}: {key} differ ({labels[0]} {ja[key]}, "
                    f"{labels[1]} {jb[key]}); not the same model structure"
                )
        ga, gb = ea[name], eb[name]
        wa = np.asarray(ga.alpha.weights, np.float64)
        wb = np.asarray(gb.alpha.weights, np.float64)
        for e, (s, t) in enumerate(ga.edges):
            for o, op in enumerate(ga.ops):
                rows.append(_row(name, "alpha", f"{s}->{t}", op, wa[e, o], wb[e, o]))
        cb = {c.key: c for c in gb.cells}
        for ca in ga.cells:
            other = cb.get(ca.key)
            if other is None or ca.beta is None or other.beta is None:
                continue
            where = f"cell {ca.layer},{ca.scale}"
            for k, inp in enumerate(ca.inputs):
                rows.append(
                    _row(name, "beta", where, inp.slot, ca.beta.weights[k], other.beta.weights[k])
                )
    rows.sort(key=lambda r: -abs(r["delta"]))
    return rows, draw_diff_bars(rows[: max(1, top)], labels)


def _row(cnf: str, kind: str, where: str, entry: str, wa: float, wb: float) -> dict[str, Any]:
    return {
        "cnf": cnf,
        "kind": kind,
        "where": where,
        "entry": entry,
        "a": float(wa),
        "b": float(wb),
        "delta": float(wb) - float(wa),
    }


def draw_diff_bars(rows: list[dict[str, Any]], labels: tuple[str, str] = ("A", "B")) -> Image:
    """Horizontal bars of Δ weight around a zero line (green: grew in B, red: shrank)."""
    label_w, bar_w, val_w, row_h = 380, 520, 190, 26
    top = 78
    h = top + row_h * max(1, len(rows)) + 30
    w = label_w + bar_w + val_w + 40
    img = np.full((h, w, 3), 255, np.uint8)
    put_text(img, f"largest weight changes: {labels[0]} -> {labels[1]}", (16, 32), 0.75, INK, 2)
    put_text(
        img,
        "delta of normalised weight (softmax alpha per edge, softmax beta per cell)",
        (16, 56),
        0.45,
        MUTED,
        1,
    )
    x_mid = label_w + bar_w // 2
    scale = max([abs(r["delta"]) for r in rows] + [1e-12])
    cv2.line(img, (x_mid, top - 6), (x_mid, top + row_h * len(rows)), MUTED, 1)
    for i, r in enumerate(rows):
        y = top + i * row_h
        if i % 2 == 0:
            cv2.rectangle(img, (10, y), (w - 10, y + row_h), (248, 248, 248), -1)
        put_text(
            img, f"{r['cnf']}  {r['kind']} {r['where']}: {r['entry']}", (16, y + 18), 0.45, INK, 1
        )
        length = int(round((bar_w // 2 - 6) * abs(r["delta"]) / scale))
        color = (60, 160, 60) if r["delta"] >= 0 else (60, 60, 210)
        x0, x1 = (x_mid, x_mid + length) if r["delta"] >= 0 else (x_mid - length, x_mid)
        cv2.rectangle(img, (x0, y + 5), (max(x1, x0 + 1), y + row_h - 5), color, -1)
        put_text(
            img,
            f"{r['a']:.3f} -> {r['b']:.3f} ({r['delta']:+.3f})",
            (label_w + bar_w + 12, y + 18),
            0.45,
            INK,
            1,
        )
    if not rows:
        put_text(img, "no comparable weights", (16, top + 18), 0.5, MUTED, 1)
    return img
