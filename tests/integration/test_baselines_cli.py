"""Baseline recipes through the CLI: `profile` sizes vs the papers, search refused, train works."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.engine.train_run import resolve_recipe_path

runner = CliRunner()


def profile_json(*args: str) -> dict:
    result = runner.invoke(
        app, ["--device", "cpu", "profile", *args, "--no-timing", "--threads", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def recipe(name: str) -> str:
    return str(resolve_recipe_path(name))


# recipe, paper params, paper "GFLOPs" (the paper's unit: conv MACs / 2^30), source
PAPER = [
    ("mpii/baseline1_hrnet_branchnet3_w400_d8_256", 12.8e6, 23.7, "Tab VI Baseline-1"),
    ("mpii/baseline2_hrnet_branchnet5_w296_d8_256", 12.6e6, 22.8, "Tab VI Baseline-2"),
]


@pytest.mark.parametrize("name,params,gflops,_src", PAPER, ids=[p[3] for p in PAPER])
def test_baseline_sizes_within_3_percent_of_the_paper(name, params, gflops, _src):
    r = profile_json("--recipe", recipe(name))
    assert abs(r["params_total"] - params) / params < 0.03
    assert abs(r["paper_gflops"] - gflops) / gflops < 0.03
    # the paper's GFLOPs are MACs / 2^30: MACs / 1e9 would be 7% off
    assert abs(r["macs_total"] / 1e9 - gflops) / gflops > 0.05
    assert r["params_backbone"] == 8_128_320  # HRNet-W32 stem..stage3 (paper: 8.1M)
    assert r["arch_params"] == 0


def test_simplebaseline_r50_coco_known_size():
    r = profile_json("--recipe", recipe("coco/simplebaseline_r50_256x192"))
    assert abs(r["params_total"] - 34.0e6) / 34.0e6 < 0.005  # 33,999,697
    # true conv MACs (deconvs by input pixels): 5.43G; the published 8.9 GFLOPs counts
    # deconvs by output pixels and divides by 2^30 (HRNet's get_model_summary)
    assert abs(r["macs_total"] / 1e9 - 5.426) < 0.01
    assert abs(r["paper_gflops"] - 8.9) / 8.9 < 0.015


def test_simplebaseline_r50_mpii_tab_iv_with_and_without_vector():
    plain = profile_json("--recipe", recipe("mpii/simplebaseline_r50_256"))
    vec = profile_json(
        "--recipe", recipe("mpii/simplebaseline_r50_256"), "--set", "model.vector_dim=8"
    )
    assert (
        round(plain["params_total"] / 1e6, 1) == 34.0
        and round(vec["params_total"] / 1e6, 1) == 34.0
    )
    assert round(plain["paper_gflops"], 1) == 12.0  # Tab IV: 12.0G
    assert round(vec["paper_gflops"], 1) == 12.1  # Tab IV: + vector(8-dim) 12.1G


def test_search_on_a_baseline_head_says_train_and_leaves_no_folder(tmp_path):
    result = runner.invoke(
        app,
        [
            "search",
            "--recipe",
            recipe("synthetic/tiny"),
            "--project",
            str(tmp_path),
            "--set",
            "model.head=branchnet",
        ],
    )
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.head=branchnet has no architecture" in lines[0]
    assert "posenfs train" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "search").exists()


@pytest.mark.slow
def test_train_eval_prune_on_a_branchnet(tmp_path):
    sets = [
        "model.head=branchnet",
        "model.branchnet.width=8",
        "model.branchnet.depth=1",
        "data.synthetic.train_images=8",
        "data.synthetic.val_images=4",
        "train.batch_size=4",
        "eval.flip=false",
    ]
    args = ["--device", "cpu", "train", "--recipe", recipe("synthetic/tiny"), "--epochs", "1"]
    args += ["--project", str(tmp_path), "--name", "bn", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Branchnet W=8 D=1" in result.output
    run = tmp_path / "train" / "bn"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["epoch"] == 1 and "pckh" in rows[-1] and "arch_lr" not in rows[-1]
    ckpt = str(run / "best.safetensors")
    ev = runner.invoke(
        app, ["--device", "cpu", "eval", ckpt, "--project", str(tmp_path), "--no-flip", "-j", "0"]
    )
    assert ev.exit_code == 0, ev.output
    pr = runner.invoke(app, ["--device", "cpu", "prune", ckpt])
    assert pr.exit_code == 2 and "nothing to prune: model.head=branchnet" in pr.output
    va = runner.invoke(app, ["visualize", "arch", ckpt, "--out", str(tmp_path / "arch")])
    assert va.exit_code == 2 and "no CNF to draw" in va.output
