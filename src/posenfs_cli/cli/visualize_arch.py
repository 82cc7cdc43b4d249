"""``posenfs visualize arch | curves | genotype-diff``: architecture and training-run pictures.

Registers on the ``visualize`` sub-app owned by ``cli/visualize.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from posenfs_cli.cli.common import check_folder_out, check_image_out, console, user_errors
from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:  # typing only: the CLI imports torch-heavy modules lazily
    from posenfs_cli.nas.genotype import Genotype


def load_any_genotype(path: Path) -> Genotype:
    """A genotype from a genotype JSON or from a checkpoint's metadata."""
    from posenfs_cli.nas.genotype import load_genotype

    if path.suffix == ".safetensors":
        from posenfs_cli.engine.checkpoint import read_checkpoint

        return read_checkpoint(path).genotype
    if not path.exists():
        raise PosenfsError(f"file not found: {path} (give a genotype .json or a .safetensors)")
    return load_genotype(path)


def _write_png(path: Path, img) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise PosenfsError(f"cannot write {path} (is the extension .png?)")
    return path


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def arch_command(
    source: Path = typer.Argument(..., help="A genotype JSON or a .safetensors checkpoint."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default: runs/visualize/arch/<source stem>/)."
    ),
) -> None:
    """Draw the fabric of every CNF: one PNG per CNF plus overview.png.

    Cells by layer (left to right) and scale (1/4 at the top); every input slot is a curve whose
    width and opacity follow its β weight; each cell lists its strongest ops and a table gives
    α; pruned cells and slots are grey and dashed.

    Examples:
      posenfs visualize arch runs/search/exp/genotypes/epoch_200.json
      posenfs visualize arch runs/search/exp/best.pruned.safetensors --out figs/arch
    """
    _arch(source, out)


@user_errors
def _arch(source: Path, out: Path | None) -> None:
    from posenfs_cli.vis.fabric import draw_fabric, draw_overview

    out = check_folder_out(out or Path("runs/visualize/arch") / _safe(source.stem))
    genotype = load_any_genotype(source)
    written = []
    for entry in genotype.cnfs:
        written.append(_write_png(out / f"{_safe(entry.name)}.png", draw_fabric(entry)))
    written.append(_write_png(out / "overview.png", draw_overview(genotype)))
    console.print(
        f"{len(genotype.cnfs)} CNF diagrams of {escape(str(source))} -> "
        f"[bold]{escape(str(out))}/[/] "
        f"({', '.join(p.name for p in written)})"
    )


def curves_command(
    runs: list[Path] = typer.Argument(..., help="Run folders containing metrics.jsonl."),
    out: Path = typer.Option(
        Path("runs/visualize/curves.png"), "--out", "-o", help="PNG file to write."
    ),
    keys: str | None = typer.Option(
        None,
        "--keys",
        "-k",
        help="Comma-separated metrics (default: train_loss,val_loss,pckh,alpha_entropy,"
        "beta_entropy).",
    ),
) -> None:
    """Plot loss, PCKh and α/β entropy per epoch, several runs overlaid.

    Examples:
      posenfs visualize curves runs/search/exp
      posenfs visualize curves runs/search/exp runs/search/exp2 -k val_loss,pckh -o cmp.png
    """
    _curves(runs, out, keys)


def _labels(runs: list[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{p.resolve().parent.name}/{p.resolve().name}" for p in runs]


@user_errors
def _curves(runs: list[Path], out: Path, keys: str | None) -> None:
    from posenfs_cli.vis.curves import DEFAULT_KEYS, plot_curves, read_metrics_rows

    check_image_out(out)
    key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else list(DEFAULT_KEYS)
    if not key_list:
        raise PosenfsError("--keys is empty")
    data = [(label, read_metrics_rows(p)) for label, p in zip(_labels(runs), runs, strict=True)]
    _write_png(out, plot_curves(data, key_list))
    epochs = ", ".join(f"{label}: {len(rows)} rows" for label, rows in data)
    console.print(
        escape(f"curves of {len(data)} run(s) ({epochs}) -> ") + f"[bold]{escape(str(out))}[/]"
    )


def diff_command(
    a: Path = typer.Argument(..., help="Genotype JSON or checkpoint A (the reference)."),
    b: Path = typer.Argument(..., help="Genotype JSON or checkpoint B (same structure)."),
    out: Path = typer.Option(
        Path("runs/visualize/genotype_diff.png"), "--out", "-o", help="PNG file to write."
    ),
    top: int = typer.Option(20, "--top", "-n", help="How many of the largest changes to show."),
) -> None:
    """Which α/β weights changed most between two genotypes of the same structure.

    Examples:
      posenfs visualize genotype-diff runs/search/exp/genotypes/epoch_010.json \\
          runs/search/exp/genotypes/epoch_200.json
    """
    _diff(a, b, out, top)


@user_errors
def _diff(a: Path, b: Path, out: Path, top: int) -> None:
    from posenfs_cli.vis.fabric import genotype_diff

    if top < 1:
        raise PosenfsError(f"--top must be >= 1, got {top}")
    check_image_out(out)
    rows, img = genotype_diff(
        load_any_genotype(a), load_any_genotype(b), top=top, labels=(a.name, b.name)
    )
    table = Table(
        title=escape(f"largest weight changes: {a.name} -> {b.name}"), title_justify="left"
    )
    for col in ("CNF", "param", "where", "entry", "A", "B", "delta"):
        table.add_column(col, justify="right" if col in ("A", "B", "delta") else "left")
    for r in rows[:top]:
        color = "green" if r["delta"] > 0 else "red" if r["delta"] < 0 else "dim"
        table.add_row(
            escape(str(r["cnf"])),
            r["kind"],
            r["where"],
            r["entry"],
            f"{r['a']:.4f}",
            f"{r['b']:.4f}",
            f"[{color}]{r['delta']:+.4f}[/]",
        )
    console.print(table)
    _write_png(out, img)
    console.print(
        f"{len(rows)} weights compared, top {min(top, len(rows))} -> [bold]{escape(str(out))}[/]"
    )


def register(app: typer.Typer) -> None:
    """Add the commands to ``posenfs visualize`` (the sub-app lives in cli/visualize.py)."""
    from posenfs_cli.cli.visualize import visualize_app

    visualize_app.command("arch")(arch_command)
    visualize_app.command("curves")(curves_command)
    visualize_app.command("genotype-diff")(diff_command)
