"""``posenfs train``: train the weights of a fixed architecture."""

from __future__ import annotations

from pathlib import Path

import typer

from posenfs_cli.cli import train_common as tc
from posenfs_cli.cli.common import user_errors
from posenfs_cli.errors import PosenfsError


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
    _train(
        ctx,
        recipe,
        genotype,
        from_ckpt,
        dict(
            dataset=dataset,
            data_root=data_root,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            input_size=input_size,
            parts=parts,
            backbone=backbone,
            pretrained=pretrained,
            workers=workers,
            seed=seed,
            val_every=val_every,
            grad_clip=grad_clip,
            amp=amp,
            compile=compile,
        ),
        sets,
        name,
        project,
        exist_ok,
        resume,
        device,
        progress,
    )


@user_errors
def _train(
    ctx, recipe, genotype, from_ckpt, flags, sets, name, project, exist_ok, resume, device, progress
) -> None:
    from posenfs_cli.nas.genotype import load_genotype

    if genotype is not None and from_ckpt is not None:
        raise PosenfsError("give --genotype or --from, not both")
    geno = load_genotype(genotype) if genotype is not None else None
    rec = None
    if resume is None:
        rec = tc.build_recipe(recipe, flags, sets)
    elif geno is not None or from_ckpt is not None:
        raise PosenfsError("--resume continues a run as it was; drop --genotype/--from")
    tc.run_training(
        ctx,
        "train",
        rec,
        resume,
        name,
        project,
        exist_ok,
        device,
        progress,
        genotype=geno,
        from_checkpoint=from_ckpt,
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
