"""Cell-based Neural Fabric: the grow/shrink grid of cells and its wiring.

Scales 0..3 are strides 4..32 with ``C·4·2^s`` channels. Layer ``j`` of an ``L``-layer fabric
has ``min(j+2, 4, L-j)`` cells. A CNF keeps a contiguous range of layers: the last ``L-cut``
for a part subnetwork (fed by the 4-level backbone pyramid), the first ``kept`` for a fabric
backbone (fed by the stem output). α (``[H(H+1)/2, |O|]``) is shared by all cells of one CNF.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from posenfs_cli.nas.cell import Cell, num_edges
from posenfs_cli.nas.ops import check_ops

CellKey = tuple[int, int]  # (layer, scale)


def cells_in_layer(layer: int, total_layers: int) -> int:
    return min(layer + 2, 4, total_layers - layer)


def scale_channels(channels: int, scale: int) -> int:
    factor: int = 2**scale
    return channels * 4 * factor


def slot_wiring(scale: int, prev_width: int) -> list[tuple[int, str]]:
    """(source index in the previous layer, transform) for the same, finer, coarser slots."""
    same = (scale, "identity") if scale < prev_width else (scale - 1, "down")
    finer = same if scale == 0 else (scale - 1, "down")
    coarser = (scale + 1, "up") if scale < prev_width - 1 else same
    return [same, finer, coarser]


@dataclass
class PruneSpec:
    """What is physically absent from a CNF: whole cells, single input slots, ops."""

    cells: set[CellKey] = field(default_factory=set)
    slots: dict[CellKey, set[int]] = field(default_factory=dict)
    ops: set[str] = field(default_factory=set)

    def is_empty(self) -> bool:
        return not self.cells and not any(self.slots.values()) and not self.ops


@dataclass(frozen=True)
class FabricSpec:
    total_layers: int
    first_layer: int
    last_layer: int  # exclusive
    channels: int
    hidden: int
    ops: tuple[str, ...]
    in_width: int  # number of input tensors the first kept layer reads

    def layer_widths(self) -> list[int]:
        return [
            cells_in_layer(j, self.total_layers) for j in range(self.first_layer, self.last_layer)
        ]

    def cell_keys(self) -> list[CellKey]:
        return [
            (j, s)
            for j in range(self.first_layer, self.last_layer)
            for s in range(cells_in_layer(j, self.total_layers))
        ]

    def wiring(self, key: CellKey) -> list[tuple[int, str]]:
        j, s = key
        prev = self.in_width if j == self.first_layer else cells_in_layer(j - 1, self.total_layers)
        return slot_wiring(s, prev)


def validate_spec(spec: FabricSpec) -> None:
    check_ops(list(spec.ops))
    if not 0 <= spec.first_layer < spec.last_layer <= spec.total_layers:
        raise ValueError(
            f"fabric keeps layers [{spec.first_layer}, {spec.last_layer}) of {spec.total_layers}"
        )
    if spec.hidden < 1 or spec.channels < 1:
        raise ValueError("fabric needs hidden >= 1 and channels >= 1")


class CNF(nn.Module):
    """A kept range of fabric layers. ``forward(prev)`` returns the last layer's outputs."""

    def __init__(self, spec: FabricSpec, bn_momentum: float = 0.1, prune: PruneSpec | None = None):
        super().__init__()
        validate_spec(spec)
        prune = prune or PruneSpec()
        self.spec = spec
        self.alpha = nn.Parameter(torch.zeros(num_edges(spec.hidden), len(spec.ops)))
        self.num_ops = float(len(spec.ops))
        cells = []
        widths, scales = [], []
        for j, width in zip(
            range(spec.first_layer, spec.last_layer), spec.layer_widths(), strict=True
        ):
            live = [s for s in range(width) if (j, s) not in prune.cells]
            widths.append(width)
            scales.append(tuple(live))
            for s in live:
                cells.append(
                    Cell(
                        j,
                        s,
                        scale_channels(spec.channels, s),
                        spec.hidden,
                        list(spec.ops),
                        spec.wiring((j, s)),
                        bn_momentum,
                        dead_slots=frozenset(prune.slots.get((j, s), ())),
                        dead_ops=frozenset(prune.ops),
                    )
                )
        self.cells = nn.ModuleList(cells)
        self.layer_widths: tuple[int, ...] = tuple(widths)
        self.layer_scales: tuple[tuple[int, ...], ...] = tuple(scales)
        self.prune = prune
        self.folded = False  # True in an inference copy: α is baked into the ops

    def alpha_weights(self) -> Tensor:
        """``|O| · softmax(α)``: all ones at initialisation."""
        return self.alpha.softmax(-1) * self.num_ops

    def input_levels_used(self) -> list[int]:
        """Which of the input tensors the first kept layer actually reads."""
        used: set[int] = set()
        for cell in cast("Iterable[Cell]", self.cells):
            if cell.layer == self.spec.first_layer:
                used.update(cell.sources)
        return sorted(used)

    def forward(self, prev: list[Tensor | None]) -> list[Tensor | None]:
        aw = None if self.folded else self.alpha_weights()
        cells = iter(self.cells)
        for width, scales in zip(self.layer_widths, self.layer_scales, strict=True):
            out: list[Tensor | None] = [None] * width
            for s in scales:
                out[s] = next(cells)(prev, aw)
            prev = out
        return prev
