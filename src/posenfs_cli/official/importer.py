"""Read an authors' checkpoint, infer its architecture, check it and convert it to posenfs.

Pipeline: :func:`read_state` (``torch.load(weights_only=True)``, the ``{'model': ...}`` wrapper
and ``module.`` prefixes removed) -> :func:`infer` (everything the tensors say: backbone, parts,
H, input nodes, C, d, op columns, removed cells/ops, tensors their forward never reads) ->
:func:`resolve` (a config or recipe adds what the file cannot say: op names and order, input
size, dataset; every disagreement is collected, tensor by tensor) -> :func:`convert` (the posenfs
model with the file's weights in our layout, pruned where the file was pruned).

Their forward, as the fixtures written by their code confirm: mixed edge ``|O|·Σ softmax(α)·op``,
input node ``ReLU(Σ 3·softmax(β)·T(x))``, cell output ``channel_keep(concat(hidden))``, head
``final_layer`` on the 1/4 output, parts scattered into their output order and summed. With
``input_nodes_num: 2`` (and no previous-previous skip) the second input node does not exist in
the forward: the edges are read in order from the first α rows, the remaining rows are never
read. Their ``Prune()`` leaves removed cells and ops without tensors; removed cells output zeros
and removed ops (``Zero``) nothing, which our pruned structure computes exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError, existing_file
from posenfs_cli.models.backbones.pretrained import tensor_mapping
from posenfs_cli.nas.cell import SLOT_NAMES, num_edges
from posenfs_cli.nas.fabric import CellKey, PruneSpec, cells_in_layer, slot_wiring
from posenfs_cli.nas.ops import ZERO
from posenfs_cli.official import format as fmt

# Default input size per dataset when nothing says otherwise (the released models' sizes).
DEFAULT_INPUT = {"mpii": [256, 256], "coco": [384, 288]}
_CELL = re.compile(r"cell_(\d+)_(\d+)$")
_EDGE = re.compile(r"cell_arch\.(\d+)\.ops\.(\d+)\.(.+)$")
# Parameter-bearing op kinds, recognised from the tensor names of one α column.
_SEP_MARK, _DIL_MARK, _POOL_MARK = "operation.4.weight", "operation.0.weight", "1.running_mean"


class ImportMismatch(PosenfsError):
    """The file and the config (or a recipe) disagree; ``lines`` lists every disagreement."""

    def __init__(self, source: str, lines: list[str]):
        self.source = source
        self.lines = lines
        super().__init__(
            f"{source} disagrees with the checkpoint in {len(lines)} place(s): {lines[0]}"
        )


# --- reading ---------------------------------------------------------------------------------


def read_state(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """The flat state dict of an authors' checkpoint and a one-line description of its wrapper."""
    p = existing_file(Path(path).expanduser(), "checkpoint not found: {p}")
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or a pickle with arbitrary objects
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
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
    is_unused = _backbone_unused(backbone)
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


# --- adding what the file cannot say ----------------------------------------------------------


def _dataset_candidates(arch: FileArch) -> dict[str, tuple[dict[str, list[str]], int]]:
    """Datasets whose part table fits the file: {dataset: (joints per part, d)}."""
    out = {}
    names = [p.name for p in arch.parts]
    for ds in ("mpii", "coco"):
        joints = fmt.part_joints(ds, names)
        if joints is None:
            continue
        dims = {p.head_rows / len(joints[p.name]) for p in arch.parts}
        if len(dims) == 1 and (d := dims.pop()).is_integer() and d >= 1:
            out[ds] = (joints, int(d))
    return out


def _op_names(arch: FileArch) -> tuple[list[str] | None, str]:
    """Op names per α column from the file's tensors plus the paper's order for the rest."""
    paper = fmt.PAPER_OPS.get(arch.num_ops)
    if paper is None:
        return None, f"no paper op set has {arch.num_ops} ops"
    kind_of = {"sep": "sep_conv_3x3", "dil": "dil_conv_3x3"}
    names: list[str | None] = [None] * arch.num_ops
    for o, kind in arch.columns.items():
        if kind in kind_of:
            names[o] = kind_of[kind]
    pools = sorted(o for o, k in arch.columns.items() if k == "pool")
    rest = [n for n in paper if n not in names]
    if pools:  # avg and max look the same in a file: the paper's order
        pool_names = [n for n in rest if "pool" in n]
        if len(pool_names) < len(pools):
            return None, "more pool columns than the paper's op set has"
        for o, n in zip(pools, pool_names, strict=False):
            names[o] = n
        rest = [n for n in rest if n not in names]
    free = [o for o in range(arch.num_ops) if names[o] is None]
    if len(rest) != len(free):
        return None, "the file's op columns do not fit the paper's op set"
    for o, n in zip(free, rest, strict=True):
        names[o] = n
    return [n for n in names if n is not None], "read from the file, the rest in the paper's order"


