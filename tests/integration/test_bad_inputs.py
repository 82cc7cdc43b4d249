"""Bad inputs × commands: exit code 2, exactly one line on stderr, no traceback, nothing left.

Every case runs in a fresh working folder holding only the fixture files; after the command the
folder must hold exactly those files again (no run folder, no half-written output, no temp file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_model
from posenfs_cli.nas.genotype import model_genotype
from tests.conftest import RECIPES
from tests.helpers import folder_listing, one_error_line

runner = CliRunner()
TINY_YAML = RECIPES / "synthetic/tiny.yaml"
TINY = ["--recipe", str(TINY_YAML), "--no-progress", "--epochs", "1"]


def _model(keypoints: str = "mpii"):
    recipe = load_recipe(TINY_YAML)
    recipe.data.keypoints = keypoints
    return build_model(recipe.model, get_layout(keypoints), load_pretrained=False), recipe


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    """Input files shared by all cases (copied into each case's working folder)."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    model, recipe = _model()
    save_checkpoint(root / "tiny.safetensors", model, recipe)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    save_checkpoint(root / "nan.safetensors", model, recipe)
    data = (root / "tiny.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    geno = model_genotype(_model()[0], "mpii").to_json()
    (root / "geno.json").write_text(json.dumps(geno))
    coco_model, _ = _model("coco")
    (root / "coco_geno.json").write_text(json.dumps(model_genotype(coco_model, "coco").to_json()))
    no_cells = json.loads(json.dumps(geno))
    del no_cells["cnfs"][0]["cells"]
    (root / "no_cells.json").write_text(json.dumps(no_cells))
    (root / "list.json").write_text("[]")
    (root / "binary.json").write_bytes(bytes(range(256)) * 4)
    (root / "afile").write_text("not a folder\n")
    (root / "adir").mkdir()
    (root / "adir" / "keep.txt").write_text("x\n")
    (root / "r[bold].yaml").write_text("model: [\n")
    import pickle

    (root / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    import cv2
    import numpy as np

    cv2.imwrite(str(root / "img.png"), np.full((64, 48, 3), 127, np.uint8))
    return root


def _workdir(fixtures: Path, tmp_path: Path, monkeypatch) -> Path:
    import shutil

    work = tmp_path / "work"
    shutil.copytree(fixtures, work)
    monkeypatch.chdir(work)
    return work


# (id, argv, the text the one line must contain)
CASES = [
    # --- search / train: recipe values ---
    ("train-lr-negative", ["train", *TINY, "--lr", "-1"], "train.lr must be a finite number >= 0"),
    ("search-lr-nan", ["search", *TINY, "--set", "train.lr=.nan"], "train.lr must be"),
    ("search-sigma-0", ["search", *TINY, "--set", "data.sigma=0"], "data.sigma must be"),
    ("train-sigma-neg", ["train", *TINY, "--set", "data.sigma=-2"], "data.sigma must be"),
    ("search-batch-0", ["search", *TINY, "--batch-size", "0"], "train.batch_size must be"),
    ("search-val-every-0", ["search", *TINY, "--val-every", "0"], "train.val_every"),
    ("search-workers-neg", ["search", *TINY, "--workers", "-1"], "data.workers"),
    ("search-flip-prob", ["search", *TINY, "--set", "data.augment.flip_prob=2"], "in [0, 1]"),
    (
        "search-input-size-brackets",
        ["search", *TINY, "--set", "data.input_size=[30,30]"],
        "data.input_size must be [height, width]",
    ),
    # --- search / train: files and folders ---
    ("search-project-is-file", ["search", *TINY, "--project", "afile"], "afile is a file"),
    ("search-recipe-folder", ["search", "--recipe", "adir"], "adir is a folder"),
    ("search-recipe-markup-missing", ["search", "--recipe", "x[/]y.yaml"], "x[/]y.yaml"),
    ("search-recipe-markup-bad-yaml", ["search", "--recipe", "r[bold].yaml"], "r[bold].yaml"),
    ("search-recipe-binary", ["search", "--recipe", "binary.json"], "binary data"),
    ("train-genotype-binary", ["train", *TINY, "--genotype", "binary.json"], "binary data"),
    ("train-genotype-folder", ["train", *TINY, "--genotype", "adir"], "adir is a folder"),
    ("train-genotype-no-cells", ["train", *TINY, "--genotype", "no_cells.json"], "'cells'"),
    ("train-genotype-list", ["train", *TINY, "--genotype", "list.json"], "not a posenfs genotype"),
    (
        "train-genotype-coco-in-mpii",
        ["train", *TINY, "--genotype", "coco_geno.json"],
        "searched with coco keypoints, this run uses mpii",
    ),
    ("train-from-folder", ["train", *TINY, "--from", "adir"], "adir is a folder"),
    ("train-from-truncated", ["train", *TINY, "--from", "truncated.safetensors"], "truncated"),
    ("search-resume-file", ["search", "--resume", "afile"], "no such run folder"),
    (
        "search-resume-with-options",
        ["search", "--resume", "adir", "--epochs", "2", "--set", "foo.bar=1"],
        "--epochs, --set would be ignored",
    ),
    (
        "train-from-with-model-options",
        ["train", *TINY, "--from", "tiny.safetensors", "--parts", "5", "--set", "model.layers=5"],
        "--parts, --set model.layers=5 would be ignored",
    ),
    (
        "search-epochs-and-set-epochs",
        ["search", *TINY, "--set", "train.epochs=9"],
        "--epochs and --set train.epochs both set train.epochs",
    ),
    # --- profile ---
    (
        "profile-threads-negative",
        ["profile", "--recipe", "synthetic/tiny", "--threads", "-2", "--no-timing"],
        "--threads must be >= 1",
    ),
    (
        "profile-checkpoint-with-set",
        ["profile", "tiny.safetensors", "--set", "model.channels=8", "--no-timing"],
        "--set changes a recipe",
    ),
    (
        "profile-recipe-lr",
        ["profile", "--recipe", "synthetic/tiny", "--set", "train.lr=-1", "--no-timing"],
        "train.lr",
    ),
    ("profile-folder", ["profile", "adir", "--no-timing"], "adir is a folder"),
    ("profile-truncated", ["profile", "truncated.safetensors"], "not a safetensors checkpoint"),
    # --- eval ---
    ("eval-workers-neg", ["eval", "tiny.safetensors", "--workers", "-1"], "workers must be >= 0"),
    ("eval-batch-0", ["eval", "tiny.safetensors", "--batch-size", "0"], "batch size must be >= 1"),
    ("eval-split-synthetic", ["eval", "tiny.safetensors", "--split", "foo"], "one validation set"),
    (
        "eval-split-with-ann-file",
        [
            "eval",
            "tiny.safetensors",
            "--ann-file",
            "list.json",
            "--image-dir",
            "adir",
            "--split",
            "x",
        ],
        "with --ann-file it is unused",
    ),
    (
        "eval-set-model-key",
        ["eval", "tiny.safetensors", "--set", "model.channels=8"],
        "data.* and eval.* keys only; model.channels=8 would be ignored",
    ),
    ("eval-name-escapes", ["eval", "tiny.safetensors", "--name", "../x"], "plain folder name"),
    # --- data synth ---
    ("synth-size-0", ["data", "synth", "--out", "d", "-n", "2", "--size", "0"], "32..4096 px"),
    ("synth-size-huge", ["data", "synth", "--out", "d", "-n", "2", "--size", "99999"], "32..4096"),
    ("synth-seed-neg", ["data", "synth", "--out", "d", "-n", "2", "--seed", "-1"], "seed must be"),
    ("synth-people-0", ["data", "synth", "--out", "d", "-n", "2", "--max-people", "0"], ">= 1"),
    ("synth-out-file", ["data", "synth", "--out", "afile", "-n", "2"], "afile is a file"),
    # --- import ---
    ("import-folder", ["import", "adir", "--out", "x.safetensors"], "adir is a folder"),
    ("import-plain-pickle", ["import", "plain.pkl", "--inspect"], "not a torch.save file"),
    # --- completions ---
    ("completions-write-file", ["completions", "--write", "afile"], "afile is a file"),
    # --- prune ---
    ("prune-nan", ["prune", "nan.safetensors", "--no-timing"], "non-finite values"),
    ("prune-out-folder", ["prune", "tiny.safetensors", "--out", "adir"], "adir is a folder"),
    ("prune-ckpt-folder", ["prune", "adir"], "adir is a folder"),
    ("prune-markup-missing", ["prune", "a[/]b.safetensors"], "a[/]b.safetensors"),
    ("prune-emoji-code-missing", ["prune", "a:smile:b.safetensors"], "a:smile:b.safetensors"),
    # --- visualize ---
    (
        "visualize-dataset-out-txt",
        ["visualize", "dataset", "--num", "1", "--input-size", "64", "--out", "x.txt"],
        "must end in .png",
    ),
    (
        "visualize-dataset-out-folder",
        ["visualize", "dataset", "--num", "1", "--input-size", "64", "--out", "adir"],
        "adir is a folder",
    ),
    (
        "visualize-heatmaps-out-txt",
        ["visualize", "heatmaps", "tiny.safetensors", "img.png", "--out", "x.txt"],
        "must end in .png",
    ),
    ("visualize-arch-binary", ["visualize", "arch", "binary.json"], "binary data"),
    ("visualize-arch-no-cells", ["visualize", "arch", "no_cells.json"], "'cells'"),
    ("visualize-arch-out-file", ["visualize", "arch", "geno.json", "--out", "afile"], "is a file"),
    (
        "visualize-curves-out-folder",
        ["visualize", "curves", "adir", "--out", "adir"],
        "adir is a folder",
    ),
    (
        "visualize-diff-markup-missing",
        ["visualize", "genotype-diff", "a[/].json", "geno.json"],
        "a[/].json",
    ),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(fixtures, tmp_path, monkeypatch, argv, needle):
    work = _workdir(fixtures, tmp_path, monkeypatch)
    before = folder_listing(work)
    result = runner.invoke(app, ["--device", "cpu", *argv])
    one_error_line(result, needle)
    assert folder_listing(work) == before


def test_disk_full_during_a_checkpoint_write_names_the_file_and_cleans_up(tmp_path, monkeypatch):
    """ENOSPC in the middle of safetensors' write: one clear error, no temp file, old file kept."""
    import errno

    from posenfs_cli.engine import checkpoint as ckpt_mod
    from posenfs_cli.errors import PosenfsError

    model, recipe = _model()
    path = save_checkpoint(tmp_path / "c.safetensors", model, recipe)
    old = path.read_bytes()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_file", full)
    with pytest.raises(PosenfsError, match=r"cannot write .*c\.safetensors: no space left"):
        save_checkpoint(path, model, recipe, epoch=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    assert path.read_bytes() == old


def test_read_only_folder_is_one_line(fixtures, tmp_path, monkeypatch):
    """A read-only place for the run folder (simulated: tests may run as root)."""
    import errno

    work = _workdir(fixtures, tmp_path, monkeypatch)
    before = folder_listing(work)
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if "runs" in self.parts:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = runner.invoke(
        app, ["--device", "cpu", "train", *TINY, "--set", "data.synthetic.train_images=2"]
    )
    line = one_error_line(result, "read-only file system")
    assert "runs" in line
    assert folder_listing(work) == before


def test_checkpoints_get_the_normal_file_mode(tmp_path):
    import os
    import stat

    from posenfs_cli.atomic import current_umask

    model, recipe = _model()
    path = save_checkpoint(tmp_path / "c.safetensors", model, recipe)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~current_umask()


def test_nan_checkpoint_is_not_called_no_visible_change(fixtures):
    """prune_model itself refuses (the CLI verdict used to say 'no visible change')."""
    from posenfs_cli.engine.checkpoint import build_from_checkpoint
    from posenfs_cli.errors import PosenfsError
    from posenfs_cli.models.prune import prune_model

    model, ckpt = build_from_checkpoint(fixtures / "nan.safetensors")
    with pytest.raises(PosenfsError, match="non-finite"):
        prune_model(model, ckpt.recipe, threshold=0.1, input_size=[64, 64])
    assert math.isnan(float(next(model.parameters()).detach().view(-1)[0]))


def test_profile_accepts_the_recipe_names_search_accepts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["--device", "cpu", "profile", "--recipe", "synthetic/tiny", "--no-timing", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["name"] == "tiny" and report["params_total"] > 0


def test_out_of_memory_is_one_line(capsys):
    """An allocation failure (torch, cv2 or Python) is one line with what to try, rc 1."""
    import typer

    from posenfs_cli.cli.common import user_errors

    @user_errors
    def runs_out() -> None:
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes.\nmore"
        )

    with pytest.raises(typer.Exit) as exit_info:
        runs_out()
    assert exit_info.value.exit_code == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: out of memory")
    assert "smaller input size" in lines[0] and "you tried to allocate 1 bytes" in lines[0]

    @user_errors
    def other_bug() -> None:
        raise RuntimeError("a shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # real bugs keep their traceback
        other_bug()
