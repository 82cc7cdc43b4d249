"""One epoch of each strategy on a tiny synthetic config changes exactly what it should."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from posenfs_cli.config import load_recipe
from posenfs_cli.engine.strategies import Darts1, Darts2, draw_random_arch
from posenfs_cli.engine.trainer import Trainer, TrainOptions
from posenfs_cli.nas.genotype import model_genotype
from tests.conftest import RECIPES

SETS = [
    "data.synthetic.train_images=16",
    "data.synthetic.val_images=8",
    "train.epochs=1",
    "train.batch_size=8",
    "data.workers=0",
]


def recipe(*extra: str):
    return load_recipe(RECIPES / "synthetic/tiny.yaml", SETS + list(extra))


def trainer(tmp_path, *extra: str, command: str = "search", genotype=None) -> Trainer:
    t = Trainer(
        recipe(*extra),
        TrainOptions(
            command, tmp_path / "run", torch.device("cpu"), progress=False, genotype=genotype
        ),
    )
    t.setup()
    return t


def snapshot(model):
    arch = {n: p.detach().clone() for n, p in model.named_arch_parameters()}
    names = set(arch)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if n not in names}
    return arch, weights


def changed(before: dict, model) -> set[str]:
    now = dict(model.named_parameters())
    return {n for n, v in before.items() if not torch.equal(v, now[n].detach())}


def test_sync_moves_weights_alpha_and_beta(tmp_path):
    t = trainer(tmp_path, "train.strategy=sync")
    arch, weights = snapshot(t.model)
    t.fit()
    assert changed(arch, t.model) == set(arch)  # every α and β moved
    assert len(changed(weights, t.model)) > 0.9 * len(weights)
    assert (tmp_path / "run" / "last.safetensors").is_file()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["epoch"] == 1 and "pckh" in row and "arch_lr" in row


def test_random_freezes_the_seeded_draw(tmp_path):
    t = trainer(tmp_path, "train.strategy=random", "train.seed=5")
    fresh = copy.deepcopy(t.model)
    draw_random_arch(fresh, 5)
    for (n, a), (_, b) in zip(
        t.model.named_arch_parameters(), fresh.named_arch_parameters(), strict=True
    ):
        assert torch.equal(a, b), n
    arch, weights = snapshot(t.model)
    t.fit()
    assert changed(arch, t.model) == set()
    assert len(changed(weights, t.model)) > 0.9 * len(weights)
    other = copy.deepcopy(fresh)
    draw_random_arch(other, 6)
    assert not torch.equal(next(iter(other.arch_parameters())), next(iter(fresh.arch_parameters())))


def test_train_keeps_the_genotype(tmp_path):
    src = trainer(tmp_path / "a", "train.strategy=random", "train.seed=3")
    geno = model_genotype(src.model, "mpii")
    t = trainer(tmp_path / "b", command="train", genotype=geno)
    arch, weights = snapshot(t.model)
    assert all(
        torch.equal(a, b) for a, b in zip(arch.values(), src.model.arch_parameters(), strict=True)
    )
    t.fit()
    assert changed(arch, t.model) == set() and changed(weights, t.model)


def _batches(t: Trainer):
    weights = list(t._loader(t.weight_idx, 0, 0, shuffle=True))
    held = list(t._loader(t.arch_idx, 0, 1, shuffle=True))
    return weights, held


def test_darts1_updates_arch_only_from_the_heldout_split(tmp_path):
    t = trainer(tmp_path, "train.strategy=darts1")
    assert isinstance(t.strategy, Darts1)
    assert not set(t.weight_idx) & set(t.arch_idx)
    (b1, *_), (h1, *_) = _batches(t)
    b2 = (b1[0].flip(3), *b1[1:])  # a different training batch
    start = copy.deepcopy(t.model.state_dict())
    results = []
    for train_batch in (b1, b2):
        t.model.load_state_dict(start)
        t.strategy = type(t.strategy)(t.model, t.cfg, t.loss_fn)
        t.strategy.step(train_batch, h1)
        results.append(snapshot(t.model))
    (arch1, w1), (arch2, w2) = results
    for n in arch1:  # α/β after the step depend on the held-out batch only
        assert torch.equal(arch1[n], arch2[n]), n
    assert any(not torch.equal(arch1[n], start[n]) for n in arch1)
    assert any(not torch.equal(w1[n], w2[n]) for n in w1)  # weights depend on the train batch


def test_darts2_with_zero_lr_equals_first_order(tmp_path):
    """ξ = weight lr = 0: the unrolled step reduces to ∇α L_val(w, α), i.e. darts1's step."""
    t = trainer(tmp_path, "train.strategy=darts2", "train.lr=0.0")
    assert isinstance(t.strategy, Darts2)
    (b, *_), (h, *_) = _batches(t)
    start = copy.deepcopy(t.model.state_dict())
    t.model.eval()  # same BN behaviour in both (functional passes use cloned buffers)
    t.strategy.arch_step(h, b)
    second = {n: p.detach().clone() for n, p in t.model.named_arch_parameters()}
    t.model.load_state_dict(start)
    first = Darts1(t.model, t.cfg, t.loss_fn)
    first.arch_step(h, b)
    for n, p in t.model.named_arch_parameters():
        assert torch.allclose(p, second[n], atol=1e-6), n
        assert not torch.equal(p, start[n])


def test_darts2_full_epoch_moves_everything(tmp_path):
    t = trainer(tmp_path, "train.strategy=darts2")
    arch, weights = snapshot(t.model)
    t.fit()
    moved = changed(arch, t.model)
    assert moved and all(torch.isfinite(p).all() for p in t.model.arch_parameters())
    assert changed(weights, t.model)


def test_loss_decreases_over_a_few_epochs(tmp_path):
    t = trainer(tmp_path, "train.epochs=4", "train.lr=0.003", "train.val_every=10")
    t.fit()
    losses = [r["train_loss"] for r in t.history]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("strategy", ["nope"])
def test_unknown_strategy(tmp_path, strategy):
    from posenfs_cli.errors import PosenfsError

    with pytest.raises(PosenfsError, match="unknown strategy 'nope'"):
        Trainer(
            recipe(f"train.strategy={strategy}"),
            TrainOptions("search", tmp_path, torch.device("cpu")),
        )


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from posenfs_cli.engine.trainer import NonFiniteLoss

    t = trainer(tmp_path, "train.epochs=3", "train.val_every=10")
    calls = {"n": 0}
    real = t.strategy.loss_fn

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return loss * float("nan") if calls["n"] > 2 else loss  # epoch 2 goes bad

    t.strategy.loss_fn = poisoned
    with pytest.raises(NonFiniteLoss, match="loss became nan at epoch 2"):
        t.fit()
    from posenfs_cli.engine.checkpoint import read_checkpoint

    last = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert last.epoch == 1
    assert all(torch.isfinite(v).all() for v in last.tensors.values() if v.is_floating_point())
