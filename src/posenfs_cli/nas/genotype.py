"""Genotype JSON: every CNF's α and β, human-readable and loss-free.

Per CNF (each body part, plus the backbone when it is a fabric): its name, keypoint names, op
names, the edges of α (``I -> h1`` ...), α as logits and softmax weights per edge, and per cell
(layer, scale) its three input slots with β logits and softmax weights, and what was pruned.
Logits are written as Python floats of the float32 values, so ``model -> JSON -> model`` is
exact.

``format_version`` (an integer) numbers the layout. Files without it were written before it
existed; their ``"format": "posenfs-genotype/1"`` says format 1. ``format`` stays
``posenfs-genotype/1`` while the format is 1, so posenfs 0.1.0 reads files written today. A
file newer than :data:`FORMAT_VERSION` is refused with one line naming both versions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch

from posenfs_cli import __version__
from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.cell import SLOT_NAMES, Cell, edge_pairs
from posenfs_cli.nas.fabric import CNF, PruneSpec

FORMAT_NAME = "posenfs-genotype"
FORMAT_VERSION = 1
"""The genotype format this posenfs writes and the newest it reads (CHANGELOG lists them)."""
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"


def _node(i: int) -> str:
    return "I" if i == 0 else f"h{i}"


def _source_name(cnf: CNF, layer: int, src: int) -> str:
    if layer == cnf.spec.first_layer:
        return "stem" if cnf.spec.in_width == 1 else f"pyramid[{src}]"
    return f"cell[{layer - 1},{src}]"


def _floats(t: torch.Tensor) -> list[float]:
    values: list[float] = t.detach().float().cpu().tolist()
    return values


def cnf_genotype(name: str, cnf: CNF, keypoints: list[str] | None) -> dict[str, Any]:
    spec = cnf.spec
    alpha = cnf.alpha.detach().float().cpu()
    live = {(c.layer, c.scale): c for c in cast("Iterable[Cell]", cnf.cells)}
    cells = []
    for key in spec.cell_keys():
        layer, scale = key
        wiring = spec.wiring(key)
        cell = live.get(key)
        entry: dict[str, Any] = {
            "layer": layer,
            "scale": scale,
            "inputs": [
                {"slot": SLOT_NAMES[k], "from": _source_name(cnf, layer, src), "transform": kind}
                for k, (src, kind) in enumerate(wiring)
            ],
        }
        if cell is None:
            entry["pruned"] = True
            entry["beta"] = None
        else:
            beta = cell.beta.detach().float().cpu()
            entry["pruned"] = False
            entry["beta"] = {"logits": _floats(beta), "weights": _floats(beta.softmax(0))}
            entry["pruned_inputs"] = [SLOT_NAMES[k] for k in range(3) if k not in cell.slot_index]
        cells.append(entry)
    return {
        "name": name,
        "keypoints": keypoints,
        "ops": list(spec.ops),
        "edges": [[_node(i), _node(j)] for i, j in edge_pairs(spec.hidden)],
        "alpha": {"logits": _floats(alpha), "weights": _floats(alpha.softmax(-1))},
        "cells": cells,
        "pruned": {
            "cells": sorted([list(k) for k in cnf.prune.cells]),
            "ops": sorted(cnf.prune.ops),
        },
        "structure": {
            "total_layers": spec.total_layers,
            "first_layer": spec.first_layer,
            "last_layer": spec.last_layer,
            "channels": spec.channels,
            "hidden": spec.hidden,
            "in_width": spec.in_width,
        },
    }


def model_genotype(model: Any, layout_name: str | None = None) -> dict[str, Any]:
    """The genotype of a PoseNet: one entry per CNF in ``model.cnfs()`` order."""
    layout_names = None
    if layout_name is not None:
        from posenfs_cli.data.keypoints import get_layout

        layout_names = get_layout(layout_name).names
    out = []
    part_joints = {p.name: p.joints for p in model.parts}
    for name, cnf in model.cnfs():
        kps = None
        if name in part_joints and layout_names is not None:
            kps = [layout_names[j] for j in part_joints[name]]
        out.append(cnf_genotype(name, cnf, kps))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "keypoint_layout": layout_name,
        "cnfs": out,
    }


def prune_specs(genotype: dict[str, Any]) -> dict[str, PruneSpec]:
    """What each CNF lacks, so a pruned model can be rebuilt from its genotype alone."""
    specs: dict[str, PruneSpec] = {}
    for entry in _cnfs(genotype):
        spec = PruneSpec(
            cells={(c[0], c[1]) for c in entry["pruned"]["cells"]},
            ops=set(entry["pruned"]["ops"]),
        )
        for cell in entry["cells"]:
            dead = [SLOT_NAMES.index(s) for s in cell.get("pruned_inputs", [])]
            if dead:
                spec.slots[(cell["layer"], cell["scale"])] = set(dead)
        if not spec.is_empty():
            specs[entry["name"]] = spec
    return specs


def genotype_format_version(genotype: Any, source: str | Path | None = None) -> int:
    """The format of a genotype dict: ``format_version``, else the number in ``format``."""
    where = f"{source}: " if source is not None else ""
    fmt = genotype.get("format") if isinstance(genotype, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_NAME + "/"):
        raise PosenfsError(f'{where}not a posenfs genotype (expected "format": "{FORMAT}")')
    raw = genotype.get("format_version", fmt[len(FORMAT_NAME) + 1 :])
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise PosenfsError(f"{where}genotype format_version {raw!r} is not a positive integer")
    if raw > FORMAT_VERSION:
        raise PosenfsError(
            f"{where}genotype format {raw} is newer than posenfs {__version__} reads (formats up "
            f"to {FORMAT_VERSION}): upgrade posenfs"
        )
    return raw


def _cnfs(genotype: dict[str, Any]) -> list[dict[str, Any]]:
    genotype_format_version(genotype)
    cnfs = genotype.get("cnfs")
    if not isinstance(cnfs, list):
        raise PosenfsError('not a posenfs genotype (no "cnfs" list)')
    return cnfs


def check_genotype_layout(genotype: dict[str, Any], keypoints: str) -> None:
    """A genotype searched on one keypoint layout (COCO) must not silently drive another (MPII):
    its parts group other joints even when their names and shapes happen to match."""
    had = genotype.get("keypoint_layout")
    if had is not None and had != keypoints:
        raise PosenfsError(
            f"the genotype was searched with {had} keypoints, this run uses {keypoints}"
        )


def apply_genotype(model: Any, genotype: dict[str, Any]) -> None:
    """Copy α/β logits into ``model``; any structural mismatch is a PosenfsError naming it."""
    entries = _cnfs(genotype)
    cnfs = dict(model.cnfs())
    names = [e["name"] for e in entries]
    if sorted(names) != sorted(cnfs):
        raise PosenfsError(
            f"genotype has CNFs {names} but the model has {list(cnfs)} "
            "(different parts or backbone)"
        )
    with torch.no_grad():
        for entry in entries:
            name = entry["name"]
            cnf = cnfs[name]
            mine = cnf_genotype(name, cnf, entry.get("keypoints"))
            for key in ("ops", "edges", "structure", "pruned"):
                if entry.get(key) != mine[key]:
                    raise PosenfsError(
                        f"genotype CNF {name!r}: {key} differ (genotype {entry.get(key)}, "
                        f"model {mine[key]})"
                    )
            gk = [(c["layer"], c["scale"], c["pruned"]) for c in entry["cells"]]
            mk = [(c["layer"], c["scale"], c["pruned"]) for c in mine["cells"]]
            if gk != mk:
                raise PosenfsError(f"genotype CNF {name!r}: cells differ ({gk} vs {mk})")
            alpha = torch.tensor(entry["alpha"]["logits"], dtype=torch.float32)
            if alpha.shape != cnf.alpha.shape:
                raise PosenfsError(
                    f"genotype CNF {name!r}: alpha has shape {tuple(alpha.shape)}, "
                    f"model expects {tuple(cnf.alpha.shape)}"
                )
            cnf.alpha.copy_(alpha)
            by_key = {(c["layer"], c["scale"]): c for c in entry["cells"]}
            for cell in cast("Iterable[Cell]", cnf.cells):
                beta = torch.tensor(
                    by_key[(cell.layer, cell.scale)]["beta"]["logits"], dtype=torch.float32
                )
                if beta.shape != cell.beta.shape:
                    raise PosenfsError(
                        f"genotype CNF {name!r}: cell ({cell.layer},{cell.scale}) has "
                        f"{beta.numel()} beta logits, the model {cell.beta.numel()}"
                    )
                cell.beta.copy_(beta)


def save_genotype(path: str | Path, genotype: dict[str, Any]) -> Path:
    from posenfs_cli.atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(genotype, indent=2) + "\n")


def load_genotype(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise PosenfsError(f"{p} is a folder; give a genotype .json file")
    if not p.is_file():
        raise PosenfsError(f"genotype file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PosenfsError(f"{p} is not a genotype JSON (binary data, not UTF-8 text)") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PosenfsError(f"{p} is not valid JSON: {exc}".splitlines()[0]) from exc
    return check_genotype(data, p)


def check_genotype(
    data: Any, source: str | Path = "genotype", allow_empty: bool = False
) -> dict[str, Any]:
    """Check the shape of a genotype (what every reader relies on) before anything uses it.

    ``allow_empty``: a model with a baseline head (no CNF) has an empty ``cnfs`` list.
    """
    where = str(source)
    try:
        cnfs = _cnfs(data)
    except PosenfsError as exc:
        raise PosenfsError(f"{where}: {exc}") from None
    if not isinstance(cnfs, list) or not (cnfs or allow_empty):
        raise PosenfsError(f"{where}: 'cnfs' must be a non-empty list")
    for i, entry in enumerate(cnfs):
        _check_entry(entry, f"{where}: cnfs[{i}]")
    return cast("dict[str, Any]", data)  # checked above


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise PosenfsError(f"{where}: {what}")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_numbers(v: Any, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(_is_num(x) for x in v)


_SOURCE = re.compile(r"stem|pyramid\[\d{1,3}\]|cell\[\d{1,3},\d{1,3}\]")
# sanity bounds: far above any buildable fabric, low enough that drawing one stays cheap
MAX_LAYERS, MAX_SCALES = 64, 16


def _check_entry(entry: Any, where: str) -> None:
    _need(isinstance(entry, dict), where, "must be an object")
    for key, kind in (
        ("name", str),
        ("ops", list),
        ("edges", list),
        ("alpha", dict),
        ("cells", list),
        ("pruned", dict),
        ("structure", dict),
    ):
        _need(isinstance(entry.get(key), kind), where, f"lacks {key!r} ({kind.__name__})")
    kps = entry.get("keypoints")
    _need(
        kps is None or (isinstance(kps, list) and all(isinstance(k, str) for k in kps)),
        where,
        "'keypoints' must be a list of names",
    )
    ops, edges = entry["ops"], entry["edges"]
    _need(bool(ops) and all(isinstance(o, str) for o in ops), where, "'ops' must be op names")
    _need(
        bool(edges)
        and all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
            for e in edges
        ),
        where,
        "'edges' must be [from, to] name pairs",
    )
    for key in ("logits", "weights"):
        rows = entry["alpha"].get(key)
        _need(
            isinstance(rows, list)
            and len(rows) == len(edges)
            and all(_is_numbers(r, len(ops)) for r in rows),
            where,
            f"'alpha.{key}' must be {len(edges)} rows of {len(ops)} finite numbers",
        )
    st = entry["structure"]
    for key, hi in (
        ("total_layers", MAX_LAYERS),
        ("first_layer", MAX_LAYERS),
        ("last_layer", MAX_LAYERS),
        ("in_width", MAX_SCALES),
        ("channels", 1 << 16),
        ("hidden", 64),
    ):
        _need(_is_int(st.get(key), 0, hi), where, f"'structure.{key}' must be an integer <= {hi}")
    pruned = entry["pruned"]
    _need(
        isinstance(pruned.get("cells"), list)
        and all(
            isinstance(c, list) and len(c) == 2 and all(_is_int(x, 0, MAX_LAYERS) for x in c)
            for c in pruned["cells"]
        )
        and isinstance(pruned.get("ops"), list)
        and all(isinstance(o, str) for o in pruned["ops"]),
        where,
        "'pruned' must have 'cells' ([layer, scale] pairs) and 'ops' (names) lists",
    )
    for j, cell in enumerate(entry["cells"]):
        _check_cell(cell, f"{where}.cells[{j}]")


def _check_cell(cell: Any, where: str) -> None:
    _need(isinstance(cell, dict), where, "must be an object")
    _need(
        _is_int(cell.get("layer"), 0, MAX_LAYERS) and _is_int(cell.get("scale"), 0, MAX_SCALES),
        where,
        f"needs integer 'layer' (<= {MAX_LAYERS}) and 'scale' (<= {MAX_SCALES})",
    )
    _need(isinstance(cell.get("pruned"), bool), where, "needs 'pruned' (true/false)")
    inputs = cell.get("inputs")
    _need(
        isinstance(inputs, list)
        and len(inputs) == len(SLOT_NAMES)
        and all(
            isinstance(i, dict)
            and i.get("slot") in SLOT_NAMES
            and isinstance(i.get("from"), str)
            and _SOURCE.fullmatch(i["from"]) is not None
            for i in inputs
        ),
        where,
        f"'inputs' must be {len(SLOT_NAMES)} objects with 'slot' and 'from'",
    )
    if cell["pruned"]:
        return
    beta = cell.get("beta")
    _need(isinstance(beta, dict), where, "needs 'beta' (logits and weights)")
    for key in ("logits", "weights"):
        _need(
            _is_numbers(beta.get(key), len(SLOT_NAMES)),
            where,
            f"'beta.{key}' must be {len(SLOT_NAMES)} finite numbers",
        )
    slots = cell.get("pruned_inputs", [])
    _need(
        isinstance(slots, list) and all(x in SLOT_NAMES for x in slots),
        where,
        f"'pruned_inputs' must list slot names {list(SLOT_NAMES)}",
    )
