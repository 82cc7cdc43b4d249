"""Pruning: which cells/slots/ops are dead, and the physically pruned model."""

from __future__ import annotations

import pytest
import torch

from posenfs_cli.config import FabricBackboneConfig, ModelConfig, Recipe
from posenfs_cli.data.layouts import MPII
from posenfs_cli.engine.checkpoint import build_from_checkpoint, save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models import prune as prune_mod
from posenfs_cli.models.build import build_model
from posenfs_cli.models.prune import (
    PruneVerificationError,
    find_dead,
    output_difference,
    prune_model,
    state_key_map,
)
from posenfs_cli.models.size import count_params
from posenfs_cli.nas.fabric import PruneSpec
from posenfs_cli.nas.genotype import model_genotype, prune_specs
from posenfs_cli.profiling import conv_macs
from tests.helpers import tiny_model

SAME, FINER, COARSER = 0, 1, 2
SIZE = [64, 64]


pytestmark = pytest.mark.usefixtures("one_thread")


def mbv2_cfg(**kw) -> ModelConfig:
    return tiny_model(**{"backbone": "mobilenet_v2", "channels": 2, "hidden": 1, **kw})


def fabric_cfg() -> ModelConfig:
    """A fabric backbone of 5 kept layers (2, 3, 4, 4, 4 cells) and one part."""
    fab = FabricBackboneConfig(layers=8, channels=1, hidden=1, kept=5)
    return tiny_model(fabric=fab, parts=1, hidden=1)


def recipe_for(cfg: ModelConfig) -> Recipe:
    r = Recipe(model=cfg)
    r.data.input_size = list(SIZE)
    return r


def randomized(cfg: ModelConfig, seed: int = 0):
    model = build_model(cfg, MPII)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        # BN running stats away from the identity, so a wrongly copied buffer shows
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    return model.eval()


def cnf(model, name: str):
    return dict(model.cnfs())[name]


def kill_slots(model, name: str, key: tuple[int, int], *slots: int) -> None:
    """Make those β weights underflow to exactly 0."""
    with torch.no_grad():
        cell = next(c for c in cnf(model, name).cells if (c.layer, c.scale) == key)
        for k in slots:
            cell.beta[k] = -1e4


def kill_ops(model, name: str, *ops: str, edges: list[int] | None = None) -> None:
    c = cnf(model, name)
    with torch.no_grad():
        for op in ops:
            o = c.spec.ops.index(op)
            rows = range(c.alpha.shape[0]) if edges is None else edges
            for e in rows:
                c.alpha[e, o] = -1e4


def as_tuple(spec: PruneSpec):
    return spec.cells, {k: v for k, v in spec.slots.items() if v}, spec.ops


# --- find_dead -------------------------------------------------------------------------------


def test_random_weights_have_nothing_dead():
    model = randomized(mbv2_cfg())
    assert all(s.is_empty() for s in find_dead(model).values())
    assert set(find_dead(model)) == {"head", "upper_limb", "lower_limb"}


def test_top_cell_read_through_duplicated_finer_slot_stays_alive():
    """(a) cell (4,0) feeds (5,0) through `same` and the duplicated `finer` slot."""
    model = randomized(mbv2_cfg())
    kill_slots(model, "head", (5, 0), SAME)
    assert as_tuple(find_dead(model)["head"]) == (set(), {(5, 0): {SAME}}, set())
    kill_slots(model, "head", (5, 0), FINER)
    assert as_tuple(find_dead(model)["head"]) == ({(4, 0)}, {(5, 0): {SAME, FINER}}, set())


def test_death_propagates_backward_over_two_layers():
    """(d) (4,0) dies with (5,0)'s slots; (3,0), read by (4,0) and (4,1).finer, dies next."""
    model = randomized(mbv2_cfg())
    kill_slots(model, "head", (5, 0), SAME, FINER)
    kill_slots(model, "head", (4, 1), FINER)
    head = find_dead(model)["head"]
    assert as_tuple(head) == (
        {(4, 0), (3, 0)},
        {(5, 0): {SAME, FINER}, (4, 1): {FINER}},
        set(),
    )
    # the other parts are untouched
    assert find_dead(model)["upper_limb"].is_empty()


def test_bottom_cell_read_through_duplicated_coarser_slot_stays_alive():
    """(b) backbone cell (3,3) feeds (4,2).coarser, (4,3).same and (4,3)'s duplicated coarser."""
    model = randomized(fabric_cfg())
    kill_slots(model, "backbone", (4, 2), COARSER)
    kill_slots(model, "backbone", (4, 3), SAME)
    spec = find_dead(model)["backbone"]
    assert spec.cells == set()
    assert spec.slots == {(4, 2): {COARSER}, (4, 3): {SAME}}
    kill_slots(model, "backbone", (4, 3), COARSER)
    spec = find_dead(model)["backbone"]
    assert spec.cells == {(3, 3)}
    assert spec.slots == {(4, 2): {COARSER}, (4, 3): {SAME, COARSER}}


