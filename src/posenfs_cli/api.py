"""The Python API: everything the ``posenfs`` commands do, as functions returning results.

Each command of the CLI parses its flags, calls one function here and prints what it returns,
so a script gets the same runs, files and numbers::

    from posenfs_cli import api

    run = api.search("synthetic/tiny", epochs=1, project="runs", device="cpu")
    result = api.evaluate(run.best)
    print(result.main, result.run_dir)
    api.predict("photo.jpg", run.best, overlay=True)
    api.prune(run.best, threshold=1e-3)

Options are keyword arguments named as in the CLI (``epochs``, ``input_size="384x288"``,
``sets=["train.lr=3e-4"]``), or an options object from :mod:`posenfs_cli.options`. The
optional ``on_*`` callbacks let a caller show progress; the library itself prints nothing
except the trainer's own progress (``progress=False`` turns it off).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from posenfs_cli.engine.evaluate import EvalJob, EvalResult
from posenfs_cli.engine.profile_run import ProfileJob
from posenfs_cli.engine.prune_run import PruneResult
from posenfs_cli.engine.train_run import TrainHooks, TrainResult
from posenfs_cli.errors import PosenfsError
from posenfs_cli.inference.predict_run import PredictJob, PredictResult

if TYPE_CHECKING:
    from posenfs_cli.nas.genotype import Genotype
from posenfs_cli.options import (
    EvalOptions,
    PredictOptions,
    ProfileOptions,
    PruneOptions,
    RecipeOptions,
    RunOptions,
    option_flag,
)

T = TypeVar("T")
PathLike = str | Path


def _options(cls: type[T], given: T | None, kwargs: dict[str, Any]) -> T:
    """``given`` (or the defaults) with ``kwargs`` replacing fields; unknown names are errors."""
    base: Any = given if given is not None else cls()  # an options dataclass
    names = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r} for {cls.__name__}")
    return cast(T, dataclasses.replace(base, **kwargs))


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    run_names = {f.name for f in dataclasses.fields(RunOptions)}
    run = {k: v for k, v in kwargs.items() if k in run_names}
    for key in ("project", "resume"):
        if run.get(key) is not None:
            run[key] = Path(run[key])
    return {k: v for k, v in kwargs.items() if k not in run_names}, run


def _checkpoint(path: PathLike | None, project: PathLike = "runs") -> Path:
    """The given checkpoint, or the newest run's ``best.safetensors`` under ``project``."""
    from posenfs_cli.engine.latest import checkpoint_or_latest

    return checkpoint_or_latest(Path(path) if path is not None else None, project)[0]


def _fit(
    command: str,
    recipe: str | RecipeOptions | None,
    run: RunOptions | None,
    hooks: TrainHooks | None,
    kwargs: dict[str, Any],
    **extra: Any,
) -> TrainResult:
    from posenfs_cli.engine.train_run import build_recipe, run_training

    rec_kw, run_kw = _split(kwargs)
    if isinstance(recipe, RecipeOptions):
        rec_opts = _options(RecipeOptions, recipe, rec_kw)
    else:
        rec_opts = _options(RecipeOptions, None, {"recipe": recipe, **rec_kw})
    run_opts = _options(RunOptions, run, run_kw)
    if extra.get("from_checkpoint") is not None:
        model_flags = [
            option_flag(n) for n in ("parts", "backbone", "pretrained") if getattr(rec_opts, n)
        ]
        model_flags += [f"--set {s}" for s in rec_opts.sets if s.strip().startswith("model.")]
        if model_flags:
            raise PosenfsError(
                "--from takes the whole model (parts, backbone, widths, pretrained) from the "
                f"checkpoint; {', '.join(model_flags)} would be ignored"
            )
    if run_opts.resume is None:
        return run_training(command, build_recipe(rec_opts), run_opts, hooks, **extra)
    given = [
        option_flag(f.name)
        for f in dataclasses.fields(rec_opts)
        if getattr(rec_opts, f.name) not in (None, [])
    ]
    if given:
        raise PosenfsError(
            f"--resume continues a run exactly as it was configured; {', '.join(given)} would "
            "be ignored (start a new run to change the recipe)"
        )
    return run_training(command, None, run_opts, hooks, **extra)


