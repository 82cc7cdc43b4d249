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
from posenfs_cli.cli.train_options import shared_options
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine.train_run import TrainHooks
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


def run_command(
    command: str, after_lr: tuple[str, ...] = ()
) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., None]]:
    """Make ``search`` or ``train`` from a function that declares only its own options and the
    help text, and returns the extra keyword arguments of the API call.

    The command's options are the shared ones with its own inserted: after --recipe, or, for
    the names in ``after_lr``, after --lr. It launches the run with all of them.
    """

    def decorate(own: Callable[..., dict[str, Any]]) -> Callable[..., None]:
        shared = list(inspect.signature(shared_options, eval_str=True).parameters.values())
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
