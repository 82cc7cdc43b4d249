"""Physical pruning of useless structure (paper "Pruning Useless Structures").

An op whose normalised α weight is zero contributes nothing to any edge of its CNF; an input slot
whose β weight is zero contributes nothing to its cell; a cell whose every consumer slot is dead
contributes nothing at all. We find those (exact zeros, or weights ≤ ``threshold``), rebuild the
model without them through ``build_model(..., prune=...)`` and copy every surviving weight by a
structural name map (``ModuleList`` indices shift when members vanish). Normalisation still runs
over the full α/β rows, so at threshold 0 the pruned outputs equal the unpruned ones, which is
checked on a batch of random inputs.

Unlike the released code, every slot counts, duplicated ones included: the top
cell's finer slot and the bottom cell's coarser slot read the same tensor as the same slot, and a
new bottom cell reads one previous cell through all three slots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from posenfs_cli.config import Recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.cell import SLOT_NAMES, Cell, MixedEdge
from posenfs_cli.nas.fabric import CNF, CellKey, PruneSpec
from posenfs_cli.nas.ops import ZERO

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet

# Three β weights always sum to 1, so one of them is ≥ 1/3: below that a cell keeps an input.
MAX_THRESHOLD = 1.0 / 3.0
EXACT_TOLERANCE = 1e-6


class PruneVerificationError(PosenfsError):
    """Threshold-0 pruning changed the outputs: a bug, never a user mistake."""


def _unwrap(model: nn.Module) -> PoseNet:
    inner: Any = getattr(model, "module", model)  # DDP
    net: PoseNet = getattr(inner, "_orig_mod", inner)  # torch.compile
    return net


def check_finite(model: nn.Module) -> None:
    """NaN/inf weights make every output NaN: refuse instead of calling that 'no change'."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise PosenfsError(
                f"the checkpoint has non-finite values (NaN/inf) in {name}; it cannot be "
                "pruned or verified (retrain, or use an earlier checkpoint)"
            )


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < MAX_THRESHOLD:
        raise PosenfsError(
            f"--threshold must be in [0, 1/3), got {threshold} (a cell's three input weights sum "
            "to 1, so a threshold of 1/3 or more could leave a cell without any input)"
        )