def search(
    recipe: str | RecipeOptions | None = None,
    *,
    run: RunOptions | None = None,
    hooks: TrainHooks | None = None,
    **options: Any,
) -> TrainResult:
    """Search weights and architecture (α, β) together; returns the run folder and history."""
    return _fit("search", recipe, run, hooks, options)


def train(
    recipe: str | RecipeOptions | None = None,
    *,
    genotype: PathLike | Genotype | None = None,
    from_checkpoint: PathLike | None = None,
    run: RunOptions | None = None,
    hooks: TrainHooks | None = None,
    **options: Any,
) -> TrainResult:
    """Train the weights of a fixed architecture (a genotype, a checkpoint's, or uniform)."""
    from posenfs_cli.nas.genotype import load_genotype

    if genotype is not None and from_checkpoint is not None:
        raise PosenfsError("give --genotype or --from, not both")
    geno = load_genotype(Path(genotype)) if isinstance(genotype, str | Path) else genotype
    resume = options.get("resume") or (run.resume if run is not None else None)
    if resume is not None and (geno is not None or from_checkpoint is not None):
        raise PosenfsError("--resume continues a run as it was; drop --genotype/--from")
    src = Path(from_checkpoint) if from_checkpoint is not None else None
    return _fit("train", recipe, run, hooks, options, genotype=geno, from_checkpoint=src)


def evaluate(
    checkpoint: PathLike | None = None,
    *,
    options: EvalOptions | None = None,
    on_start: Callable[[EvalJob], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> EvalResult:
    """PCKh (MPII) or COCO AP of a checkpoint; writes a run folder under ``project``/eval."""
    from posenfs_cli.engine.evaluate import prepare

    opts = _options(EvalOptions, options, kwargs)
    job = prepare(_checkpoint(checkpoint, opts.project), opts)
    if on_start is not None:
        on_start(job)
    return job.run(on_batch)


def predict(
    src: PathLike,
    checkpoint: PathLike | None = None,
    *,
    options: PredictOptions | None = None,
    on_start: Callable[[PredictJob], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> PredictResult:
    """Keypoints of every person in an image, folder, video or webcam, written as JSON."""
    from posenfs_cli.inference.predict_run import prepare

    job = prepare(str(src), _checkpoint(checkpoint), _options(PredictOptions, options, kwargs))
    if on_start is not None:
        on_start(job)
    return job.run(on_progress, on_skip)


def prune(
    checkpoint: PathLike, *, options: PruneOptions | None = None, **kwargs: Any
) -> PruneResult:
    """Physically remove dead cells, slots and ops; writes the smaller checkpoint + genotype."""
    from posenfs_cli.engine.prune_run import prune_checkpoint

    return prune_checkpoint(Path(checkpoint), _options(PruneOptions, options, kwargs))


def profile(
    checkpoint: PathLike | None = None,
    *,
    options: ProfileOptions | None = None,
    on_static: Callable[[ProfileJob], None] | None = None,
    **kwargs: Any,
) -> ProfileJob:
    """Params, conv MACs and (with ``timing``) latency/memory of a checkpoint or a recipe."""
    from posenfs_cli.engine.profile_run import prepare

    opts = _options(ProfileOptions, options, kwargs)
    path = None if opts.recipe is not None and checkpoint is None else _checkpoint(checkpoint)
    job = prepare(path, opts)
    if on_static is not None:
        on_static(job)
    if opts.timing:
        job.time_it()
    return job


__all__ = [
    "EvalOptions",
    "EvalResult",
    "PredictOptions",
    "PredictResult",
    "ProfileJob",
    "ProfileOptions",
    "PruneOptions",
    "PruneResult",
    "RecipeOptions",
    "RunOptions",
    "TrainHooks",
    "TrainResult",
    "evaluate",
    "predict",
    "profile",
    "prune",
    "search",
    "train",
]
