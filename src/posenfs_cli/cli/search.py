"""``posenfs search``: train weights and architecture (α, β) together."""

from __future__ import annotations

from typing import Any

import typer

from posenfs_cli.cli import train_common as tc


@tc.run_command("search", after_lr=("arch_lr", "arch_lr_decay"))
def search_command(
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        "-s",
        help="sync | random | darts1 | darts2.",
        show_default="the recipe's",
    ),
    arch_lr: float | None = typer.Option(None, "--arch-lr", help="α/β learning rate (sync)."),
    arch_lr_decay: bool | None = typer.Option(
        None, "--arch-lr-decay/--no-arch-lr-decay", help="Decay the α/β lr with the weights'."
    ),
) -> dict[str, Any]:
    """Search part-specific architectures: weights, α and β learned together.

    With no arguments it runs the built-in synthetic recipe (about 12 minutes on a 2-core CPU;
    synthetic/tiny takes seconds).

    Examples:
      posenfs search
      posenfs search --dataset mpii --data-root data/mpii --parts 5
      posenfs search --recipe mpii/mbv2_p3_h1_c10_256 --strategy darts1 --epochs 10
      posenfs search --resume runs/search/exp
      torchrun --nproc_per_node 4 -m posenfs_cli search --recipe mpii/hrnet_p5_h1_c16_256
    """
    return {}  # strategy and the α/β options are recipe options


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
