"""Run folders and resume: pruned runs resume, command/strategy mismatches are refused, reused
folders start clean, torn metrics lines are tolerated, an all-invisible epoch is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.engine import run as runfiles
from posenfs_cli.engine import trainer as trainer_mod
from posenfs_cli.engine.checkpoint import read_checkpoint, save_checkpoint
from posenfs_cli.engine.trainer import Trainer, TrainOptions
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.models.prune import prune_model
from tests.conftest import RECIPES

runner = CliRunner()
TINY_YAML = RECIPES / "synthetic/tiny.yaml"
SETS = [
    "data.synthetic.train_images=8",
    "data.synthetic.val_images=4",
    "train.batch_size=4",
    "eval.batch_size=4",
    "eval.flip=false",
    "data.workers=0",
]
CLI_SETS = [x for s in SETS for x in ("--set", s)]


class Killed(BaseException):
    pass


def _one_line(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def pruned_ckpt(tmp_path) -> Path:
    recipe = load_recipe(TINY_YAML, SETS)
    model = build_model(recipe.model, get_layout("mpii"), load_pretrained=False)
    head = dict(model.cnfs())["head"]
    with torch.no_grad():
        head.alpha[:, 3] = -1e4  # dil_conv has weight exactly 0 on every edge of "head"
    pruned, report = prune_model(model, recipe, 0.0, input_size=[64, 64])
    assert report.removed["head"].ops  # really pruned: the unpruned structure won't fit
    return save_checkpoint(tmp_path / "pruned.safetensors", pruned, recipe)


@pytest.mark.slow
def test_train_from_a_pruned_checkpoint_killed_then_resumed(tmp_path, monkeypatch, pruned_ckpt):
    project = tmp_path / "runs"
    real_save_state = trainer_mod.save_state
    calls = []

    def kill_second(*args, **kwargs):  # epoch 1 commits, epoch 2 is killed before its commit
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_save_state(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(trainer_mod, "save_state", kill_second)
        with pytest.raises(Killed):
            runner.invoke(
                app,
                ["--device", "cpu", "train", "--recipe", str(TINY_YAML), *CLI_SETS]
                + ["--from", str(pruned_ckpt), "--epochs", "2", "--no-progress"]
                + ["--project", str(project), "--name", "p"],
                catch_exceptions=False,
            )
    run = project / "train" / "p"
    resumed = runner.invoke(app, ["--device", "cpu", "train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 1" in resumed.stdout
    rows = runfiles.read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    last = read_checkpoint(run / runfiles.LAST)
    assert last.epoch == 2
    assert last.genotype.cnfs[0].pruned.ops == ("dil_conv_3x3",)

    # the train run cannot be continued by `search`
    wrong = runner.invoke(app, ["--device", "cpu", "search", "--resume", str(run)])
    _one_line(wrong, "this is a train run; continue it with `posenfs train --resume`")


def test_train_resume_refuses_a_search_run(tmp_path):
    recipe = load_recipe(TINY_YAML, [*SETS, "train.epochs=1"])
    run = tmp_path / "search_run"
    Trainer(recipe, TrainOptions("search", run, torch.device("cpu"), progress=False)).fit()
    result = runner.invoke(app, ["--device", "cpu", "train", "--resume", str(run)])
    _one_line(result, "this is a search run; continue it with `posenfs search --resume`")
    # a config edited to another strategy is refused as well
    cfg = (run / runfiles.CONFIG).read_text().replace("strategy: sync", "strategy: darts1")
    (run / runfiles.CONFIG).write_text(cfg)
    result = runner.invoke(app, ["--device", "cpu", "search", "--resume", str(run)])
    _one_line(result, "the run used strategy 'sync', its config now says 'darts1'")


def test_no_visible_joint_anywhere_is_reported(tmp_path):
    """All joints outside the crops: weights 0, loss exactly 0; the run must say so."""
    recipe = load_recipe(TINY_YAML, [*SETS, "train.epochs=1", "train.val_every=5"])
    t = Trainer(recipe, TrainOptions("train", tmp_path / "run", torch.device("cpu")))
    t.opts.progress = False
    t.setup()

    class Invisible(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def set_epoch(self, epoch):
            self.inner.set_epoch(epoch)

        def __getitem__(self, i):
            image, target, weight, meta = self.inner[i]
            return image, target, torch.zeros_like(weight), meta

    t.train_set = Invisible(t.train_set)
    row = t.fit()
    assert row["train_loss"] == 0.0
    log = (tmp_path / "run" / runfiles.LOG).read_text()
    assert "epoch 1: no training crop had a visible joint" in log


def test_visible_joints_give_no_such_warning(tmp_path):
    recipe = load_recipe(TINY_YAML, [*SETS, "train.epochs=1", "train.val_every=5"])
    t = Trainer(recipe, TrainOptions("train", tmp_path / "run", torch.device("cpu")))
    t.opts.progress = False
    assert t.fit()["train_loss"] > 0
    assert "visible joint" not in (tmp_path / "run" / runfiles.LOG).read_text()


# --- run folder units ----------------------------------------------------------------------


def test_pick_run_dir_creates_nothing_and_increments(tmp_path):
    assert runfiles.pick_run_dir(tmp_path, "search", None) == tmp_path / "search" / "exp"
    assert not (tmp_path / "search").exists()
    (tmp_path / "search" / "exp").mkdir(parents=True)
    assert runfiles.pick_run_dir(tmp_path, "search", None).name == "exp2"
    assert runfiles.pick_run_dir(tmp_path, "search", "exp", exist_ok=True).name == "exp"
    (tmp_path / "f").write_text("")
    with pytest.raises(PosenfsError, match="is a file"):
        runfiles.pick_run_dir(tmp_path / "f", "search", None)


def test_reused_folder_starts_clean_but_keeps_user_files(tmp_path):
    run = tmp_path / "r"
    (run / "genotypes").mkdir(parents=True)
    for name in (runfiles.METRICS, runfiles.LAST, runfiles.TRAIN_STATE, runfiles.LOG):
        (run / name).write_text("old\n")
    (run / "genotypes" / "epoch_007.json").write_text("{}")
    (run / ".last.safetensors.tmp-123").write_text("torn")
    (run / "notes.md").write_text("mine\n")
    removed = runfiles.RunFiles(run).start(load_recipe(TINY_YAML))
    assert len(removed) == 6
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert left == [runfiles.CONFIG, "genotypes", "notes.md"]
    assert load_recipe(run / runfiles.CONFIG).name == "tiny"


def test_failed_start_removes_the_folder_it_created(tmp_path, monkeypatch):
    run = tmp_path / "new"

    def boom(self, recipe):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfiles.RunFiles, "write_config", boom)
    with pytest.raises(OSError):
        runfiles.RunFiles(run).start(load_recipe(TINY_YAML))
    assert not run.exists()


def test_torn_last_metrics_line_is_dropped(tmp_path):
    files = runfiles.RunFiles(tmp_path)
    files.append_metrics({"epoch": 1, "train_loss": 0.5})
    files.append_metrics({"epoch": 2, "train_loss": 0.25})
    with open(tmp_path / runfiles.METRICS, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a kill in the middle of the write
    assert [r["epoch"] for r in runfiles.read_metrics(tmp_path)] == [1, 2]
    files.truncate_metrics(1)
    text = (tmp_path / runfiles.METRICS).read_text()
    assert text == json.dumps({"epoch": 1, "train_loss": 0.5}) + "\n"
