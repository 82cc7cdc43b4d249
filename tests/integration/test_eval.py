"""`posenfs eval` and the evaluator: GT-as-prediction gives perfect scores on real samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import AugmentConfig, ModelConfig, Recipe, load_recipe
from posenfs_cli.data.coco import COCODataset
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.data.mpii import MPIIDataset
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.evaluation.evaluator import Predictions, score
from posenfs_cli.models.build import build_from_recipe, build_model
from tests.conftest import RECIPES, SHARED_DATA, needs_shared
from tests.helpers import run_eval

runner = CliRunner()


def gt_predictions(ds, headboxes=None) -> Predictions:
    joints = np.stack([ds[i][3]["joints"] for i in range(len(ds))]).astype(np.float64)
    metas = [ds[i][3] for i in range(len(ds))]
    meta = {
        "index": np.arange(len(ds)),
        "image_id": np.array([m["image_id"] for m in metas]),
        "joints": joints,
        "headbox": headboxes if headboxes is not None else np.stack([m["headbox"] for m in metas]),
        "center": np.stack([m["center"] for m in metas]),
        "scale": np.stack([m["scale"] for m in metas]),
        "rotation": np.zeros(len(ds)),
        "score": np.ones(len(ds)),
    }
    return Predictions(joints[..., :2].copy(), (joints[..., 2] > 0).astype(np.float64), meta)


@needs_shared
def test_mpii_gt_as_prediction_is_pckh_100():
    ds = MPIIDataset.from_files(
        SHARED_DATA / "mpii/test_mpii.json",
        SHARED_DATA / "mpii",
        input_size=[256, 256],
        sigma=2.0,
        augment=AugmentConfig(),
        train=False,
    )
    preds = gt_predictions(ds)
    # the samples ship without head boxes: supply a 60x60 box around each head top
    top = preds.meta["joints"][:, MPII.index("head_top"), :2]
    preds.meta["headbox"] = np.concatenate([top - 30, top + 30], axis=1)
    metrics = score(preds, MPII, ds)
    assert metrics["main"] == "pckh" and metrics["pckh"] == pytest.approx(100.0)
    # move every visible right wrist by 0.6 x head size (= 0.6 * 0.6 * 60 * sqrt 2): all misses
    rw = MPII.index("right_wrist")
    moved = preds.coords.copy()
    moved[:, rw, 0] += 0.6 * 0.6 * 60 * np.sqrt(2)
    vis = preds.meta["joints"][:, :, 2] > 0
    metrics = score(Predictions(moved, preds.scores, preds.meta), MPII, ds)
    n14 = vis[:, [j for j in range(16) if j not in (6, 7)]].sum()
    assert metrics["pckh"] == pytest.approx(100.0 * (n14 - vis[:, rw].sum()) / n14)


@needs_shared
def test_coco_gt_as_prediction_is_ap_1():
    ds = COCODataset.from_files(
        SHARED_DATA / "coco/test_coco.json",
        SHARED_DATA / "coco",
        input_size=[256, 192],
        sigma=2.0,
        augment=AugmentConfig(),
        train=False,
    )
    preds = gt_predictions(ds)
    metrics = score(preds, COCO, ds)
    assert metrics["main"] == "ap" and metrics["ap"] == pytest.approx(1.0, abs=1e-3)
    assert set(metrics) >= {"ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl"}


def tiny_checkpoint(tmp_path, keypoints="mpii"):
    recipe = load_recipe(
        RECIPES / "synthetic/tiny.yaml",
        ["data.synthetic.val_images=8", f"data.keypoints={keypoints}"],
    )
    model = build_from_recipe(recipe)
    return save_checkpoint(tmp_path / f"tiny_{keypoints}.safetensors", model, recipe)


def test_eval_cli_synthetic_writes_run_folder(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    result = run_eval(ckpt, tmp_path, "--no-flip")
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "eval" / "exp"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["persons"] == 8 and 0 <= summary["pckh"] <= 100
    assert not {"data_root", "ann_file", "boxes"} & set(summary)  # built-in data: no files
    assert (run / "pred.mat").is_file()
    assert "| model | Head | Shoulder |" in (run / "results.md").read_text()


@needs_shared
def test_eval_cli_coco_samples_with_detections(tmp_path):
    recipe = Recipe(model=ModelConfig(backbone="mobilenet_v2", channels=4))
    recipe.data.keypoints = "coco"
    recipe.data.dataset = "coco"
    recipe.data.input_size = [128, 96]
    ckpt = save_checkpoint(tmp_path / "coco.safetensors", build_model(recipe.model, COCO), recipe)
    result = run_eval(
        ckpt,
        tmp_path,
        "--ann-file",
        SHARED_DATA / "coco/test_coco.json",
        "--image-dir",
        SHARED_DATA / "coco",
        "--boxes",
        SHARED_DATA / "coco/test_coco_det_AP_H_56.json",
        "--box-thr",
        "0.5",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "eval" / "exp"
    results = json.loads((run / "keypoints_results.json").read_text())
    assert results and len(results[0]["keypoints"]) == 51 and results[0]["category_id"] == 1
    assert "| model | AP | AP50 |" in (run / "results.md").read_text()
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["ann_file"] == str(SHARED_DATA / "coco/test_coco.json")
    assert summary["boxes"] == str(SHARED_DATA / "coco/test_coco_det_AP_H_56.json")
    assert summary["box_threshold"] == 0.5 and "data_root" not in summary


def test_eval_cli_mpii_checkpoint_on_coco_is_refused(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    result = runner.invoke(
        app, ["eval", str(ckpt), "--dataset", "coco", "--data-root", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "trained on mpii keypoints" in result.output and "Traceback" not in result.output


def test_eval_counts_an_unreadable_image_from_workers(tmp_path):
    data = tmp_path / "mpii"
    made = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--format",
            "mpii",
            "--out",
            str(data),
            "--images",
            "2",
            "--val-images",
            "4",
            "--size",
            "96",
        ],
    )
    assert made.exit_code == 0, made.output
    val = sorted((data / "images").glob("*val*"))
    assert len(val) == 4
    val[1].write_bytes(b"not a jpeg at all")
    ckpt = tiny_checkpoint(tmp_path)
    result = run_eval(
        ckpt, tmp_path, "--dataset", "mpii", "--data-root", data, "--no-flip", workers=2
    )
    assert result.exit_code == 0, result.output
    assert "1 unreadable image(s) skipped" in result.output
    summary = json.loads((tmp_path / "runs/eval/exp/metrics.json").read_text())
    assert summary["persons"] == 4 and summary["skipped_images"] == 1
    assert summary["data_root"] == str(data) and summary["split"] == "valid"
    assert "boxes" not in summary


@pytest.mark.parametrize("fmt", ["rgb", "bgr"])
def test_eval_feeds_the_channel_order_the_checkpoint_was_trained_on(tmp_path, fmt):
    """Checkpoints imported from the authors' code read BGR crops normalised with the RGB
    statistics (their loader); eval used to feed them RGB, as the predictor does not."""
    from posenfs_cli.data.transforms import normalize_image
    from posenfs_cli.engine.evaluate import prepare
    from posenfs_cli.options import EvalOptions

    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["data.synthetic.val_images=2"])
    ckpt = save_checkpoint(
        tmp_path / "c.safetensors", build_from_recipe(recipe), recipe, extra={"input_format": fmt}
    )
    job = prepare(ckpt, EvalOptions(device="cpu", workers=0))
    sample = job.dataset.prepare(0, job.dataset.source.load(job.dataset.records.images[0]))
    rgb = sample.rgb  # the crop as a picture, RGB whatever the model reads
    expect = normalize_image(np.ascontiguousarray(rgb[..., ::-1] if fmt == "bgr" else rgb))
    assert not np.array_equal(rgb[..., 0], rgb[..., 2])  # a colour crop: the orders differ
    assert torch.equal(sample.image, expect)