def _kill_bottom_chain(model, keep_22_coarser: bool) -> None:
    kill_slots(model, "backbone", (4, 2), COARSER)  # (3,3)'s readers
    kill_slots(model, "backbone", (4, 3), SAME, COARSER)
    kill_slots(model, "backbone", (3, 2), COARSER)  # (2,3)'s other reader
    kill_slots(model, "backbone", (2, 1), COARSER)  # (1,2)'s readers
    kill_slots(model, "backbone", (2, 2), *([SAME] if keep_22_coarser else [SAME, COARSER]))
    kill_slots(model, "backbone", (1, 0), COARSER)  # (0,1)'s readers besides (1,2)
    kill_slots(model, "backbone", (1, 1), SAME, COARSER)


def test_first_layer_cell_lives_while_the_new_bottom_cell_reads_it():
    """(c) (0,1) of the backbone's first layer feeds the new bottom cell (1,2) through all three
    of its slots, so it cannot die while (1,2) lives, whatever its other readers do."""
    model = randomized(fabric_cfg())
    _kill_bottom_chain(model, keep_22_coarser=True)
    spec = find_dead(model)["backbone"]
    assert spec.cells == {(3, 3), (2, 3)}
    assert (0, 1) not in spec.cells and (1, 2) not in spec.cells


def test_death_runs_down_the_chain_of_new_bottom_cells():
    """(c)+(d) once (2,2)'s last slot on (1,2) is dead, death runs back to the first layer."""
    model = randomized(fabric_cfg())
    _kill_bottom_chain(model, keep_22_coarser=False)
    spec = find_dead(model)["backbone"]
    assert spec.cells == {(3, 3), (2, 3), (1, 2), (0, 1)}
    assert spec.slots == {
        (4, 2): {COARSER},
        (4, 3): {SAME, COARSER},
        (3, 2): {COARSER},
        (2, 1): {COARSER},
        (2, 2): {SAME, COARSER},
        (1, 0): {COARSER},
        (1, 1): {SAME, COARSER},
    }
    # the backbone's four outputs always live
    assert not any(layer == 4 for layer, _ in spec.cells)


def test_op_is_dead_only_when_zero_on_every_edge_and_zero_is_never_listed():
    model = randomized(mbv2_cfg(hidden=2))
    kill_ops(model, "head", "sep_conv_3x3")  # all three edges
    kill_ops(model, "head", "dil_conv_3x3", edges=[0])  # one edge only: stays
    kill_ops(model, "head", "zero")
    assert find_dead(model)["head"].ops == {"sep_conv_3x3"}


def test_threshold_prunes_below_the_weight():
    model = randomized(mbv2_cfg())
    exact, loose = find_dead(model, 0.0), find_dead(model, 0.1)
    for name, spec in loose.items():
        for cell in cnf(model, name).cells:
            key = (cell.layer, cell.scale)
            if key not in spec.cells:
                w = cell.beta.detach().softmax(0)
                assert spec.slots.get(key, set()) == {k for k in range(3) if w[k] <= 0.1}
        assert exact[name].cells <= spec.cells
    assert sum(len(s.cells) + len(s.slots) for s in loose.values()) > 0


@pytest.mark.parametrize("bad", [-0.1, 1 / 3, 0.5])
def test_threshold_out_of_range(bad):
    with pytest.raises(PosenfsError, match="threshold"):
        find_dead(randomized(mbv2_cfg()), bad)


# --- the pruned model --------------------------------------------------------------------------


def dead_head_model():
    """Head loses (4,0), (3,0), pyramid level 0 (adapter) and sep_conv; lower_limb level 3."""
    model = randomized(mbv2_cfg())
    kill_slots(model, "head", (5, 0), SAME, FINER)
    kill_slots(model, "head", (4, 1), FINER)
    kill_slots(model, "head", (3, 1), FINER)
    kill_ops(model, "head", "sep_conv_3x3")
    kill_slots(model, "lower_limb", (3, 2), COARSER)
    return model


def test_pruned_model_matches_outputs_and_fresh_build_sizes():
    model = dead_head_model()
    cfg = mbv2_cfg()
    pruned, report = prune_model(model, recipe_for(cfg))
    assert report.max_abs_diff <= 1e-6
    head = report.removed["head"]
    assert head.cells == [(3, 0), (4, 0)] and head.ops == ["sep_conv_3x3"]
    assert head.slots == {(3, 1): ["finer"], (4, 1): ["finer"], (5, 0): ["same", "finer"]}
    assert head.inputs == [0] and report.removed["lower_limb"].inputs == [3]
    assert report.removed["upper_limb"].is_empty() and not report.nothing_removed
    # on fresh inputs too, and at another size
    diff, _ = output_difference(model, pruned, [96, 64], batch_size=3, seed=7)
    assert diff <= 1e-6
    # sizes equal a freshly built model of the same pruned structure
    fresh = build_model(cfg, MPII, prune=report.specs)
    assert count_params(pruned) == count_params(fresh)
    assert conv_macs(pruned, SIZE) == conv_macs(fresh, SIZE)
    before, after = count_params(model).total, count_params(pruned).total
    assert after < before and report.params_before == before and report.params_after == after
    assert conv_macs(pruned, SIZE).total < conv_macs(model, SIZE).total
    assert len(pruned.parts[0].adapters) == 3  # level 0 adapter gone