def _kind(op: str) -> str | None:
    return {"sep_conv_3x3": "sep", "dil_conv_3x3": "dil"}.get(op, "pool" if "pool" in op else None)


@dataclass
class Resolved:
    """The full architecture: the file's facts plus what a config (or defaults) added."""

    arch: FileArch
    dataset: str
    ops: list[str]
    input_size: list[int]
    joints: dict[str, list[str]]  # their part -> their joint names
    vector_dim: int
    notes: list[str]
    source: str  # where the non-file facts came from


def resolve(
    arch: FileArch,
    config: dict[str, Any] | None = None,
    recipe: Recipe | None = None,
    input_size: list[int] | None = None,
) -> Resolved:
    """Add op names/order, dataset and input size; every disagreement raises ImportMismatch."""
    notes: list[str] = []
    problems: list[str] = []
    cands = _dataset_candidates(arch)
    source = "the file"
    want: dict[str, Any] = {}
    if config is not None:
        source = config["path"]
        want = dict(config)
    elif recipe is not None:
        source = f"recipe {recipe.name}"
        m = recipe.model
        want = {
            "backbone": m.backbone,
            "dataset": recipe.data.keypoints,
            "input_size": list(recipe.data.input_size),
            "parts": m.parts if isinstance(m.parts, int) else None,
            "hidden": m.hidden,
            "channels": m.channels,
            "vector_dim": m.vector_dim,
            "ops": list(m.ops),
            "layers": m.layers,
            "cut": m.cut,
            "input_nodes": None,
        }
        want = {k: v for k, v in want.items() if v is not None}
    first = arch.parts[0]

    def check(key: str, file_value: Any, what: str) -> None:
        if key in want and want[key] != file_value:
            problems.append(f"{what}: file {file_value}, {_src(source)} {want[key]}")

    check("backbone", arch.backbone, "backbone (backbone.* tensor names)")
    check("parts", len(arch.parts), f"parts ({', '.join(p.name for p in arch.parts)})")
    # Dataset: stated, or the only one whose part table and head rows fit.
    if "dataset" in want:
        dataset = want["dataset"]
        if dataset not in cands:
            problems.append(
                f"dataset: {_src(source)} says {dataset}, but the file's parts "
                f"({', '.join(p.name for p in arch.parts)}) with head rows "
                f"{[p.head_rows for p in arch.parts]} do not fit its joints"
            )
    elif len(cands) == 1:
        dataset = next(iter(cands))
        notes.append(f"dataset {dataset}: the only one whose parts and head rows fit")
    else:
        raise PosenfsError(
            "cannot tell the dataset from the file "
            + ("(both mpii and coco fit)" if cands else "(no known part table fits)")
            + "; give --official-config or --recipe"
        )
    joints, vdim = cands.get(dataset, ({}, 1))
    if "keypoints" in want and dataset in fmt.OUTPUT_ORDER:
        check("keypoints", len(fmt.OUTPUT_ORDER[dataset]), "keypoints")
    if joints:
        for p in arch.parts:
            expect = len(joints[p.name]) * want.get("vector_dim", vdim)
            if "vector_dim" in want and p.head_rows != expect:
                problems.append(
                    f"{p.name}.final_layer.1.weight: file {p.head_rows} rows, "
                    f"{_src(source)} {len(joints[p.name])} joints x d={want['vector_dim']} = "
                    f"{expect}"
                )
    _check_structure(arch, want, _src(source), problems)
    # Ops: names per column.
    if "ops" in want:
        ops = list(want["ops"])
        if len(ops) != arch.num_ops:
            for p in arch.parts:
                problems.append(
                    f"{p.name}.alphas: file {list(p.alpha.shape)}, {_src(source)} "
                    f"[{p.alpha.shape[0]}, {len(ops)}] ({len(ops)} ops: {', '.join(ops)})"
                )
        else:
            for o, kind in sorted(arch.columns.items()):
                if _kind(ops[o]) != kind:
                    problems.append(
                        f"alphas column {o}: {_src(source)} says {ops[o]}, the file's tensors "
                        f"there are a {kind} op (e.g. {first.name}.cell_*.cell_arch.*.ops.{o})"
                    )
    else:
        guessed, how = _op_names(arch)
        if guessed is None:
            raise PosenfsError(f"cannot name the {arch.num_ops} op columns ({how}); give a config")
        ops = guessed
        notes.append(f"ops {ops}: {how} (no config)")
    if problems:
        raise ImportMismatch(source, problems)
    if input_size is not None:
        size = list(input_size)
    elif "input_size" in want:
        size = list(want["input_size"])
    else:
        size = list(DEFAULT_INPUT[dataset])
        notes.append(f"input size {size[0]}x{size[1]}: not in the file, the {dataset} default")
    if arch.input_nodes == 2:
        notes.append(
            "input_nodes_num 2: their forward has no second input node; α rows "
            f"{first.used_rows} are the edges it reads"
        )
    return Resolved(arch, dataset, ops, size, joints, vdim, notes, source)


