"""Prune a checkpoint file: load, remove dead structure, measure, verify and write the outputs.

Writes ``<out>`` (default ``<ckpt stem>.pruned.safetensors`` beside the input) and its genotype
as ``<out stem>.genotype.json``. When nothing can be removed nothing is written (a copy under a
"pruned" name would only mislead); the result then carries a hint for the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from posenfs_cli import profiling
from posenfs_cli.config import Recipe
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import PruneOptions, size_value

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PoseNet
    from posenfs_cli.models.prune import PruneReport


def default_out(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.stem}.pruned.safetensors")


def genotype_path(out: Path) -> Path:
    return out.with_suffix(".genotype.json")


def sizes(model: PoseNet, size: list[int], device: torch.device) -> dict[str, Any]:
    """Params and conv MACs, in total, for the backbone and for each part."""
    params = profiling.count_params(model)
    macs = profiling.conv_macs(model, size, device)
    return {
        "params": {"total": params.total, "backbone": params.backbone, **params.parts},
        "macs": {"total": macs.total, "backbone": macs.backbone, **macs.parts},
    }


def _nice_above(x: float) -> float:
    """The smallest 1/2/5·10^k strictly above ``x``: a threshold that removes the weakest one."""
    k = math.floor(math.log10(max(x, 1e-12)))
    return next(m * 10.0**e for e in (k, k + 1) for m in (1, 2, 5) if m * 10.0**e > x)


def nothing_hint(report: PruneReport, recipe: Recipe) -> str:
    """Why nothing went and what would change that (the smallest kept weights, sparsity)."""
    sk = report.smallest_kept
    weakest = min(sk.values())
    parts = [
        f"smallest kept: op weight {sk['op_weight']:.3g}, slot weight {sk['slot_weight']:.3g}."
    ]
    nxt = _nice_above(weakest)
    if nxt < 1 / 3:
        parts.append(
            f"--threshold {nxt:g} would remove at least the weakest and report the change."
        )
    kind = recipe.train.sparsity
    if kind == "none":
        parts.append("A sparsity penalty while searching (train.sparsity=entropy) helps.")
    elif kind == "gap":
        parts.append("train.sparsity=gap has not reached exact zeros yet (more steps/weight).")
    return " ".join(parts)


@dataclass
class PruneResult:
    checkpoint: Path
    out: Path
    threshold: float
    input_size: list[int]
    report: PruneReport
    recipe: Recipe
    before: dict[str, Any]
    after: dict[str, Any]
    latency_before: dict[str, float] | None = None
    latency_after: dict[str, float] | None = None
    written: dict[str, str] = field(default_factory=dict)  # checkpoint, genotype

    @property
    def nothing_removed(self) -> bool:
        return self.report.nothing_removed

    def hint(self) -> str:
        return nothing_hint(self.report, self.recipe)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "nothing_removed": self.nothing_removed,
            "before": self.before,
            "after": self.after,
            "latency_ms": {"before": self.latency_before, "after": self.latency_after},
            "written": self.written,
        }


def _check(checkpoint: Path, opts: PruneOptions) -> Path:
    from posenfs_cli.models.prune import check_threshold

    check_threshold(opts.threshold)
    if opts.batch_size < 1 or opts.runs < 1:
        raise PosenfsError("--batch-size and --runs must be >= 1")
    out = opts.out or default_out(checkpoint)
    if out.resolve() == checkpoint.resolve():
        raise PosenfsError(f"--out {out} is the input checkpoint; choose another file")
    for target in (out, genotype_path(out)):
        if target.is_dir():
            raise PosenfsError(f"--out: {target} is a folder; give a .safetensors file name")
    return out


def prune_checkpoint(checkpoint: Path, opts: PruneOptions) -> PruneResult:
    """Prune, verify on random inputs, and write the smaller checkpoint and its genotype."""
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.checkpoint import build_from_checkpoint, save_checkpoint
    from posenfs_cli.models.prune import prune_model
    from posenfs_cli.nas.genotype import model_genotype, save_genotype

    out = _check(checkpoint, opts)
    dev = select_device(opts.device)
    model, ckpt = build_from_checkpoint(checkpoint, dev)
    model.eval()
    recipe = ckpt.recipe
    size = size_value(opts.input_size) or list(recipe.data.input_size)
    pruned, report = prune_model(
        model, recipe, opts.threshold, input_size=size, batch_size=opts.batch_size
    )
    pruned.eval()
    result = PruneResult(
        checkpoint,
        out,
        opts.threshold,
        size,
        report,
        recipe,
        sizes(model, size, dev),
        sizes(pruned, size, dev),
    )
    if report.nothing_removed:
        return result
    if opts.timing:
        result.latency_before, result.latency_after = profiling.part_latencies(
            [model, pruned], size, dev, opts.runs
        )
    extra = {
        "pruned_from": str(checkpoint),
        "prune_threshold": opts.threshold,
        "prune_max_abs_diff": report.max_abs_diff,
    }
    save_checkpoint(out, pruned, recipe, epoch=ckpt.epoch, metrics=ckpt.metrics, extra=extra)
    gpath = save_genotype(genotype_path(out), model_genotype(pruned, recipe.data.keypoints))
    result.written = {"checkpoint": str(out), "genotype": str(gpath)}
    return result
