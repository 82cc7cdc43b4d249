"""`posenfs eval --ann-file` on annotation files as people have them, against direct oracles.

COCO numbers are recomputed by pycocotools' COCOeval straight from the results file we wrote;
MPII PCKh by the official formula straight from pred.mat, the annotation JSON and head boxes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from posenfs_cli.config import ModelConfig, Recipe, load_recipe
from posenfs_cli.data.layouts import COCO
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_from_recipe, build_model
from tests.conftest import RECIPES, SHARED_DATA, needs_shared
from tests.helpers import one_error_line, run_eval

STATS = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
COCO_JSON = SHARED_DATA / "coco" / "test_coco.json"
DETS = SHARED_DATA / "coco" / "test_coco_det_AP_H_56.json"
MPII_JSON = SHARED_DATA / "mpii" / "test_mpii.json"


@pytest.fixture(scope="module")
def coco_ckpt(tmp_path_factory):
    recipe = Recipe(model=ModelConfig(backbone="mobilenet_v2", channels=4))
    recipe.data.keypoints = "coco"
    recipe.data.dataset = "coco"
    recipe.data.input_size = [128, 96]
    path = tmp_path_factory.mktemp("ckpt") / "coco.safetensors"
    return save_checkpoint(path, build_model(recipe.model, COCO), recipe)


@pytest.fixture(scope="module")
def mpii_ckpt(tmp_path_factory):
    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["data.keypoints=mpii"])
    path = tmp_path_factory.mktemp("ckpt") / "mpii.safetensors"
    return save_checkpoint(path, build_from_recipe(recipe, load_pretrained=False), recipe)


@pytest.fixture
def noisy_gt(monkeypatch):
    """Make the (random) model's predictions GT + noise, so the metrics are neither 0 nor 1.

    Everything after the forward pass (mapping, results files, scoring) runs for real.
    """
    import posenfs_cli.evaluation.evaluator as evaluator

    real = evaluator.predict

    def predict(*args, **kwargs):
        p = real(*args, **kwargs)
        rng = np.random.default_rng(0)
        joints = p.meta["joints"]
        size = p.meta["scale"][:, 1, None, None] * 200.0  # crop height in pixels
        p.coords = joints[..., :2] + rng.normal(0.0, 0.03, joints[..., :2].shape) * size
        p.scores = np.where(joints[..., 2] > 0, rng.uniform(0.3, 1.0, p.scores.shape), 0.1)
        return p

    monkeypatch.setattr(evaluator, "predict", predict)


def coco_eval_direct(gt: dict, results: list[dict]) -> dict[str, float]:
    from pycocotools.coco import COCO as CocoApi
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = CocoApi()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "keypoints")
        ev.params.imgIds = sorted(coco.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STATS, map(float, ev.stats), strict=True))


def check_against_cocoeval(tmp_path, result, oracle_gt: dict, ann_file) -> dict:
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "eval" / "exp"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["dataset"] == "coco" and summary["ann_file"] == str(ann_file)
    results = json.loads((run / "keypoints_results.json").read_text())
    direct = coco_eval_direct(oracle_gt, results)
    for k in STATS:
        assert summary[k] == pytest.approx(direct[k], abs=1e-12), k
    return summary


@needs_shared
def test_coco_file_with_extra_keypoint_names(coco_ckpt, tmp_path, noisy_gt):
    gt = json.loads(COCO_JSON.read_text())
    gt["categories"][0]["keypoints"] += ["head_top", "neck", "pelvis", "left_big_toe"]
    ann = tmp_path / "extra_names.json"
    ann.write_text(json.dumps(gt))
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", ann, "--image-dir", SHARED_DATA / "coco")
    summary = check_against_cocoeval(tmp_path, res, gt, ann)
    assert 0.05 < summary["ap"] < 0.95
    assert "21 keypoint names" in res.output
    assert "(coco: " in res.output and "synthetic" not in res.output


@needs_shared
def test_coco_file_without_area(coco_ckpt, tmp_path, noisy_gt):
    gt = json.loads(COCO_JSON.read_text())
    for a in gt["annotations"]:
        del a["area"]
    ann = tmp_path / "no_area.json"
    ann.write_text(json.dumps(gt))
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", ann, "--image-dir", SHARED_DATA / "coco")
    oracle = copy.deepcopy(gt)
    for a in oracle["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    summary = check_against_cocoeval(tmp_path, res, oracle, ann)
    assert 0.05 < summary["ap"] < 0.95
    assert "have no 'area'; using the box area" in res.output


@needs_shared
def test_coco_file_without_area_with_detections(coco_ckpt, tmp_path):
    gt = json.loads(COCO_JSON.read_text())
    for a in gt["annotations"]:
        del a["area"]
    ann = tmp_path / "no_area.json"
    ann.write_text(json.dumps(gt))
    res = run_eval(
        coco_ckpt,
        tmp_path,
        "--ann-file",
        ann,
        "--image-dir",
        SHARED_DATA / "coco",
        "--boxes",
        DETS,
        "--box-thr",
        "0.5",
    )
    oracle = copy.deepcopy(gt)
    for a in oracle["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    check_against_cocoeval(tmp_path, res, oracle, ann)


def head_boxes_1based(records: list[dict]) -> np.ndarray:
    """A square around head top and upper neck per record (1-based x1 y1 x2 y2, like MPII)."""
    top = np.array([r["joints"][9] for r in records])
    neck = np.array([r["joints"][8] for r in records])
    c, half = (top + neck) / 2, 0.5 * np.linalg.norm(top - neck, axis=1, keepdims=True)
    return np.concatenate([c - half, c + half], axis=1)


def official_pckh(pred_mat, records: list[dict], boxes: np.ndarray, thr: float = 0.5) -> float:
    """MPII's formula: head size 0.6 × box diagonal, labelled joints, pelvis/thorax left out."""
    preds = loadmat(str(pred_mat))["preds"]  # [N, 16, 2], 1-based like the annotations
    gt = np.array([r["joints"] for r in records], dtype=np.float64)
    vis = np.array([r["joints_vis"] for r in records]) > 0
    headsize = 0.6 * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)
    scaled = np.linalg.norm(preds - gt, axis=2) / headsize[:, None]
    hit = (scaled <= thr) & vis
    cols = [j for j in range(16) if j not in (6, 7)]
    return 100.0 * hit[:, cols].sum() / vis[:, cols].sum()