def _check_structure(arch: FileArch, want: dict[str, Any], src: str, problems: list[str]) -> None:
    """H, C, input nodes, depth and cut against the tensors that show them, part by part."""
    for p in arch.parts:
        h, c = want.get("hidden", p.hidden), want.get("channels", p.channels)
        if (h, c) != (p.hidden, p.channels):
            j, s = p.cells[0]
            key = f"{p.name}.cell_{j}_{s}.channel_keep.weight"
            width = c * 4 * 2**s
            problems.append(
                f"{key}: file [{p.channels * 4 * 2**s}, {p.hidden * p.channels * 4 * 2**s}] "
                f"(H={p.hidden}, C={p.channels}), {src} [{width}, {h * width}] "
                f"(hidden_states_num {h}, factor {c})"
            )
        nodes = want.get("input_nodes", p.input_nodes)
        rows = sum(nodes + i for i in range(h))
        if nodes != p.input_nodes and h == p.hidden:
            problems.append(
                f"{p.name}.alphas: file {list(p.alpha.shape)} ({p.input_nodes} input node(s)), "
                f"{src} [{rows}, {p.alpha.shape[1]}] (input_nodes_num {nodes}, H={h})"
            )
        layers, cut = want.get("layers", p.layers), want.get("cut", p.first_layer)
        if (layers, cut) != (p.layers, p.first_layer):
            n = sum(cells_in_layer(j, layers) for j in range(cut, layers)) if cut < layers else 0
            problems.append(
                f"{p.name}.betas: file {list(p.betas.shape)} (cells of layers "
                f"{p.first_layer}..{p.layers - 1}), {src} [{n}, 3] (depth {layers}, "
                f"cut_layers_num {cut})"
            )


def _src(source: str) -> str:
    return "recipe" if source.startswith("recipe") else "config"


# --- building our model ----------------------------------------------------------------------


def _our_groups(res: Resolved) -> tuple[int | str, dict[str, list[str]] | None, dict[str, str]]:
    """Our ``parts`` setting, custom groups if needed, and their part -> our part name."""
    from posenfs_cli.models.parts import resolve_parts

    layout = get_layout(res.dataset)
    theirs = {
        p: frozenset(layout.index(fmt.our_joint_name(j)) for j in js)
        for p, js in res.joints.items()
    }
    n = len(theirs)
    if n in (1, 3, 5, 8):
        ours = resolve_parts(layout, n)
        by_set = {frozenset(g.joints): g.name for g in ours}
        if all(s in by_set for s in theirs.values()) and len(set(theirs.values())) == n:
            return n, None, {p: by_set[s] for p, s in theirs.items()}
    groups = {
        p.removesuffix("_part"): [fmt.our_joint_name(j) for j in js] for p, js in res.joints.items()
    }
    return "custom", groups, {p: p.removesuffix("_part") for p in res.joints}


