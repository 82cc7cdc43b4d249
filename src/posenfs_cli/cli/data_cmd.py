"""``posenfs data synth``: write a synthetic-people dataset in the real MPII or COCO layout."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from posenfs_cli.cli.common import command_group, console, user_errors
from posenfs_cli.errors import PosenfsError

data_app = command_group("Dataset tools: write synthetic people in the MPII or COCO layout.")


@data_app.command("synth")
@user_errors
def synth_command(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the dataset into."),
    fmt: str = typer.Option("mpii", "--format", "-f", help="mpii | coco (the file layout)."),
    images: int = typer.Option(1000, "--images", "-n", help="Training images."),
    val_images: int | None = typer.Option(
        None, "--val-images", help="Validation images (default: images / 10, at least 1)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed writes identical data."),
    size: int = typer.Option(256, "--size", help="Image side in pixels (square images)."),
    max_people: int | None = typer.Option(
        None, "--max-people", help="People per image, 1..N (default: mpii 1, coco 3)."
    ),
    quality: int = typer.Option(95, "--quality", help="JPEG quality (1-100)."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that has a dataset."),
) -> None:
    """Render synthetic people and write them as JSON + JPEGs in the real layouts.

    MPII: annot/{train,valid}.json, annot/gt_valid.mat (head boxes), images/*.jpg.
    COCO: annotations/person_keypoints_{train,val}.json, images/{train,val}/*.jpg.

    Examples:
      posenfs data synth --format mpii --out data/synth_mpii --images 2000 --seed 0
      posenfs data synth --format coco --out data/synth_coco --images 500 --val-images 100
    """
    from posenfs_cli.data.synthetic import plan_synthetic, write_synthetic

    fmt = fmt.lower()
    if fmt not in ("mpii", "coco"):
        raise PosenfsError(f"--format must be mpii or coco, got {fmt!r}")
    if images < 1:
        raise PosenfsError(f"--images must be >= 1, got {images}")
    n_val = max(1, images // 10) if val_images is None else val_images
    if n_val < 0:
        raise PosenfsError(f"--val-images must be >= 0, got {n_val}")
    if not 1 <= quality <= 100:
        raise PosenfsError(f"--quality must be in 1..100, got {quality}")
    people = (1 if fmt == "mpii" else 3) if max_people is None else max_people
    existing = [p for p in ("annot", "annotations", "images") if (out / p).exists()]
    if existing and not force:
        raise PosenfsError(
            f"{out} already holds a dataset ({', '.join(existing)}/); "
            "choose another --out or pass --force"
        )
    plan = plan_synthetic(out, fmt, images, n_val, seed, size, people, quality)  # before the bar
    total = images + n_val
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]synth[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(f"{fmt} -> {out}"), total=total)
        summary = write_synthetic(plan, progress=lambda k: progress.advance(task, k))
    elapsed = time.perf_counter() - start

    table = Table(title=f"synthetic {fmt} dataset", title_justify="left")
    table.add_column("split", style="bold")
    table.add_column("images", justify="right")
    table.add_column("people", justify="right")
    for split in ("train", "val"):
        table.add_row(split, str(summary.images[split]), str(summary.persons[split]))
    console.print(table)
    console.print(
        f"{total} images of {size}x{size} px, seed {seed}, up to {people} people per image, "
        f"in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.0f} images/s)"
    )
    for f in summary.files:
        console.print(escape(f"  wrote {f}{'/' if f.is_dir() else ''}"))
    where = escape(str(out))
    console.print(
        f"[green]done[/]: {where}  — use it with [bold]--dataset {fmt} --data-root {where}[/] "
        f"(or data.dataset=synthetic, data.root={where}, data.keypoints={fmt})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
