"""Tables around a search/train run: the summary before it and the validation after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from posenfs_cli.config import Recipe


def summary_table(
    recipe: Recipe, command: str, strategy: str, run_dir: Path, device: str, world: int
) -> Table:
    m, d, t = recipe.model, recipe.data, recipe.train
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    bb = (
        m.backbone
        if m.backbone != "fabric"
        else (
            f"fabric L={m.fabric.layers} C={m.fabric.channels} H={m.fabric.hidden} "
            f"kept={m.fabric.kept}"
        )
    )
    table.add_row("command", Text(f"{command} ({strategy}), recipe {recipe.name}"))
    if m.head == "branchnet":
        head = f"Branchnet W={m.branchnet.width} D={m.branchnet.depth}"
    elif m.head == "deconv":
        head = f"deconv {m.deconv.layers}x{m.deconv.channels}"
    else:
        head = f"H={m.hidden}, C={m.channels}, L={m.layers} cut {m.cut}"
    table.add_row("model", Text(f"{bb}; P={m.parts}, {head}, d={m.vector_dim}"))
    root = f" at {d.root}" if d.root else " (in memory)"
    table.add_row(
        "data",
        Text(
            f"{d.dataset} ({d.keypoints}){root}, input {d.input_size[0]}x"
            f"{d.input_size[1]}, {d.workers} workers"
        ),
    )
    sched = f"x{t.lr_factor} at {t.lr_steps}" if t.lr_steps else "constant"
    table.add_row(
        "train",
        Text(
            f"{t.epochs} epochs, batch {t.batch_size}"
            f"{f' x {world} ranks' if world > 1 else ''}, Adam lr {t.lr} ({sched})"
        ),
    )
    table.add_row("device", Text(device))
    table.add_row("run folder", Text(str(run_dir)))
    return table


def final_table(history: list[dict[str, Any]], best_epoch: int | None) -> Table | None:
    rows = [r for r in history if "pckh_columns" in r or "ap" in r]
    if not rows:
        return None
    best = next((r for r in rows if r["epoch"] == best_epoch), rows[-1])
    table = Table(title=f"validation (best epoch {best['epoch']})", title_justify="left")
    if "pckh_columns" in best:
        cols = {k.replace(" (HRNet-compatible)", "*"): v for k, v in best["pckh_columns"].items()}
        table.caption = "* Mean@0.11: what HRNet's code prints as 'Mean@0.1'"
        for name in cols:
            table.add_column(name, justify="right")
        table.add_row(*[f"{v:.2f}" for v in cols.values()])
    else:
        names = ["ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl"]
        for n in names:
            table.add_column(n.upper(), justify="right")
        table.add_row(*[f"{best.get(n, float('nan')):.3f}" for n in names])
    return table
