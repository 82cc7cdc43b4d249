"""Recipes ship inside the package: found by name or path, and every one is in the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ConfigError, find_recipe, load_recipe, recipe_names, recipes_dir
from tests.conftest import RECIPES, REPO

runner = CliRunner()


def test_recipes_live_in_the_package():
    assert recipes_dir().resolve() == RECIPES.resolve()
    names = recipe_names()
    assert "synthetic/tiny" in names and "mpii/mbv2_p3_h1_c10_256" in names
    assert len(names) == len(list(RECIPES.rglob("*.yaml"))) >= 17


def test_top_level_recipes_is_only_a_link_to_the_packaged_folder():
    top = REPO / "recipes"
    if not top.exists() and not top.is_symlink():
        pytest.skip("no top-level recipes/ link in this checkout")
    assert top.is_symlink() and top.resolve() == RECIPES.resolve()


@pytest.mark.parametrize("text", ["synthetic/tiny", "synthetic/tiny.yaml"])
def test_find_by_name(text):
    assert find_recipe(text) == recipes_dir() / "synthetic" / "tiny.yaml"
    assert load_recipe(text).name == "tiny"


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    (tmp_path / "synthetic").mkdir()
    mine = tmp_path / "synthetic" / "tiny.yaml"
    mine.write_text("name: mine\nmodel:\n  channels: 3\n")
    monkeypatch.chdir(tmp_path)
    assert load_recipe("synthetic/tiny.yaml").name == "mine"
    assert load_recipe(str(mine)).model.channels == 3


@pytest.mark.parametrize("text", ["mpii/nope", "../pyproject", "/etc/passwd.yaml", ""])
def test_unknown_recipe_is_one_clear_error(text):
    with pytest.raises(ConfigError, match="recipe not found") as info:
        find_recipe(text)
    assert "synthetic/tiny" in str(info.value) and "\n" not in str(info.value)


def test_profile_takes_a_recipe_name():
    result = runner.invoke(app, ["profile", "--recipe", "synthetic/tiny", "--no-timing", "--json"])
    assert result.exit_code == 0, result.output
    assert '"name": "tiny"' in result.output


def test_profile_unknown_recipe_name_rc2():
    result = runner.invoke(app, ["profile", "--recipe", "mpii/[bold]nope", "--no-timing"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "recipe not found: mpii/[bold]nope" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_wheel_contains_every_recipe(tmp_path):
    """Build the wheel from a copy of the project and look for every shipped recipe in it."""
    src = tmp_path / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--no-build-isolation"], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:  # no local setuptools: let pip fetch the build backend
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("posenfs-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    names = recipe_names()
    missing = [n for n in names if f"posenfs_cli/recipes/{n}.yaml" not in inside]
    assert not missing, f"recipes missing from the wheel: {missing}"
    assert names