def build_recipe(res: Resolved, name: str) -> Recipe:
    parts, groups, _ = _our_groups(res)
    first = res.arch.parts[0]
    model = ModelConfig(
        backbone=res.arch.backbone,
        parts=parts,
        groups=groups,
        layers=first.layers,
        cut=first.first_layer,
        hidden=first.hidden,
        channels=first.channels,
        vector_dim=res.vector_dim,
        ops=list(res.ops),
    )
    recipe = Recipe(name=name, model=model)
    recipe.data.dataset = res.dataset
    recipe.data.keypoints = res.dataset
    recipe.data.input_size = list(res.input_size)
    if res.dataset == "coco":
        recipe.data.sigma = 3.0 if res.input_size[0] >= 384 else 2.0
        recipe.data.augment.rotation = 45.0
    return recipe


def mark_absent(part: PartArch, ops: list[str]) -> None:
    """Parameter ops with no tensors in any cell of the part: removed by their Prune()."""
    part.absent_columns = {
        o for o, op in enumerate(ops) if _kind(op) is not None and o not in part.present_columns
    }


def _prune_spec(part: PartArch, ops: list[str]) -> PruneSpec:
    """Cells absent from the file, slots reading them, ops absent from every cell."""
    first, layers = part.first_layer, part.layers
    cells = set(part.pruned_cells)
    slots: dict[CellKey, set[int]] = {}
    for j, s in part.cells:
        if j == first:
            continue
        prev = cells_in_layer(j - 1, layers)
        dead = {k for k, (src, _) in enumerate(slot_wiring(s, prev)) if (j - 1, src) in cells}
        if dead:
            slots[(j, s)] = dead
    dead_ops = {ops[o] for o in part.absent_columns if ops[o] != ZERO}
    return PruneSpec(cells=cells, slots=slots, ops=dead_ops)


def _check_pruned_slots(part: PartArch, spec: PruneSpec, problems: list[str]) -> None:
    """A slot reading a removed cell must have weight 0 unless it is an identity (reads 0)."""
    rows = {k: i for i, k in enumerate(_all_cells(part))}
    weights = part.betas.float().softmax(-1)
    for key, dead in spec.slots.items():
        prev = cells_in_layer(key[0] - 1, part.layers)
        wiring = slot_wiring(key[1], prev)
        for k in dead:
            w = float(weights[rows[key], k])
            if w != 0.0 and wiring[k][1] != "identity":
                problems.append(
                    f"{part.name}.betas[{rows[key]}, {k}]: cell_{key[0]}_{key[1]} reads removed "
                    f"cell_{key[0] - 1}_{wiring[k][0]} through a {wiring[k][1]} transform with "
                    f"weight {w:.3g} (not 0): their forward adds a constant posenfs cannot build"
                )


def _all_cells(part: PartArch) -> list[CellKey]:
    return [
        (j, s)
        for j in range(part.first_layer, part.layers)
        for s in range(cells_in_layer(j, part.layers))
    ]


@dataclass
class Conversion:
    model: Any  # PoseNet
    recipe: Recipe
    resolved: Resolved
    part_names: dict[str, str]  # their part -> ours
    output_order: list[int]  # their output channel k -> our joint index
    unused: list[tuple[str, str]]
    zero_filled: list[str]
    prune: dict[str, PruneSpec]
    wrapper: str = ""


