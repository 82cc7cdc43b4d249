"""What the file cannot say (op names and order, dataset, input size), from a config or recipe.

Every disagreement with the file is collected, tensor by tensor, into one :class:`ImportMismatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posenfs_cli.config import Recipe
from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.fabric import cells_in_layer
from posenfs_cli.official import format as fmt
from posenfs_cli.official.infer import FileArch

# Default input size per dataset when nothing says otherwise (the released models' sizes).
DEFAULT_INPUT = {"mpii": [256, 256], "coco": [384, 288]}


class ImportMismatch(PosenfsError):
    """The file and the config (or a recipe) disagree; ``lines`` lists every disagreement."""

    def __init__(self, source: str, lines: list[str]):
        self.source = source
        self.lines = lines
        super().__init__(
            f"{source} disagrees with the checkpoint in {len(lines)} place(s): {lines[0]}"
        )


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


def op_kind(op: str) -> str | None:
    """The kind (sep/dil/pool) the op leaves in a file's tensors; None for ops without any."""
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
                if op_kind(ops[o]) != kind:
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
