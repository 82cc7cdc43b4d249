"""Run folders: ``runs/<command>/<name>/`` with config, metrics, log, checkpoints, genotypes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from posenfs_cli.config import Recipe, recipe_to_yaml
from posenfs_cli.errors import PosenfsError

LAST = "last.safetensors"
BEST = "best.safetensors"
TRAIN_STATE = "last.train.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
LOG = "log.txt"


def new_run_dir(
    project: str | Path, command: str, name: str | None, exist_ok: bool = False
) -> Path:
    """``project/command/name``, auto-incremented (exp, exp2, exp3 ...) unless ``exist_ok``."""
    base = Path(project) / command
    stem = name or "exp"
    path = base / stem
    if exist_ok or not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        return path
    m = re.fullmatch(r"(.*?)(\d+)", stem)
    root, n = (m.group(1), int(m.group(2))) if m and name is None else (stem, 1)
    while True:
        n += 1
        path = base / f"{root}{n}"
        if not path.exists():
            path.mkdir(parents=True)
            return path


def check_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise PosenfsError(f"--resume {p}: no such run folder")
    missing = [f for f in (CONFIG, TRAIN_STATE, LAST) if not (p / f).is_file()]
    if missing:
        raise PosenfsError(
            f"--resume {p}: not a resumable run folder (missing {', '.join(missing)}; "
            "it is written after the first epoch)"
        )
    return p


class RunFiles:
    """Writes a run's files (only ever used on rank 0)."""

    def __init__(self, path: Path):
        self.path = path
        (path / "genotypes").mkdir(parents=True, exist_ok=True)

    def write_config(self, recipe: Recipe) -> None:
        (self.path / CONFIG).write_text(recipe_to_yaml(recipe))

    def log(self, line: str) -> None:
        with open(self.path / LOG, "a") as f:
            f.write(line.rstrip("\n") + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop lines after ``last_epoch`` (written before a crash, redone on resume)."""
        p = self.path / METRICS
        if not p.exists():
            return
        keep = [
            ln
            for ln in p.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("epoch", 0) <= last_epoch
        ]
        p.write_text("".join(ln + "\n" for ln in keep))


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    p = Path(run) / METRICS
    if not p.is_file():
        raise PosenfsError(f"{run}: no {METRICS} (not a run folder, or no epoch finished yet)")
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