def convert(
    state: dict[str, Tensor], res: Resolved, name: str = "imported", wrapper: str = ""
) -> Conversion:
    """The posenfs model carrying the file's weights (pruned where the file was pruned)."""
    from posenfs_cli.models.build import build_model

    arch = res.arch
    recipe = build_recipe(res, name)
    _, _, their_to_ours = _our_groups(res)
    layout = get_layout(res.dataset)
    unused = list(arch.unused)
    # Absent op columns: a parameter op whose tensors no cell of a part has.
    specs: dict[str, PruneSpec] = {}
    problems: list[str] = []
    zero_filled: list[str] = []
    for part in arch.parts:
        mark_absent(part, res.ops)
        spec = _prune_spec(part, res.ops)
        _check_pruned_slots(part, spec, problems)
        if not spec.is_empty():
            specs[their_to_ours[part.name]] = spec
    if problems:
        raise ImportMismatch("the architecture inferred from the file", problems)
    model = build_model(recipe.model, layout, prune=specs, load_pretrained=False)
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    used_keys: set[str] = set()

    def put(dst: str, src: str, tensor: Tensor | None = None) -> None:
        if dst not in ours:
            raise PosenfsError(f"internal: {dst} is not a posenfs key (from {src})")
        t = state[src] if tensor is None else tensor
        if tuple(t.shape) != tuple(ours[dst].shape):
            problems.append(
                f"{src}: file {list(t.shape)}, posenfs {dst} expects {list(ours[dst].shape)}"
            )
            return
        out[dst] = t
        used_keys.add(src)

    _map_backbone(state, model, put, unused, used_keys)
    parts_by_name = {cast(str, p.name): (i, p) for i, p in enumerate(model.parts)}
    for part in arch.parts:
        pi, ours_part = parts_by_name[their_to_ours[part.name]]
        _map_part(state, res, part, pi, ours_part, put, layout, zero_filled, out, ours)
        used_keys.update(k for k in state if k in (f"{part.name}.alphas", f"{part.name}.betas"))
    if problems:
        raise ImportMismatch("the architecture inferred from the file", problems)
    # Everything else in the file is reported as unused.
    grouped: dict[str, int] = {}
    for k in state:
        if k in used_keys or ".stem." in k or k.startswith("backbone."):
            continue
        m = re.match(r"(.*?)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", k)
        stem = m[1] if m else k
        grouped[stem] = grouped.get(stem, 0) + 1
    for stem, n in grouped.items():
        unused.append((f"{stem}.* ({n} tensors)", _why_unused(stem)))
    missing = sorted(set(ours) - set(out))
    real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if real_missing:
        raise PosenfsError(
            f"internal: {len(real_missing)} posenfs tensors got no weight "
            f"({', '.join(real_missing[:3])})"
        )
    for k in missing:
        out[k] = ours[k]
    model.load_state_dict(out, strict=True)
    model.eval()
    order = [layout.index(fmt.our_joint_name(j)) for j in fmt.OUTPUT_ORDER[res.dataset]]
    return Conversion(model, recipe, res, their_to_ours, order, unused, zero_filled, specs, wrapper)


def _why_unused(stem: str) -> str:
    if stem.startswith("reduce."):
        return "reads a pyramid level that no remaining cell uses"
    if ".propress_list." in stem:
        return "scale transform of an input slot whose source cell was removed (weight 0)"
    if ".cell_arch." in stem:
        return "edge their forward never reads"
    return "their forward never reads it"


def _backbone_unused(name: str):
    """Predicate on backbone keys (without ``backbone.``) for blocks their forward never runs."""
    from posenfs_cli.models.backbones import hrnet, mobilenet_v2, resnet

    return {
        "mobilenet_v2": mobilenet_v2.TORCHVISION_UNUSED,
        "hrnet_w32": hrnet.UNUSED,
        "resnet50": resnet.UNUSED,
    }[name]


def _map_backbone(state, model, put, unused, used_keys) -> None:
    from posenfs_cli.models.backbones import mobilenet_v2

    bb = {k[len("backbone.") :]: k for k in state if k.startswith("backbone.")}
    key_map: Callable[[str], str | None]
    if isinstance(model.backbone, mobilenet_v2.MobileNetV2Backbone):
        name, key_map = "mobilenet_v2", mobilenet_v2.official_key_map
    else:  # HRNet / ResNet: the authors use the original module names
        from posenfs_cli.models.backbones import hrnet

        name = "hrnet_w32" if isinstance(model.backbone, hrnet.HRNetW32Backbone) else "resnet50"
        key_map = lambda k: k  # noqa: E731
    is_unused = _backbone_unused(name)
    ours = set(model.state_dict())
    for short, full in bb.items():
        if is_unused(short):
            continue
        target = key_map(short)
        if target is None or "backbone." + target not in ours:
            raise PosenfsError(f"backbone tensor {full} has no posenfs counterpart")
        put("backbone." + target, full)
    used_keys.update(k for k in bb.values())


