"""`posenfs visualize heatmaps`: prediction + one heatmap tile per body part."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_from_recipe
from posenfs_cli.vis.heatmaps import part_heatmaps
from tests.conftest import RECIPES

runner = CliRunner()


def checkpoint(tmp_path):
    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["model.parts=5"])
    return save_checkpoint(tmp_path / "t.safetensors", build_from_recipe(recipe), recipe)


def test_part_maps_sum_to_the_merged_output():
    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml", ["model.parts=8"])
    model = build_from_recipe(recipe).eval()
    merged, parts = part_heatmaps(model, torch.randn(1, 3, 64, 64))
    assert len(parts) == 8 and merged.shape == (16, 16, 16)
    total = np.zeros_like(merged)
    for p in parts:
        total[list(p.joints)] += p.maps
    assert np.allclose(total, merged, atol=1e-6)


def test_cli_writes_a_grid_with_a_tile_per_part(tmp_path):
    img = tmp_path / "person.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (120, 80, 3), np.uint8))
    out = tmp_path / "hm.png"
    result = runner.invoke(
        app,
        [
            "--device",
            "cpu",
            "visualize",
            "heatmaps",
            str(checkpoint(tmp_path)),
            str(img),
            "--out",
            str(out),
            "--box",
            "10,10,70,110",
        ],
    )
    assert result.exit_code == 0, result.output
    grid = cv2.imread(str(out))
    # 1 prediction + 1 all-keypoints + 5 parts = 7 tiles of 256 px: 4 columns x 2 rows
    assert grid is not None and grid.shape[1] > 4 * 200 and grid.shape[0] > 2 * 200
    assert "5 parts" in result.output


def test_cli_bad_inputs(tmp_path):
    ckpt = checkpoint(tmp_path)
    bad = runner.invoke(app, ["visualize", "heatmaps", str(ckpt), str(tmp_path / "nope.jpg")])
    assert bad.exit_code == 2 and "cannot read image" in bad.output
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    bad = runner.invoke(app, ["visualize", "heatmaps", str(ckpt), str(img), "--box", "5,5,1,1"])
    assert bad.exit_code == 2 and "--box" in bad.output
