"""``posenfs train``: train the weights of a fixed architecture."""

from __future__ import annotations

from pathlib import Path

import typer

from posenfs_cli.cli import train_common as tc


def train_command(
    ctx: typer.Context,
    recipe: str | None = tc.O_RECIPE,
    genotype: Path | None = typer.Option(
        None, "--genotype", "-g", help="Architecture from a genotype JSON (α/β frozen)."
    ),
    from_ckpt: Path | None = typer.Option(
        None, "--from", help="Architecture (structure, α/β, pruning) of a checkpoint."
    ),
    dataset: str | None = tc.O_DATASET,
    data_root: str | None = tc.O_DATA_ROOT,
    epochs: int | None = tc.O_EPOCHS,
    batch_size: int | None = tc.O_BATCH,
    lr: float | None = tc.O_LR,
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
    """Train weights only: α/β frozen from --genotype, --from CKPT, or uniform (all ones).

    Examples:
      posenfs train --genotype runs/search/exp/genotypes/epoch_010.json
      posenfs train --from runs/search/exp/best.pruned.safetensors --epochs 50
    """
    params = locals()
    tc.launch(ctx, "train", params, genotype=genotype, from_checkpoint=from_ckpt)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
