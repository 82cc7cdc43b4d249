"""One ``search`` or ``train`` run from options: recipe, run folder, distributed session, fit.

The CLI and ``posenfs_cli.api`` both call :func:`build_recipe` and :func:`run_training`; what
is printed around the run comes in through :class:`TrainHooks`, so the library never decides
how a run looks on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posenfs_cli.config import (
    Recipe,
    find_recipe,
    load_recipe,
    set_values,
)
from posenfs_cli.engine import run as runfiles
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import RECIPE_KEYS, RecipeOptions, RunOptions, option_flag
from posenfs_cli.validation import validate

if TYPE_CHECKING:
    from rich.console import Console

    from posenfs_cli.engine.trainer import Trainer, TrainOptions
    from posenfs_cli.nas.genotype import Genotype

DEFAULT_RECIPE = "synthetic/quick"
# With no recipe, the dataset picks the paper's setting for it (Tab II / Tab VII).
DATASET_RECIPES = {
    "synthetic": DEFAULT_RECIPE,
    "mpii": "mpii/mbv2_p3_h1_c10_256",
    "coco": "coco/mbv2_p3_h1_c16_nozero_384x288",
}


def resolve_recipe_path(text: str) -> Path:
    """A path, or a shipped recipe name (``synthetic/quick`` or ``mpii/mbv2_p3_h1_c10_256``)."""
    if Path(text).is_dir():
        raise PosenfsError(f"recipe {text} is a folder; give a recipe YAML file or name")
    return find_recipe(text)


def default_recipe(dataset: str | None) -> str:
    return DATASET_RECIPES.get((dataset or "synthetic").lower(), DEFAULT_RECIPE)


def build_recipe(opts: RecipeOptions) -> Recipe:
    """The recipe a run uses: file, typed options, the user's --set strings, then validated."""
    from posenfs_cli.config import apply_overrides

    typed = opts.values()
    for text in opts.sets:
        key = text.split("=", 1)[0].strip()
        if key in typed:  # two values for one key: neither may win silently
            flag = next(option_flag(n) for n, k in RECIPE_KEYS.items() if k == key)
            raise PosenfsError(f"{flag} and --set {key} both set {key}; give one")
    rec = load_recipe(resolve_recipe_path(opts.recipe or default_recipe(opts.dataset)))
    rec = apply_overrides(set_values(rec, typed), list(opts.sets))
    return validate(own_layout(rec))


def own_layout(rec: Recipe) -> Recipe:
    """A real dataset (mpii, coco, crowdpose) decides the keypoint layout; synthetic data has
    either."""
    from posenfs_cli.data.layouts import LAYOUTS

    if rec.data.dataset in LAYOUTS and rec.data.keypoints != rec.data.dataset:
        rec = set_values(rec, {"data.keypoints": rec.data.dataset})
    return rec


@dataclass
class TrainHooks:
    """What the caller shows: ``started`` after setup (main rank), ``finished`` after fit."""

    started: Callable[[Trainer, str, Path, bool], None] | None = None
    finished: Callable[[Trainer, Path], None] | None = None
    console: Console | None = None  # where the trainer's progress goes


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    is_main: bool = True

    @property
    def best(self) -> Path:
        return self.run_dir / runfiles.BEST


def run_training(
    command: str,
    recipe: Recipe | None,
    run: RunOptions,
    hooks: TrainHooks | None = None,
    genotype: Genotype | None = None,
    from_checkpoint: Path | None = None,
) -> TrainResult:
    """Search or train in a fresh run folder (or continue ``run.resume``), on every rank."""
    from posenfs_cli.engine import distributed
    from posenfs_cli.engine.trainer import TrainOptions, check_command

    hooks = hooks or TrainHooks()
    resume = run.resume
    run_dir: Path | None = None
    if resume is not None:
        run_dir = resume = runfiles.check_run_dir(resume)
        recipe = load_recipe(run_dir / runfiles.CONFIG)
    if recipe is None:
        raise PosenfsError("give a recipe or a run folder to resume")
    check_command(recipe, command)  # before a run folder exists
    timeout = recipe.train.dist_timeout_s  # also the collective timeout of the group
    try:
        with distributed.session(run.device, timeout) as (dist, dev):
            if resume is None:
                # one folder for the whole job: after an elastic restart, the one it started
                folder, again = distributed.shared_run_dir(
                    dist,
                    lambda: runfiles.pick_run_dir(run.project, command, run.name, run.exist_ok),
                    command,
                )
                run_dir = Path(folder)
                if again and (run_dir / runfiles.TRAIN_STATE).is_file():
                    resume = run_dir
                    recipe = load_recipe(run_dir / runfiles.CONFIG)
            assert run_dir is not None  # set by resume or by shared_run_dir above
            opts = TrainOptions(
                command,
                run_dir,
                dev,
                dist,
                resume=resume is not None,
                genotype=genotype,
                from_checkpoint=from_checkpoint,
                progress=run.progress,
                console=hooks.console,
            )
            return _fit(recipe, opts, hooks)
    except distributed.RankFailed as exc:
        if exc.report and exc.details and run_dir is not None and run_dir.is_dir():
            runfiles.RunFiles(run_dir).log(exc.details)
        raise


def _fit(recipe: Recipe, opts: TrainOptions, hooks: TrainHooks) -> TrainResult:
    from posenfs_cli.engine.trainer import Trainer

    strategy = recipe.train.strategy if opts.command == "search" else "fixed architecture"
    trainer = Trainer(recipe, opts)
    try:
        trainer.setup()
        if opts.dist.is_main and hooks.started is not None:
            hooks.started(trainer, strategy, opts.run_dir, opts.resume)
        trainer.fit()
        if opts.dist.is_main and hooks.finished is not None:
            hooks.finished(trainer, opts.run_dir)
    finally:
        trainer.close()
    return TrainResult(opts.run_dir, trainer.best_epoch, trainer.history, opts.dist.is_main)
