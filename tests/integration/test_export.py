"""``posenfs export``: ONNX heatmaps equal PyTorch's, dynamic batch works, errors are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import load_recipe
from posenfs_cli.engine.checkpoint import build_from_checkpoint, save_checkpoint
from posenfs_cli.inference.export import ExportablePoseNet
from posenfs_cli.models.build import build_from_recipe

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (posenfs[export])")
onnx = pytest.importorskip("onnx", reason="onnx not installed (posenfs[export])")

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    recipe = load_recipe(REPO / "src/posenfs_cli/recipes/synthetic/tiny.yaml")
    model = build_from_recipe(recipe, load_pretrained=False)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", model, recipe)


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["heatmaps"], {"input": x})[0]


def test_onnx_matches_pytorch_with_dynamic_batch(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(ckpt), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "max abs diff" in res.output and str(out) in res.output
    model, rec = build_from_checkpoint(ckpt)
    model.eval()
    h, w = rec.recipe.data.input_size
    for batch in (2, 3, 1):
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref = model(x).numpy()
        got = run_onnx(out, x.numpy())
        assert got.shape == ref.shape == (batch, 16, h // 4, w // 4)
        assert np.abs(got - ref).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["keypoints"] == "mpii" and "flip_pairs" in meta
    assert meta["input_format"].startswith("rgb,") and "RGB, ImageNet" in res.output


def test_a_bgr_checkpoint_exports_saying_bgr(tmp_path):
    """A checkpoint imported from the authors' code reads BGR; its ONNX file must say so."""
    recipe = load_recipe(REPO / "src/posenfs_cli/recipes/synthetic/tiny.yaml")
    model = build_from_recipe(recipe, load_pretrained=False)
    ckpt = save_checkpoint(tmp_path / "b.safetensors", model, recipe, extra={"input_format": "bgr"})
    res = runner.invoke(app, ["export", str(ckpt), "--batch", "1"])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "b.onnx")).metadata_props}
    assert meta["input_format"].startswith("bgr,") and "BGR, ImageNet" in res.output


def test_static_batch_and_default_path(ckpt, tmp_path):
    local = tmp_path / "c.safetensors"
    local.write_bytes(ckpt.read_bytes())
    res = runner.invoke(app, ["export", str(local), "--batch", "2", "--opset", "17"])
    assert res.exit_code == 0, res.output
    path = tmp_path / "c.onnx"
    shape = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in shape] == [2, 3, 64, 64]


def test_exportable_merge_equals_index_add_even_with_repeated_joints():
    """The ONNX-friendly merge (gather / one-hot conv) equals PoseNet's index_add merge."""
    recipe = load_recipe(REPO / "src/posenfs_cli/recipes/synthetic/tiny.yaml")
    model = build_from_recipe(recipe, load_pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        wrapped = ExportablePoseNet(model)
        assert wrapped.mode == "gather"
        torch.testing.assert_close(wrapped(x), ref, rtol=0, atol=0)
        # pretend the first part's first joint also belongs to the last part's last output
        idx = model.merge_index.clone()
        idx[-1] = idx[0]
        model.merge_index = idx
        ref = model(x)
        wrapped = ExportablePoseNet(model)
        assert wrapped.mode == "conv"
        torch.testing.assert_close(wrapped(x), ref, rtol=1e-5, atol=1e-5)


def test_export_errors_are_one_line(ckpt, tmp_path):
    jpg = tmp_path / "x.jpg"
    jpg.write_bytes(b"\xff\xd8\xff not a checkpoint")
    for args, msg in (
        ([str(jpg)], "not a safetensors checkpoint"),
        ([str(ckpt), "--format", "tflite"], "supported formats"),
        ([str(ckpt), "--batch", "zero"], "dynamic"),
    ):
        res = runner.invoke(app, ["export", *args, "--out", str(tmp_path / "y.onnx")])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and msg in lines[0], res.output
