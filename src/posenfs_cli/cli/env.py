"""``posenfs env``: the environment report to paste into a bug report."""

from __future__ import annotations

import json

import typer

from posenfs_cli.cli.common import resolve_device_option, user_errors


@user_errors
def env_command(
    ctx: typer.Context,
    device: str | None = typer.Option(
        None, "--device", help="Which device spec to resolve (default: the global --device)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
) -> None:
    """Print posenfs, Python, torch, CUDA/cuDNN, the device found, threads and library versions.

    Paste the block into a bug report as it is. Same as: posenfs --version --verbose

    Examples:
      posenfs env
      posenfs --device cuda:1 env
      posenfs env --json
    """
    from posenfs_cli.envinfo import format_report, gather

    rows = gather(resolve_device_option(ctx, device))
    typer.echo(json.dumps(dict(rows)) if as_json else format_report(rows))


def register(app: typer.Typer) -> None:
    app.command("env")(env_command)