@needs_shared
@pytest.mark.parametrize("fmt", ["mat", "json"])
def test_mpii_file_with_head_boxes(mpii_ckpt, tmp_path, fmt, noisy_gt):
    records = json.loads(MPII_JSON.read_text())
    boxes = head_boxes_1based(records)
    hb = tmp_path / f"gt_valid.{fmt}"
    if fmt == "mat":
        savemat(str(hb), {"headboxes_src": np.stack([boxes[:, :2].T, boxes[:, 2:].T])})
    else:
        hb.write_text(json.dumps(boxes.tolist()))
    res = run_eval(
        mpii_ckpt,
        tmp_path,
        "--ann-file",
        MPII_JSON,
        "--image-dir",
        SHARED_DATA / "mpii",
        "--head-boxes",
        hb,
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "eval" / "exp"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["dataset"] == "mpii" and summary["head_boxes"] == str(hb)
    expect = official_pckh(run / "pred.mat", records, boxes)
    assert summary["pckh"] == pytest.approx(expect, abs=1e-9)
    assert 5.0 < summary["pckh"] < 95.0
    assert summary["pckh@0.1"] == pytest.approx(
        official_pckh(run / "pred.mat", records, boxes, 0.1), abs=1e-9
    )


@needs_shared
def test_mpii_without_head_boxes_fails_before_the_forward_pass(mpii_ckpt, tmp_path, monkeypatch):
    import posenfs_cli.evaluation.evaluator as evaluator

    def no_forward(*a, **k):
        raise AssertionError("the model ran before head boxes were checked")

    monkeypatch.setattr(evaluator, "predict", no_forward)
    res = run_eval(
        mpii_ckpt, tmp_path, "--ann-file", MPII_JSON, "--image-dir", SHARED_DATA / "mpii"
    )
    assert "--head-boxes" in one_error_line(res)
    assert not (tmp_path / "runs").exists()


@needs_shared
def test_mpii_refuses_boxes_and_coco_refuses_head_boxes(mpii_ckpt, coco_ckpt, tmp_path):
    res = run_eval(
        mpii_ckpt,
        tmp_path,
        "--ann-file",
        MPII_JSON,
        "--image-dir",
        SHARED_DATA / "mpii",
        "--boxes",
        DETS,
    )
    assert "--boxes applies to COCO" in one_error_line(res)
    res = run_eval(
        coco_ckpt,
        tmp_path,
        "--ann-file",
        COCO_JSON,
        "--image-dir",
        SHARED_DATA / "coco",
        "--head-boxes",
        tmp_path / "x.mat",
    )
    assert "--head-boxes applies to MPII" in one_error_line(res)
    args = ["--ann-file", MPII_JSON, "--image-dir", SHARED_DATA / "mpii", "--head-boxes"]
    res = run_eval(mpii_ckpt, tmp_path, *args, tmp_path / "nope.mat")
    assert "head-box file not found" in one_error_line(res)
    (tmp_path / "three.json").write_text(json.dumps([[1, 1, 9, 9]] * 3))
    res = run_eval(mpii_ckpt, tmp_path, *args, tmp_path / "three.json")
    assert "5 records but 3 head boxes" in one_error_line(res)
    assert not (tmp_path / "runs").exists()


@needs_shared
def test_nothing_readable_fails_and_a_share_skipped_warns(coco_ckpt, tmp_path):
    empty = tmp_path / "no_images"
    empty.mkdir()
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", COCO_JSON, "--image-dir", empty)
    assert "nothing can be scored" in one_error_line(res)  # known before the forward pass
    for p in sorted((SHARED_DATA / "coco").glob("*.jpg")):
        (empty / p.name).write_bytes(b"not a jpeg")  # present but undecodable: known after it
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", COCO_JSON, "--image-dir", empty)
    assert res.exit_code == 2 and "Traceback" not in res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "nothing was scored" in err[0], res.output
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", COCO_JSON, "--image-dir", COCO_JSON)
    assert "is a file, not a folder" in one_error_line(res)
    assert not (tmp_path / "runs").exists()
    some = tmp_path / "some"
    some.mkdir()
    for p in sorted((SHARED_DATA / "coco").glob("*.jpg"))[1:]:  # one image missing
        os.symlink(p, some / p.name)
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", COCO_JSON, "--image-dir", some)
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "unreadable image(s) skipped" in res.output
    summary = json.loads((tmp_path / "runs/eval/exp/metrics.json").read_text())
    assert 0 < summary["skipped_images"] < summary["persons"]


@needs_shared
def test_coco_image_without_file_name_is_one_line(coco_ckpt, tmp_path):
    gt = json.loads(COCO_JSON.read_text())
    del gt["images"][1]["file_name"]
    ann = tmp_path / "no_name.json"
    ann.write_text(json.dumps(gt))
    res = run_eval(coco_ckpt, tmp_path, "--ann-file", ann, "--image-dir", SHARED_DATA / "coco")
    assert "has no 'file_name'" in one_error_line(res)
    assert not (tmp_path / "runs").exists()


@needs_shared
def test_nan_model_scores_zero_with_a_count_and_valid_json(tmp_path):
    import torch

    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["data.keypoints=mpii"])
    model = build_from_recipe(recipe, load_pretrained=False)
    with torch.no_grad():
        for p in model.weight_parameters():  # a diverged run: weights NaN, α/β readable
            p.fill_(float("nan"))
    ckpt = save_checkpoint(tmp_path / "nan.safetensors", model, recipe)
    records = json.loads(MPII_JSON.read_text())
    hb = tmp_path / "hb.json"
    hb.write_text(json.dumps(head_boxes_1based(records).tolist()))
    res = run_eval(
        ckpt, tmp_path, "--ann-file", MPII_JSON, "--image-dir", SHARED_DATA / "mpii",
        "--head-boxes", hb,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    labelled = sum(sum(v > 0 for v in r["joints_vis"]) for r in records)
    assert f"{labelled} predicted keypoint(s) were not finite" in res.output

    def refuse(name):
        raise ValueError(name)

    text = (tmp_path / "runs/eval/exp/metrics.json").read_text()
    summary = json.loads(text, parse_constant=refuse)
    assert summary["pckh"] == 0.0 and summary["non_finite_keypoints"] == labelled
