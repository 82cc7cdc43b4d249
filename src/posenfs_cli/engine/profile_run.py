"""Profile a checkpoint or a recipe: the model, the static counts, then (optionally) timing.

:func:`prepare` builds the model and counts params/MACs (cheap, shown first); :func:`time_it`
measures latency, a train step and memory (slow, shown after).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from posenfs_cli.config import Recipe, load_recipe
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import ProfileOptions, size_value
from posenfs_cli.profiling import ProfileReport
from posenfs_cli.validation import check_threads, validate


@dataclass
class ProfileJob:
    model: Any
    recipe: Recipe
    report: ProfileReport
    title: str  # "profile of <checkpoint>" or "profile of <name> (<recipe>)"
    size: list[int]
    device: torch.device
    opts: ProfileOptions

    def time_it(self) -> ProfileReport:
        from posenfs_cli.profiling import time_model

        o = self.opts
        return time_model(self.report, self.model, o.runs, o.channels_last, o.compile)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.recipe.name, **self.report.to_dict()}


def check(checkpoint: Path | None, opts: ProfileOptions) -> None:
    """Option mistakes, before the default checkpoint is looked up or anything is built."""
    if checkpoint is not None and opts.recipe is not None:
        raise PosenfsError("give either a checkpoint or --recipe, not both")
    check_threads(opts.threads)
    size_value(opts.input_size)


def prepare(checkpoint: Path | None, opts: ProfileOptions) -> ProfileJob:
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.checkpoint import build_from_checkpoint
    from posenfs_cli.engine.train_run import resolve_recipe_path
    from posenfs_cli.models.build import build_from_recipe
    from posenfs_cli.profiling import static_profile

    check(checkpoint, opts)
    if opts.batch_size < 1 or opts.runs < 1:
        raise PosenfsError("--batch-size and --runs must be >= 1")
    if checkpoint is not None and opts.sets:
        raise PosenfsError(
            "--set changes a recipe; a checkpoint's structure is fixed (use --recipe)"
        )
    size = size_value(opts.input_size)
    if opts.recipe is not None:
        rec = validate(load_recipe(resolve_recipe_path(opts.recipe), list(opts.sets)))
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    dev = select_device(opts.device)
    if checkpoint is not None:
        model, ckpt = build_from_checkpoint(checkpoint, dev)
        rec = ckpt.recipe
        title = f"profile of {checkpoint}"
    elif opts.recipe is not None:
        model = build_from_recipe(rec, load_pretrained=False)
        title = f"profile of {rec.name} ({opts.recipe})"
    else:
        raise PosenfsError("give a checkpoint or --recipe")
    size = size or list(rec.data.input_size)
    paper = rec.paper if size == list(rec.data.input_size) else {}
    report = static_profile(model, size, opts.batch_size, dev, paper=paper)
    return ProfileJob(model, rec, report, title, size, dev, opts)