def _map_part(state, res, part, pi, ours_part, put, layout, zero_filled, out, ours) -> None:
    pre, dst = part.name + ".", f"parts.{pi}."
    # Adapters: reduce.<their index>.<level> -> our adapters for the levels we read.
    for a, lvl in enumerate(ours_part.levels):
        src = f"reduce.{part.index}.{lvl}"
        if f"{src}.weight" in state:
            put(f"{dst}adapters.{a}.weight", f"{src}.weight")
            put(f"{dst}adapters.{a}.bias", f"{src}.bias")
        elif f"{dst}adapters.{a}.weight" in ours:
            raise PosenfsError(f"{src}.weight is missing but the backbone channels need it")
    cnf = ours_part.cnf
    with torch.no_grad():
        alpha = part.alpha[part.used_rows]
        out[f"{dst}cnf.alpha"] = alpha.clone()
    rows = {k: i for i, k in enumerate(_all_cells(part))}
    for ci, cell in enumerate(cnf.cells):
        key = (cell.layer, cell.scale)
        src_cell, dcell = f"{pre}cell_{key[0]}_{key[1]}.", f"{dst}cnf.cells.{ci}."
        out[f"{dcell}beta"] = part.betas[rows[key]].clone()
        for t, k in enumerate(cell.slot_index):
            kind = cell.slots[k][1]
            src_slot, dst_slot = f"{src_cell}propress_list.{k}", f"{dcell}transforms.{t}"
            if kind == "down":  # conv stride 2 -> BN
                _put_module(state, put, f"{dst_slot}.0", f"{src_slot}.operation.0", ours)
                _put_module(state, put, f"{dst_slot}.1", f"{src_slot}.operation.1", ours)
            elif kind == "up":  # 1x1 conv -> BN -> bilinear x2
                _put_module(state, put, f"{dst_slot}.conv", f"{src_slot}.conv_1x1", ours)
                _put_module(state, put, f"{dst_slot}.bn", f"{src_slot}.bn", ours)
        for e, edge in enumerate(cell.edges):
            row = part.used_rows[e]
            for oi, o in enumerate(edge.op_index):
                d_op, s_op = f"{dcell}edges.{e}.ops.{oi}.", f"{src_cell}cell_arch.{row}.ops.{o}."
                names = [k[len(d_op) :] for k in ours if k.startswith(d_op)]
                for n in names:
                    src = s_op + ("operation." + n if _kind(res.ops[o]) != "pool" else n)
                    if src in state:
                        put(d_op + n, src)
                    elif _kind(res.ops[o]) == "pool":
                        raise PosenfsError(
                            f"{src} is missing: a pool op removed from only some edges cannot "
                            "be represented (posenfs removes an op from every edge of a CNF)"
                        )
                    else:
                        out[d_op + n] = _zero_like(n, ours[d_op + n])
                        zero_filled.append(src)
        _put_module(state, put, f"{dcell}out", f"{src_cell}channel_keep", ours)
    # Head: their rows follow their part's joint order, ours the sorted native indices.
    their = [layout.index(fmt.our_joint_name(j)) for j in res.joints[part.name]]
    d = res.vector_dim
    perm = [their.index(j) * d + r for j in ours_part.joints for r in range(d)]
    w, b = state[pre + "final_layer.1.weight"], state[pre + "final_layer.1.bias"]
    put(f"{dst}head.conv.weight", pre + "final_layer.1.weight", w[perm])
    put(f"{dst}head.conv.bias", pre + "final_layer.1.bias", b[perm])


def _put_module(state, put, dst: str, src: str, ours) -> None:
    for k in [k for k in ours if k.startswith(dst + ".")]:
        leaf = k[len(dst) + 1 :]
        if f"{src}.{leaf}" not in state:
            raise PosenfsError(f"{src}.{leaf} is missing from the file")
        put(k, f"{src}.{leaf}")


def _zero_like(name: str, like: Tensor) -> Tensor:
    """A removed op's tensor: zero weights, BN statistics of an identity (computes exactly 0)."""
    if name.endswith("running_var"):
        return torch.ones_like(like)
    return torch.zeros_like(like)


# --- one call for the CLI ---------------------------------------------------------------------


@dataclass
class PartRow:
    """What ``--inspect`` shows for one part."""

    name: str
    index: int
    ours: str | None
    joints: int | None
    cells_kept: int
    cells_total: int
    removed_cells: list[str]
    dead_slots: list[str]
    alpha_shape: list[int]
    rows_read: list[int]
    ops: list[str]  # per column; removed ones marked
    input_nodes: int
    hidden: int
    channels: int
    vector_dim: int | None
    unused: int