def _dead(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """Exact zeros (softmax underflow) at threshold 0, else weights ≤ threshold."""
    return weights == 0 if threshold == 0 else weights <= threshold


def _cnf_dead(cnf: CNF, threshold: float) -> PruneSpec:
    spec = cnf.spec
    old = cnf.prune
    with torch.no_grad():
        aw = cnf.alpha.detach().softmax(-1)  # [edges, ops], as in the forward pass
        dead_col = _dead(aw, threshold).all(0).tolist()
    ops = {n for n, d in zip(spec.ops, dead_col, strict=True) if d and n != ZERO} | (
        old.ops - {ZERO}
    )

    cells_: Iterable[Cell] = cast("Iterable[Cell]", cnf.cells)
    live_cells: dict[CellKey, Cell] = {(c.layer, c.scale): c for c in cells_}
    dead_slots: dict[CellKey, set[int]] = {}
    for key, cell in live_cells.items():
        with torch.no_grad():
            bw = cell.beta.detach().softmax(0)
        by_weight = {k for k in range(3) if bool(_dead(bw[k], threshold))}
        absent = {k for k in range(3) if k not in cell.slot_index}
        dead_slots[key] = by_weight | absent

    # Walk the layers backwards: a cell lives iff a live cell of the next layer reads it through
    # a live slot. Every cell of the last kept layer is a CNF output and always lives.
    widths = dict(zip(range(spec.first_layer, spec.last_layer), spec.layer_widths(), strict=True))
    outputs = {(spec.last_layer - 1, s) for s in range(widths[spec.last_layer - 1])}
    alive: set[CellKey] = set(outputs)
    for j in range(spec.last_layer - 2, spec.first_layer - 1, -1):
        for t in range(widths[j + 1]):
            consumer = (j + 1, t)
            if consumer not in alive:
                continue
            for k, (src, _kind) in enumerate(spec.wiring(consumer)):
                if k not in dead_slots.get(consumer, set()):
                    alive.add((j, src))
    alive &= set(live_cells) | outputs  # what is already absent stays absent

    cells = {k for k in spec.cell_keys() if k not in alive}
    slots: dict[CellKey, set[int]] = {}
    for key in sorted(alive):
        dead = set(dead_slots.get(key, set()))
        if key[0] > spec.first_layer:  # a slot reading a dead cell is dead (its weight is 0)
            dead |= {k for k, (src, _) in enumerate(spec.wiring(key)) if (key[0] - 1, src) in cells}
        if len(dead) == 3:
            raise PosenfsError(f"cell {key} would lose all three inputs (threshold too high)")
        if dead:
            slots[key] = dead
    return PruneSpec(cells=cells, slots=slots, ops=ops)


def find_dead(model: nn.Module, threshold: float = 0.0) -> dict[str, PruneSpec]:
    """Per CNF (``model.cnfs()`` names): every cell, input slot and op that can go.

    The result includes what the model already lacks, so it is the complete pruning of the
    model; ``zero`` is never listed (it builds nothing anyway). An op is dead only when it is
    dead on every edge, because α (and so op pruning) is shared by all cells of a CNF.
    """
    check_threshold(threshold)
    return {name: _cnf_dead(cnf, threshold) for name, cnf in _unwrap(model).cnfs()}


# --- structural name map -------------------------------------------------------------------


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _index_maps(src: nn.Module, dst: nn.Module) -> dict[str, dict[int, int]]:
    """For the ModuleLists whose members can vanish: dst index -> src index."""
    from posenfs_cli.models.posenet import PartNet

    def by(src_ids: tuple[Any, ...], dst_ids: tuple[Any, ...]) -> dict[int, int]:
        pos = {v: i for i, v in enumerate(src_ids)}
        return {i: pos[v] for i, v in enumerate(dst_ids)}

    if isinstance(dst, CNF) and isinstance(src, CNF):

        def keys(m: CNF) -> tuple[CellKey, ...]:
            return tuple((c.layer, c.scale) for c in cast("Iterable[Cell]", m.cells))

        return {"cells": by(keys(src), keys(dst))}
    if isinstance(dst, Cell) and isinstance(src, Cell):
        return {"transforms": by(src.slot_index, dst.slot_index)}
    if isinstance(dst, MixedEdge) and isinstance(src, MixedEdge):
        return {"ops": by(src.op_index, dst.op_index)}
    if isinstance(dst, PartNet) and isinstance(src, PartNet):
        return {"adapters": by(src.levels, dst.levels)}
    return {}


def _align(src: nn.Module, dst: nn.Module, sp: str, dp: str, out: dict[str, str]) -> None:
    if type(src) is not type(dst):
        raise RuntimeError(f"{dp or 'model'} is a {type(dst).__name__} but {sp} a {type(src)}")
    for name, _ in dst.named_parameters(recurse=False):
        out[_join(dp, name)] = _join(sp, name)
    for name, _ in dst.named_buffers(recurse=False):
        out[_join(dp, name)] = _join(sp, name)
    maps = _index_maps(src, dst)
    src_children = dict(src.named_children())
    for name, child in dst.named_children():
        if name in maps:
            for i, sub in enumerate(cast(nn.ModuleList, child)):  # a ModuleList (maps' keys)
                j = maps[name][i]
                _align(
                    cast(nn.ModuleList, src_children[name])[j],
                    sub,
                    _join(sp, f"{name}.{j}"),
                    _join(dp, f"{name}.{i}"),
                    out,
                )
        else:
            _align(src_children[name], child, _join(sp, name), _join(dp, name), out)


def state_key_map(src: nn.Module, dst: nn.Module) -> dict[str, str]:
    """``dst`` state-dict key -> the ``src`` key holding the same weight (dst ⊆ src pruned)."""
    src, dst = _unwrap(src), _unwrap(dst)
    names: dict[str, str] = {}
    _align(src, dst, "", "", names)
    keys = dst.state_dict().keys()
    return {k: names[k] for k in keys}


def copy_surviving(src: nn.Module, dst: nn.Module) -> None:
    """Load every weight/buffer of ``dst`` from the matching one of ``src``, strictly."""
    mapping = state_key_map(src, dst)
    sd = _unwrap(src).state_dict()
    _unwrap(dst).load_state_dict({k: sd[v] for k, v in mapping.items()}, strict=True)


# --- prune a whole model ----------------------------------------------------------------------


@dataclass
class CnfRemoval:
    """What pruning removed from one CNF (beyond what was already absent)."""

    cells: list[CellKey] = field(default_factory=list)
    slots: dict[CellKey, list[str]] = field(default_factory=dict)
    ops: list[str] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)  # pyramid levels (adapters) no longer read

    def is_empty(self) -> bool:
        return not (self.cells or self.slots or self.ops or self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": [list(k) for k in self.cells],
            "slots": {f"{k[0]},{k[1]}": v for k, v in self.slots.items()},
            "ops": self.ops,
            "inputs": self.inputs,
        }


@dataclass
class PruneReport:
    threshold: float
    removed: dict[str, CnfRemoval]
    specs: dict[str, PruneSpec]
    max_abs_diff: float
    max_abs_output: float
    input_size: list[int]
    batch_size: int
    params_before: int
    params_after: int
    smallest_kept: dict[str, float]  # smallest op / slot weight still kept: a --threshold hint

    @property
    def nothing_removed(self) -> bool:
        return all(r.is_empty() for r in self.removed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "removed": {k: v.to_dict() for k, v in self.removed.items()},
            "max_abs_diff": self.max_abs_diff,
            "max_abs_output": self.max_abs_output,
            "input_size": self.input_size,
            "batch_size": self.batch_size,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "smallest_kept": self.smallest_kept,
        }


