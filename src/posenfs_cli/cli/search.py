"""``posenfs search``: train weights and architecture (α, β) together."""

from __future__ import annotations

from pathlib import Path

import typer

from posenfs_cli.cli import train_common as tc


def search_command(
    ctx: typer.Context,
    recipe: str | None = tc.O_RECIPE,
    strategy: str | None = typer.Option(
        None, "--strategy", "-s", help="sync | random | darts1 | darts2 [default: recipe's]."
    ),
    dataset: str | None = tc.O_DATASET,
    data_root: str | None = tc.O_DATA_ROOT,
    epochs: int | None = tc.O_EPOCHS,
    batch_size: int | None = tc.O_BATCH,
    lr: float | None = tc.O_LR,
    arch_lr: float | None = typer.Option(None, "--arch-lr", help="α/β learning rate (sync)."),
    arch_lr_decay: bool | None = typer.Option(
        None, "--arch-lr-decay/--no-arch-lr-decay", help="Decay the α/β lr with the weights'."
    ),
    input_size: str | None = tc.O_INPUT,
    parts: str | None = tc.O_PARTS,
    backbone: str | None = tc.O_BACKBONE,
    pretrained: str | None = tc.O_PRETRAINED,
    workers: int | None = tc.O_WORKERS,
    seed: int | None = tc.O_SEED,
    val_every: int | None = tc.O_VAL_EVERY,
    grad_clip: float | None = tc.O_GRAD_CLIP,
    amp: str | None = tc.O_AMP,
    compile: str | None = tc.O_COMPILE,
    sets: list[str] = tc.O_SET,
    name: str | None = tc.O_NAME,
    project: Path = tc.O_PROJECT,
    exist_ok: bool = tc.O_EXIST_OK,
    resume: Path | None = tc.O_RESUME,
    device: str | None = tc.O_DEVICE,
    progress: bool = tc.O_PROGRESS,
) -> None:
    """Search part-specific architectures: weights, α and β learned together.

    With no arguments it runs the built-in synthetic recipe (a few minutes on a laptop CPU).

    Examples:
      posenfs search
      posenfs search --dataset mpii --data-root data/mpii --parts 5
      posenfs search --recipe mpii/mbv2_p3_h1_c10_256 --strategy darts1 --epochs 10
      posenfs search --resume runs/search/exp
      torchrun --nproc_per_node 4 -m posenfs_cli search --recipe mpii/hrnet_p5_h1_c16_256
    """
    tc.launch(ctx, "search", locals())


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
