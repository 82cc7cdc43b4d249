"""Bad inputs of predict / export / completions / visualize: one ``error:`` line, rc 2, nothing
written; and paths printed on success are shown literally (no rich markup eaten).

Every case runs in a fresh working folder holding only the fixture files; after a refused
command the folder must hold exactly those files again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.engine.checkpoint import read_checkpoint, save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_from_recipe
from tests.conftest import RECIPES
from tests.helpers import folder_listing, one_error_line

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()
IMAGE = "000000000785.png"  # named by its COCO id, so --boxes matches it


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    """A tiny MPII-layout checkpoint (64x64 input), one with a bad input_format, an image, a
    detections file for it, a run folder with metrics, a plain file and a folder."""
    root = tmp_path_factory.mktemp("inputs")
    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml")
    model = build_from_recipe(recipe, load_pretrained=False)
    save_checkpoint(root / "tiny.safetensors", model, recipe)
    save_checkpoint(root / "bgr2.safetensors", model, recipe, extra={"input_format": "bgr2"})
    cv2.imwrite(str(root / IMAGE), np.full((64, 64, 3), 127, np.uint8))
    # two overlapping boxes: OKS-NMS runs over them (it needs the layout's sigmas)
    dets = [
        {"image_id": 785, "category_id": 1, "bbox": [4, 4, 40, 50], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [6, 5, 40, 50], "score": 0.8},
    ]
    (root / "dets.json").write_text(json.dumps(dets))
    (root / "run").mkdir()
    (root / "run" / "metrics.jsonl").write_text(
        "\n".join(json.dumps({"epoch": e, "train_loss": 1.0 / e}) for e in (1, 2)) + "\n"
    )
    (root / "afile").write_text("not a folder\n")
    (root / "adir").mkdir()
    return root


@pytest.fixture
def work(fixtures, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(fixtures, folder)
    monkeypatch.chdir(folder)
    return folder


PREDICT = ["--device", "cpu", "predict", IMAGE, "-c", "tiny.safetensors"]
CASES = [
    # 1: COCO results need OKS sigmas; an MPII-layout checkpoint has none
    (
        "predict-coco-results-mpii",
        [*PREDICT, "--boxes", "dets.json", "--coco-results", "r.json", "--out", "o6"],
        "--coco-results needs a checkpoint with COCO-style keypoints",
    ),
    # 3: --atol
    (
        "export-atol-nan",
        ["export", "tiny.safetensors", "--atol", "nan", "--out", "ex8.onnx"],
        "--atol must be a finite number >= 0",
    ),
    (
        "export-atol-negative",
        ["export", "tiny.safetensors", "--atol", "-1", "--out", "ex8.onnx"],
        "--atol must be a finite number >= 0",
    ),
    # 4: a checkpoint alone is not an image
    (
        "heatmaps-checkpoint-only",
        ["--device", "cpu", "visualize", "heatmaps", "tiny.safetensors"],
        "no image given",
    ),
    # 5: a named shell with --write that is not a shell
    ("completions-bad-shell-write", ["completions", "foo", "--write", "cdir"], "unknown shell"),
    # 6: visualize option values
    (
        "dataset-cols-0",
        ["visualize", "dataset", "--num", "1", "--input-size", "64", "--cols", "0"],
        "--cols must be >= 1",
    ),
    (
        "dataset-cols-negative",
        ["visualize", "dataset", "--num", "1", "--input-size", "64", "--cols", "-1"],
        "--cols must be >= 1",
    ),
    (
        "heatmaps-box-nan",
        [
            "--device",
            "cpu",
            "visualize",
            "heatmaps",
            "tiny.safetensors",
            IMAGE,
            "--box",
            "nan,0,10,10",
        ],
        "four finite numbers",
    ),
    (
        "heatmaps-box-inf",
        ["visualize", "heatmaps", "tiny.safetensors", IMAGE, "--box", "0,0,inf,10"],
        "four finite numbers",
    ),
    ("curves-keys-empty", ["visualize", "curves", "run", "--keys", ""], "--keys"),
    # 7: thresholds
    ("predict-hog-box-thr-nan", [*PREDICT, "--detector", "hog", "--box-thr", "nan"], "--box-thr"),
    ("predict-boxes-box-thr-2", [*PREDICT, "--boxes", "dets.json", "--box-thr", "2"], "[0, 1]"),
    ("predict-box-thr-negative", [*PREDICT, "--box-thr", "-0.5"], "--box-thr"),
    ("predict-kpt-thr-nan", [*PREDICT, "--overlay", "--kpt-thr", "nan"], "--kpt-thr"),
    ("predict-kpt-thr-inf", [*PREDICT, "--overlay", "--kpt-thr", "inf"], "--kpt-thr"),
    # 8: --out is an existing file
    ("predict-out-is-file", [*PREDICT, "--out", "afile"], "afile is a file; --out needs a folder"),
    # 9: an unknown channel order in the checkpoint
    (
        "export-input-format-bgr2",
        ["export", "bgr2.safetensors", "--out", "b.onnx"],
        "input_format 'bgr2'",
    ),
    (
        "predict-input-format-bgr2",
        ["--device", "cpu", "predict", IMAGE, "-c", "bgr2.safetensors", "--out", "o"],
        "input_format 'bgr2'",
    ),
]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(work, argv, needle):
    before = folder_listing(work)
    one_error_line(runner.invoke(app, argv), needle)
    assert folder_listing(work) == before


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["predict", IMAGE, "--box-thr", "nan"], "--box-thr"),
        (["export", "--atol", "nan"], "--atol"),
        (["visualize", "heatmaps", IMAGE, "--box", "nan,0,1,1"], "--box"),
    ],
    ids=["predict", "export", "heatmaps"],
)
def test_option_errors_come_before_the_newest_checkpoint_line(work, argv, needle):
    """With no checkpoint given, a bad option is the only line (no "using <newest>" first)."""
    best = work / "runs" / "train" / "exp" / "best.safetensors"
    best.parent.mkdir(parents=True)
    shutil.copy(work / "tiny.safetensors", best)
    before = folder_listing(work)
    one_error_line(runner.invoke(app, ["--device", "cpu", *argv]), needle)
    assert folder_listing(work) == before


def test_heatmaps_checkpoint_only_names_the_missing_image_not_the_newest_run(work):
    best = work / "runs" / "search" / "exp" / "best.safetensors"
    best.parent.mkdir(parents=True)
    shutil.copy(work / "tiny.safetensors", best)
    res = runner.invoke(app, ["--device", "cpu", "visualize", "heatmaps", "tiny.safetensors"])
    line = one_error_line(res, "give an IMAGE after the checkpoint tiny.safetensors")
    assert "cannot read image" not in line


def test_checkpoint_input_format_is_validated_in_one_place(fixtures):
    assert read_checkpoint(fixtures / "tiny.safetensors").input_format == "rgb"
    ckpt = read_checkpoint(fixtures / "bgr2.safetensors")
    with pytest.raises(PosenfsError, match=r"bgr2\.safetensors: checkpoint input_format 'bgr2'"):
        _ = ckpt.input_format


def test_boxes_all_below_the_threshold_say_so(work):
    """The warning names the threshold (not 'no detection matches any of the images')."""
    res = runner.invoke(app, [*PREDICT, "--boxes", "dets.json", "--box-thr", "0.95", "--out", "o"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "reached --box-thr 0.95: 2 box(es) scored below it" in text, res.output
    assert "matches any" not in text
    assert json.loads((work / "o" / "000000000785.json").read_text()) == []


def test_some_images_below_the_threshold_are_counted(work):
    cv2.imwrite(str(work / "000000000786.png"), np.full((64, 64, 3), 90, np.uint8))
    dets = json.loads((work / "dets.json").read_text())
    dets.append({"image_id": 786, "category_id": 1, "bbox": [4, 4, 30, 30], "score": 0.1})
    (work / "dets.json").write_text(json.dumps(dets))
    folder = work / "imgs"
    folder.mkdir()
    for name in (IMAGE, "000000000786.png"):
        shutil.move(work / name, folder / name)
    argv = ["--device", "cpu", "predict", "imgs", "-c", "tiny.safetensors", "--boxes"]
    res = runner.invoke(app, [*argv, "dets.json", "--out", "o"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "1 of 2 images have no detection" in text, res.output
    assert "only have boxes scored below --box-thr 0.3 (1 box(es))" in text, res.output


def test_coco_results_with_coco_keypoints_still_work(tmp_path, monkeypatch):
    """The sigma check refuses only layouts without OKS sigmas."""
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["data.keypoints=coco"])
    save_checkpoint("coco.safetensors", build_from_recipe(recipe, load_pretrained=False), recipe)
    cv2.imwrite(IMAGE, np.full((64, 64, 3), 127, np.uint8))
    det = {"image_id": 785, "category_id": 1, "bbox": [4, 4, 40, 50], "score": 0.9}
    Path("dets.json").write_text(json.dumps([det]))
    argv = ["--device", "cpu", "predict", IMAGE, "-c", "coco.safetensors", "--boxes", "dets.json"]
    res = runner.invoke(app, [*argv, "--coco-results", "r.json", "--out", "o"])
    assert res.exit_code == 0, res.output
    results = json.loads(Path("r.json").read_text())
    assert len(results) == 1 and len(results[0]["keypoints"]) == 17 * 3


def test_completions_write_with_a_shell_writes_only_that_script(work):
    res = runner.invoke(app, ["completions", "bash", "--write", "cdir"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (work / "cdir").iterdir()) == ["posenfs.bash"]
    res = runner.invoke(app, ["completions", "--write", "call"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (work / "call").iterdir()) == [
        "_posenfs",
        "posenfs.bash",
        "posenfs.fish",
    ]


def test_completions_write_prints_markup_in_the_path_literally(work):
    res = runner.invoke(app, ["completions", "fish", "--write", "c [bold]x"])
    assert res.exit_code == 0, res.output
    assert "wrote c [bold]x/posenfs.fish" in res.output, res.output


def test_export_prints_markup_in_the_path_literally(work):
    res = runner.invoke(
        app, ["export", "tiny.safetensors", "--batch", "1", "--out", "e [bold]x.onnx"]
    )
    assert res.exit_code == 0, res.output
    assert (work / "e [bold]x.onnx").is_file()
    assert "exported e [bold]x.onnx" in res.output, res.output


def test_visualize_dataset_prints_markup_in_the_path_literally(work):
    out = "d [bold]x.png"
    argv = ["visualize", "dataset", "--num", "2", "--input-size", "64", "--cols", "1"]
    res = runner.invoke(app, [*argv, "--out", out])
    assert res.exit_code == 0, res.output
    assert out in " ".join(res.output.split()), res.output
    assert cv2.imread(str(work / out)) is not None
