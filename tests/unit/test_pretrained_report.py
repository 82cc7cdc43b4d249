"""``model.pretrained`` never loads silently in part: what was loaded and ignored is reported,
and a file whose keys match nothing is an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.backbones.mobilenet_v2 import MobileNetV2Backbone
from posenfs_cli.models.build import build_model

runner = CliRunner()
MPII = get_layout("mpii")


def _randomized() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {
        k: torch.randn_like(v) if v.is_floating_point() else v.clone()
        for k, v in MobileNetV2Backbone().state_dict().items()
    }


def test_a_whole_pose_model_reports_everything_it_leaves_behind(tmp_path: Path):
    """A pose checkpoint (backbone + heads): the backbone loads, the rest is named as ignored."""
    state = {f"backbone.{k}": v for k, v in _randomized().items()}
    state.update({f"cnf.{i}.w": torch.zeros(2) for i in range(5)})
    state.update({"final_layer.weight": torch.zeros(16, 8, 1, 1), "alphas.0": torch.zeros(3)})
    path = tmp_path / "pose.safetensors"
    save_file(state, str(path))
    cfg = ModelConfig(backbone="mobilenet_v2", pretrained=str(path), channels=2, parts=1)
    model = build_model(cfg, MPII)
    report = model.backbone.pretrained_report
    n = len(MobileNetV2Backbone().state_dict())
    assert report.loaded == {"features": n} and report.total == n
    assert report.outside == {"cnf": 5, "final_layer": 1, "alphas": 1}
    text = " ".join(report.lines())
    assert f"loaded {n} tensors" in text and str(path) in text
    assert "ignored 7 tensors outside the file's backbone (alphas 1, cnf 5, final_layer 1)" in text
    assert "posenfs import" in text
    want = state["backbone.features.3.conv.1.0.weight"]
    assert torch.equal(model.backbone.state_dict()["features.3.conv.1.0.weight"], want)


def test_a_plain_backbone_file_reports_no_ignored_tensors(tmp_path: Path):
    path = tmp_path / "mbv2.safetensors"
    save_file(_randomized(), str(path))
    model = build_model(ModelConfig(pretrained=str(path), channels=2, parts=1), MPII)
    report = model.backbone.pretrained_report
    assert report.unused == {} and report.outside == {}
    assert len(report.lines()) == 1


def test_no_pretrained_means_no_report():
    model = build_model(ModelConfig(channels=2, parts=1), MPII)
    assert getattr(model.backbone, "pretrained_report", None) is None


def test_a_file_that_matches_nothing_is_an_error(tmp_path: Path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(3), "decoder.bias": torch.zeros(2)}, str(path))
    with pytest.raises(PosenfsError) as info:
        build_model(ModelConfig(pretrained=str(path), channels=2, parts=1), MPII)
    msg = str(info.value)
    assert "none of its 2 tensors match" in msg and str(path) in msg and "\n" not in msg
    assert "encoder.layer.0.weight" in msg


def test_cli_a_file_that_matches_nothing_is_rc2_one_line(tmp_path: Path):
    path = tmp_path / "other [x].safetensors"
    save_file({"encoder.weight": torch.zeros(3)}, str(path))
    args = ["--device", "cpu", "train", "--recipe", "synthetic/tiny", "--epochs", "1"]
    args += ["--pretrained", str(path), "--project", str(tmp_path / "runs"), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "none of its 1 tensors match" in lines[0]
    assert "[x]" in lines[0] and "Traceback" not in result.output
    assert not list((tmp_path / "runs").rglob("*.safetensors"))
