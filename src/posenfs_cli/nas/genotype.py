"""Genotype JSON (DESIGN §10): every CNF's α and β, human-readable and loss-free.

Per CNF (each body part, plus the backbone when it is a fabric): its name, keypoint names, op
names, the edges of α (``I -> h1`` ...), α as logits and softmax weights per edge, and per cell
(layer, scale) its three input slots with β logits and softmax weights, and what was pruned.
Logits are written as Python floats of the float32 values, so ``model -> JSON -> model`` is
exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.cell import SLOT_NAMES, edge_pairs
from posenfs_cli.nas.fabric import CNF, PruneSpec

FORMAT = "posenfs-genotype/1"


def _node(i: int) -> str:
    return "I" if i == 0 else f"h{i}"


def _source_name(cnf: CNF, layer: int, src: int) -> str:
    if layer == cnf.spec.first_layer:
        return "stem" if cnf.spec.in_width == 1 else f"pyramid[{src}]"
    return f"cell[{layer - 1},{src}]"


def _floats(t: torch.Tensor) -> list:
    return t.detach().float().cpu().tolist()


def cnf_genotype(name: str, cnf: CNF, keypoints: list[str] | None) -> dict[str, Any]:
    spec = cnf.spec
    alpha = cnf.alpha.detach().float().cpu()
    live = {(c.layer, c.scale): c for c in cnf.cells}
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
    return {"format": FORMAT, "keypoint_layout": layout_name, "cnfs": out}


def prune_specs(genotype: dict[str, Any]) -> dict[str, PruneSpec]:
    """What each CNF lacks, so a pruned model can be rebuilt from its genotype alone."""
    specs: dict[str, PruneSpec] = {}
    for entry in _cnfs(genotype):
        spec = PruneSpec(
            cells={tuple(c) for c in entry["pruned"]["cells"]},  # type: ignore[misc]
            ops=set(entry["pruned"]["ops"]),
        )
        for cell in entry["cells"]:
            dead = [SLOT_NAMES.index(s) for s in cell.get("pruned_inputs", [])]
            if dead:
                spec.slots[(cell["layer"], cell["scale"])] = set(dead)
        if not spec.is_empty():
            specs[entry["name"]] = spec
    return specs


def _cnfs(genotype: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(genotype, dict) or genotype.get("format") != FORMAT:
        raise PosenfsError(f'not a posenfs genotype (expected "format": "{FORMAT}")')
    return genotype["cnfs"]


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
            for cell in cnf.cells:
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


def check_genotype(data: Any, source: str | Path = "genotype") -> dict[str, Any]:
    """Check the shape of a genotype (what every reader relies on) before anything uses it."""
    where = str(source)
    try:
        cnfs = _cnfs(data)
    except PosenfsError as exc:
        raise PosenfsError(f"{where}: {exc}") from None
    if not isinstance(cnfs, list) or not cnfs:
        raise PosenfsError(f"{where}: 'cnfs' must be a non-empty list")
    for i, entry in enumerate(cnfs):
        _check_entry(entry, f"{where}: cnfs[{i}]")
    return data


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise PosenfsError(f"{where}: {what}")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_matrix(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(r, list) and all(_is_num(x) for x in r) for r in v
    )


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
    _need(all(isinstance(o, str) for o in entry["ops"]), where, "'ops' must be op names")
    _need(_is_matrix(entry["alpha"].get("logits")), where, "'alpha.logits' must be rows of numbers")
    pruned = entry["pruned"]
    _need(
        isinstance(pruned.get("cells"), list)
        and all(isinstance(c, list) and len(c) == 2 for c in pruned["cells"])
        and isinstance(pruned.get("ops"), list),
        where,
        "'pruned' must have 'cells' ([layer, scale] pairs) and 'ops' lists",
    )
    for j, cell in enumerate(entry["cells"]):
        cw = f"{where}.cells[{j}]"
        _need(isinstance(cell, dict), cw, "must be an object")
        _need(
            isinstance(cell.get("layer"), int) and isinstance(cell.get("scale"), int),
            cw,
            "needs integer 'layer' and 'scale'",
        )
        _need(isinstance(cell.get("pruned"), bool), cw, "needs 'pruned' (true/false)")
        beta = cell.get("beta")
        if cell["pruned"]:
            continue
        _need(
            isinstance(beta, dict)
            and isinstance(beta.get("logits"), list)
            and all(_is_num(x) for x in beta["logits"]),
            cw,
            "needs 'beta.logits' (numbers)",
        )
        slots = cell.get("pruned_inputs", [])
        _need(
            isinstance(slots, list) and all(x in SLOT_NAMES for x in slots),
            cw,
            f"'pruned_inputs' must list slot names {list(SLOT_NAMES)}",
        )
