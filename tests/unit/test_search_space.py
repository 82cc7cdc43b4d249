"""The search space core: ops, mixed edge, cell, fabric wiring."""

from __future__ import annotations

import pytest
import torch

from posenfs_cli.config import SUBNET_OPS, FabricBackboneConfig
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.backbones.fabric import FabricBackbone
from posenfs_cli.nas.cell import Cell, MixedEdge, edge_pairs, num_edges
from posenfs_cli.nas.fabric import CNF, FabricSpec, cells_in_layer, slot_wiring
from posenfs_cli.nas.ops import build_op, check_ops

BIG = 1e4


def one_hot_logits(n: int, k: int) -> torch.Tensor:
    t = torch.full((n,), -BIG)
    t[k] = BIG
    return t


def subnet_spec(channels=1, hidden=1, ops=SUBNET_OPS) -> FabricSpec:
    return FabricSpec(6, 3, 6, channels, hidden, tuple(ops), in_width=4)


def pyramid(n=2, channels=1, size=16):
    return [torch.randn(n, channels * 4 * 2**s, size // 2**s, size // 2**s) for s in range(4)]


def test_edges_enumerate_dense_dag():
    assert num_edges(1) == 1 and num_edges(2) == 3 and num_edges(3) == 6
    assert edge_pairs(2) == [(0, 1), (0, 2), (1, 2)]


def test_alpha_and_beta_weights_are_one_at_init():
    cnf = CNF(subnet_spec())
    assert torch.equal(cnf.alpha, torch.zeros(1, 4))
    assert torch.allclose(cnf.alpha_weights(), torch.ones(1, 4))
    for cell in cnf.cells:
        assert torch.allclose(cell.beta.softmax(0) * 3, torch.ones(3))


def test_zero_op_builds_nothing_and_edge_skips_it():
    assert build_op("zero", 4) is None
    edge = MixedEdge(["zero", "skip"], 4)
    assert edge.op_index == (1,) and len(edge.ops) == 1
    x = torch.randn(1, 4, 5, 5)
    w = torch.tensor([2.0, 0.5])
    assert torch.equal(edge(x, w), x * 0.5)
    assert MixedEdge(["zero"], 4)(x, torch.ones(1)) is None


def test_unknown_op_is_a_clear_error():
    with pytest.raises(PosenfsError, match="unknown op 'conv9'"):
        check_ops(["skip", "conv9"])


@pytest.mark.parametrize("op", ["skip", "sep_conv_3x3", "dil_conv_3x3"])
def test_cell_with_alpha_forcing_one_op_equals_that_op_times_num_ops(op):
    ops = list(SUBNET_OPS)
    cnf = CNF(subnet_spec(ops=ops))
    cnf.eval()
    with torch.no_grad():
        cnf.alpha.copy_(one_hot_logits(len(ops), ops.index(op))[None])
    cell = cnf.cells[1]  # layer 3, scale 1: same / finer (down) / coarser (up)
    prev = pyramid()
    k = cell.edges[0].op_index.index(ops.index(op))
    with torch.no_grad():
        got = cell(prev, cnf.alpha_weights())
        node = cell.input_node(prev)
        want = cell.out(len(ops) * cell.edges[0].ops[k](node))
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("slot", [0, 1, 2])
def test_beta_forcing_one_input_equals_that_path(slot):
    cnf = CNF(subnet_spec())
    cnf.eval()
    cell = cnf.cells[1]
    with torch.no_grad():
        cell.beta.copy_(one_hot_logits(3, slot))
    prev = pyramid()
    src = cell.slots[slot][0]
    with torch.no_grad():
        got = cell.input_node(prev)
        want = torch.relu(3.0 * cell.transforms[slot](prev[src]))
    assert torch.allclose(got, want, atol=1e-5)


def test_wiring_rule_by_hand():
    # previous layer with 4 outputs: top cell reuses itself as "finer", bottom as "coarser"
    assert slot_wiring(0, 4) == [(0, "identity"), (0, "identity"), (1, "up")]
    assert slot_wiring(1, 4) == [(1, "identity"), (0, "down"), (2, "up")]
    assert slot_wiring(3, 4) == [(3, "identity"), (2, "down"), (3, "identity")]
    # growing: a new bottom cell reads the previous bottom through a downsample (three times)
    assert slot_wiring(1, 1) == [(0, "down"), (0, "down"), (0, "down")]
    assert slot_wiring(0, 1) == [(0, "identity")] * 3


def test_layer_widths_grow_then_shrink():
    assert [cells_in_layer(j, 6) for j in range(6)] == [2, 3, 4, 3, 2, 1]
    assert [cells_in_layer(j, 8) for j in range(8)] == [2, 3, 4, 4, 4, 3, 2, 1]


def test_subnetwork_l6_cut3_has_six_cells_and_one_output():
    cnf = CNF(subnet_spec())
    assert len(cnf.cells) == 6
    assert [(c.layer, c.scale) for c in cnf.cells] == [
        (3, 0),
        (3, 1),
        (3, 2),
        (4, 0),
        (4, 1),
        (5, 0),
    ]
    out = cnf(pyramid())
    assert len(out) == 1 and out[0].shape == (2, 4, 16, 16)


@pytest.mark.parametrize(
    "layers,channels,hidden,kept,cells", [(7, 10, 2, 3, 9), (8, 10, 1, 5, 17), (8, 12, 1, 5, 17)]
)
def test_fabric_backbones_cell_counts(layers, channels, hidden, kept, cells):
    bb = FabricBackbone(FabricBackboneConfig(layers, 1, hidden, kept))
    assert len(bb.cnf.cells) == cells
    assert bb.out_channels == [4, 8, 16, 32]
    outs = bb(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(4, 16, 16), (8, 8, 8), (16, 4, 4), (32, 2, 2)]


def test_duplicated_slots_get_their_own_modules():
    cell = Cell(0, 1, 8, 1, ["skip"], slot_wiring(1, 1))
    mods = list(cell.transforms)
    assert len(mods) == 3 and len({id(m) for m in mods}) == 3
    assert all(m[0].in_channels == 4 and m[0].stride == (2, 2) for m in mods)


def test_dead_slots_and_ops_are_not_built():
    full = Cell(3, 1, 8, 2, list(SUBNET_OPS), slot_wiring(1, 4))
    pruned = Cell(
        3,
        1,
        8,
        2,
        list(SUBNET_OPS),
        slot_wiring(1, 4),
        dead_slots=frozenset({1}),
        dead_ops=frozenset({"sep_conv_3x3"}),
    )
    n_full = sum(p.numel() for p in full.parameters())
    n_pruned = sum(p.numel() for p in pruned.parameters())
    down = sum(p.numel() for p in full.transforms[1].parameters())
    sep = sum(p.numel() for p in full.edges[0].ops[1].parameters())
    assert n_full - n_pruned == down + 3 * sep
