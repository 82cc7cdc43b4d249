"""User-facing errors: the CLI prints these as one clear line and exits non-zero."""

from __future__ import annotations

import errno
from pathlib import Path


class ConfigError(ValueError):
    """A user mistake in a recipe or an override; the CLI prints it as one line."""


class PosenfsError(Exception):
    """A user mistake or unusable input (bad path, wrong file, incompatible checkpoint)."""


def existing_file(path: str | Path, missing: str, folder: str | None = None) -> Path:
    """``path`` as a Path when it is a file, else a PosenfsError: the ``folder`` message when it
    is a folder (if one is given), the ``missing`` one otherwise; ``{p}`` in them is the path."""
    p = Path(path)
    if folder is not None and p.is_dir():
        raise PosenfsError(folder.format(p=p))
    if not p.is_file():
        raise PosenfsError(missing.format(p=p))
    return p


def folder_out(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path for an output folder (made later if missing); an existing file there
    is a PosenfsError, refused before any work is done."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PosenfsError(f"{option} {p} is a file; {option} needs a folder")
    return p


USER_ERRORS: tuple[type[BaseException], ...] = (
    PosenfsError,
    ConfigError,
    OSError,
    UnicodeDecodeError,
)

_PLAIN = {
    errno.ENOENT: "file not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "name too long",
    errno.ELOOP: "too many symbolic links",
}


_OOM_TEXTS = ("can't allocate memory", "out of memory", "insufficient memory")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: Python's, torch's (CPU or CUDA) or OpenCV's.
    Recognised by its message, since torch and cv2 raise RuntimeError / cv2.error for it."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(t in text for t in _OOM_TEXTS)


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OSError (no path; callers add the one they were working on)."""
    if exc.errno in _PLAIN:
        return _PLAIN[exc.errno]
    return exc.strerror or str(exc) or type(exc).__name__


def user_message(exc: BaseException) -> str:
    """One line for any user error: OSError and UnicodeDecodeError name the file involved."""
    if isinstance(exc, OSError) and not isinstance(exc, PosenfsError):
        where = exc.filename if exc.filename is not None else None
        reason = describe_os_error(exc)
        if where is not None:
            extra = f" -> {exc.filename2}" if exc.filename2 is not None else ""
            return f"{reason}: {where}{extra}"
        return reason
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text (binary data at byte {exc.start})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
