"""The files of ``posenfs visualize arch | curves | genotype-diff``: read genotypes, draw, write."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from posenfs_cli.errors import PosenfsError

if TYPE_CHECKING:
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


def write_png(path: Path, img: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise PosenfsError(f"cannot write {path} (is the extension .png?)")
    return path


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def default_arch_dir(source: Path) -> Path:
    return Path("runs/visualize/arch") / safe_name(source.stem)


def arch_pngs(source: Path, out: Path) -> tuple[Genotype, list[Path]]:
    """One fabric diagram per CNF plus overview.png; returns the genotype and the files."""
    from posenfs_cli.vis.fabric import draw_fabric, draw_overview

    genotype = load_any_genotype(source)
    written = []
    for entry in genotype.cnfs:
        written.append(write_png(out / f"{safe_name(entry.name)}.png", draw_fabric(entry)))
    written.append(write_png(out / "overview.png", draw_overview(genotype)))
    return genotype, written


def run_labels(runs: list[Path]) -> list[str]:
    """Folder names, or parent/name where two runs share a name."""
    names = [p.resolve().name or str(p) for p in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{p.resolve().parent.name}/{p.resolve().name}" for p in runs]


def curves_png(runs: list[Path], out: Path, keys: str | None) -> list[tuple[str, list[Any]]]:
    """Metrics per epoch of several runs in one figure; returns (label, rows) per run."""
    from posenfs_cli.vis.curves import DEFAULT_KEYS, plot_curves, read_metrics_rows

    if keys is None:
        key_list = list(DEFAULT_KEYS)
    else:
        key_list = [k.strip() for k in keys.split(",") if k.strip()]
        if not key_list:
            raise PosenfsError(f"--keys {keys!r} names no metric (give e.g. val_loss,pckh)")
    data = [(label, read_metrics_rows(p)) for label, p in zip(run_labels(runs), runs, strict=True)]
    write_png(out, plot_curves(data, key_list))
    return data


def diff_png(a: Path, b: Path, out: Path, top: int) -> list[dict[str, Any]]:
    """The largest α/β changes between two genotypes, drawn; returns every compared weight."""
    from posenfs_cli.vis.fabric import genotype_diff

    if top < 1:
        raise PosenfsError(f"--top must be >= 1, got {top}")
    rows, img = genotype_diff(
        load_any_genotype(a), load_any_genotype(b), top=top, labels=(a.name, b.name)
    )
    write_png(out, img)
    return rows
