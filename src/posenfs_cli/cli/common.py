"""Shared CLI plumbing: the console, global options, one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from posenfs_cli.errors import USER_ERRORS

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class GlobalState:
    device: str = "auto"


def global_state(ctx: typer.Context | None) -> GlobalState:
    """The options given before the subcommand (``posenfs --device cpu profile ...``)."""
    root = ctx.find_root() if ctx is not None else None
    obj = getattr(root, "obj", None) if root is not None else None
    return obj if isinstance(obj, GlobalState) else GlobalState()


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn user mistakes into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            msg = str(exc) if not isinstance(exc, FileNotFoundError) else _fnf(exc)
            fail(msg.splitlines()[0] if msg else type(exc).__name__)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]  # wraps() keeps the signature; mypy cannot see it


def _fnf(exc: FileNotFoundError) -> str:
    if exc.filename:
        return f"file not found: {exc.filename}"
    return str(exc)


def resolve_device_option(ctx: typer.Context, local: str | None) -> str:
    """A subcommand's --device wins over the global one."""
    return local if local is not None else global_state(ctx).device
