"""Shared CLI plumbing: the console, global options, one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from posenfs_cli.errors import USER_ERRORS, PosenfsError, out_of_memory, user_message

console = Console(stderr=False, highlight=False, emoji=False)  # a path may contain :smile:
err_console = Console(stderr=True, highlight=False, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])

# Options several commands share (Typer reads these defaults per command).
# Shown as the default of checkpoint arguments (``show_default`` escapes it; a "[default: ...]"
# typed into a help text would be eaten as rich markup).
LATEST = "the newest runs/search|train/*/best.safetensors"
O_CHECKPOINT = typer.Argument(None, help="A posenfs .safetensors checkpoint.", show_default=LATEST)
O_DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda[:N].")
O_JSON = typer.Option(False, "--json", help="Print one JSON object instead.")
O_PROJECT = typer.Option(Path("runs"), "--project", help="Parent folder of run folders.")


def command_group(help: str) -> typer.Typer:
    """A group of subcommands (``posenfs data ...``); bare, it prints its help like the app."""
    return typer.Typer(help=help, no_args_is_help=True)


@dataclass
class GlobalState:
    device: str = "auto"


def global_state(ctx: typer.Context | None) -> GlobalState:
    """The options given before the subcommand (``posenfs --device cpu profile ...``)."""
    root = ctx.find_root() if ctx is not None else None
    obj = getattr(root, "obj", None) if root is not None else None
    return obj if isinstance(obj, GlobalState) else GlobalState()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` as one line (the message is plain text, never markup)."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True)
    raise typer.Exit(code)


def usage_error(exc: Any) -> int:
    """Print a Click usage error (unknown option, bad value, no such command) as the same one
    ``error:`` line as every other mistake, with where to look; Click's own display is a usage
    block and a boxed message. Returns its exit status (2)."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see: {ctx.command_path} {ctx.help_option_names[0]})" if ctx is not None else ""
    text = escape(one_line(exc.format_message()) + hint)
    err_console.print(f"[bold red]error:[/] {text}", soft_wrap=True)
    return int(exc.exit_code)


def one_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "unknown error"


def user_errors(func: F) -> F:
    """Turn user mistakes into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            fail(user_message(exc))
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            fail(
                "out of memory: the work is too large for this machine (try a smaller input "
                f"size or batch size); {user_message(exc)}",
                1,
            )
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]  # wraps() keeps the signature; mypy cannot see it


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def check_image_out(path: Path, option: str = "--out") -> Path:
    """Refuse an output image path OpenCV cannot write, before any work is done."""
    if path.is_dir():
        raise PosenfsError(f"{option} {path} is a folder; give an image file name (.png)")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise PosenfsError(
            f"{option} {path}: the file name must end in {', '.join(IMAGE_SUFFIXES)}"
        )
    return path


def resolve_device_option(ctx: typer.Context, local: str | None) -> str:
    """A subcommand's --device wins over the global one."""
    return local if local is not None else global_state(ctx).device


def checkpoint_or_latest(path: Path | None, project: Path | str = "runs", out: Console = console):
    """The given checkpoint, or the newest run's ``best.safetensors`` (announced on one line)."""
    from posenfs_cli.engine.latest import checkpoint_or_latest as lookup

    chosen, defaulted = lookup(path, project)
    if defaulted:
        out.print(
            f"using [bold]{escape(str(chosen))}[/] (the newest run checkpoint)", soft_wrap=True
        )
    return chosen
