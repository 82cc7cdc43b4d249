"""CLI shell: version, device option, completions kept current."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from posenfs_cli import __version__
from posenfs_cli.cli.app import app
from posenfs_cli.device import select_device
from posenfs_cli.errors import PosenfsError
from posenfs_cli.shell_completion import FILENAMES, SHELLS, render
from tests.conftest import REPO

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"posenfs {__version__}"


@pytest.mark.parametrize("shell", SHELLS)
def test_completions_are_current(shell):
    committed = (REPO / "completions" / FILENAMES[shell]).read_text()
    assert committed == render(shell, app), (
        "completions/ is out of date: run `posenfs completions --write completions/`"
    )


def test_completions_list_commands_and_options():
    bash = render("bash", app)
    assert '\'profile\') subs=""; opts="' in bash and "--recipe" in bash
    assert "profile" in render("fish", app)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(PosenfsError, match="expected auto, cpu"):
        select_device("tpu")
    for bad in ("cuda:x", "cuda:-1", "cuda:+1", "cuda:0:1"):  # refused before torch sees them
        with pytest.raises(PosenfsError, match="cuda:N"):
            select_device(bad)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["eval", "--foo"], "No such option: --foo (see: posenfs eval -h)"),
        (["evl"], "No such command 'evl'. Did you mean 'eval', 'env'? (see: posenfs -h)"),
        (["train", "--epochs", "[red]x"], "Invalid value for '--epochs'"),
        (["prune"], "Missing argument 'checkpoint'. (see: posenfs prune -h)"),
        (["--device", "cpu"], "Missing command. (see: posenfs -h)"),
    ],
)
def test_usage_mistakes_are_one_plain_line(capsys, args, says):
    """What `posenfs` runs (``main`` -> ``run_app``), not the CliRunner: Click's own display of
    these is a usage block and a boxed message."""
    from posenfs_cli.cli.app import run_app

    assert run_app(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert says in err and "╭" not in err


def test_a_bare_group_prints_its_help(capsys):
    from posenfs_cli.cli.app import run_app

    assert run_app(["data"]) == 2
    out, err = capsys.readouterr()
    assert "synth" in out and err == ""


def _help_texts(command, path=("posenfs",)):
    """(where, text) for every command's help and every parameter's help and shown default."""
    yield " ".join(path), command.help or ""
    for param in command.params:
        where = f"{' '.join(path)} {param.name}"
        yield where, getattr(param, "help", None) or ""
        if isinstance(getattr(param, "show_default", None), str):
            yield where, param.show_default
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, (*path, name))


def test_help_texts_survive_rich_markup():
    """`-h` renders help as rich markup: an unescaped "[default: x]" or "[x1, y1]" vanished."""
    import typer.main
    from rich.text import Text

    texts = list(_help_texts(typer.main.get_command(app)))
    assert len(texts) > 100 and any("newest runs/search" in t for _, t in texts)
    eaten = [
        (where, text)
        for where, text in texts
        if Text.from_markup(text).plain != text.replace("\\[", "[")
    ]
    assert eaten == []


def test_checkpoint_default_is_shown(capsys, monkeypatch):
    from posenfs_cli.cli.app import run_app

    monkeypatch.setenv("COLUMNS", "250")  # one help row per line
    assert run_app(["eval", "-h"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "newest runs/search|train/*/best.safetensors" in out
    assert "the checkpoint's" in out
