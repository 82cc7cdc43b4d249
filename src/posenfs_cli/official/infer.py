"""What an authors' checkpoint says about its architecture, read from its tensors alone.

No config is needed here: :func:`resolve <posenfs_cli.official.resolve.resolve>` adds the rest.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from posenfs_cli.errors import PosenfsError, existing_file
from posenfs_cli.models.backbones.pretrained import tensor_mapping
from posenfs_cli.nas.cell import num_edges
from posenfs_cli.nas.fabric import CellKey, cells_in_layer

_CELL = re.compile(r"cell_(\d+)_(\d+)$")
_EDGE = re.compile(r"cell_arch\.(\d+)\.ops\.(\d+)\.(.+)$")
# Parameter-bearing op kinds, recognised from the tensor names of one α column.
_SEP_MARK, _DIL_MARK, _POOL_MARK = "operation.4.weight", "operation.0.weight", "1.running_mean"


# --- reading ---------------------------------------------------------------------------------


def read_state(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """The flat state dict of an authors' checkpoint and a one-line description of its wrapper."""
    p = existing_file(
        Path(path).expanduser(),
        "checkpoint not found: {p}",
        "{p} is a folder, not a checkpoint file",
    )
    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol first
            warnings.simplefilter("ignore", UserWarning)
            obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or a pickle with arbitrary objects
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):  # torch's advice is to run the pickle
            first = "not a torch.save file, or it holds objects other than tensors"
        raise PosenfsError(f"cannot read {p} as a torch checkpoint: {first}") from exc
    wrapper = "a bare state_dict"
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        others = sorted(str(k) for k in obj if k != "model")
        wrapper = "{'model': state_dict" + "".join(f", {k!r}" for k in others) + "}"
        obj = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        wrapper = "{'state_dict': state_dict, ...}"
        obj = obj["state_dict"]
    state, wrapped = tensor_mapping(obj, p)
    if wrapped:
        wrapper += " with nn.DataParallel 'module.' prefixes"
    return state, wrapper


# --- what the file says ----------------------------------------------------------------------


@dataclass
class PartArch:
    """One part CNF as read from the file (their names and numbering)."""

    name: str  # their prefix, e.g. "upper_limb_part"
    index: int  # forward order = index into reduce.<i>
    alpha: Tensor
    betas: Tensor
    hidden: int
    channels: int
    input_nodes: int
    used_rows: list[int]
    head_rows: int
    layers: int
    first_layer: int
    cells: list[CellKey]  # present in the file
    pruned_cells: list[CellKey]
    columns: dict[int, str]  # α column -> op kind seen in the file (sep/dil/pool)
    present_columns: set[int] = field(default_factory=set)  # columns with tensors somewhere
    absent_columns: set[int] = field(default_factory=set)  # param op absent from every cell
    dead_slots: dict[CellKey, set[int]] = field(default_factory=dict)
    zero_filled: list[str] = field(default_factory=list)
    joints: list[str] | None = None  # their joint names in channel order
    vector_dim: int | None = None


@dataclass
class FileArch:
    backbone: str
    parts: list[PartArch]
    num_ops: int
    columns: dict[int, str]  # union over parts
    reduce: bool
    unused: list[tuple[str, str]]  # (tensor or group, why it is dropped)
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return self.parts[0].hidden

    @property
    def channels(self) -> int:
        return self.parts[0].channels

    @property
    def input_nodes(self) -> int:
        return self.parts[0].input_nodes


def _detect_backbone(keys: list[str]) -> str:
    bb = [k[len("backbone.") :] for k in keys if k.startswith("backbone.")]
    if not bb:
        raise PosenfsError("the file has no backbone.* tensors: not an authors' PoseNFS model")
    if any(k.startswith("features.") for k in bb):
        return "mobilenet_v2"
    if any(k.startswith(("stage3.", "transition1.")) for k in bb):
        return "hrnet_w32"
    if any(k.startswith("layer4.") for k in bb):
        return "resnet50"
    raise PosenfsError(f"unrecognised backbone (first key backbone.{bb[0]})")


