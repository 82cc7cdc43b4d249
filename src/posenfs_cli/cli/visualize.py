"""``posenfs visualize``: pictures of datasets (and, added by other modules, of architectures,
heatmaps and training curves). Subcommands register on ``visualize_app``."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import typer
from rich.markup import escape

from posenfs_cli.cli.common import check_image_out, console, user_errors
from posenfs_cli.errors import PosenfsError

visualize_app = typer.Typer(
    help="Draw datasets, architectures, heatmaps and training curves as PNG files.",
    no_args_is_help=True,
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
    import numpy as np

    from posenfs_cli.config import DataConfig, SyntheticConfig, parse_input_size
    from posenfs_cli.data.build import build_dataset
    from posenfs_cli.data.transforms import denormalize_image
    from posenfs_cli.vis.draw import draw_skeleton, make_grid, put_label

    dataset = dataset.lower()
    if dataset not in ("synthetic", "mpii", "coco"):
        raise PosenfsError(f"--dataset must be synthetic, mpii or coco, got {dataset!r}")
    if split not in ("train", "val"):
        raise PosenfsError(f"--split must be train or val, got {split!r}")
    if num < 1:
        raise PosenfsError(f"--num must be >= 1, got {num}")
    check_image_out(out)
    kp = (keypoints or ("mpii" if dataset == "synthetic" else dataset)).lower()
    size = parse_input_size(input_size)
    cfg = DataConfig(
        dataset=dataset,
        keypoints=kp,
        root=str(data_root) if data_root is not None else None,
        input_size=size,
        synthetic=SyntheticConfig(train_images=num, val_images=num, seed=seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ann_file is not None:
            ds = _from_files(dataset, ann_file, image_dir, cfg, augment)
        else:
            ds = build_dataset(cfg, split, train=augment)
        if len(ds) == 0:
            raise PosenfsError(f"the {split} split of {dataset} has no person records")
        ds.seed = seed
        rng = np.random.default_rng(seed)
        pick = np.arange(len(ds)) if len(ds) <= num else np.sort(rng.choice(len(ds), num, False))
        radius = max(2, round(min(size) / 85))
        thick = max(1, round(min(size) / 128))
        tiles = []
        for i in pick:
            s = ds.get_sample(int(i))
            img = cv2.cvtColor(denormalize_image(s.image), cv2.COLOR_RGB2BGR)
            img = draw_skeleton(
                img, s.joints_input[:, :2], s.joints_input[:, 2], ds.layout, 0.5, radius, thick
            )
            flag = " F" if s.meta["flipped"] else ""
            tiles.append(put_label(img, f"#{s.meta['index']}{flag}"))
    for w in caught:
        console.print(f"[yellow]warning:[/] {escape(str(w.message))}")
    ncols = cols or math.ceil(math.sqrt(len(tiles)))
    grid = make_grid(tiles, ncols)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), grid):
        raise PosenfsError(f"cannot write {out} (is the extension .png?)")
    console.print(
        f"{len(tiles)} {'augmented' if augment else 'plain'} {split} samples of {ds.name} "
        f"({ds.layout.name} layout, {size[0]}x{size[1]}) -> [bold]{escape(str(out))}[/]"
    )


def _from_files(dataset: str, ann_file: Path, image_dir: Path | None, cfg, augment: bool):
    """A dataset from an explicit annotation file + image folder (e.g. shared samples)."""
    from posenfs_cli.data.coco import COCODataset
    from posenfs_cli.data.mpii import MPIIDataset

    if image_dir is None:
        raise PosenfsError("--ann-file needs --image-dir (the folder its images are in)")
    common = {
        "input_size": cfg.input_size,
        "sigma": cfg.sigma,
        "augment": cfg.augment,
        "train": augment,
    }
    if dataset == "mpii":
        return MPIIDataset.from_files(ann_file, image_dir, **common)
    if dataset == "coco":
        return COCODataset.from_files(ann_file, image_dir, **common)
    raise PosenfsError("--ann-file works with --dataset mpii or coco")


def register(app: typer.Typer) -> None:
    app.add_typer(visualize_app, name="visualize")
