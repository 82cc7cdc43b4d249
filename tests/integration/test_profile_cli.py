"""`posenfs profile` against the reference sizes (measured on the released code) and CLI errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from tests.conftest import RECIPES

runner = CliRunner()

# recipe, params, conv MACs (the released implementation, measured)
TABLE = [
    ("mpii/mbv2_p1_h1_c10_256.yaml", 1_860_320, 0.6539e9),
    ("mpii/mbv2_p3_h1_c10_256.yaml", 2_894_880, 1.2498e9),
    ("mpii/mbv2_p5_h1_c10_256.yaml", 3_929_440, 1.8458e9),
    ("mpii/mbv2_p8_h1_c10_256.yaml", 5_483_248, 2.7476e9),
    ("mpii/mbv2_p3_h2_c10_384.yaml", 3_873_360, 4.9239e9),
    ("mpii/hrnet_p5_h1_c16_256.yaml", 14_658_240, 10.0731e9),
    ("mpii/hrnet_p3_h2_c12_d1_256.yaml", 11_833_648, 8.9414e9),
    ("coco/mbv2_p3_h1_c16_nozero_384x288.yaml", 5_073_736, 4.3290e9),
    ("coco/resnet50_p3_h1_c10_384x288.yaml", 27_466_408, 11.3342e9),
    ("coco/hrnet_p5_h1_c16_384x288.yaml", 14_658_760, 17.0019e9),
]


def profile_json(*args: str) -> dict:
    result = runner.invoke(app, ["--device", "cpu", "profile", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recipe,params,macs", TABLE, ids=[t[0] for t in TABLE])
def test_paper_sizes_within_half_a_percent(recipe, params, macs):
    report = profile_json("--recipe", str(RECIPES / recipe), "--no-timing")
    assert abs(report["params_total"] - params) / params < 0.005
    assert abs(report["macs_total"] - macs) / macs < 0.005
    # the recipe records the paper figures it is compared with
    assert report["paper"]["params"] == params
    # thop also counts BN/pool/activation ops: close to, and above, the conv-only count
    assert report["macs_total"] <= report["thop_macs"] < 1.2 * report["macs_total"]
    assert report["params_total"] == report["params_backbone"] + sum(
        report["params_parts"].values()
    )


def test_profile_timing_fields_on_tiny_recipe():
    report = profile_json(
        "--recipe", str(RECIPES / "synthetic/tiny.yaml"), "--runs", "2", "--batch-size", "2"
    )
    assert report["latency_ms"] > 0 and report["train_images_per_s"] > 0
    assert report["peak_memory_mb"] > 0 and report["input_size"] == [64, 64]


def test_profile_table_output():
    result = runner.invoke(
        app, ["profile", "--recipe", str(RECIPES / "mpii/mbv2_p3_h1_c10_256.yaml"), "--no-timing"]
    )
    assert result.exit_code == 0
    assert "2,894,880" in result.output and "1.2498" in result.output
    assert "paper table" in result.output


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--recipe", "does/not/exist.yaml"], "recipe not found: does/not/exist.yaml"),
        (["--set", "model.ops=[skip,conv9]"], "unknown op 'conv9'"),
        (["--set", "model.backbone=vgg16"], "unknown backbone 'vgg16'"),
        (["--set", "model.parts=4"], "parts must be 1, 3, 5, 8"),
        (["--set", "model.nope=1"], "unknown key model.nope"),
        (["--set", "train.lr=fast"], "train.lr: expected a number"),
        (["--input-size", "100"], "multiples of 32"),
    ],
)
def test_bad_input_is_one_clear_line(args, msg):
    base = ["--recipe", str(RECIPES / "synthetic/tiny.yaml")]
    if args[0] == "--recipe":
        base = []
    result = runner.invoke(app, ["profile", *base, *args, "--no-timing"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], result.output


def test_checkpoint_profile(tmp_path):
    from posenfs_cli.config import load_recipe
    from posenfs_cli.engine.checkpoint import save_checkpoint
    from posenfs_cli.models.build import build_from_recipe

    recipe = load_recipe(RECIPES / "synthetic/tiny.yaml")
    path = save_checkpoint(tmp_path / "t.safetensors", build_from_recipe(recipe), recipe)
    report = profile_json(str(path), "--no-timing")
    # MBv2 + 3 parts at C=4; every pyramid level has its 1x1 adapter (32->32 included), as the
    # released code builds it.
    assert report["params_total"] == 1_649_664 and report["input_size"] == [64, 64]
    bad = runner.invoke(app, ["profile", str(RECIPES / "synthetic/tiny.yaml")])
    assert bad.exit_code == 2 and "not a safetensors checkpoint" in bad.output