def _removal(old: CNF, new: CNF, spec: PruneSpec) -> CnfRemoval:
    old_cells = cast("Iterable[Cell]", old.cells)
    was_cells = set(old.spec.cell_keys()) - {(c.layer, c.scale) for c in old_cells}
    old_slots = {(c.layer, c.scale): set(range(3)) - set(c.slot_index) for c in old_cells}
    slots = {}
    for key, dead in sorted(spec.slots.items()):
        extra = sorted(set(dead) - old_slots.get(key, set()))
        if extra and key not in was_cells:
            slots[key] = [SLOT_NAMES[k] for k in extra]
    return CnfRemoval(
        cells=sorted(spec.cells - was_cells),
        slots=slots,
        ops=sorted(spec.ops - old.prune.ops),
        inputs=sorted(set(old.input_levels_used()) - set(new.input_levels_used())),
    )


def _smallest_kept(model: nn.Module, specs: dict[str, PruneSpec]) -> dict[str, float]:
    ops, slots = 1.0, 1.0
    with torch.no_grad():
        for name, cnf in _unwrap(model).cnfs():
            spec = specs[name]
            aw = cnf.alpha.softmax(-1).max(0).values  # an op stays while any edge uses it
            for o, op in enumerate(cnf.spec.ops):
                if op != ZERO and op not in spec.ops:
                    ops = min(ops, float(aw[o]))
            for cell in cast("Iterable[Cell]", cnf.cells):
                key = (cell.layer, cell.scale)
                if key in spec.cells:
                    continue
                bw = cell.beta.softmax(0)
                for k in range(3):
                    if k not in spec.slots.get(key, set()):
                        slots = min(slots, float(bw[k]))
    return {"op_weight": ops, "slot_weight": slots}


@torch.no_grad()
def output_difference(
    a: nn.Module,
    b: nn.Module,
    input_size: list[int],
    batch_size: int = 2,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[float, float]:
    """(max |a(x) − b(x)|, max |a(x)|) in eval mode on seeded random inputs."""
    if device is None:
        device = next(a.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, *input_size, generator=gen).to(device)
    modes = (a.training, b.training)
    a.eval()
    b.eval()
    try:
        ya, yb = a(x), b(x)
    finally:
        a.train(modes[0])
        b.train(modes[1])
    return float((ya - yb).abs().max()), float(ya.abs().max())


def prune_model(
    model: nn.Module,
    recipe: Recipe,
    threshold: float = 0.0,
    *,
    input_size: list[int] | None = None,
    batch_size: int = 2,
    seed: int = 0,
) -> tuple[PoseNet, PruneReport]:
    """A fresh, physically pruned copy of ``model`` and what was removed, verified.

    At threshold 0 the max abs output difference on ``batch_size`` random inputs must be
    ≤ 1e-6 (else :class:`PruneVerificationError`); above 0 it is only reported.
    """
    from posenfs_cli.models.build import build_model
    from posenfs_cli.models.size import count_params

    check_threshold(threshold)
    src = _unwrap(model)
    if not any(True for _ in src.cnfs()):
        raise PosenfsError(
            f"nothing to prune: model.head={recipe.model.head} has no CNF cells or ops "
            "(pruning removes what α/β switched off)"
        )
    check_finite(src)
    specs = find_dead(src, threshold)
    device = next(src.parameters()).device
    layout = get_layout(recipe.data.keypoints)
    keep = {k: v for k, v in specs.items() if not v.is_empty()}
    pruned = build_model(recipe.model, layout, prune=keep, load_pretrained=False)
    copy_surviving(src, pruned)
    pruned.to(device).train(src.training)

    old_cnfs, new_cnfs = dict(src.cnfs()), dict(pruned.cnfs())
    removed = {n: _removal(old_cnfs[n], new_cnfs[n], specs[n]) for n in old_cnfs}
    size = list(input_size or recipe.data.input_size)
    diff, scale = output_difference(src, pruned, size, batch_size, seed, device)
    if not (math.isfinite(diff) and math.isfinite(scale)):
        raise PosenfsError(
            f"the model's outputs are not finite (max |output| {scale}), so the pruned copy "
            "cannot be verified; the checkpoint is unusable (retrain or resume from an "
            "earlier one)"
        )
    if threshold == 0 and not diff <= EXACT_TOLERANCE:
        raise PruneVerificationError(
            f"pruning at threshold 0 changed the outputs by {diff:.3g} (> {EXACT_TOLERANCE:g}); "
            "this is a bug in posenfs, please report it with the checkpoint"
        )
    report = PruneReport(
        threshold=threshold,
        removed=removed,
        specs=specs,
        max_abs_diff=diff,
        max_abs_output=scale,
        input_size=size,
        batch_size=batch_size,
        params_before=count_params(src).total,
        params_after=count_params(pruned).total,
        smallest_kept=_smallest_kept(pruned, specs),
    )
    return pruned, report
