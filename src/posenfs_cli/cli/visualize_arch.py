"""``posenfs visualize arch | curves | genotype-diff``: architecture and training-run pictures.

Registers on the ``visualize`` sub-app owned by ``cli/visualize.py``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from posenfs_cli.cli.common import check_image_out, console, user_errors
from posenfs_cli.errors import folder_out


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
    from posenfs_cli.engine.visualize import arch_pngs, default_arch_dir

    out = folder_out(out or default_arch_dir(source))
    genotype, written = arch_pngs(source, out)
    console.print(
        f"{len(genotype.cnfs)} CNF diagrams of {escape(str(source))} -> "
        f"[bold]{escape(str(out))}/[/] "
        f"({escape(', '.join(p.name for p in written))})"
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


@user_errors
def _curves(runs: list[Path], out: Path, keys: str | None) -> None:
    from posenfs_cli.engine.visualize import curves_png

    data = curves_png(runs, check_image_out(out), keys)
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
    from posenfs_cli.engine.visualize import diff_png
    from posenfs_cli.views.visualize import diff_table

    if top >= 1:
        check_image_out(out)
    rows = diff_png(a, b, out, top)
    console.print(diff_table(rows, a.name, b.name, top))
    console.print(
        f"{len(rows)} weights compared, top {min(top, len(rows))} -> [bold]{escape(str(out))}[/]"
    )


def register(app: typer.Typer) -> None:
    """Add the commands to ``posenfs visualize`` (the sub-app lives in cli/visualize.py)."""
    from posenfs_cli.cli.visualize import visualize_app

    visualize_app.command("arch")(arch_command)
    visualize_app.command("curves")(curves_command)
    visualize_app.command("genotype-diff")(diff_command)
