"""``posenfs import FILE``: a checkpoint of the authors' PoseNFS code as a posenfs checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from posenfs_cli.cli.common import console, err_console, user_errors
from posenfs_cli.errors import PosenfsError
from posenfs_cli.views.import_report import show, show_mismatch


def import_command(
    file: Path = typer.Argument(
        ..., help="The authors' checkpoint (best_ckpt.tar, previous_ckpt.tar, ...)."
    ),
    official_config: Path | None = typer.Option(
        None, "--official-config", "-c", help="The authors' YAML config the model was built with."
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", "-r", help="A posenfs recipe (path or name) instead of their YAML."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The posenfs checkpoint to write (.safetensors)."
    ),
    inspect: bool = typer.Option(
        False, "--inspect", help="Only print what was inferred from the file; write nothing."
    ),
    input_size: str | None = typer.Option(
        None, "--input-size", help="HxW network input, when neither the file nor a config says."
    ),
) -> None:
    """Convert a checkpoint of the authors' PoseNFS implementation into a posenfs checkpoint.

    The architecture is read from the file (backbone, parts, H, input nodes, C, d, op columns,
    pruned cells and ops); their YAML (or a recipe) only adds op names/order, input size and
    dataset, and any disagreement with the file is reported tensor by tensor. Tensors their
    forward never reads are listed and dropped.

    Examples:
      posenfs import best_ckpt.tar --inspect
      posenfs import best_ckpt.tar --official-config cfg.yaml --out model.safetensors
      posenfs eval model.safetensors --dataset mpii --data-root data/mpii
    """
    _import(file, official_config, recipe, out, inspect, input_size)


@user_errors
def _import(
    file: Path,
    config: Path | None,
    recipe_name: str | None,
    out: Path | None,
    inspect: bool,
    input_size: str | None,
) -> None:
    from posenfs_cli.config import parse_input_size
    from posenfs_cli.official.importer import import_official
    from posenfs_cli.official.resolve import ImportMismatch

    recipe = None
    if recipe_name is not None:
        if config is not None:
            raise PosenfsError("give --official-config or --recipe, not both")
        from posenfs_cli.config import load_recipe
        from posenfs_cli.engine.train_run import resolve_recipe_path

        recipe = load_recipe(resolve_recipe_path(recipe_name))
    size = parse_input_size(input_size) if input_size is not None else None
    try:
        result = import_official(
            file, config=config, recipe=recipe, input_size=size, out=out, inspect=inspect
        )
    except ImportMismatch as exc:
        show_mismatch(err_console, exc, file)
        raise typer.Exit(2) from None
    show(console, result, inspect)


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
