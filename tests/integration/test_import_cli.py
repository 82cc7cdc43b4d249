"""``posenfs import``: the CLI, bad inputs, and eval/predict/export/profile on the result."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.official import format as fmt
from tests.conftest import SHARED_DATA, needs_shared

runner = CliRunner()
OFFICIAL = SHARED_DATA / "official"
PRUNED = OFFICIAL / "coco_mbv2_p3_h1_c4_pruned_128x96"
IN2 = OFFICIAL / "mpii_mbv2_p3_h2_c4_in2_64"


def their_order(dataset: str) -> list[int]:
    layout = get_layout(dataset)
    return [layout.index(fmt.our_joint_name(j)) for j in fmt.OUTPUT_ORDER[dataset]]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The pruned COCO fixture imported through the CLI with its YAML."""
    out = tmp_path_factory.mktemp("imp") / "pruned.safetensors"
    res = runner.invoke(
        app,
        [
            "import",
            str(PRUNED / "best_ckpt.tar"),
            "--official-config",
            str(PRUNED / "official_config.yaml"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out, res.output


@needs_shared
def test_import_reports_structure_dropped_tensors_and_size(imported):
    out, text = imported
    assert out.is_file()
    assert "a bare state_dict" in text and "backbone: mobilenet_v2" in text
    assert "5 of 6 kept; removed: cell_3_2" in text
    assert "sep_conv_3x3 (removed)" in text
    assert "backbone.features.17.* (18 tensors)" in text
    assert "upper_limb_part.stem.* (13 tensors)" in text
    m = re.search(r"pruned: ([\d,]+) -> ([\d,]+) params", text)
    assert m and int(m[2].replace(",", "")) < int(m[1].replace(",", ""))


@needs_shared
def test_profile_shows_the_pruned_size(imported, tmp_path):
    out, text = imported
    pruned = re.search(r"pruned: ([\d,]+) -> ([\d,]+) params", text)
    res = runner.invoke(app, ["--device", "cpu", "profile", str(out), "--no-timing"])
    assert res.exit_code == 0, res.output
    total = re.search(r"total\s*│\s*([\d,]+)", res.output)
    assert total and total[1] == pruned[2]


@needs_shared
def test_export_of_an_imported_model_equals_their_output(imported, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out, _ = imported
    onnx_path = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(out), "--out", str(onnx_path)])
    assert res.exit_code == 0, res.output
    io = load_file(str(PRUNED / "io.safetensors"))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["heatmaps"], {"input": io["input"].numpy()})[0]
    ref = io["output"].numpy()
    rel = np.abs(got[:, their_order("coco")] - ref).max() / np.abs(ref).max()
    assert rel < 1e-5


@needs_shared
def test_eval_and_predict_run_on_an_imported_model(imported, tmp_path):
    out, _ = imported
    coco = SHARED_DATA / "coco"
    res = runner.invoke(
        app,
        [
            "--device",
            "cpu",
            "eval",
            str(out),
            "--ann-file",
            str(coco / "test_coco.json"),
            "--image-dir",
            str(coco),
            "--workers",
            "0",
            "--no-flip",
            "--project",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "runs/eval/exp/keypoints_results.json").read_text())
    assert results and len(results[0]["keypoints"]) == 51
    image = sorted(coco.glob("*.jpg"))[0]
    res = runner.invoke(
        app,
        ["--device", "cpu", "predict", str(image), "--checkpoint", str(out)]
        + ["--out", str(tmp_path / "pred")],
    )
    assert res.exit_code == 0, res.output
    pred = json.loads(next((tmp_path / "pred").glob("*.json")).read_text())
    assert len(pred[0]["keypoints"]) == 17


@needs_shared
def test_inspect_prints_each_part_and_writes_nothing(tmp_path):
    out = tmp_path / "never.safetensors"
    res = runner.invoke(app, ["import", str(IN2 / "best_ckpt.tar"), "--inspect", "-o", str(out)])
    assert res.exit_code == 0, res.output
    for part in ("upper_limb_part", "head_part", "lower_limb_part"):
        assert part in res.output
    assert "[5, 4], rows read by their forward: [0, 1, 2]" in res.output
    assert "input nodes 2, H=2, C=4, d=8" in res.output
    assert "alphas rows [3, 4]" in res.output
    assert "no config" in res.output  # op order: says where it came from
    assert not out.exists()


@needs_shared
def test_disagreeing_config_is_a_short_report_and_rc_2(tmp_path):
    cfg = (IN2 / "official_config.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        cfg.replace("      - Atr_Conv_3x3", "      - Atr_Conv_3x3\n      - avg_pool_3x3")
    )
    out = tmp_path / "m.safetensors"
    res = runner.invoke(app, ["import", str(IN2 / "best_ckpt.tar"), "-c", str(bad), "-o", str(out)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert "disagrees with" in res.output and "in 3 place(s)" in res.output
    assert "head_part.alphas: file [5, 4], config [5, 5]" in res.output
    assert len(res.output.strip().splitlines()) <= 6
    assert not out.exists()


class NotWeights:
    pass


def _bad_cases(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    pickled = tmp_path / "pickled.tar"
    torch.save({"obj": NotWeights()}, pickled)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    yaml_bad = tmp_path / "bad.yaml"
    yaml_bad.write_text("model: [unclosed")
    yaml_other = tmp_path / "recipe.yaml"
    yaml_other.write_text("model:\n  backbone: mobilenet_v2\n")
    ckpt = str(IN2 / "best_ckpt.tar")
    out = str(tmp_path / "m.safetensors")
    return [
        ([str(tmp_path / "missing.tar"), "-o", out], "checkpoint not found"),
        ([str(text), "-o", out], "cannot read"),
        ([str(pickled), "-o", out], "cannot read"),
        ([str(foreign), "-o", out], "no backbone"),
        ([ckpt], "--out is required"),
        ([ckpt, "-o", str(tmp_path / "m.pt")], "must be a .safetensors"),
        ([ckpt, "-o", str(tmp_path)], "must be a .safetensors"),
        ([ckpt, "-o", str(tmp_path / "d.safetensors")], None),  # made a directory below
        ([ckpt, "-c", str(tmp_path / "nope.yaml"), "-o", out], "config not found"),
        ([ckpt, "-c", str(yaml_bad), "-o", out], "not valid YAML"),
        ([ckpt, "-c", str(yaml_other), "-o", out], "not an authors' PoseNFS config"),
        ([ckpt, "-c", str(yaml_other), "-r", "mpii/mbv2_p3_h1_c10_256", "-o", out], "not both"),
        ([ckpt, "-r", "no/such_recipe", "-o", out], "recipe not found"),
        ([ckpt, "--input-size", "100", "-o", out], "multiples of 32"),
        ([ckpt, "--input-size", "8192", "-o", out], "between 32 and 4096"),
        ([ckpt, "--input-size", "[red]x1", "-o", out], "'[red]x1'"),  # markup escaped
    ]


@needs_shared
def test_bad_inputs_are_one_line_rc_2_and_write_nothing(tmp_path):
    (tmp_path / "d.safetensors").mkdir()
    for args, expect in _bad_cases(tmp_path):
        res = runner.invoke(app, ["import", *args])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2, (args, res.output)
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, res.output)
        assert "Traceback" not in res.output
        if expect:
            assert expect in res.output, (args, res.output)
    assert not (tmp_path / "m.safetensors").exists()
    assert list(tmp_path.glob("*.safetensors")) == [tmp_path / "d.safetensors"]


@needs_shared
def test_recipe_disagreeing_with_the_file_is_reported(tmp_path):
    """A posenfs recipe instead of their YAML: C=10 / H=1 against a C=4 / H=2 file."""
    res = runner.invoke(
        app,
        [
            "import",
            str(IN2 / "best_ckpt.tar"),
            "--recipe",
            "mpii/mbv2_p3_h1_c10_256",
            "-o",
            str(tmp_path / "m.safetensors"),
        ],
    )
    assert res.exit_code == 2
    assert "channel_keep.weight: file [16, 32] (H=2, C=4), recipe [40, 40]" in res.output
    assert not (tmp_path / "m.safetensors").exists()


@needs_shared
def test_prune_runs_on_an_imported_pruned_model(imported, tmp_path):
    """Already pruned by their Prune(): nothing is left at weight 0, so nothing more goes."""
    out, _ = imported
    res = runner.invoke(
        app,
        [
            "--device",
            "cpu",
            "prune",
            str(out),
            "--no-timing",
            "--out",
            str(tmp_path / "p.safetensors"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "p.safetensors").exists()
