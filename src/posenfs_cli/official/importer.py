"""The one call behind ``posenfs import``: read, infer, resolve and convert an authors' checkpoint.

The steps live in ``infer``, ``resolve`` and ``convert``; this module writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posenfs_cli.config import Recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.cell import SLOT_NAMES
from posenfs_cli.official import format as fmt
from posenfs_cli.official.convert import Conversion, convert, mark_absent, our_groups, prune_spec
from posenfs_cli.official.infer import FileArch, infer, read_state
from posenfs_cli.official.resolve import ImportMismatch, Resolved, resolve


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
        ours = our_groups(res)[2]
    rows = []
    for p in arch.parts:
        if res is not None:
            mark_absent(p, res.ops)
            ops = [
                f"{op} (removed)" if o in p.absent_columns else op for o, op in enumerate(res.ops)
            ]
            spec = prune_spec(p, res.ops)
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