def test_surviving_module_names_line_up():
    model = dead_head_model()
    pruned, report = prune_model(model, recipe_for(mbv2_cfg()))
    mapping = state_key_map(model, pruned)
    src, dst = model.state_dict(), pruned.state_dict()
    assert set(mapping) == set(dst)  # every pruned weight has a source
    assert len(set(mapping.values())) == len(mapping)  # and no source is used twice
    for k, v in mapping.items():
        assert src[v].shape == dst[k].shape and torch.equal(src[v], dst[k]), k
    # ModuleList members shift when earlier ones vanish: cells, adapters, transforms, ops
    assert mapping["parts.0.cnf.cells.0.out.weight"] == "parts.0.cnf.cells.1.out.weight"
    assert mapping["parts.0.adapters.0.weight"] == "parts.0.adapters.1.weight"
    # (3,1) lost its finer slot: its coarser transform moved from position 2 to 1
    assert (
        mapping["parts.0.cnf.cells.0.transforms.1.conv.weight"]
        == "parts.0.cnf.cells.1.transforms.2.conv.weight"
    )
    # sep_conv pruned: dil_conv moves from position 2 to 1 (zero builds nothing, skip is 0)
    assert mapping["parts.0.cnf.cells.0.edges.0.ops.1.1.weight"] == (
        "parts.0.cnf.cells.1.edges.0.ops.2.1.weight"
    )
    # an unpruned rebuild maps every key onto itself
    same = build_model(mbv2_cfg(), MPII)
    assert state_key_map(model, same) == {k: k for k in model.state_dict()}


def test_fabric_backbone_chain_prunes_exactly():
    model = randomized(fabric_cfg())
    _kill_bottom_chain(model, keep_22_coarser=False)
    pruned, report = prune_model(model, recipe_for(fabric_cfg()))
    assert report.max_abs_diff <= 1e-6
    assert report.removed["backbone"].cells == [(0, 1), (1, 2), (2, 3), (3, 3)]
    fresh = build_model(fabric_cfg(), MPII, prune=report.specs)
    assert count_params(pruned) == count_params(fresh)
    assert conv_macs(pruned, SIZE) == conv_macs(fresh, SIZE)
    assert len(cnf(pruned, "backbone").cells) == 17 - 4


def test_prune_save_load_round_trip(tmp_path):
    model = dead_head_model()
    recipe = recipe_for(mbv2_cfg())
    pruned, report = prune_model(model, recipe)
    path = save_checkpoint(tmp_path / "p.safetensors", pruned, recipe, extra={"x": 1})
    loaded, ckpt = build_from_checkpoint(path)
    loaded.eval()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
        assert (loaded(x) - model(x)).abs().max() <= 1e-6
    geno = model_genotype(loaded, "mpii")
    head = geno.cnf("head")
    assert head.pruned.cells == ((3, 0), (4, 0)) and head.pruned.ops == ("sep_conv_3x3",)
    cells = {c.key: c for c in head.cells}
    assert cells[(3, 0)].pruned and cells[(4, 0)].pruned
    assert cells[(5, 0)].pruned_inputs == ("same", "finer")
    expected = {k: v for k, v in report.specs.items() if not v.is_empty()}
    assert prune_specs(geno) == expected == prune_specs(ckpt.genotype)


def test_pruning_a_pruned_model_again():
    model = dead_head_model()
    recipe = recipe_for(mbv2_cfg())
    once, _ = prune_model(model, recipe)
    twice, report = prune_model(once, recipe)
    assert report.nothing_removed and report.max_abs_diff <= 1e-6
    assert count_params(twice) == count_params(once)
    # a threshold on top combines with what is already gone
    more, loose = prune_model(once, recipe, threshold=0.1)
    assert not loose.nothing_removed
    for name, spec in find_dead(once).items():
        assert spec.cells <= loose.specs[name].cells and spec.ops <= loose.specs[name].ops
    assert count_params(more).total < count_params(once).total


def test_threshold_reports_the_difference_instead_of_raising():
    model = randomized(mbv2_cfg())
    recipe = recipe_for(mbv2_cfg())
    exact, r0 = prune_model(model, recipe)
    assert r0.nothing_removed
    loose, r1 = prune_model(model, recipe, threshold=0.15)
    assert not r1.nothing_removed
    assert r1.max_abs_diff > 1e-6  # not exact any more, but reported
    assert count_params(loose).total < count_params(exact).total


def test_verification_catches_a_wrong_pruning(monkeypatch):
    """If something with a non-zero weight were removed, threshold 0 must refuse."""
    model = randomized(mbv2_cfg())
    real = prune_mod.find_dead

    def wrong(m, threshold=0.0):
        specs = real(m, threshold)
        specs["head"] = PruneSpec(slots={(5, 0): {COARSER}})
        return specs

    monkeypatch.setattr(prune_mod, "find_dead", wrong)
    with pytest.raises(PruneVerificationError, match="changed the outputs"):
        prune_model(model, recipe_for(mbv2_cfg()))
