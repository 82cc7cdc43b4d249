"""Sparsity penalties on α/β and the architecture-entropy metrics."""

from __future__ import annotations

import math

import pytest
import torch

from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import MPII
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.models.prune import find_dead, prune_model
from posenfs_cli.nas.sparsity import SPARSITY_KINDS, arch_entropy, sparsity_penalty
from tests.helpers import randomize_arch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(**kw) -> ModelConfig:
    return tiny_model(**{"backbone": "mobilenet_v2", "hidden": 2, **kw})


def randomized(seed: int = 0, **kw):
    return randomize_arch(build_model(cfg(**kw), MPII), seed)


def adam_on_penalty(model, kind: str, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.arch_parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        sparsity_penalty(model, kind, 1.0).backward()
        opt.step()


def test_uniform_architecture_has_entropy_one():
    ent = arch_entropy(build_model(cfg(), MPII))
    assert ent == {"alpha_entropy": pytest.approx(1.0), "beta_entropy": pytest.approx(1.0)}


def test_one_hot_architecture_has_entropy_near_zero():
    model = build_model(cfg(), MPII)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.fill_(-200.0)
            p[..., 1] = 0.0  # column 0 of α is `zero`, which the entropy leaves out
    ent = arch_entropy(model)
    assert ent["alpha_entropy"] < 1e-6 and ent["beta_entropy"] < 1e-6


@pytest.mark.parametrize("kind", [k for k in SPARSITY_KINDS if k != "none"])
def test_penalty_never_pushes_the_zero_op(kind):
    """At the uniform start a tie must not crown `zero` (it would silence every CNF)."""
    model = build_model(cfg(), MPII)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_(std=0.01)
    sparsity_penalty(model, kind, 1.0).backward()
    for _, cnf in model.cnfs():
        zero = list(cnf.spec.ops).index("zero")
        assert torch.equal(cnf.alpha.grad[:, zero], torch.zeros_like(cnf.alpha.grad[:, zero]))
        assert cnf.alpha.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", [k for k in SPARSITY_KINDS if k != "none"])
def test_penalty_gradient_pushes_toward_one_hot(kind):
    model = randomized()
    before = arch_entropy(model)
    p0 = float(sparsity_penalty(model, kind, 1.0).detach())
    assert 0.0 < p0 <= 1.0
    adam_on_penalty(model, kind, steps=20, lr=0.05)
    after = arch_entropy(model)
    assert after["alpha_entropy"] < before["alpha_entropy"] - 0.02
    assert after["beta_entropy"] < before["beta_entropy"] - 0.02
    assert float(sparsity_penalty(model, kind, 1.0).detach()) < p0
    # the weight scales the penalty linearly
    assert float(sparsity_penalty(model, kind, 0.5).detach()) == pytest.approx(
        0.5 * float(sparsity_penalty(model, kind, 1.0).detach()), rel=1e-6
    )


def test_none_and_zero_weight_are_zero_without_graph():
    model = randomized()
    for kind, w in (("none", 1.0), ("entropy", 0.0)):
        p = sparsity_penalty(model, kind, w)
        assert float(p) == 0.0 and not p.requires_grad and p.dim() == 0


@pytest.mark.parametrize("kind,weight,msg", [("sparse", 1.0, "unknown kind"), ("l1", -1.0, ">= 0")])
def test_bad_kind_or_weight(kind, weight, msg):
    with pytest.raises(PosenfsError, match=msg):
        sparsity_penalty(randomized(), kind, weight)


def test_gradients_stay_finite_with_exact_zero_weights():
    model = randomized()
    with torch.no_grad():
        for _name, c in model.cnfs():
            c.alpha[:, 1] = -1e4  # softmax exactly 0
    for kind in ("entropy", "l1", "gap"):
        model.zero_grad()
        sparsity_penalty(model, kind, 1.0).backward()
        for p in model.arch_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), kind


def test_gap_penalty_reaches_exact_zeros_that_prune_losslessly():
    """The hinge keeps pushing until the losers' softmax underflows to exactly 0."""
    model = randomized(hidden=1).eval()
    adam_on_penalty(model, "gap", steps=60, lr=5.0)
    assert float(sparsity_penalty(model, "gap", 1.0).detach()) == 0.0
    dead = find_dead(model)
    assert all(len(s.slots) or len(s.cells) for s in dead.values())
    recipe = Recipe(model=cfg(hidden=1))
    recipe.data.input_size = [64, 64]
    pruned, report = prune_model(model, recipe)
    assert report.max_abs_diff <= 1e-6 and report.params_after < report.params_before
    assert math.isfinite(report.max_abs_output)
