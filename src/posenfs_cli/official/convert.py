"""The posenfs model equal to an authors' checkpoint, with the file's weights in our layout.

Where the file was pruned by their ``Prune()``, our model is pruned the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.fabric import CellKey, PruneSpec, cells_in_layer, slot_wiring
from posenfs_cli.nas.ops import ZERO
from posenfs_cli.official import format as fmt
from posenfs_cli.official.infer import PartArch, backbone_unused
from posenfs_cli.official.resolve import ImportMismatch, Resolved, op_kind

# Their forward, as the fixtures written by their code confirm: mixed edge ``|O|·Σ softmax(α)·op``,
# input node ``ReLU(Σ 3·softmax(β)·T(x))``, cell output ``channel_keep(concat(hidden))``, head
# ``final_layer`` on the 1/4 output, parts scattered into their output order and summed. With
# ``input_nodes_num: 2`` (and no previous-previous skip) the second input node does not exist in
# the forward: the edges are read in order from the first α rows, the remaining rows are never
# read. Their ``Prune()`` leaves removed cells and ops without tensors; removed cells output zeros
# and removed ops (``Zero``) nothing, which our pruned structure computes exactly.


def our_groups(res: Resolved) -> tuple[int | str, dict[str, list[str]] | None, dict[str, str]]:
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
    parts, groups, _ = our_groups(res)
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
        o for o, op in enumerate(ops) if op_kind(op) is not None and o not in part.present_columns
    }


def prune_spec(part: PartArch, ops: list[str]) -> PruneSpec:
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
    _, _, their_to_ours = our_groups(res)
    layout = get_layout(res.dataset)
    unused = list(arch.unused)
    # Absent op columns: a parameter op whose tensors no cell of a part has.
    specs: dict[str, PruneSpec] = {}
    problems: list[str] = []
    zero_filled: list[str] = []
    for part in arch.parts:
        mark_absent(part, res.ops)
        spec = prune_spec(part, res.ops)
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
    is_unused = backbone_unused(name)
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
                    src = s_op + ("operation." + n if op_kind(res.ops[o]) != "pool" else n)
                    if src in state:
                        put(d_op + n, src)
                    elif op_kind(res.ops[o]) == "pool":
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
