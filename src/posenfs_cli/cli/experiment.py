"""``posenfs experiment``: recipes (or an experiment YAML) × seeds, resumable, summarised."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from posenfs_cli.cli.common import O_DEVICE, O_PROJECT, console, resolve_device_option, user_errors


def experiment_command(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(
        ...,
        help="Recipes (YAML paths or names under recipes/), one run each; or one experiment "
        "YAML with a 'runs' list (e.g. experiments/parts).",
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Seeds, e.g. 0,1,2 or 0-4 (default: the experiment's, or 0)."
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Folder under <project>/experiment/ (default: the experiment's name, or exp). "
        "The same name continues the experiment.",
    ),
    project: Path = O_PROJECT,
    sets: list[str] = typer.Option(
        [], "--set", help="Override a key of every run: key.path=value (repeatable)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (torch)."),
    device: str | None = O_DEVICE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run recipes × seeds (search or train each), then write summary.md and curves.png.

    Runs go to <project>/experiment/<name>/<run>-s<seed>/. Running the same command again
    continues: finished runs are kept, a run with a checkpoint resumes exactly, the summary is
    rewritten. Search runs a CNF recipe; baseline heads (model.head: branchnet | deconv) train.

    Examples:
      posenfs experiment synthetic/quick --seeds 0,1,2 --set train.epochs=5
      posenfs experiment mpii/baseline1_hrnet_branchnet3_w400_d8_256 \\
          mpii/hrnet_p3_h2_c12_d1_256 --seeds 0,1 --name tab6
      posenfs experiment experiments/parts
    """
    _experiment(ctx, sources, seeds, name, project, sets, threads, device, progress)


@user_errors
def _experiment(ctx, sources, seeds, name, project, sets, threads, device, progress) -> None:
    from posenfs_cli.device import select_device
    from posenfs_cli.engine.experiment import experiment_from_args, parse_seeds, run_experiment
    from posenfs_cli.validation import check_threads

    check_threads(threads)  # before anything is looked up; left out: torch's default
    exp = experiment_from_args(
        list(sources), parse_seeds(seeds) if seeds is not None else None, name, list(sets)
    )
    if threads is not None:
        torch.set_num_threads(threads)
    dev = select_device(resolve_device_option(ctx, device))
    result = run_experiment(
        exp,
        project,
        dev,
        progress=progress,
        console=console,
        announce=lambda text: console.print(f"[bold cyan]experiment[/] {text}"),
    )
    if result.summary_md is not None:  # markdown as written: no wrapping, no rich markup
        console.print(result.summary_md.read_text(), soft_wrap=True, markup=False)
    console.print(
        f"[bold green]done.[/] {len(result.ran)} run(s) trained, {len(result.resumed)} resumed, "
        f"{len(result.skipped)} kept from before; results in [bold]{result.root}[/]"
    )
    console.print(f"  {result.summary_md}")
    if result.curves_png is not None:
        console.print(f"  {result.curves_png}")


def register(app: typer.Typer) -> None:
    app.command("experiment")(experiment_command)
