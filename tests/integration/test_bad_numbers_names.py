"""Bad numbers and names: seeds, thread counts, huge input sizes, run names.

Each bad value is refused with exit code 2 and one ``error:`` line before anything is built, and
leaves no run folder (nor any other file) behind. Nothing here trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ConfigError, load_recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_model
from posenfs_cli.options import size_value
from tests.conftest import RECIPES
from tests.helpers import folder_listing, one_error_line

runner = CliRunner()
TINY_YAML = RECIPES / "synthetic/tiny.yaml"
TINY = ["--recipe", str(TINY_YAML), "--no-progress", "--epochs", "1", "--project", "runs"]
EXP = [str(TINY_YAML), "--no-progress", "--project", "runs"]
TOO_MANY_THREADS = str((os.cpu_count() or 1) + 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    recipe = load_recipe(TINY_YAML)
    torch.manual_seed(0)
    model = build_model(recipe.model, get_layout(recipe.data.keypoints), load_pretrained=False)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, recipe)


@pytest.fixture
def work(tmp_path, monkeypatch, checkpoint) -> Path:
    """A working folder below tmp_path (so an escaping --name would land in tmp_path)."""
    import shutil

    folder = tmp_path / "a" / "work"
    folder.mkdir(parents=True)
    shutil.copy(checkpoint, folder / "tiny.safetensors")
    (folder / "bad_seeds.yaml").write_text(
        f"name: badseeds\nseeds: [0, -1]\nruns:\n  - name: t\n    recipe: {TINY_YAML}\n"
    )
    monkeypatch.chdir(folder)
    return folder


# (id, argv, the text the one line must contain)
CASES = [
    # 1. train.seed: [0, 2**63 - 1] (torch seeds are 64-bit; samplers add the epoch)
    ("search-seed-negative", ["search", *TINY, "--seed", "-1"], "train.seed must be an integer"),
    (
        "search-seed-too-large",
        ["search", *TINY, "--seed", "99999999999999999999"],
        "train.seed must be an integer in [0, 9223372036854775807]",
    ),
    ("train-seed-set", ["train", *TINY, "--set", "train.seed=9223372036854775808"], "train.seed"),
    # 2. experiment seeds
    ("experiment-seeds-negative", ["experiment", *EXP, "--seeds", "-1"], "[0, 922337203"),
    ("experiment-seeds-range", ["experiment", *EXP, "--seeds", "0-4294967295"], "at most 1000"),
    ("experiment-yaml-seeds", ["experiment", "bad_seeds.yaml", "--project", "runs"], "seeds"),
    # (experiment runs are checked by the same rules as search/train, before any folder)
    ("experiment-sigma-0", ["experiment", *EXP, "--set", "data.sigma=0"], "data.sigma must be"),
    # 3. threads: 1 .. the machine's CPU count, one rule for experiment and profile
    ("experiment-threads-neg", ["experiment", *EXP, "--threads", "-1"], "--threads must be >= 1"),
    ("experiment-threads-0", ["experiment", *EXP, "--threads", "0"], "--threads must be >= 1"),
    (
        "experiment-threads-over-cpus",
        ["experiment", *EXP, "--threads", TOO_MANY_THREADS],
        "CPU count",
    ),
    ("experiment-threads-huge", ["experiment", *EXP, "--threads", "100000"], "at most"),
    (
        "profile-threads-huge",
        ["profile", "tiny.safetensors", "--threads", "100000", "--no-timing"],
        "at most",
    ),
    (
        "profile-threads-over-cpus",
        ["profile", "--recipe", "synthetic/tiny", "--threads", TOO_MANY_THREADS, "--no-timing"],
        "CPU count",
    ),
    # 4. input sizes: multiples of 32, at most 4096 per side
    (
        "prune-input-size-huge",
        ["prune", "tiny.safetensors", "--input-size", "100000", "--no-timing"],
        "between 32 and 4096",
    ),
    (
        "profile-input-size-huge",
        ["profile", "tiny.safetensors", "--input-size", "100000", "--no-timing"],
        "between 32 and 4096",
    ),
    (
        "visualize-dataset-input-size-huge",
        ["visualize", "dataset", "--input-size", "100000", "--num", "1", "--out", "v3.png"],
        "between 32 and 4096",
    ),
    (
        "search-input-size-huge",
        ["search", *TINY, "--set", "data.input_size=[4128,256]"],
        "data.input_size must be [height, width]",
    ),
    # 5. run names: one plain folder name
    ("search-name-empty", ["search", *TINY, "--name", ""], "--name is empty"),
    ("search-name-blank", ["search", *TINY, "--name", "  "], "--name is empty"),
    ("search-name-escape", ["search", *TINY, "--name", "../../escaped"], "plain folder name"),
    ("train-name-dotdot", ["train", *TINY, "--name", ".."], "plain folder name"),
    ("search-name-dot", ["search", *TINY, "--name", "."], "plain folder name"),
    ("search-name-nested", ["search", *TINY, "--name", "a/b"], "plain folder name"),
    ("experiment-name-empty", ["experiment", *EXP, "--name", ""], "--name is empty"),
    ("experiment-name-escape", ["experiment", *EXP, "--name", "../../x"], "plain folder name"),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_number_or_name_is_one_line_and_leaves_nothing(work, tmp_path, argv, needle):
    before = folder_listing(tmp_path)
    result = runner.invoke(app, ["--device", "cpu", *argv])
    one_error_line(result, needle)
    assert folder_listing(tmp_path) == before


def test_absolute_name_is_refused_and_not_created(work, tmp_path):
    target = tmp_path / "abs"
    before = folder_listing(tmp_path)
    result = runner.invoke(app, ["--device", "cpu", "search", *TINY, "--name", str(target)])
    one_error_line(result, "plain folder name")
    assert not target.exists()
    assert folder_listing(tmp_path) == before


def test_threads_left_out_keeps_the_default(work):
    n = torch.get_num_threads()
    result = runner.invoke(
        app, ["--device", "cpu", "profile", "--recipe", "synthetic/tiny", "--no-timing", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == n


def test_api_input_size_list_has_the_same_cap():
    assert size_value([384, 288]) == [384, 288]
    assert size_value("4096") == [4096, 4096]
    with pytest.raises(ConfigError, match="between 32 and 4096"):
        size_value([100000, 100000])
    with pytest.raises(ConfigError, match="between 32 and 4096"):
        size_value("4128x256")


def test_seed_limits_are_accepted_by_the_recipe_rules():
    from posenfs_cli.config import check_recipe_values, set_values

    rec = load_recipe(TINY_YAML)
    for seed in (0, 2**32, 1_700_000_000_000, 2**63 - 1):  # 0.1.0 took any of these
        check_recipe_values(set_values(rec, {"train.seed": seed}))


# 6. an explicit name that ends in a digit gets a dash before the count
def test_explicit_name_ending_in_a_digit_counts_with_a_dash(tmp_path):
    (tmp_path / "search" / "ev1").mkdir(parents=True)
    assert runfiles.pick_run_dir(tmp_path, "search", "ev1").name == "ev1-2"
    (tmp_path / "search" / "ev1-2").mkdir()
    assert runfiles.pick_run_dir(tmp_path, "search", "ev1").name == "ev1-3"
    (tmp_path / "search" / "abc").mkdir()
    assert runfiles.pick_run_dir(tmp_path, "search", "abc").name == "abc2"
    (tmp_path / "search" / "exp").mkdir()
    assert runfiles.pick_run_dir(tmp_path, "search", None).name == "exp2"
    (tmp_path / "search" / "exp2").mkdir()
    assert runfiles.pick_run_dir(tmp_path, "search", None).name == "exp3"
    assert runfiles.pick_run_dir(tmp_path, "search", "ev1", exist_ok=True).name == "ev1"


def test_names_made_from_inputs_are_cleaned_not_refused(tmp_path):
    """predict names its run after the input: any legal file name must give a folder."""
    assert runfiles.folder_name("photo", "images") == "photo"
    assert runfiles.folder_name("a\\b", "images") == "a_b"
    for odd in ("", ".", "..", "  "):
        assert runfiles.folder_name(odd, "images") == "images"
    long = runfiles.folder_name("é" * 300, "images")
    assert len(long.encode()) <= runfiles.NAME_MAX and long == "é" * 127
    assert runfiles.pick_run_dir(tmp_path, "search", "exp1/").name == "exp1"  # completion's /


def test_large_seeds_of_older_runs_still_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["--device", "cpu", "search", *TINY, "--seed", str(2**63 - 1)])
    assert result.exit_code == 0, result.output
