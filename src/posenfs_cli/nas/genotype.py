"""Genotype JSON (DESIGN §10): every CNF's α and β, human-readable and loss-free.

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
                beta = by_key[(cell.layer, cell.scale)]["beta"]["logits"]
                cell.beta.copy_(torch.tensor(beta, dtype=torch.float32))


def save_genotype(path: str | Path, genotype: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(genotype, indent=2) + "\n")
    tmp.replace(p)
    return p


def load_genotype(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise PosenfsError(f"genotype file not found: {p}")
    try:
        data: dict[str, Any] = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise PosenfsError(f"{p} is not valid JSON: {exc}") from exc
    genotype_format_version(data, p)
    _cnfs(data)
    return data
