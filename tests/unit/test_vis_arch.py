"""Fabric diagrams, training curves and genotype diffs: the functions and `posenfs visualize`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posenfs_cli.cli.app import app
from posenfs_cli.config import FabricBackboneConfig, ModelConfig, Recipe
from posenfs_cli.data.layouts import MPII
from posenfs_cli.engine.checkpoint import save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.models.prune import prune_model
from posenfs_cli.nas.genotype import model_genotype, save_genotype
from posenfs_cli.vis.curves import nice_ticks, plot_curves
from posenfs_cli.vis.fabric import draw_fabric, draw_overview, genotype_diff
from tests.helpers import randomize_arch, tiny_model

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(**kw) -> ModelConfig:
    fab = FabricBackboneConfig(layers=7, channels=1, hidden=1, kept=3)
    return tiny_model(**{"fabric": fab, "hidden": 2, **kw})


def randomized(config: ModelConfig, seed: int = 0):
    return randomize_arch(build_model(config, MPII), seed, scale=1.5).eval()


def pruned_model():
    """Head loses cells (3,0) and (4,0) and the dil_conv op."""
    model = randomized(cfg())
    head = dict(model.cnfs())["head"]
    with torch.no_grad():
        head.alpha[:, 3] = -1e4
        for c in head.cells:
            if (c.layer, c.scale) == (5, 0):
                c.beta[:2] = -1e4
            if (c.layer, c.scale) == (4, 1):
                c.beta[1] = -1e4
    recipe = Recipe(model=cfg())
    recipe.data.input_size = [64, 64]
    return prune_model(model, recipe)[0], recipe


def not_blank(img: np.ndarray) -> bool:
    return (
        img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and (img < 250).mean() > 0.01
    )


# --- functions ---------------------------------------------------------------------------------


def test_draw_fabric_each_cnf_is_a_readable_image():
    geno = model_genotype(pruned_model()[0], "mpii")
    for entry in geno.cnfs:
        img = draw_fabric(entry)
        assert not_blank(img)
        assert 500 < img.shape[0] < 2500 and 900 < img.shape[1] < 3000, img.shape
    # pruned cells are drawn (greyed), not dropped: same size as an unpruned diagram
    plain = model_genotype(randomized(cfg()), "mpii").cnfs[1]
    assert draw_fabric(geno.cnfs[1]).shape == draw_fabric(plain).shape
    assert not np.array_equal(draw_fabric(geno.cnfs[1]), draw_fabric(plain))


def test_draw_fabric_rejects_a_whole_genotype():
    geno = model_genotype(randomized(cfg()), "mpii")
    with pytest.raises(PosenfsError, match="one CNF entry"):
        draw_fabric(geno)


def test_overview_holds_every_cnf():
    geno = model_genotype(randomized(cfg(hidden=1)), "mpii")
    over = draw_overview(geno)
    single = draw_fabric(geno.cnfs[1])
    assert not_blank(over)
    assert over.shape[0] > 2 * single.shape[0] * 0.9 and over.shape[1] > 1.5 * single.shape[1]


def test_plot_curves_overlays_runs_and_skips_missing_values():
    a = [
        {
            "epoch": e,
            "train_loss": 0.01 / e,
            "val_loss": None if e == 3 else 0.011 / e,
            "pckh": 10.0 * e,
            "alpha_entropy": 1 - 0.05 * e,
            "pckh_columns": {"Head": 1.0},
        }
        for e in range(1, 8)
    ]
    b = [{"epoch": e, "train_loss": 0.02 / e, "pckh": 5.0 * e} for e in range(1, 5)]
    img = plot_curves([("a", a), ("b", b)])
    assert not_blank(img) and img.shape[1] >= 1000
    # beta_entropy is in no run: 4 panels (2 rows) instead of 5 (3 rows)
    fewer = plot_curves([("a", a), ("b", b)], keys=["pckh"])
    assert fewer.shape[0] < img.shape[0]
    with pytest.raises(PosenfsError, match="none of"):
        plot_curves([("b", b)], keys=["beta_entropy"])


def test_nice_ticks_cover_the_range():
    for lo, hi in [(0.0004, 0.0021), (3.0, 3.0), (-1.0, 87.0), (0.7, 1.0)]:
        t = nice_ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 15


def test_genotype_diff_rows_sorted_and_complete():
    a = model_genotype(randomized(cfg(), seed=0), "mpii")
    b = model_genotype(randomized(cfg(), seed=1), "mpii")
    rows, img = genotype_diff(a, b, top=5)
    n_alpha = sum(len(c.alpha.weights) * len(c.ops) for c in a.cnfs)
    n_beta = 3 * sum(len(c.cells) for c in a.cnfs)
    assert len(rows) == n_alpha + n_beta
    deltas = [abs(r["delta"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    r = rows[0]
    assert r["delta"] == pytest.approx(r["b"] - r["a"])
    assert not_blank(img) and img.shape[0] < 400  # 5 bars
    same_rows, _ = genotype_diff(a, a)
    assert all(r["delta"] == 0 for r in same_rows)


def test_genotype_diff_pruned_against_unpruned_skips_pruned_cells():
    model, _ = pruned_model()
    a = model_genotype(randomized(cfg()), "mpii")
    rows, _ = genotype_diff(a, model_genotype(model, "mpii"))
    assert not any(r["cnf"] == "head" and r["where"] in ("cell 3,0", "cell 4,0") for r in rows)


@pytest.mark.parametrize(
    "other,msg",
    [(cfg(parts=5), "different CNFs"), (cfg(hidden=1), "edges differ"), (cfg(cut=2), "differ")],
)
def test_genotype_diff_other_structure_is_an_error(other, msg):
    a = model_genotype(randomized(cfg()), "mpii")
    with pytest.raises(PosenfsError, match=msg):
        genotype_diff(a, model_genotype(randomized(other), "mpii"))


# --- CLI -----------------------------------------------------------------------------------------


def invoke(*args: str):
    return runner.invoke(app, ["visualize", *map(str, args)])


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert "error:" in lines[0] and needle in result.output
    assert "Traceback" not in result.output


def test_cli_arch_from_checkpoint_and_genotype(tmp_path):
    model, recipe = pruned_model()
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, recipe)
    out = tmp_path / "arch"
    result = invoke("arch", ckpt, "--out", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["backbone.png", "head.png", "lower_limb.png", "overview.png", "upper_limb.png"]
    assert str(out) in result.output.replace("\n", "")
    img = cv2.imread(str(out / "head.png"))
    assert img is not None and not_blank(img)
    geno = save_genotype(tmp_path / "g.json", model_genotype(model, "mpii"))
    result = invoke("arch", geno, "--out", tmp_path / "arch2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "arch2" / "overview.png").is_file()


def test_cli_curves(tmp_path):
    for name, scale in (("r1", 1.0), ("r2", 2.0)):
        run = tmp_path / name
        run.mkdir()
        rows = [{"epoch": e, "train_loss": scale / e, "pckh": e * scale} for e in range(1, 5)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "c.png"
    result = invoke("curves", tmp_path / "r1", tmp_path / "r2", "--out", out)
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)) is not None and "c.png" in result.output
    empty = tmp_path / "empty_run"
    empty.mkdir()
    one_line_error(invoke("curves", tmp_path / "r1", empty, "--out", out), "metrics.jsonl")


def test_cli_genotype_diff(tmp_path):
    a = save_genotype(tmp_path / "a.json", model_genotype(randomized(cfg(), 0), "mpii"))
    b = save_genotype(tmp_path / "b.json", model_genotype(randomized(cfg(), 1), "mpii"))
    out = tmp_path / "d.png"
    result = invoke("genotype-diff", a, b, "--out", out, "--top", "7")
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)) is not None and "largest weight changes" in result.output
    other = save_genotype(tmp_path / "o.json", model_genotype(randomized(cfg(parts=5)), "mpii"))
    one_line_error(invoke("genotype-diff", a, other, "--out", out), "different CNFs")
    one_line_error(invoke("genotype-diff", a, tmp_path / "missing.json"), "not found")
