"""What ``posenfs search`` and ``posenfs train`` share: their options and the run's output."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from posenfs_cli.cli.common import console, fail, resolve_device_option, user_errors
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine.train_run import DEFAULT_RECIPE, TrainHooks
from posenfs_cli.options import RecipeOptions, RunOptions


def _started(trainer: Any, strategy: str, run_dir: Path, resumed: bool) -> None:
    from posenfs_cli.views.train import summary_table

    world = trainer.dist.world_size
    command = trainer.opts.command
    console.print(
        summary_table(trainer.recipe, command, strategy, run_dir, str(trainer.device), world)
    )
    if resumed:
        console.print(f"resuming after epoch {trainer.start_epoch}")


def _finished(trainer: Any, run_dir: Path) -> None:
    from posenfs_cli.views.train import final_table

    table = final_table(trainer.history, trainer.best_epoch)
    if table is not None:
        console.print(table)
    console.print(f"[bold green]done.[/] results in [bold]{escape(str(run_dir))}[/]")
    for f in (runfiles.BEST, runfiles.LAST, runfiles.METRICS, "genotypes/"):
        if (run_dir / f).exists():
            console.print(f"  {escape(str(run_dir / f))}")


@user_errors
def launch(ctx: typer.Context, command: str, params: dict[str, Any], **extra: Any) -> None:
    """Typed options from a command's parameters, the API call, and a failed rank's exit."""
    from posenfs_cli import api
    from posenfs_cli.engine.distributed import RankFailed

    rec = RecipeOptions(
        **{f.name: params[f.name] for f in fields(RecipeOptions) if f.name in params}
    )
    run = RunOptions(**{f.name: params[f.name] for f in fields(RunOptions) if f.name != "device"})
    run.device = resolve_device_option(ctx, params["device"])
    hooks = TrainHooks(_started, _finished, console)
    try:
        getattr(api, command)(rec, run=run, hooks=hooks, **extra)
    except RankFailed as exc:
        if not exc.report:
            raise typer.Exit(exc.exit_code) from None
        fail(str(exc), exc.exit_code)


# Options shared by `search` and `train` (Typer reads these OptionInfo defaults per command).
O_RECIPE = typer.Option(
    None,
    "--recipe",
    "-r",
    help=f"Recipe YAML or shipped name (e.g. synthetic/tiny) [default: {DEFAULT_RECIPE}; "
    "with --dataset mpii or coco, the paper's MobileNetV2 recipe for it].",
)
O_DATASET = typer.Option(None, "--dataset", help="synthetic | mpii | coco | crowdpose.")
O_DATA_ROOT = typer.Option(None, "--data-root", help="Dataset folder (see README: data layouts).")
O_EPOCHS = typer.Option(None, "--epochs", help="Number of epochs.")
O_BATCH = typer.Option(None, "--batch-size", "-b", help="Batch size (per process).")
O_LR = typer.Option(None, "--lr", help="Weight learning rate (Adam).")
O_INPUT = typer.Option(None, "--input-size", help="N or HxW, e.g. 256 or 384x288.")
O_PARTS = typer.Option(None, "--parts", help="1 | 3 | 5 | 8 | random | custom.")
O_BACKBONE = typer.Option(None, "--backbone", help="mobilenet_v2 | resnet50 | hrnet_w32 | fabric.")
O_WORKERS = typer.Option(None, "--workers", "-j", help="Data-loading worker processes.")
O_SEED = typer.Option(None, "--seed", help="Seed (data order, augmentation, random arch).")
O_VAL_EVERY = typer.Option(None, "--val-every", help="Validate every N epochs.")
O_GRAD_CLIP = typer.Option(None, "--grad-clip", help="Clip the gradient norm (0: off).")
O_AMP = typer.Option(None, "--amp", help="auto | bf16 | fp16 | off (auto: bf16 on CUDA).")
O_PRETRAINED = typer.Option(
    None,
    "--pretrained",
    help="Backbone initialisation: imagenet (downloaded once, see README), a weights file, "
    "or none [default: the recipe's].",
)
O_COMPILE = typer.Option(
    None,
    "--compile",
    help="auto | on | off: torch.compile the model (auto: CUDA runs of >= 5000 steps).",
)
O_SET = typer.Option([], "--set", help="Override any recipe key: key.path=value (repeatable).")
O_NAME = typer.Option(None, "--name", help="Run name (auto-incremented if it exists).")
O_PROJECT = typer.Option(Path("runs"), "--project", help="Parent folder of run folders.")
O_EXIST_OK = typer.Option(False, "--exist-ok", help="Reuse runs/<cmd>/<name> if it exists.")
O_RESUME = typer.Option(None, "--resume", help="Continue the run in this folder exactly.")
O_DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda[:N].")
O_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def _shared(
    ctx: typer.Context,
    recipe: str | None = O_RECIPE,
    dataset: str | None = O_DATASET,
    data_root: str | None = O_DATA_ROOT,
    epochs: int | None = O_EPOCHS,
    batch_size: int | None = O_BATCH,
    lr: float | None = O_LR,
    input_size: str | None = O_INPUT,
    parts: str | None = O_PARTS,
    backbone: str | None = O_BACKBONE,
    pretrained: str | None = O_PRETRAINED,
    workers: int | None = O_WORKERS,
    seed: int | None = O_SEED,
    val_every: int | None = O_VAL_EVERY,
    grad_clip: float | None = O_GRAD_CLIP,
    amp: str | None = O_AMP,
    compile: str | None = O_COMPILE,
    sets: list[str] = O_SET,
    name: str | None = O_NAME,
    project: Path = O_PROJECT,
    exist_ok: bool = O_EXIST_OK,
    resume: Path | None = O_RESUME,
    device: str | None = O_DEVICE,
    progress: bool = O_PROGRESS,
) -> None:
    """The parameters of both commands, in their help order (the signature only)."""


def run_command(
    command: str, after_lr: tuple[str, ...] = ()
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Make ``search`` or ``train`` from a function that declares only its own options and the
    help text, and returns the extra keyword arguments of the API call.

    The command's options are the shared ones with its own inserted: after --recipe, or, for
    the names in ``after_lr``, after --lr. It launches the run with all of them.
    """

    def decorate(own: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        shared = list(inspect.signature(_shared, eval_str=True).parameters.values())
        mine = list(inspect.signature(own, eval_str=True).parameters.values())
        at_lr = [i for i, p in enumerate(shared) if p.name == "lr"][0] + 1
        params = [
            *shared[:2],
            *(p for p in mine if p.name not in after_lr),
            *shared[2:at_lr],
            *(p for p in mine if p.name in after_lr),
            *shared[at_lr:],
        ]

        def run(ctx: typer.Context, **values: Any) -> None:
            extra = own(**{p.name: values[p.name] for p in mine})
            launch(ctx, command, values, **extra)

        run.__name__, run.__doc__ = own.__name__, own.__doc__
        # Typer reads the signature; functions have no declared __signature__ attribute
        run.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate
