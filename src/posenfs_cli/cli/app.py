"""The ``posenfs`` Typer application: global options and command registration."""

from __future__ import annotations

import importlib
import sys

import typer

from posenfs_cli import __version__
from posenfs_cli.cli.common import GlobalState, console, err_console, usage_error

app = typer.Typer(
    name="posenfs",
    help="Pose Neural Fabrics Search: search, train, prune, evaluate, profile and run "
    "part-specific architectures for human pose estimation.",
    no_args_is_help=True,
    invoke_without_command=True,  # so `--version --verbose` sees both flags (root() below)
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,  # static scripts in completions/ (posenfs completions --write)
)


@app.callback()
def root(
    ctx: typer.Context,
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N (default for every command)."
    ),
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="With --version: the environment report for bug reports (as `posenfs env`).",
    ),
) -> None:
    if version:
        if verbose:
            from posenfs_cli.envinfo import format_report, gather

            typer.echo(format_report(gather(device)))
        else:
            console.print(f"posenfs {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        ctx.fail("Missing command.")
    ctx.obj = GlobalState(device=device)


# Command modules register themselves on `app` when imported. Only working commands are listed.
COMMAND_MODULES = [
    "posenfs_cli.cli.search",
    "posenfs_cli.cli.train",
    "posenfs_cli.cli.prune",
    "posenfs_cli.cli.eval",
    "posenfs_cli.cli.profile",
    "posenfs_cli.cli.experiment",
    "posenfs_cli.cli.predict",
    "posenfs_cli.cli.export",
    "posenfs_cli.cli.import_cmd",
    "posenfs_cli.cli.visualize",
    "posenfs_cli.cli.visualize_arch",
    "posenfs_cli.cli.visualize_heatmaps",
    "posenfs_cli.cli.data_cmd",
    "posenfs_cli.cli.completions",
    "posenfs_cli.cli.env",
]


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(app)


_register()


def run_app(args: list[str] | None = None) -> int:
    """Run the app and return its exit status. Outside Click's standalone mode, so that its
    usage errors print as one line like ours (``usage_error``). Typer >= 0.2x vendors Click, so
    its exceptions are recognised by what they carry, not by class."""
    try:
        rv = app(args=args, prog_name="posenfs", standalone_mode=False)
    except Exception as exc:
        name = type(exc).__name__
        if name == "NoArgsIsHelpError":  # a bare group (`posenfs data`): help already printed
            return 2
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):
            return usage_error(exc)
        if name == "Abort":  # end of input at a prompt
            err_console.print("Aborted!")
            return 1
        raise
    return rv if isinstance(rv, int) else 0  # typer.Exit(code) comes back as its code


def main() -> None:
    from posenfs_cli.engine.distributed import end_process

    try:
        code = run_app()
        if code:
            sys.exit(code)
    except SystemExit as exc:
        end_process(exc.code)  # a distributed worker ends here (see engine.distributed)
        raise
    except BaseException as exc:
        end_process(1, exc)
        raise
    end_process(0)


if __name__ == "__main__":
    main()
