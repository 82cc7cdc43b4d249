"""Atomic file writes: a hidden temp file next to the target, then one rename.

Readers (and a resume after a kill) see the old file or the new one, never half of one. A failed
write removes its temp file and becomes a one-line ``PosenfsError`` naming the target; a kill
leaves at most a ``.NAME.tmp-PID`` file, which ``--resume`` deletes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from posenfs_cli.errors import PosenfsError, describe_os_error

TMP_MARK = ".tmp-"


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path``; clean up on any failure."""
    p = Path(path)
    if p.is_dir():
        raise PosenfsError(f"cannot write {p}: it is a folder")
    tmp = temp_name(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # some writers create 0600 files
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PosenfsError(f"cannot write {p}: {describe_os_error(exc)}") from exc
        if type(exc).__name__ == "SafetensorError":  # safetensors' own I/O errors
            raise PosenfsError(f"cannot write {p}: {exc}".splitlines()[0]) from exc
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
