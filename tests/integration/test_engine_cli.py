"""Bad input to `posenfs search` / `posenfs train`: one clear line, exit code != 0."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.models.build import build_model
from posenfs_cli.nas.genotype import model_genotype, save_genotype
from tests.conftest import RECIPES

runner = CliRunner()
TINY = ["--recipe", str(RECIPES / "synthetic/tiny.yaml"), "--no-progress"]


def one_line_error(result, msg: str) -> None:
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and msg in lines[-1], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--strategy", "evolution"], "unknown strategy 'evolution'"),
        (["--dataset", "imagenet"], "imagenet"),
        (["--backbone", "vgg16"], "unknown backbone 'vgg16'"),
        (["--parts", "7"], "parts must be 1, 3, 5, 8"),
        (["--dataset", "mpii", "--data-root", "/nonexistent/mpii"], "/nonexistent/mpii"),
        (["--input-size", "250"], "multiples of 32"),
    ],
)
def test_search_bad_input(tmp_path, args, msg):
    result = runner.invoke(app, ["search", *TINY, "--project", str(tmp_path), *args])
    one_line_error(result, msg)


def test_resume_on_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["search", "--resume", str(tmp_path)])
    one_line_error(result, "not a resumable run folder")
    result = runner.invoke(app, ["search", "--resume", str(tmp_path / "nope")])
    one_line_error(result, "no such run folder")


def test_train_with_a_genotype_of_another_structure(tmp_path):
    other = build_model(ModelConfig(backbone="mobilenet_v2", channels=4, parts=5), MPII)
    geno = save_genotype(tmp_path / "g.json", model_genotype(other, "mpii"))
    result = runner.invoke(
        app, ["train", *TINY, "--project", str(tmp_path), "--genotype", str(geno)]
    )
    one_line_error(result, "genotype has CNFs")


def test_train_with_a_genotype_of_another_layout(tmp_path):
    other = build_model(ModelConfig(backbone="mobilenet_v2", channels=4, parts=5), COCO)
    geno = save_genotype(tmp_path / "g.json", model_genotype(other, "coco"))
    result = runner.invoke(
        app, ["train", *TINY, "--project", str(tmp_path), "--genotype", str(geno)]
    )
    one_line_error(result, "searched with coco keypoints, this run uses mpii")


def test_train_from_a_checkpoint_of_another_dataset(tmp_path):
    recipe = Recipe(model=ModelConfig(backbone="mobilenet_v2", channels=4))
    recipe.data.keypoints = "coco"
    model = build_model(recipe.model, COCO)
    ckpt = save_checkpoint(tmp_path / "coco.safetensors", model, recipe)
    result = runner.invoke(app, ["train", *TINY, "--project", str(tmp_path), "--from", str(ckpt)])
    one_line_error(result, "trained on coco keypoints")


def test_unknown_recipe_name(tmp_path):
    result = runner.invoke(app, ["search", "--recipe", "mpii/nope", "--project", str(tmp_path)])
    one_line_error(result, "recipe not found: mpii/nope")


def test_dataset_mpii_uses_the_paper_recipe(tmp_path):
    """`posenfs search --dataset mpii --parts 5` = the paper's Tab II setting with P=5."""
    import yaml

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
            "4",
            "--val-images",
            "2",
            "--size",
            "128",
        ],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        [
            "--device",
            "cpu",
            "search",
            "--dataset",
            "mpii",
            "--data-root",
            str(data),
            "--parts",
            "5",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--input-size",
            "64",
            "--workers",
            "0",
            "--project",
            str(tmp_path / "runs"),
            "--no-progress",
            "--pretrained",
            "none",  # the recipe's ImageNet weights are covered (offline) in test_hub.py
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "runs/search/exp/config.yaml").read_text())
    assert cfg["name"] == "mbv2_p3_h1_c10_256" and cfg["model"]["pretrained"] is None
    assert cfg["model"]["parts"] == 5 and cfg["model"]["channels"] == 10
    assert cfg["model"]["backbone"] == "mobilenet_v2" and cfg["model"]["vector_dim"] == 8
    assert cfg["train"]["lr"] == 0.001 and cfg["train"]["lr_steps"] == [90, 120, 150]
    assert cfg["train"]["strategy"] == "sync" and cfg["data"]["dataset"] == "mpii"
