"""Engine pieces with hand-computed values: loss, schedule, state round trip, run folders."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from posenfs_cli.engine.run import check_run_dir, new_run_dir
from posenfs_cli.engine.state import load_state, save_state
from posenfs_cli.engine.strategies import lr_at
from posenfs_cli.engine.trainer import amp_dtype, split_heldout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.loss import pose_loss


def test_pose_loss_by_hand():
    pred = torch.zeros(1, 2, 1, 2)
    gt = torch.tensor([[[[1.0, 0.0]], [[2.0, 2.0]]]])
    w = torch.tensor([[[1.0], [0.0]]])  # second joint unlabelled: ignored
    # 0.5 * mean over 4 entries of w*(d^2) = 0.5 * (1 + 0 + 0 + 0) / 4
    assert pose_loss(pred, gt, w).item() == pytest.approx(0.125)


def test_step_schedule():
    steps = [90, 120, 150]
    assert lr_at(1e-3, 0, steps, 0.25) == 1e-3
    assert lr_at(1e-3, 89, steps, 0.25) == 1e-3
    assert lr_at(1e-3, 90, steps, 0.25) == pytest.approx(2.5e-4)
    assert lr_at(1e-3, 150, steps, 0.25) == pytest.approx(1e-3 / 64)
    assert lr_at(1e-3, 150, steps, 0.25, decay=False) == 1e-3


def test_heldout_split_is_disjoint_seeded_halves():
    a, b = split_heldout(11, 3)
    assert sorted(a + b) == list(range(11)) and not set(a) & set(b)
    assert len(b) == 5 and split_heldout(11, 3) == (a, b) and split_heldout(11, 4) != (a, b)


def test_amp_modes():
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(PosenfsError, match="train.amp"):
        amp_dtype("fast", cpu)


def test_training_state_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "optim": opt.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
        "epoch": 4,
        "best": None,
    }
    back = load_state(save_state(tmp_path / "s.safetensors", state))
    assert back["epoch"] == 4 and back["best"] is None
    assert torch.equal(
        back["optim"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    assert back["optim"]["param_groups"] == opt.state_dict()["param_groups"]
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    torch.set_rng_state(back["rng"]["torch"])
    x = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    assert x == (np.random.rand(), random.random(), torch.rand(1).item())


def test_run_dirs_increment(tmp_path):
    assert new_run_dir(tmp_path, "search", None).name == "exp"
    assert new_run_dir(tmp_path, "search", None).name == "exp2"
    assert new_run_dir(tmp_path, "search", "abc").name == "abc"
    assert new_run_dir(tmp_path, "search", "abc").name == "abc2"
    assert new_run_dir(tmp_path, "search", "abc", exist_ok=True).name == "abc"
    with pytest.raises(PosenfsError, match="not a resumable run folder"):
        check_run_dir(tmp_path / "search" / "exp")


def test_one_seed_reports_no_spread():
    """A single seed has no standard deviation: the summary shows the value alone, not ± 0."""
    from posenfs_cli.engine.experiment import _mean_std_cell, mean_std

    assert mean_std([70.5]) == (70.5, None)
    m, s = mean_std([1.0, 2.0, 4.0])
    assert m == 7 / 3 and s is not None and abs(s - 1.5275252316519468) < 1e-12
    assert _mean_std_cell("pckh", {"mean": 70.5, "std": None}, "{:.2f}") == "70.50"
    assert _mean_std_cell("pckh", {"mean": 70.5, "std": 1.25}, "{:.2f}") == "70.50 ± 1.25"
    assert _mean_std_cell("pckh", None, "{:.2f}") == "-"


def test_experiment_run_written_before_a_new_recipe_key_still_matches(tmp_path):
    """A run folder whose config.yaml predates a key (e.g. model.parts_exec) is the same
    configuration when the key is at its default; a real difference is still refused."""
    from posenfs_cli.config import load_recipe, recipe_to_yaml, set_values
    from posenfs_cli.engine.experiment import _check_same_config
    from posenfs_cli.errors import PosenfsError
    from tests.conftest import RECIPES

    rec = load_recipe(RECIPES / "synthetic/tiny.yaml")
    text = recipe_to_yaml(rec)
    assert "  parts_exec: separate\n" in text
    (tmp_path / "config.yaml").write_text(text.replace("  parts_exec: separate\n", ""))
    _check_same_config(tmp_path, rec)
    with pytest.raises(PosenfsError, match="another configuration"):
        _check_same_config(tmp_path, set_values(rec, {"model.parts": 5}))
