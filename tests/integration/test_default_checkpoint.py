"""No checkpoint given: predict/eval/profile/export/visualize use the newest run's best model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.engine.latest import latest_checkpoint, run_checkpoints
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_from_recipe

runner = CliRunner()


def _ckpt(path: Path, mtime: float, channels: int = 4) -> Path:
    recipe = load_recipe("synthetic/tiny", [f"model.channels={channels}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, build_from_recipe(recipe), recipe)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """cwd with runs/search/old (C=4), runs/train/new (C=3, newest), and decoys."""
    monkeypatch.chdir(tmp_path)
    old = _ckpt(Path("runs/search/old/best.safetensors"), 1_000_000, channels=4)
    new = _ckpt(Path("runs/train/new/best.safetensors"), 2_000_000, channels=3)
    # not candidates: a newer last.safetensors, and best files of other commands
    _ckpt(Path("runs/search/old/last.safetensors"), 3_000_000)
    _ckpt(Path("runs/eval/x/best.safetensors"), 3_000_000)
    _ckpt(Path("runs/predict/x/best.safetensors"), 3_000_000)
    return old, new


def _image(path: Path) -> Path:
    img = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def first_line(result) -> str:
    return next(ln for ln in result.output.splitlines() if ln.strip())


def test_lookup_orders_by_time_and_ignores_other_files(runs):
    old, new = runs
    assert run_checkpoints("runs") == [new, old]
    assert latest_checkpoint("runs") == new
    os.utime(old, (4_000_000, 4_000_000))
    assert latest_checkpoint() == old


def test_lookup_with_nothing_says_how_to_get_one(tmp_path):
    (tmp_path / "runs" / "search" / "exp").mkdir(parents=True)  # a run that never saved
    with pytest.raises(PosenfsError) as info:
        latest_checkpoint(tmp_path / "runs")
    msg = str(info.value)
    assert "posenfs search" in msg and "posenfs import" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "img.jpg"],
        ["eval"],
        ["profile", "--no-timing"],
        ["export"],
        ["visualize", "heatmaps", "img.jpg"],
    ],
)
def test_no_checkpoint_anywhere_is_one_line_rc2(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "img.jpg")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "posenfs search" in lines[0] and "posenfs import" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs" / "predict").exists()  # nothing half-written
    assert not (tmp_path / "runs" / "eval").exists()


def test_profile_uses_the_newest(runs):
    _, new = runs
    result = runner.invoke(app, ["profile", "--no-timing"])
    assert result.exit_code == 0, result.output
    assert first_line(result) == f"using {new} (the newest run checkpoint)"
    # --json: stdout stays one JSON object, the note goes to stderr
    result = runner.invoke(app, ["profile", "--no-timing", "--json"])
    assert result.exit_code == 0, result.output
    assert str(new) in result.stderr
    report = json.loads(result.stdout)
    assert report["params_total"] > 0


def test_profile_checkpoint_and_recipe_together_is_an_error(runs):
    _, new = runs
    result = runner.invoke(app, ["profile", str(new), "--recipe", "synthetic/tiny"])
    assert result.exit_code == 2 and "not both" in result.output


def test_eval_uses_the_newest(runs, tmp_path):
    _, new = runs
    result = runner.invoke(app, ["--device", "cpu", "eval", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert first_line(result) == f"using {new} (the newest run checkpoint)"
    summary = json.loads((tmp_path / "runs/eval/exp/metrics.json").read_text())
    assert summary["checkpoint"] == str(new)


def test_visualize_heatmaps_with_the_image_only(runs, tmp_path):
    _, new = runs
    img = _image(tmp_path / "person.jpg")
    out = tmp_path / "h.png"
    result = runner.invoke(app, ["visualize", "heatmaps", str(img), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert first_line(result) == f"using {new} (the newest run checkpoint)"
    assert cv2.imread(str(out)) is not None
    # both arguments still work as before, and nothing is announced
    result = runner.invoke(app, ["visualize", "heatmaps", str(new), str(img), "--out", str(out)])
    assert result.exit_code == 0 and "newest" not in result.output


def test_export_uses_the_newest(runs):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    _, new = runs
    result = runner.invoke(app, ["export"])
    assert result.exit_code == 0, result.output
    assert first_line(result) == f"using {new} (the newest run checkpoint)"
    assert new.with_suffix(".onnx").is_file()


def test_search_then_predict_with_no_flag(tmp_path, monkeypatch):
    """The README's flow: `posenfs search`, then `posenfs predict img.jpg --overlay`."""
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(
        app,
        ["--device", "cpu", "search", "--recipe", "synthetic/tiny", "--epochs", "1"]
        + ["--set", "data.synthetic.train_images=8", "--set", "data.synthetic.val_images=4"]
        + ["--no-progress"],
    )
    assert done.exit_code == 0, done.output
    _image(tmp_path / "img.jpg")
    result = runner.invoke(app, ["--device", "cpu", "predict", "img.jpg", "--overlay"])
    assert result.exit_code == 0, result.output
    best = Path("runs/search/exp/best.safetensors")
    assert first_line(result) == f"using {best} (the newest run checkpoint)"
    out = tmp_path / "runs" / "predict" / "img"
    people = json.loads((out / "img.json").read_text())
    assert len(people) == 1 and len(people[0]["keypoints"]) == 16
    assert cv2.imread(str(out / "img_overlay.jpg")) is not None
