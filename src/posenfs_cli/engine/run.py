"""Run folders: ``runs/<command>/<name>/`` with config, metrics, log, checkpoints, genotypes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from posenfs_cli.atomic import atomic_write_text, is_temp_name
from posenfs_cli.config import Recipe, recipe_to_yaml
from posenfs_cli.errors import PosenfsError

LAST = "last.safetensors"
BEST = "best.safetensors"
TRAIN_STATE = "last.train.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
LOG = "log.txt"


NAME_MAX = 255  # bytes in one folder name on common file systems (ext4, APFS, NTFS)


def check_run_name(name: str, option: str = "--name") -> str:
    """A run name is one plain folder name: not empty, no path separator, not ``.``/``..``.

    ``../x`` would put the run outside the project and ``/tmp/x`` anywhere at all; an empty name
    used to fall back to ``exp`` silently.
    """
    name = name.rstrip("/") or name  # `exp1/` as shell completion writes a folder
    if not name.strip():
        raise PosenfsError(f"{option} is empty; give a folder name such as exp1")
    if any(c in name for c in ("/", "\\", "\0")) or name in (".", ".."):
        raise PosenfsError(
            f"{option} {name!r} must be a plain folder name (no '/' or '\\', not '.' or '..')"
        )
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise PosenfsError(f"{option} is longer than {NAME_MAX} bytes; give a shorter name")
    return name


def folder_name(text: str, fallback: str) -> str:
    """A run name made from an input's name (``predict photo.jpg`` -> ``photo``): separators
    become ``_``, and a name that is empty, ``.`` or ``..`` becomes ``fallback``."""
    name = "".join("_" if c in "/\\\0" else c for c in text).strip()
    name = name.encode("utf-8", "surrogateescape")[:NAME_MAX].decode("utf-8", "ignore")
    return fallback if name in ("", ".", "..") else name


def pick_run_dir(
    project: str | Path, command: str, name: str | None, exist_ok: bool = False
) -> Path:
    """``project/command/name``, auto-incremented (exp, exp2, exp3 ...) unless ``exist_ok``.

    A name the user gave that ends in a digit gets a dash before the count (``ev1`` -> ``ev1-2``,
    not ``ev12``, which reads like another name). Creates nothing: the folder appears only once
    the run has validated its inputs.
    """
    base = Path(project) / command
    stem = "exp" if name is None else check_run_name(name)
    for parent in (Path(project), base):
        if parent.exists() and not parent.is_dir():
            raise PosenfsError(f"{parent} is a file, not a folder (given as --project)")
    path = base / stem
    if exist_ok or not path.exists():
        if path.exists() and not path.is_dir():
            raise PosenfsError(f"{path} is a file, not a run folder")
        return path
    root = f"{stem}-" if stem[-1] in "0123456789" else stem
    n = 1
    while True:
        n += 1
        path = base / f"{root}{n}"
        if not path.exists():
            return path


def new_run_dir(
    project: str | Path, command: str, name: str | None, exist_ok: bool = False
) -> Path:
    """``pick_run_dir`` and create it."""
    path = pick_run_dir(project, command, name, exist_ok)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise PosenfsError(f"--resume {p}: no such run folder")
    missing = [f for f in (CONFIG, TRAIN_STATE) if not (p / f).is_file()]
    if missing:
        raise PosenfsError(
            f"--resume {p}: not a resumable run folder (missing {', '.join(missing)}; "
            "it is written after the first epoch)"
        )
    return p


def remove_stale_temps(run: str | Path) -> list[Path]:
    """Delete temp files a killed atomic write left behind (``.NAME.tmp-PID``, ``NAME.tmp``)."""
    removed = []
    for folder in (Path(run), Path(run) / "genotypes"):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            stale = is_temp_name(f.name) or f.name.endswith(".tmp")  # .tmp: older versions
            if stale and f.is_file():
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed


def clear_run_outputs(run: Path) -> list[str]:
    """Delete a previous run's results from a folder reused with ``--exist-ok``.

    Only files a run writes are removed (not anything else the user keeps there), so the new
    run's metrics, checkpoints and genotypes are never mixed with the old run's.
    """
    removed = []
    for name in (METRICS, LOG, LAST, BEST, TRAIN_STATE, CONFIG):
        if (run / name).is_file():
            (run / name).unlink()
            removed.append(name)
    geno = run / "genotypes"
    if geno.is_dir():
        for f in sorted(geno.glob("epoch_*.json")):
            f.unlink()
            removed.append(f"genotypes/{f.name}")
    removed += [str(f.relative_to(run)) for f in remove_stale_temps(run)]
    return removed


def parse_metrics_lines(text: str) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl``; a line a kill cut in half (or any non-row) is skipped."""
    rows = []
    for ln in text.splitlines():
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class RunFiles:
    """Writes a run's files (only ever used on rank 0)."""

    def __init__(self, path: Path):
        self.path = path
        self._pending: list[str] = []  # lines logged before ``start`` created the folder

    def start(self, recipe: Recipe) -> list[str]:
        """Create the folder (or empty a reused one) and write the config; returns what was
        removed from a reused folder. A failure removes a folder this call created."""
        created = not self.path.exists()
        try:
            (self.path / "genotypes").mkdir(parents=True, exist_ok=True)
            removed = clear_run_outputs(self.path)
            self.write_config(recipe)
            for line in self._pending:
                self.log(line)
            self._pending.clear()
        except BaseException:
            if created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        return removed

    def write_config(self, recipe: Recipe) -> None:
        atomic_write_text(self.path / CONFIG, recipe_to_yaml(recipe))

    def log(self, line: str) -> None:
        if not self.path.is_dir():  # setup is still validating: no folder may exist yet
            self._pending.append(line)
            return
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
        keep = [r for r in parse_metrics_lines(p.read_text()) if _epoch(r) <= last_epoch]
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, p)


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    p = Path(run) / METRICS
    if not p.is_file():
        raise PosenfsError(f"{run}: no {METRICS} (not a run folder, or no epoch finished yet)")
    return parse_metrics_lines(p.read_text())


def _epoch(row: dict[str, Any]) -> int:
    e = row.get("epoch", 0)
    return e if isinstance(e, int) and not isinstance(e, bool) else 0
