"""``posenfs train``: train the weights of a fixed architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from posenfs_cli.cli import train_common as tc


@tc.run_command("train")
def train_command(
    genotype: Path | None = typer.Option(
        None, "--genotype", "-g", help="Architecture from a genotype JSON (α/β frozen)."
    ),
    from_ckpt: Path | None = typer.Option(
        None, "--from", help="Architecture (structure, α/β, pruning) of a checkpoint."
    ),
) -> dict[str, Any]:
    """Train weights only: α/β frozen from --genotype, --from CKPT, or uniform (all ones).

    Examples:
      posenfs train --genotype runs/search/exp/genotypes/epoch_010.json
      posenfs train --from runs/search/exp/best.pruned.safetensors --epochs 50
    """
    return {"genotype": genotype, "from_checkpoint": from_ckpt}


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
