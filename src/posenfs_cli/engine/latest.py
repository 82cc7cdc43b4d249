"""The default checkpoint: the newest ``best.safetensors`` of a search or train run.

Commands that take a checkpoint (``predict``, ``eval``, ``profile``, ``export``, ``visualize
heatmaps``) fall back to it when none is given, so ``posenfs search`` followed by
``posenfs predict photo.jpg`` works with no other flag.

Public API::

    RUN_COMMANDS = ("search", "train")
    run_checkpoints(project="runs") -> list[Path]      # newest first
    latest_checkpoint(project="runs") -> Path           # PosenfsError when there is none
    checkpoint_or_latest(path, project="runs") -> tuple[Path, bool]   # (path, was_defaulted)
"""

from __future__ import annotations

from pathlib import Path

from posenfs_cli.engine.run import BEST
from posenfs_cli.errors import PosenfsError

RUN_COMMANDS = ("search", "train")
"""Run folders that hold trained models: ``<project>/<command>/<name>/best.safetensors``."""


def run_checkpoints(project: str | Path = "runs") -> list[Path]:
    """Every ``best.safetensors`` of a search/train run under ``project``, newest first.

    "Newest" is the file's modification time (written at each better validation), ties broken
    by path so the order is stable.
    """
    root = Path(project)
    found = []
    for command in RUN_COMMANDS:
        folder = root / command
        if not folder.is_dir():
            continue
        for path in folder.glob(f"*/{BEST}"):
            try:
                if path.is_file():
                    found.append((path.stat().st_mtime_ns, str(path), path))
            except OSError:  # vanished or unreadable while listing: not a candidate
                continue
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [p for _, _, p in found]


def latest_checkpoint(project: str | Path = "runs") -> Path:
    """The newest run checkpoint under ``project``; a one-line error naming the way to get one."""
    found = run_checkpoints(project)
    if not found:
        where = " or ".join(f"{Path(project) / c}/*/{BEST}" for c in RUN_COMMANDS)
        raise PosenfsError(
            f"no checkpoint given and none found ({where}): train one with `posenfs search` "
            "(or `posenfs train`), or convert the authors' with `posenfs import`, "
            "or pass a .safetensors file"
        )
    return found[0]


def checkpoint_or_latest(
    path: str | Path | None, project: str | Path = "runs"
) -> tuple[Path, bool]:
    """``path`` itself when given, else the newest run checkpoint; the flag says which."""
    if path is not None:
        return Path(path), False
    return latest_checkpoint(project), True


__all__ = ["RUN_COMMANDS", "checkpoint_or_latest", "latest_checkpoint", "run_checkpoints"]
