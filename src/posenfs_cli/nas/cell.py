"""Mixed edge and cell: the micro (α) and macro (β) search space of one cell.

α is owned by the CNF (shared by all its cells) and passed in already normalised as
``|O| · softmax(α)``; β ∈ ℝ³ is owned by the cell. Pruned ops, slots and cells are simply not
built, so nothing is computed for them; the normalisation still runs over the full α/β rows,
which keeps a pruned model's outputs equal to the unpruned one wherever the pruned weight is 0.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posenfs_cli.nas.ops import ZERO, Scaled, build_op, dense_grad, scaled_batch_norm

SLOT_NAMES = ("same", "finer", "coarser")


def num_edges(hidden: int) -> int:
    return hidden * (hidden + 1) // 2


def edge_pairs(hidden: int) -> list[tuple[int, int]]:
    """(from node, to node) per edge in α-row order; node 0 is the input node I."""
    return [(i, j) for j in range(1, hidden + 1) for i in range(j)]


class MixedEdge(nn.Module):
    """``Σ_o w_o · o(x)`` over the live ops; ``w`` arrives already scaled by |O|.

    Each op applies its own weight (``op(x, w_o)``, see ``nas.ops``), so no separate multiply.
    """

    def __init__(
        self,
        ops: list[str],
        c: int,
        bn_momentum: float = 0.1,
        dead_ops: frozenset[str] = frozenset(),
    ):
        super().__init__()
        live = [i for i, name in enumerate(ops) if name != ZERO and name not in dead_ops]
        self.op_index: tuple[int, ...] = tuple(live)
        # build_op returns None only for zero, which `live` leaves out
        self.ops = nn.ModuleList(build_op(ops[i], c, bn_momentum) for i in live)  # type: ignore[misc]

    def forward(self, x: Tensor, w: Tensor | None) -> Tensor | None:
        """``w`` None: the weights are already folded into the ops (``models.fold``)."""
        out: Tensor | None = None
        for i, op in zip(self.op_index, self.ops, strict=True):
            y = op(x, None if w is None else w[i])
            out = y if out is None else out + y
        return out


def make_transform(kind: str, c: int, bn_momentum: float = 0.1) -> nn.Module:
    """Scale transform into a cell with ``c`` channels from a same/finer/coarser neighbour."""
    if kind == "identity":
        return Scaled()
    if kind == "down":  # finer neighbour (c/2 channels, 2x size): conv stride 2 -> BN
        return Downsample(c, bn_momentum)
    if kind == "up":  # coarser neighbour (2c channels, half size): 1x1 conv -> BN -> bilinear x2
        return Upsample(c, bn_momentum)
    raise ValueError(f"unknown transform {kind!r}")


class Downsample(nn.Sequential):
    """3x3 conv stride 2 -> BN; ``w · output`` with ``w`` folded into the BN affine."""

    def __init__(self, c: int, bn_momentum: float = 0.1):
        super().__init__(
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=True),
            nn.BatchNorm2d(c, momentum=bn_momentum),
        )

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        return scaled_batch_norm(cast(nn.BatchNorm2d, self[1]), self[0](x), w)


class Upsample(nn.Module):
    """1x1 conv + BN at the low resolution, then bilinear x2 (align_corners=True)."""

    def __init__(self, c: int, bn_momentum: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(2 * c, c, 1, bias=True)
        self.bn = nn.BatchNorm2d(c, momentum=bn_momentum)

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        y = scaled_batch_norm(self.bn, self.conv(x), w)  # bilinear is linear: w commutes
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=True)


class Cell(nn.Module):
    """One cell at (layer, scale): input node from three weighted slots, H hidden nodes, 1x1 out.

    ``slots`` gives, for same/finer/coarser in that order, the index into the previous layer's
    outputs and the transform kind. Duplicated slots (top cell's finer, bottom cell's coarser)
    get their own transform module. ``dead_slots`` are not built (their β weight is zero).
    """

    def __init__(
        self,
        layer: int,
        scale: int,
        c: int,
        hidden: int,
        ops: list[str],
        slots: list[tuple[int, str]],
        bn_momentum: float = 0.1,
        dead_slots: frozenset[int] = frozenset(),
        dead_ops: frozenset[str] = frozenset(),
    ):
        super().__init__()
        if len(slots) != 3:
            raise ValueError("a cell has exactly three input slots")
        self.layer, self.scale, self.channels, self.hidden = layer, scale, c, hidden
        self.slots = tuple(slots)
        self.beta = nn.Parameter(torch.zeros(3))
        live = [k for k in range(3) if k not in dead_slots]
        self.slot_index: tuple[int, ...] = tuple(live)
        self.sources: tuple[int, ...] = tuple(slots[k][0] for k in live)
        self.transforms = nn.ModuleList(make_transform(slots[k][1], c, bn_momentum) for k in live)
        self.edges = nn.ModuleList(
            MixedEdge(ops, c, bn_momentum, dead_ops) for _ in range(num_edges(hidden))
        )
        self.pairs: tuple[tuple[int, int], ...] = tuple(edge_pairs(hidden))
        self.out = nn.Conv2d(hidden * c, c, 1, bias=True)
        self.folded = False  # True in an inference copy: β is baked into the transforms

    def input_node(self, prev: list[Tensor | None]) -> Tensor:
        bw = None if self.folded else self.beta.softmax(0) * 3.0
        acc: Tensor | None = None
        for k, src, t in zip(self.slot_index, self.sources, self.transforms, strict=True):
            x = prev[src]
            assert x is not None, f"cell ({self.layer},{self.scale}) reads a pruned cell"
            y = t(x, None if bw is None else bw[k])
            acc = y if acc is None else acc + y
        if acc is None:
            raise RuntimeError(f"cell ({self.layer},{self.scale}) has no live input slot")
        return torch.relu_(acc)

    def forward(self, prev: list[Tensor | None], alpha_w: Tensor | None) -> Tensor:
        first = self.input_node(prev)
        nodes: list[Tensor | None] = [first] + [None] * self.hidden
        for e, (edge, (i, j)) in enumerate(zip(self.edges, self.pairs, strict=True)):
            x = nodes[i]
            if x is None:  # a hidden node whose every op was pruned is exactly zero
                x = nodes[i] = torch.zeros_like(first)
            y = edge(x, None if alpha_w is None else alpha_w[e])
            if y is not None:
                nodes[j] = y if nodes[j] is None else nodes[j] + y
        hidden = [n if n is not None else torch.zeros_like(first) for n in nodes[1:]]
        result: Tensor = self.out(
            hidden[0] if self.hidden == 1 else torch.cat([dense_grad(h) for h in hidden], dim=1)
        )
        return result
