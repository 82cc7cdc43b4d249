"""Body-part groups, vector-in-pixel head, merge, gradients, builder errors."""

from __future__ import annotations

import pytest
import torch

from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.models.head import merge_parts, squash_score, vector_scores
from posenfs_cli.models.parts import resolve_parts
from tests.helpers import tiny_model


def tiny(**kw) -> ModelConfig:
    return tiny_model(**kw)


def test_squash_values_by_hand():
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # |v| = 5, 0, 1
    assert torch.allclose(squash_score(v, dim=1), torch.tensor([25 / 26, 0.0, 0.5]))


def test_vector_scores_keypoint_major_channels_and_scalar_d1():
    raw = torch.zeros(1, 2 * 3, 1, 1)
    raw[0, 0:3, 0, 0] = torch.tensor([1.0, 2.0, 2.0])  # keypoint 0: |v|^2 = 9
    raw[0, 3:6, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # keypoint 1: |v|^2 = 1
    got = vector_scores(raw, num_joints=2, dim=3)[0, :, 0, 0]
    assert torch.allclose(got, torch.tensor([0.9, 0.5]))
    same = torch.randn(1, 4, 2, 2)
    assert vector_scores(same, 4, 1) is same  # d = 1: plain heatmaps, no squash


def test_merge_sums_a_keypoint_shared_by_two_parts():
    a = torch.full((1, 2, 1, 1), 0.25)
    b = torch.full((1, 2, 1, 1), 0.5)
    out = merge_parts([a, b], torch.tensor([0, 1, 1, 2]), 3)[0, :, 0, 0]
    assert torch.allclose(out, torch.tensor([0.25, 0.75, 0.5]))


def test_table_one_groups_in_native_indices():
    p3 = resolve_parts(MPII, 3)
    assert [g.name for g in p3] == ["head", "upper_limb", "lower_limb"]
    assert p3[0].joints == (7, 8, 9)  # thorax, upper neck, head top (native MPII)
    assert p3[2].joints == (0, 1, 2, 3, 4, 5, 6)
    p5 = resolve_parts(COCO, 5)
    assert [g.joints for g in p5] == [
        (0, 1, 2, 3, 4, 5, 6),
        (7, 9),
        (8, 10),
        (11, 12),
        (13, 14, 15, 16),
    ]
    p8 = resolve_parts(MPII, 8)
    counts = torch.bincount(torch.tensor([j for g in p8 for j in g.joints]), minlength=16)
    # shoulders (12, 13), elbows (11, 14) and knees (1, 4) sit in two parts each
    assert sorted(torch.nonzero(counts == 2).flatten().tolist()) == [1, 4, 11, 12, 13, 14]


def test_random_partition_is_seeded_and_covers_everything():
    a = resolve_parts(MPII, "random", random_parts=3, seed=7)
    b = resolve_parts(MPII, "random", random_parts=3, seed=7)
    c = resolve_parts(MPII, "random", random_parts=3, seed=8)
    assert a == b and a != c
    assert sorted(j for g in a for j in g.joints) == list(range(16))
    assert all(g.joints for g in a)


def test_custom_groups_by_name_and_errors():
    groups = {"top": list(MPII.names[6:]), "legs": list(MPII.names[:6])}
    parts = resolve_parts(MPII, "custom", groups)
    assert [g.joints for g in parts] == [tuple(range(6, 16)), tuple(range(6))]
    with pytest.raises(PosenfsError, match="not covered"):
        resolve_parts(MPII, "custom", {"legs": list(MPII.names[:6])})
    with pytest.raises(PosenfsError, match="'nose' is not in the mpii layout"):
        resolve_parts(MPII, "custom", {"x": ["nose"]})
    with pytest.raises(PosenfsError, match="parts must be 1, 3, 5, 8"):
        resolve_parts(MPII, 4)


def test_shared_keypoint_output_is_the_sum_of_both_parts():
    model = build_model(ModelConfig(backbone="fabric", parts=8, channels=1), MPII).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        pyr = model.backbone(x)
        maps = {p.name: (p.joints, p(pyr)) for p in model.parts}
    lsho = MPII.index("left_shoulder")
    want = sum(m[:, js.index(lsho)] for js, m in maps.values() if lsho in js)
    assert torch.allclose(out[:, lsho], want, atol=1e-6)
    assert out.shape == (1, 16, 16, 16)


def test_gradients_reach_alpha_beta_and_every_weight():
    model = build_model(ModelConfig(backbone="fabric", parts=3, channels=1), MPII)
    with torch.no_grad():  # leave the init point so every path gets a non-trivial gradient
        for p in model.arch_parameters():
            p.normal_()
    out = model(torch.randn(2, 3, 64, 64))
    (out - torch.rand_like(out)).square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    scale = max(p.grad.abs().max().item() for p in model.parameters())
    # Biases of convs followed by train-mode BN have a zero gradient by construction (BN removes
    # the mean), so only weights and α/β are required to carry a non-trivial gradient.
    missing = [
        n
        for n, p in model.named_parameters()
        if not n.endswith(".bias") and p.grad.abs().max().item() <= 1e-7 * scale
    ]
    # The fabric backbone's first top cell reads the stem three times through identities, so
    # its input is relu(3 * stem) whatever β is: that β (and only it) has a zero gradient.
    assert missing == ["backbone.cnf.cells.0.beta"]
    assert len(model.arch_parameters()) == 1 + 9 + 3 * (1 + 6)  # backbone α+β, parts α+β


def test_coco_output_shape_and_layout():
    model = build_model(ModelConfig(backbone="fabric", parts=5, channels=1), COCO)
    assert model(torch.randn(1, 3, 96, 64)).shape == (1, 17, 24, 16)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(backbone="vgg"), "unknown backbone 'vgg'"),
        (dict(ops=["skip", "conv"]), "unknown op 'conv'"),
        (dict(parts=2), "parts must be 1, 3, 5, 8"),
        (dict(cut=6), "model.cut must be in"),
        (dict(vector_dim=0), "model.vector_dim must be >= 1"),
    ],
)
def test_builder_errors_are_clear(kw, msg):
    with pytest.raises(PosenfsError, match=msg):
        build_model(ModelConfig(**{"backbone": "fabric", "channels": 1, **kw}), MPII)