def part_rows(arch: FileArch, res: Resolved | None) -> list[PartRow]:
    ours: dict[str, str] = {}
    if res is not None:
        ours = _our_groups(res)[2]
    rows = []
    for p in arch.parts:
        if res is not None:
            mark_absent(p, res.ops)
            ops = [
                f"{op} (removed)" if o in p.absent_columns else op for o, op in enumerate(res.ops)
            ]
            spec = _prune_spec(p, res.ops)
            slots = [
                f"cell_{j}_{s}:{'/'.join(SLOT_NAMES[k] for k in sorted(d))}"
                for (j, s), d in sorted(spec.slots.items())
            ]
        else:
            ops = [f"col {o}: {p.columns.get(o, '?')}" for o in range(p.alpha.shape[1])]
            slots = []
        n_unused = sum(1 for name, _ in arch.unused if name.startswith(p.name + "."))
        rows.append(
            PartRow(
                name=p.name,
                index=p.index,
                ours=ours.get(p.name),
                joints=len(res.joints[p.name]) if res is not None else None,
                cells_kept=len(p.cells),
                cells_total=len(p.cells) + len(p.pruned_cells),
                removed_cells=[f"cell_{j}_{s}" for j, s in p.pruned_cells],
                dead_slots=slots,
                alpha_shape=list(p.alpha.shape),
                rows_read=list(p.used_rows),
                ops=ops,
                input_nodes=p.input_nodes,
                hidden=p.hidden,
                channels=p.channels,
                vector_dim=res.vector_dim if res is not None else None,
                unused=n_unused,
            )
        )
    return rows


@dataclass
class ImportResult:
    path: Path
    wrapper: str
    tensors: int
    arch: FileArch
    resolved: Resolved | None
    rows: list[PartRow]
    conversion: Conversion | None = None
    out: Path | None = None
    params: int = 0
    params_unpruned: int = 0
    unresolved: str | None = None  # why resolve failed (inspect without config)


def import_official(
    path: str | Path,
    *,
    config: str | Path | None = None,
    recipe: Recipe | None = None,
    input_size: list[int] | None = None,
    out: str | Path | None = None,
    inspect: bool = False,
) -> ImportResult:
    """Read, infer, check and (unless ``inspect``) convert and write a posenfs checkpoint."""
    from posenfs_cli.engine.checkpoint import save_checkpoint
    from posenfs_cli.models.build import build_model
    from posenfs_cli.models.size import count_params

    if config is not None and recipe is not None:
        raise PosenfsError("give --official-config or --recipe, not both")
    target = None if out is None else Path(out)
    if not inspect:
        if target is None:
            raise PosenfsError("--out is required (or use --inspect to only look at the file)")
        if target.suffix != ".safetensors":
            raise PosenfsError(f"--out {target}: the output must be a .safetensors file")
        if target.is_dir():
            raise PosenfsError(f"--out {target} is a directory; give a file name")
    facts = fmt.read_config(config) if config is not None else None
    p = Path(path)
    state, wrapper = read_state(p)
    arch = infer(state)
    result = ImportResult(p, wrapper, len(state), arch, None, [])
    try:
        res = resolve(arch, facts, recipe, input_size)
    except ImportMismatch:
        raise
    except PosenfsError as exc:
        if not inspect:
            raise
        result.unresolved = str(exc)
        result.rows = part_rows(arch, None)
        return result
    result.resolved = res
    result.rows = part_rows(arch, res)
    conv = convert(state, res, name=p.stem, wrapper=wrapper)
    result.conversion = conv
    if inspect:
        return result
    result.params = count_params(conv.model).total
    dense = build_model(conv.recipe.model, get_layout(res.dataset), load_pretrained=False)
    result.params_unpruned = count_params(dense).total
    extra = {
        # Their loader feeds OpenCV's BGR images normalised with RGB statistics: predict follows.
        "input_format": "bgr",
        "imported_from": str(p),
        "import_notes": res.notes,
        "import_dropped": [f"{a}: {b}" for a, b in conv.unused],
    }
    assert target is not None
    result.out = save_checkpoint(target, conv.model, conv.recipe, extra=extra)
    return result
