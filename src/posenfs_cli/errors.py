"""User-facing errors: the CLI prints these as one clear line and exits non-zero."""

from __future__ import annotations

from posenfs_cli.config import ConfigError


class PosenfsError(Exception):
    """A user mistake or unusable input (bad path, wrong file, incompatible checkpoint)."""


USER_ERRORS: tuple[type[BaseException], ...] = (PosenfsError, ConfigError, FileNotFoundError)
