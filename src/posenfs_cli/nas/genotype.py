"""Genotype JSON: every CNF's α and β, human-readable and loss-free.

Per CNF (each body part, plus the backbone when it is a fabric): its name, keypoint names, op
names, the edges of α (``I -> h1`` ...), α as logits and softmax weights per edge, and per cell
(layer, scale) its three input slots with β logits and softmax weights, and what was pruned.
Logits are written as Python floats of the float32 values, so ``model -> JSON -> model`` is
exact.

In memory a genotype is a tree of frozen dataclasses (:class:`Genotype` down to
:class:`CellGenotype`): readers get named, typed fields instead of ``.get()`` chains, and
``from_json`` checks a file once, at the door. ``to_json`` gives back the same JSON object, key
for key and in the same order, so files stay byte-for-byte what earlier versions wrote.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from posenfs_cli import __version__
from posenfs_cli.errors import PosenfsError, existing_file
from posenfs_cli.nas.cell import SLOT_NAMES, Cell, edge_pairs
from posenfs_cli.nas.fabric import CNF, CellKey, PruneSpec

FORMAT_NAME = "posenfs-genotype"
FORMAT_VERSION = 1
"""The genotype format this posenfs writes and the newest it reads (CHANGELOG lists them)."""
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"

JsonObject = dict[str, Any]


# --- the typed genotype ------------------------------------------------------------------------


@dataclass(frozen=True)
class Alpha:
    """α of one CNF: one row of op logits per edge, and their softmax."""

    logits: tuple[tuple[float, ...], ...]
    weights: tuple[tuple[float, ...], ...]

    def to_json(self) -> JsonObject:
        return {
            "logits": [list(r) for r in self.logits],
            "weights": [list(r) for r in self.weights],
        }


@dataclass(frozen=True)
class Beta:
    """β of one cell: one logit per input slot (same, finer, coarser), and their softmax."""

    logits: tuple[float, ...]
    weights: tuple[float, ...]

    def to_json(self) -> JsonObject:
        return {"logits": list(self.logits), "weights": list(self.weights)}


@dataclass(frozen=True)
class CellInput:
    """One input slot of a cell: which tensor of the previous layer feeds it, and how."""

    slot: str
    source: str  # "from" in the JSON: stem, pyramid[i] or cell[layer,scale]
    transform: str | None  # None: a hand-written file that leaves it out

    def to_json(self) -> JsonObject:
        out: JsonObject = {"slot": self.slot, "from": self.source}
        if self.transform is not None:
            out["transform"] = self.transform
        return out


@dataclass(frozen=True)
class CellGenotype:
    """One cell (layer, scale): its inputs, and β unless the whole cell was pruned."""

    layer: int
    scale: int
    inputs: tuple[CellInput, ...]
    pruned: bool
    beta: Beta | None
    pruned_inputs: tuple[str, ...] = ()

    @property
    def key(self) -> CellKey:
        return (self.layer, self.scale)

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "layer": self.layer,
            "scale": self.scale,
            "inputs": [i.to_json() for i in self.inputs],
            "pruned": self.pruned,
            "beta": None if self.beta is None else self.beta.to_json(),
        }
        if not self.pruned:
            out["pruned_inputs"] = list(self.pruned_inputs)
        return out


@dataclass(frozen=True)
class PrunedRecord:
    """What pruning removed from a CNF: whole cells and ops (slots are per cell)."""

    cells: tuple[CellKey, ...] = ()
    ops: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        return {"cells": [list(c) for c in self.cells], "ops": list(self.ops)}


@dataclass(frozen=True)
class Structure:
    """The fabric's shape: which layers this CNF holds, its width and its cells' depth."""

    total_layers: int
    first_layer: int
    last_layer: int
    channels: int
    hidden: int
    in_width: int

    def to_json(self) -> JsonObject:
        return {
            "total_layers": self.total_layers,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "channels": self.channels,
            "hidden": self.hidden,
            "in_width": self.in_width,
        }


@dataclass(frozen=True)
class CnfGenotype:
    """One Cell-based Neural Fabric: a body part's, or the backbone's."""

    name: str
    keypoints: tuple[str, ...] | None
    ops: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    alpha: Alpha
    cells: tuple[CellGenotype, ...]
    pruned: PrunedRecord
    structure: Structure

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "keypoints": None if self.keypoints is None else list(self.keypoints),
            "ops": list(self.ops),
            "edges": [list(e) for e in self.edges],
            "alpha": self.alpha.to_json(),
            "cells": [c.to_json() for c in self.cells],
            "pruned": self.pruned.to_json(),
            "structure": self.structure.to_json(),
        }

    @classmethod
    def from_json(cls, entry: JsonObject) -> CnfGenotype:
        """From an entry already checked by :func:`check_genotype`."""
        kps = entry.get("keypoints")
        return cls(
            name=entry["name"],
            keypoints=None if kps is None else tuple(kps),
            ops=tuple(entry["ops"]),
            edges=tuple((a, b) for a, b in entry["edges"]),
            alpha=Alpha(
                tuple(tuple(float(x) for x in r) for r in entry["alpha"]["logits"]),
                tuple(tuple(float(x) for x in r) for r in entry["alpha"]["weights"]),
            ),
            cells=tuple(_cell_from_json(c) for c in entry["cells"]),
            pruned=PrunedRecord(
                tuple((c[0], c[1]) for c in entry["pruned"]["cells"]),
                tuple(entry["pruned"]["ops"]),
            ),
            structure=Structure(**{k: entry["structure"][k] for k in _STRUCTURE_KEYS}),
        )


@dataclass(frozen=True)
class Genotype:
    """A model's whole architecture: every CNF, and the keypoint layout it was searched on."""

    keypoint_layout: str | None
    cnfs: tuple[CnfGenotype, ...]
    format_version: int = FORMAT_VERSION

    def cnf(self, name: str) -> CnfGenotype:
        for c in self.cnfs:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> JsonObject:
        """The JSON object written to disk (``format`` first, keys in a fixed order)."""
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "keypoint_layout": self.keypoint_layout,
            "cnfs": [c.to_json() for c in self.cnfs],
        }

    @classmethod
    def from_json(
        cls, data: Any, source: str | Path = "genotype", allow_empty: bool = False
    ) -> Genotype:
        """Check a parsed genotype JSON and type it; a foreign, newer or damaged one is a
        one-line :class:`PosenfsError` naming ``source``.

        ``allow_empty``: a model with a baseline head (no CNF) has an empty ``cnfs`` list.
        """
        checked = check_genotype(data, source, allow_empty)
        return cls(
            keypoint_layout=checked.get("keypoint_layout"),
            cnfs=tuple(CnfGenotype.from_json(e) for e in checked["cnfs"]),
            format_version=genotype_format_version(checked, source),
        )