def backbone_unused(name: str):
    """Predicate on backbone keys (without ``backbone.``) for blocks their forward never runs."""
    from posenfs_cli.models.backbones import hrnet, mobilenet_v2, resnet

    return {
        "mobilenet_v2": mobilenet_v2.TORCHVISION_UNUSED,
        "hrnet_w32": hrnet.UNUSED,
        "resnet50": resnet.UNUSED,
    }[name]


def _input_nodes(rows: int, hidden: int) -> int:
    for nodes in (1, 2):
        if rows == sum(nodes + i for i in range(hidden)):
            return nodes
    raise PosenfsError(
        f"alphas has {rows} rows, which fits neither 1 nor 2 input nodes with H={hidden} "
        f"(expected {num_edges(hidden)} or {sum(2 + i for i in range(hidden))})"
    )


def _first_layer(layers: int, cells: int) -> int:
    for first in range(layers):
        if sum(cells_in_layer(j, layers) for j in range(first, layers)) == cells:
            return first
    raise PosenfsError(f"betas has {cells} rows, which fits no cut of a {layers}-layer fabric")


def _part_arch(state: dict[str, Tensor], name: str, index: int, unused: list) -> PartArch:
    pre = name + "."
    keys = [k for k in state if k.startswith(pre)]
    if pre + "betas" not in state:
        raise PosenfsError(f"part {name}: no {name}.betas tensor")
    alpha, betas = state[pre + "alphas"], state[pre + "betas"]
    if alpha.dim() != 2 or betas.dim() != 2 or betas.shape[1] != 3:
        raise PosenfsError(
            f"part {name}: alphas {list(alpha.shape)} / betas {list(betas.shape)} are not "
            "[edges, ops] / [cells, 3]"
        )
    cell_keys: dict[CellKey, list[str]] = {}
    for k in keys:
        head = k[len(pre) :].split(".", 1)[0]
        m = _CELL.match(head)
        if m:
            cell_keys.setdefault((int(m[1]), int(m[2])), []).append(k[len(pre) + len(head) + 1 :])
        elif head == "stem":
            continue
        elif head not in ("alphas", "betas", "final_layer"):
            raise PosenfsError(f"unrecognised tensor {k}")
    if any(k.startswith(pre + "stem.") for k in keys):
        n = sum(1 for k in keys if k.startswith(pre + "stem."))
        unused.append((f"{name}.stem.* ({n} tensors)", "their forward never runs the part stem"))
    if not cell_keys:
        raise PosenfsError(f"part {name}: no cell tensors")
    layers = max(j for j, _ in cell_keys) + 1
    first = _first_layer(layers, betas.shape[0])
    expected = [(j, s) for j in range(first, layers) for s in range(cells_in_layer(j, layers))]
    strange = sorted(set(cell_keys) - set(expected))
    if strange:
        raise PosenfsError(f"part {name}: cell_{strange[0][0]}_{strange[0][1]} is off the fabric")
    # H and C from the output 1x1 conv of any present cell: [c, H*c] with c = 4C * 2^scale.
    hc: set[tuple[int, int]] = set()
    s: int | str  # a cell's scale here, a tensor name in the α-column loop below
    for (_j, s), sub in cell_keys.items():
        if "channel_keep.weight" not in sub:
            raise PosenfsError(f"part {name}: cell_{_j}_{s} has no channel_keep.weight")
        w = state[f"{pre}cell_{_j}_{s}.channel_keep.weight"]
        c = int(w.shape[0])
        if c % (4 * 2**s) or w.shape[1] % c:
            raise PosenfsError(f"part {name}: cell_{_j}_{s}.channel_keep {list(w.shape)} is odd")
        hc.add((int(w.shape[1]) // c, c // (4 * 2**s)))
    if len(hc) != 1:
        raise PosenfsError(f"part {name}: cells disagree on (H, C): {sorted(hc)}")
    hidden, channels = hc.pop()
    nodes = _input_nodes(int(alpha.shape[0]), hidden)
    used = list(range(num_edges(hidden)))  # the forward reads the first H(H+1)/2 rows in order
    head_w = state.get(pre + "final_layer.1.weight")
    if head_w is None:
        raise PosenfsError(f"part {name}: no final_layer.1.weight (the head)")
    # α columns: which op kind each column's tensors show.
    per_op: dict[tuple[CellKey, int, int], set[str]] = {}
    n_edges_file = 0
    for key, sub in cell_keys.items():
        for s in sub:
            m = _EDGE.match(s)
            if m:
                e, o = int(m[1]), int(m[2])
                n_edges_file = max(n_edges_file, e + 1)
                per_op.setdefault((key, e, o), set()).add(m[3])
    if n_edges_file > alpha.shape[0]:
        raise PosenfsError(
            f"part {name}: cells have {n_edges_file} edges but alphas only {alpha.shape[0]} rows"
        )
    columns: dict[int, str] = {}
    for (key, _e, o), leaves in per_op.items():
        if o >= alpha.shape[1]:
            raise PosenfsError(
                f"part {name}: cell_{key[0]}_{key[1]} has op column {o} but alphas has "
                f"{alpha.shape[1]} columns"
            )
        kind = (
            "sep"
            if _SEP_MARK in leaves
            else "dil"
            if _DIL_MARK in leaves
            else "pool"
            if _POOL_MARK in leaves
            else "?"
        )
        if columns.setdefault(o, kind) != kind:
            raise PosenfsError(f"part {name}: op column {o} holds different op kinds")
    pruned = [k for k in expected if k not in cell_keys]
    return PartArch(
        name=name,
        index=index,
        alpha=alpha,
        betas=betas,
        hidden=hidden,
        channels=channels,
        input_nodes=nodes,
        used_rows=used,
        head_rows=int(head_w.shape[0]),
        layers=layers,
        first_layer=first,
        cells=[k for k in expected if k in cell_keys],
        pruned_cells=pruned,
        columns=columns,
        present_columns={o for (_k, _e, o) in per_op},
    )


def infer(state: dict[str, Tensor]) -> FileArch:
    """Everything the tensors say about the architecture (no config needed)."""
    keys = list(state)
    backbone = _detect_backbone(keys)
    names: list[str] = []
    for k in keys:
        if k.endswith(".alphas") and k.count(".") == 1:
            names.append(k.split(".")[0])
    if not names:
        raise PosenfsError("the file has no <part>.alphas tensors: not an authors' PoseNFS model")
    unused: list[tuple[str, str]] = []
    parts = [_part_arch(state, n, i, unused) for i, n in enumerate(names)]
    is_unused = backbone_unused(backbone)
    dropped: dict[str, int] = {}
    for k in keys:
        if k.startswith("backbone.") and is_unused(k[len("backbone.") :]):
            top = ".".join(k.split(".")[:3])
            dropped[top] = dropped.get(top, 0) + 1
    for top, n in dropped.items():
        unused.append((f"{top}.* ({n} tensors)", "a backbone block their forward never runs"))
    known = {"backbone", "reduce", *names}
    stray = [k for k in keys if k.split(".")[0] not in known]
    if stray:
        raise PosenfsError(f"unrecognised tensor {stray[0]} ({len(stray)} outside known modules)")
    for what in ("hidden", "channels", "input_nodes", "layers", "first_layer"):
        vals = {getattr(p, what) for p in parts}
        if len(vals) > 1:
            raise PosenfsError(f"parts differ in {what}: {sorted(vals)} (posenfs shares it)")
    ops = {int(p.alpha.shape[1]) for p in parts}
    if len(ops) > 1:
        raise PosenfsError(f"parts have different op counts {sorted(ops)}")
    columns: dict[int, str] = {}
    for p in parts:
        for o, kind in p.columns.items():
            if columns.get(o, kind) != kind:
                raise PosenfsError(f"op column {o} holds different op kinds in different parts")
            columns[o] = kind
    arch = FileArch(
        backbone=backbone,
        parts=parts,
        num_ops=ops.pop(),
        columns=columns,
        reduce=any(k.startswith("reduce.") for k in keys),
        unused=unused,
    )
    if arch.input_nodes == 2:
        for p in parts:
            # the name of the finished dict above, reused for a list of rows
            dropped = [r for r in range(p.alpha.shape[0]) if r not in p.used_rows]  # type: ignore[assignment]  # see above
            unused.append(
                (
                    f"{p.name}.alphas rows {dropped}",
                    "input_nodes_num 2: their forward reads only rows "
                    f"{p.used_rows} (one per edge, in order)",
                )
            )
    return arch
