"""Baseline heads (model.head: branchnet | deconv): structure, sizes, no α/β, MAC counting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from posenfs_cli.config import BranchnetConfig, DeconvConfig, ModelConfig, Recipe
from posenfs_cli.data.layouts import COCO, MPII
from posenfs_cli.engine.checkpoint import build_from_checkpoint, save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.baselines import Bottleneck, BranchNet, DeconvHead
from posenfs_cli.models.build import build_model
from posenfs_cli.models.size import count_params
from posenfs_cli.nas.genotype import model_genotype
from posenfs_cli.profiling import conv_macs


def tiny(head: str, **kw) -> ModelConfig:
    return ModelConfig(
        backbone="mobilenet_v2",
        head=head,
        branchnet=BranchnetConfig(width=8, depth=2),
        deconv=DeconvConfig(channels=8),
        **kw,
    )


@pytest.mark.parametrize("head", ["branchnet", "deconv"])
@pytest.mark.parametrize("d", [1, 8])
def test_baseline_output_shape_parts_and_no_arch(head, d):
    model = build_model(tiny(head, parts=3, vector_dim=d), MPII, load_pretrained=False).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 16, 16, 16)  # every MPII joint at 1/4
    assert [p.name for p in model.parts] == ["head", "upper_limb", "lower_limb"]
    assert model.arch_parameters() == [] and list(model.cnfs()) == []
    assert model_genotype(model, "mpii").cnfs == ()
    if d == 8:  # vector in pixel: squashed lengths lie in [0, 1)
        assert out.min() >= 0 and out.max() < 1
    # each part's head outputs K_p·d channels
    assert model.parts[0].head.conv.out_channels == 3 * d


def test_branchnet_reads_the_whole_pyramid_and_has_d_bottlenecks():
    model = build_model(tiny("branchnet", parts=1), MPII, load_pretrained=False)
    part = model.parts[0]
    assert isinstance(part, BranchNet)
    assert part.reduce[0].in_channels == sum(model.backbone.out_channels)  # 24+32+96+160
    assert part.reduce[0].out_channels == 8
    assert len(part.blocks) == 2 and all(isinstance(b, Bottleneck) for b in part.blocks)


def test_bottleneck_params_and_identity_shortcut():
    w = 400
    block = Bottleneck(w)
    convs = sum(m.weight.numel() for m in block.modules() if isinstance(m, nn.Conv2d))
    assert convs == w * 100 + 9 * 100 * 100 + 100 * w  # 1x1 W->W/4, 3x3, 1x1 W/4->W
    # zero the last BN's scale: the block is ReLU(x) (identity shortcut)
    with torch.no_grad():
        block.bn3.weight.zero_()
    block.eval()
    x = torch.randn(1, w, 4, 4)
    assert torch.allclose(block(x), torch.relu(x))


def test_deconv_head_is_simplebaseline():
    model = build_model(
        ModelConfig(backbone="resnet50", head="deconv", parts=1, vector_dim=1),
        COCO,
        load_pretrained=False,
    )
    head = model.parts[0]
    assert isinstance(head, DeconvHead)
    deconvs = [m for m in head.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in deconvs] == [
        (2048, 256, (4, 4), (2, 2)),
        (256, 256, (4, 4), (2, 2)),
        (256, 256, (4, 4), (2, 2)),
    ]
    assert head.head.conv.out_channels == 17
    # SimpleBaseline-ResNet-50 is 34.0M params (Xiao et al.): 33,999,697 here
    assert count_params(model).total == 33_999_697


class _OneDeconv(nn.Module):
    parts: list = []

    def __init__(self):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.deconv(x)


def test_deconv_macs_count_input_pixels_and_the_paper_convention_output_pixels():
    total, _, _ = conv_macs(_OneDeconv(), [8, 6])
    assert total == 3 * 2 * 16 * 8 * 6  # weight × input pixels
    by_out, _, _ = conv_macs(_OneDeconv(), [8, 6], transpose_by_output=True)
    assert by_out == 4 * total  # stride 2: 4x as many output pixels


def test_unknown_head():
    with pytest.raises(PosenfsError, match="model.head must be one of cnf, branchnet, deconv"):
        build_model(ModelConfig(head="hourglass"), MPII, load_pretrained=False)


def test_bad_baseline_settings():
    cfg = tiny("deconv")
    cfg.deconv.layers = 2
    with pytest.raises(PosenfsError, match="model.deconv.layers must be 3"):
        build_model(cfg, MPII, load_pretrained=False)
    cfg = tiny("branchnet")
    cfg.branchnet.width = 2
    with pytest.raises(PosenfsError, match="model.branchnet needs width >= 4"):
        build_model(cfg, MPII, load_pretrained=False)


def test_cnf_stays_the_default_and_old_configs_load():
    from posenfs_cli.config import recipe_from_dict

    rec = recipe_from_dict({"model": {"backbone": "mobilenet_v2", "channels": 4}})
    assert rec.model.head == "cnf"
    model = build_model(rec.model, MPII, load_pretrained=False)
    assert len(list(model.cnfs())) == 3


@pytest.mark.parametrize("head", ["branchnet", "deconv"])
def test_baseline_checkpoint_round_trip(tmp_path, head):
    recipe = Recipe(model=tiny(head, parts=5))
    model = build_model(recipe.model, MPII, load_pretrained=False).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, recipe)
    again, ckpt = build_from_checkpoint(path)
    assert ckpt.recipe.model.head == head
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), again.eval()(x))


def test_pruning_a_baseline_model_is_refused():
    from posenfs_cli.models.prune import prune_model

    recipe = Recipe(model=tiny("branchnet"))
    recipe.data.input_size = [64, 64]
    model = build_model(recipe.model, MPII, load_pretrained=False)
    with pytest.raises(PosenfsError, match="nothing to prune: model.head=branchnet"):
        prune_model(model, recipe)