_STRUCTURE_KEYS = ("total_layers", "first_layer", "last_layer", "channels", "hidden", "in_width")


def _cell_from_json(cell: JsonObject) -> CellGenotype:
    beta = cell.get("beta")
    return CellGenotype(
        layer=cell["layer"],
        scale=cell["scale"],
        inputs=tuple(CellInput(i["slot"], i["from"], i.get("transform")) for i in cell["inputs"]),
        pruned=cell["pruned"],
        beta=None
        if cell["pruned"] or beta is None
        else Beta(
            tuple(float(x) for x in beta["logits"]), tuple(float(x) for x in beta["weights"])
        ),
        pruned_inputs=tuple(cell.get("pruned_inputs", [])),
    )


# --- model <-> genotype ------------------------------------------------------------------------


def _node(i: int) -> str:
    return "I" if i == 0 else f"h{i}"


def _source_name(cnf: CNF, layer: int, src: int) -> str:
    if layer == cnf.spec.first_layer:
        return "stem" if cnf.spec.in_width == 1 else f"pyramid[{src}]"
    return f"cell[{layer - 1},{src}]"


def _floats(t: torch.Tensor) -> tuple[float, ...]:
    values: list[float] = t.detach().float().cpu().tolist()
    return tuple(values)


def _rows(t: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    values: list[list[float]] = t.detach().float().cpu().tolist()
    return tuple(tuple(r) for r in values)


def cnf_genotype(name: str, cnf: CNF, keypoints: list[str] | None) -> CnfGenotype:
    spec = cnf.spec
    alpha = cnf.alpha.detach().float().cpu()
    live = {(c.layer, c.scale): c for c in cast("Iterable[Cell]", cnf.cells)}
    cells = []
    for key in spec.cell_keys():
        layer, _scale = key
        inputs = tuple(
            CellInput(SLOT_NAMES[k], _source_name(cnf, layer, src), kind)
            for k, (src, kind) in enumerate(spec.wiring(key))
        )
        cell = live.get(key)
        if cell is None:
            cells.append(CellGenotype(*key, inputs, pruned=True, beta=None))
            continue
        beta = cell.beta.detach().float().cpu()
        cells.append(
            CellGenotype(
                *key,
                inputs,
                pruned=False,
                beta=Beta(_floats(beta), _floats(beta.softmax(0))),
                pruned_inputs=tuple(SLOT_NAMES[k] for k in range(3) if k not in cell.slot_index),
            )
        )
    return CnfGenotype(
        name=name,
        keypoints=None if keypoints is None else tuple(keypoints),
        ops=tuple(spec.ops),
        edges=tuple((_node(i), _node(j)) for i, j in edge_pairs(spec.hidden)),
        alpha=Alpha(_rows(alpha), _rows(alpha.softmax(-1))),
        cells=tuple(cells),
        pruned=PrunedRecord(tuple(sorted(cnf.prune.cells)), tuple(sorted(cnf.prune.ops))),
        structure=Structure(
            total_layers=spec.total_layers,
            first_layer=spec.first_layer,
            last_layer=spec.last_layer,
            channels=spec.channels,
            hidden=spec.hidden,
            in_width=spec.in_width,
        ),
    )


def model_genotype(model: Any, layout_name: str | None = None) -> Genotype:
    """The genotype of a PoseNet: one entry per CNF in ``model.cnfs()`` order."""
    layout_names = None
    if layout_name is not None:
        from posenfs_cli.data.layouts import get_layout

        layout_names = get_layout(layout_name).names
    out = []
    part_joints = {p.name: p.joints for p in model.parts}
    for name, cnf in model.cnfs():
        kps = None
        if name in part_joints and layout_names is not None:
            kps = [layout_names[j] for j in part_joints[name]]
        out.append(cnf_genotype(name, cnf, kps))
    return Genotype(keypoint_layout=layout_name, cnfs=tuple(out))


def prune_specs(genotype: Genotype) -> dict[str, PruneSpec]:
    """What each CNF lacks, so a pruned model can be rebuilt from its genotype alone."""
    specs: dict[str, PruneSpec] = {}
    for entry in genotype.cnfs:
        spec = PruneSpec(cells=set(entry.pruned.cells), ops=set(entry.pruned.ops))
        for cell in entry.cells:
            dead = [SLOT_NAMES.index(s) for s in cell.pruned_inputs]
            if dead:
                spec.slots[cell.key] = set(dead)
        if not spec.is_empty():
            specs[entry.name] = spec
    return specs


def check_genotype_layout(genotype: Genotype, keypoints: str) -> None:
    """A genotype searched on one keypoint layout (COCO) must not silently drive another (MPII):
    its parts group other joints even when their names and shapes happen to match."""
    had = genotype.keypoint_layout
    if had is not None and had != keypoints:
        raise PosenfsError(
            f"the genotype was searched with {had} keypoints, this run uses {keypoints}"
        )


def apply_genotype(model: Any, genotype: Genotype) -> None:
    """Copy α/β logits into ``model``; any structural mismatch is a PosenfsError naming it."""
    cnfs = dict(model.cnfs())
    names = [e.name for e in genotype.cnfs]
    if sorted(names) != sorted(cnfs):
        raise PosenfsError(
            f"genotype has CNFs {names} but the model has {list(cnfs)} "
            "(different parts or backbone)"
        )
    with torch.no_grad():
        for entry in genotype.cnfs:
            name = entry.name
            cnf = cnfs[name]
            theirs, mine = entry.to_json(), cnf_genotype(name, cnf, None).to_json()
            for key in ("ops", "edges", "structure", "pruned"):
                if theirs[key] != mine[key]:
                    raise PosenfsError(
                        f"genotype CNF {name!r}: {key} differ (genotype {theirs[key]}, "
                        f"model {mine[key]})"
                    )
            gk = [(c["layer"], c["scale"], c["pruned"]) for c in theirs["cells"]]
            mk = [(c["layer"], c["scale"], c["pruned"]) for c in mine["cells"]]
            if gk != mk:
                raise PosenfsError(f"genotype CNF {name!r}: cells differ ({gk} vs {mk})")
            alpha = torch.tensor(entry.alpha.logits, dtype=torch.float32)
            if alpha.shape != cnf.alpha.shape:
                raise PosenfsError(
                    f"genotype CNF {name!r}: alpha has shape {tuple(alpha.shape)}, "
                    f"model expects {tuple(cnf.alpha.shape)}"
                )
            cnf.alpha.copy_(alpha)
            by_key = {c.key: c for c in entry.cells}
            for cell in cast("Iterable[Cell]", cnf.cells):
                beta_of = by_key[(cell.layer, cell.scale)].beta
                assert beta_of is not None  # the cells' pruned flags matched above
                beta = torch.tensor(beta_of.logits, dtype=torch.float32)
                if beta.shape != cell.beta.shape:
                    raise PosenfsError(
                        f"genotype CNF {name!r}: cell ({cell.layer},{cell.scale}) has "
                        f"{beta.numel()} beta logits, the model {cell.beta.numel()}"
                    )
                cell.beta.copy_(beta)


# --- files -------------------------------------------------------------------------------------


def genotype_to_text(genotype: Genotype) -> str:
    """The file text of a genotype (what :func:`save_genotype` writes)."""
    return json.dumps(genotype.to_json(), indent=2) + "\n"


def save_genotype(path: str | Path, genotype: Genotype) -> Path:
    from posenfs_cli.atomic import atomic_write_text

    return atomic_write_text(path, genotype_to_text(genotype))


def load_genotype(path: str | Path) -> Genotype:
    p = existing_file(
        path, "genotype file not found: {p}", "{p} is a folder; give a genotype .json file"
    )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PosenfsError(f"{p} is not a genotype JSON (binary data, not UTF-8 text)") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PosenfsError(f"{p} is not valid JSON: {exc}".splitlines()[0]) from exc
    return Genotype.from_json(data, p)


# --- checking a parsed file --------------------------------------------------------------------


def genotype_format_version(genotype: Any, source: str | Path | None = None) -> int:
    """The format of a parsed genotype JSON: ``format_version``, else the number in ``format``."""
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


def check_genotype(
    data: Any, source: str | Path = "genotype", allow_empty: bool = False
) -> JsonObject:
    """Check the shape of a parsed genotype JSON (what every field of :class:`Genotype` needs).

    ``allow_empty``: a model with a baseline head (no CNF) has an empty ``cnfs`` list.
    """
    where = str(source)
    try:
        genotype_format_version(data)
    except PosenfsError as exc:
        raise PosenfsError(f"{where}: {exc}") from None
    cnfs = data.get("cnfs")
    if not isinstance(cnfs, list):
        raise PosenfsError(f'{where}: not a posenfs genotype (no "cnfs" list)')
    if not (cnfs or allow_empty):
        raise PosenfsError(f"{where}: 'cnfs' must be a non-empty list")
    layout = data.get("keypoint_layout")
    if layout is not None and not isinstance(layout, str):
        raise PosenfsError(f"{where}: 'keypoint_layout' must be a layout name or null")
    for i, entry in enumerate(cnfs):
        _check_entry(entry, f"{where}: cnfs[{i}]")
    return cast("JsonObject", data)  # checked above


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
