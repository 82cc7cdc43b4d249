"""The options ``posenfs search`` and ``posenfs train`` share, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

from posenfs_cli.cli.common import O_DEVICE, O_PROJECT
from posenfs_cli.engine.train_run import DEFAULT_RECIPE

# Options shared by `search` and `train` (Typer reads these OptionInfo defaults per command).
O_RECIPE = typer.Option(
    None,
    "--recipe",
    "-r",
    help="Recipe YAML or shipped name (e.g. synthetic/tiny).",
    show_default=f"{DEFAULT_RECIPE}; with --dataset mpii or coco, the paper's MobileNetV2 recipe",
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
    "or none.",
    show_default="the recipe's",
)
O_COMPILE = typer.Option(
    None,
    "--compile",
    help="auto | on | off: torch.compile the model (auto: CUDA runs of >= 5000 steps).",
)
O_SET = typer.Option([], "--set", help="Override any recipe key: key.path=value (repeatable).")
O_NAME = typer.Option(None, "--name", help="Run name (auto-incremented if it exists).")
O_EXIST_OK = typer.Option(False, "--exist-ok", help="Reuse runs/<cmd>/<name> if it exists.")
O_RESUME = typer.Option(None, "--resume", help="Continue the run in this folder exactly.")
O_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def shared_options(
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
