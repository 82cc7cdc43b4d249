"""`posenfs prune`: a smaller, verified checkpoint + genotype, and clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import MPII
from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint, save_checkpoint
from posenfs_cli.models.build import build_model
from posenfs_cli.nas.genotype import load_genotype

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def make_checkpoint(path, kill: bool = True):
    """A tiny MobileNetV2 model; with ``kill`` the head part has dead cells, slots and an op."""
    cfg = ModelConfig(backbone="mobilenet_v2", channels=2, parts=3, hidden=1)
    recipe = Recipe(model=cfg)
    recipe.data.input_size = [64, 64]
    model = build_model(cfg, MPII)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        if kill:
            head = dict(model.cnfs())["head"]
            head.alpha[:, 3] = -1e4  # dil_conv_3x3
            for c in head.cells:
                if (c.layer, c.scale) == (5, 0):
                    c.beta[:2] = -1e4  # (4,0) dies
                if (c.layer, c.scale) == (4, 1):
                    c.beta[1] = -1e4  # then (3,0)
    save_checkpoint(path, model, recipe, epoch=7, metrics={"pckh": 1.5})
    return model.eval()


def prune_json(*args: str) -> dict:
    result = runner.invoke(app, ["--device", "cpu", "prune", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_prune_writes_smaller_verified_checkpoint_and_genotype(tmp_path):
    ckpt = tmp_path / "best.safetensors"
    model = make_checkpoint(ckpt)
    report = prune_json(ckpt, "--no-timing")
    out = tmp_path / "best.pruned.safetensors"
    geno_path = tmp_path / "best.pruned.genotype.json"
    assert report["written"] == {"checkpoint": str(out), "genotype": str(geno_path)}
    assert report["max_abs_diff"] <= 1e-6 and not report["nothing_removed"]
    assert report["removed"]["head"]["cells"] == [[3, 0], [4, 0]]
    assert report["removed"]["head"]["ops"] == ["dil_conv_3x3"]
    assert report["after"]["params"]["total"] < report["before"]["params"]["total"]
    assert report["after"]["macs"]["head"] < report["before"]["macs"]["head"]
    assert report["after"]["params"]["upper_limb"] == report["before"]["params"]["upper_limb"]
    assert out.stat().st_size < ckpt.stat().st_size
    # the pruned checkpoint rebuilds on its own and gives the same outputs
    pruned, meta = build_from_checkpoint(out)
    pruned.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (pruned(x) - model(x)).abs().max() <= 1e-6
    assert meta.metadata["pruned_from"] == str(ckpt)
    assert json.loads(meta.metadata["prune_threshold"]) == 0.0
    assert meta.epoch == 7 and meta.metrics == {"pckh": 1.5}
    head = meta.genotype.cnf("head")
    assert head.pruned.to_json() == {"cells": [[3, 0], [4, 0]], "ops": ["dil_conv_3x3"]}
    assert load_genotype(geno_path) == meta.genotype


def test_prune_table_output(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    make_checkpoint(ckpt)
    out = tmp_path / "small.safetensors"
    result = runner.invoke(
        app, ["--device", "cpu", "prune", str(ckpt), "-o", str(out), "--runs", "1"]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    for needle in ("before -> after", "removed", "dil_conv_3x3", "verified", "bs1 ms", "small"):
        assert needle in text, needle
    assert out.is_file() and (tmp_path / "small.genotype.json").is_file()


def test_threshold_prunes_more_and_reports_the_change(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    make_checkpoint(ckpt)
    exact = prune_json(ckpt, "--no-timing", "-o", tmp_path / "a.safetensors")
    loose = prune_json(ckpt, "--no-timing", "-t", "0.15", "-o", tmp_path / "b.safetensors")
    assert loose["after"]["params"]["total"] < exact["after"]["params"]["total"]
    assert loose["max_abs_diff"] > 1e-6
    meta = read_checkpoint(tmp_path / "b.safetensors").metadata
    assert json.loads(meta["prune_threshold"]) == 0.15


def test_nothing_to_prune_writes_nothing(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    make_checkpoint(ckpt, kill=False)
    result = runner.invoke(app, ["--device", "cpu", "prune", str(ckpt), "--no-timing"])
    assert result.exit_code == 0, result.output
    assert "nothing to prune" in result.output and "smallest kept" in result.output
    assert "--threshold" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["missing.safetensors"], "checkpoint not found"),
        (["m.safetensors", "-t", "0.4"], "threshold must be in [0, 1/3)"),
        (["m.safetensors", "-o", "m.safetensors"], "is the input checkpoint"),
    ],
)
def test_prune_errors_are_one_line(tmp_path, args, needle):
    make_checkpoint(tmp_path / "m.safetensors")
    full = [str(tmp_path / a) if a.endswith(".safetensors") else a for a in args]
    result = runner.invoke(app, ["--device", "cpu", "prune", *full])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert result.output.strip().splitlines()[0].startswith("error:")
