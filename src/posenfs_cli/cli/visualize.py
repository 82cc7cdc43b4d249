"""``posenfs visualize``: pictures of datasets (and, added by other modules, of architectures,
heatmaps and training curves). Subcommands register on ``visualize_app``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from posenfs_cli.cli.common import check_image_out, command_group, console, user_errors
from posenfs_cli.errors import PosenfsError

visualize_app = command_group(
    "Draw datasets, architectures, heatmaps and training curves as PNG files."
)


@visualize_app.command("dataset")
@user_errors
def dataset_command(
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="synthetic | mpii | coco."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Dataset folder (MPII or COCO layout); synthetic: optional."
    ),
    keypoints: str | None = typer.Option(
        None, "--keypoints", "-k", help="mpii | coco (synthetic style; default: the dataset's)."
    ),
    split: str = typer.Option("train", "--split", help="train | val."),
    augment: bool = typer.Option(
        True, "--augment/--no-augment", help="Show training augmentation or the plain crops."
    ),
    num: int = typer.Option(16, "--num", "-n", help="Number of samples to draw."),
    input_size: str = typer.Option("256", "--input-size", help="Crop size: N or HxW."),
    out: Path = typer.Option(
        Path("runs/visualize/dataset.png"), "--out", "-o", help="PNG file to write."
    ),
    seed: int = typer.Option(0, "--seed", help="Picks the samples and their augmentation."),
    cols: int | None = typer.Option(None, "--cols", help="Grid columns (default: ~sqrt(num))."),
    ann_file: Path | None = typer.Option(
        None, "--ann-file", help="An annotation JSON outside the usual layout (with --image-dir)."
    ),
    image_dir: Path | None = typer.Option(
        None, "--image-dir", help="Folder with the images --ann-file refers to."
    ),
) -> None:
    """Draw a grid of dataset samples with their ground-truth skeletons.

    Left joints/links, right ones and centre ones have different colours; "F" marks a flipped
    sample. Images are the network inputs, de-normalised.

    Examples:
      posenfs visualize dataset --dataset synthetic --keypoints coco
      posenfs visualize dataset --dataset mpii --data-root data/mpii --split val --no-augment
      posenfs visualize dataset --dataset coco --ann-file test_coco.json --image-dir imgs/
    """
    import cv2

    from posenfs_cli.vis.dataset_grid import GridOptions, dataset_grid

    opts = GridOptions(dataset, data_root, keypoints, split, augment, num, input_size, seed, cols)
    opts.check()
    check_image_out(out)
    grid = dataset_grid(opts, ann_file, image_dir)
    for w in grid.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid.image):
        raise PosenfsError(f"cannot write {out} (is the extension .png?)")
    what = (
        f"{grid.samples} {'augmented' if augment else 'plain'} {split} samples of {grid.name} "
        f"({grid.layout} layout, {grid.size[0]}x{grid.size[1]}) -> "
    )
    console.print(escape(what) + f"[bold]{escape(str(out))}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(visualize_app, name="visualize")
