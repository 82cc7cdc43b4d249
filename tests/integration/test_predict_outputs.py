"""`posenfs predict` output other tools can read, and the warnings a user needs to see."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import COCO
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_model
from tests.conftest import SHARED_DATA, needs_shared

runner = CliRunner()
COCO_DIR = SHARED_DATA / "coco"
COCO_JSON = COCO_DIR / "test_coco.json"
DETS = COCO_DIR / "test_coco_det_AP_H_56.json"


def coco_recipe() -> Recipe:
    recipe = Recipe(model=ModelConfig(backbone="mobilenet_v2", channels=4))
    recipe.data.keypoints = "coco"
    recipe.data.dataset = "coco"
    recipe.data.input_size = [128, 96]
    return recipe


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    recipe = coco_recipe()
    path = tmp_path_factory.mktemp("ckpt") / "coco.safetensors"
    return save_checkpoint(path, build_model(recipe.model, COCO), recipe)


def predict(*args):
    return runner.invoke(app, ["--device", "cpu", "predict", *map(str, args)])


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


def strict_json(path: Path):
    """Parse as a strict reader would: a bare NaN/Infinity is an error."""

    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def image(tmp_path: Path, name: str = "000000000785.jpg", size=(120, 90)) -> Path:
    path = tmp_path / name
    cv2.imwrite(str(path), np.full((size[0], size[1], 3), 110, np.uint8))
    return path


@needs_shared
def test_coco_results_round_trip_equals_eval(ckpt, tmp_path):
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    out, mine = tmp_path / "pred", tmp_path / "mine.json"
    res = predict(
        COCO_DIR, "-c", ckpt, "--boxes", DETS, "--box-thr", "0.5", "--out", out,
        "--coco-results", mine,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for p in sorted(COCO_DIR.glob("*.jpg")):
        for inst in strict_json(out / f"{p.stem}.json"):
            assert inst["image_id"] == int(p.stem)
    ev = runner.invoke(
        app,
        ["--device", "cpu", "eval", str(ckpt), "--ann-file", str(COCO_JSON), "--image-dir",
         str(COCO_DIR), "--boxes", str(DETS), "--box-thr", "0.5", "--workers", "0",
         "--project", str(tmp_path / "runs")],
    )  # fmt: skip
    assert ev.exit_code == 0, ev.output
    run = tmp_path / "runs" / "eval" / "exp"
    theirs = json.loads((run / "keypoints_results.json").read_text())
    ours = strict_json(mine)

    def key(r):
        return (r["image_id"], round(r["score"], 4), round(r["keypoints"][0], 1))

    ours, theirs = sorted(ours, key=key), sorted(theirs, key=key)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a["image_id"] == b["image_id"] and a["category_id"] == 1
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-2)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = CocoApi(str(COCO_JSON))
        e = COCOeval(gt, gt.loadRes(str(mine)), "keypoints")
        e.params.imgIds = sorted(gt.getImgIds())
        e.evaluate()
        e.accumulate()
        e.summarize()
    summary = json.loads((run / "metrics.json").read_text())
    assert e.stats[0] == pytest.approx(summary["ap"], abs=1e-9)
    assert e.stats[5] == pytest.approx(summary["ar"], abs=1e-9)


def test_nan_weights_give_valid_json_with_null_and_a_warning(tmp_path):
    recipe = coco_recipe()
    model = build_model(recipe.model, COCO)
    with torch.no_grad():
        for p in model.weight_parameters():  # a diverged run: weights NaN, α/β readable
            p.fill_(float("nan"))
    ck = save_checkpoint(tmp_path / "nan.safetensors", model, recipe)
    out = tmp_path / "o"
    res = predict(image(tmp_path), "-c", ck, "--out", out, "--overlay")
    assert res.exit_code == 0, res.output
    (inst,) = strict_json(out / "000000000785.json")
    assert inst["keypoints"][0] == [None, None] and inst["keypoint_scores"][0] is None
    assert "17 keypoint(s) were not finite" in res.output and "null" in res.output


def test_boxes_matching_no_image_say_so(ckpt, tmp_path):
    dets = tmp_path / "dets.json"
    dets.write_text(
        json.dumps([{"image_id": 9, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 1}])
    )
    res = predict(image(tmp_path), "-c", ckpt, "--boxes", dets, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "0 persons" in res.output
    assert "no detection in" in res.output and "matches any of the 1 images" in res.output


def test_boxes_outside_the_image_are_clipped_and_reported(ckpt, tmp_path):
    dets = tmp_path / "dets.json"
    boxes = [[-20, 10, 60, 50], [10, 10, 1e12, 1e12], [500, 500, 10, 10], [5, 5, 0, 30]]
    dets.write_text(
        json.dumps([{"image_id": 785, "category_id": 1, "bbox": b, "score": 0.9} for b in boxes])
    )
    out = tmp_path / "o"
    res = predict(image(tmp_path), "-c", ckpt, "--boxes", dets, "--out", out, "--overlay")
    assert res.exit_code == 0, res.output
    got = strict_json(out / "000000000785.json")
    assert [r["bbox"] for r in got] == [[0.0, 10.0, 40.0, 60.0], [10.0, 10.0, 90.0, 120.0]]
    assert "2 box(es) reached outside their image: clipped" in res.output
    assert "2 box(es) of zero size or outside their image: skipped" in res.output
    assert (out / "000000000785_overlay.jpg").is_file()


def test_folder_lists_the_videos_it_did_not_process(ckpt, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    image(folder, "a.jpg")
    (folder / "clip.mp4").write_bytes(b"\x00" * 64)
    (folder / "anim.gif").write_bytes(b"GIF89a")
    res = predict(folder, "-c", ckpt, "--out", tmp_path / "o", "--no-flip")
    assert res.exit_code == 0, res.output
    assert "2 video file(s) in the folder were not processed (anim.gif, clip.mp4)" in res.output
    only = tmp_path / "only_videos"
    only.mkdir()
    (only / "clip.mp4").write_bytes(b"\x00" * 64)
    assert "1 video(s)" in one_error_line(predict(only, "-c", ckpt))


def test_no_keypoint_above_kpt_thr_is_said_once_with_the_best_score(ckpt, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    image(folder, "a.jpg")
    image(folder, "b.jpg")
    out = tmp_path / "o"
    res = predict(folder, "-c", ckpt, "--out", out, "--overlay", "--kpt-thr", "1e9")
    assert res.exit_code == 0, res.output
    assert res.output.count("no keypoint reached --kpt-thr 1e+09") == 1
    best = max(max(r["keypoint_scores"]) for n in "ab" for r in strict_json(out / f"{n}.json"))
    assert f"highest score {best:.3f}" in res.output
    res = predict(folder, "-c", ckpt, "--out", tmp_path / "o2", "--overlay", "--kpt-thr", "-1e9")
    assert "no keypoint reached" not in res.output


def test_coco_results_bad_inputs(ckpt, tmp_path):
    img = image(tmp_path)
    line = one_error_line(predict(img, "-c", ckpt, "--coco-results", tmp_path / "r.json"))
    assert "--coco-results needs --boxes" in line
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    line = one_error_line(
        predict(img, "-c", ckpt, "--boxes", dets, "--coco-results", tmp_path, "--out", tmp_path)
    )
    assert "is a folder" in line
    assert not os.path.exists(tmp_path / "r.json")
