"""The authors' checkpoints: architecture read from the file, outputs equal theirs, pruned files."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from posenfs_cli.config import ModelConfig, load_recipe
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint
from posenfs_cli.models.backbones import mobilenet_v2
from posenfs_cli.models.build import build_model
from posenfs_cli.models.parts import PartGroup
from posenfs_cli.models.posenet import PartNet
from posenfs_cli.models.size import count_params
from posenfs_cli.nas.fabric import FabricSpec
from posenfs_cli.official import format as fmt
from posenfs_cli.official.convert import build_recipe, convert
from posenfs_cli.official.importer import import_official
from posenfs_cli.official.infer import infer, read_state
from posenfs_cli.official.resolve import ImportMismatch, resolve
from tests.conftest import REPO, SHARED_DATA, needs_shared

OFFICIAL = SHARED_DATA / "official"
FIXTURES = [
    "mpii_mbv2_p3_h1_c4_64",
    "coco_mbv2_p5_h2_c4_nozero_128x96",
    "mpii_mbv2_p1_h1_c4_d1_64",
    "mpii_mbv2_p3_h2_c4_in2_64",
    "coco_mbv2_p3_h1_c4_pruned_128x96",
]
TOL = 1e-5


def fixture_file(name: str):
    folder = OFFICIAL / name
    return next(folder.glob("*.tar")), folder / "official_config.yaml", folder / "io.safetensors"


def rel_err(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|."""
    return float((ours - theirs).abs().max() / theirs.abs().max())


@functools.cache
def read_fixture(name: str):
    return read_state(fixture_file(name)[0])


@functools.cache
def resolved(name: str, with_config: bool):
    state, _ = read_fixture(name)
    cfg = fmt.read_config(fixture_file(name)[1]) if with_config else None
    return resolve(infer(state), cfg)


@functools.cache
def converted(name: str):
    """The conversion with the authors' YAML (cached: CPU time is scarce)."""
    state, wrapper = read_fixture(name)
    return convert(state, resolved(name, True), wrapper=wrapper)


@needs_shared
@pytest.mark.parametrize("name", FIXTURES)
def test_outputs_equal_the_authors(name):
    conv = converted(name)
    io = load_file(str(fixture_file(name)[2]))
    model = conv.model.eval()
    with torch.no_grad():
        merged = model(io["input"])
        pyramid = model.backbone(io["input"])
        per_part = {p.name: p(pyramid) for p in model.parts}
    # Merged maps: their channel k is our joint output_order[k].
    assert rel_err(merged[:, conv.output_order], io["output"]) < TOL
    # Each part: their channels follow their part's joint list, ours the sorted native indices.
    layout = get_layout(conv.resolved.dataset)
    for theirs, joints in conv.resolved.joints.items():
        ours = conv.part_names[theirs]
        part = next(p for p in model.parts if p.name == ours)
        idx = [part.joints.index(layout.index(fmt.our_joint_name(j))) for j in joints]
        assert rel_err(per_part[ours][:, idx], io[f"part.{theirs}"]) < TOL, theirs


@needs_shared
@pytest.mark.parametrize("name", FIXTURES)
def test_without_yaml_the_file_gives_the_same_model(name):
    """convert() is a function of the file and the resolved facts: equal facts, equal outputs."""
    with_yaml, without = resolved(name, True), resolved(name, False)
    assert without.ops == with_yaml.ops and without.dataset == with_yaml.dataset
    assert without.joints == with_yaml.joints and without.vector_dim == with_yaml.vector_dim
    a, b = build_recipe(with_yaml, "x").model, build_recipe(without, "x").model
    assert a == b
    assert any(n.startswith("ops ") and "no config" in n for n in without.notes)


@needs_shared
def test_a_matching_recipe_adds_input_size_and_op_names():
    recipe = load_recipe(REPO / "recipes" / "synthetic" / "tiny.yaml")  # MBv2 P=3 H=1 C=4
    state, _ = read_fixture("mpii_mbv2_p3_h1_c4_64")
    res = resolve(infer(state), recipe=recipe)
    assert res.input_size == [64, 64] and res.source == "recipe tiny"
    from_yaml = resolved("mpii_mbv2_p3_h1_c4_64", True)
    assert build_recipe(res, "x").model == build_recipe(from_yaml, "x").model


@needs_shared
def test_nozero_op_order_is_read_from_the_file_without_config():
    recipe = build_recipe(resolved("coco_mbv2_p5_h2_c4_nozero_128x96", False), "x")
    # Their α columns are skip, Atr, Sep: the paper's 3-op order (skip, sep, dil) would be wrong.
    assert recipe.model.ops == ["skip", "dil_conv_3x3", "sep_conv_3x3"]
    assert recipe.model.hidden == 2 and recipe.model.parts == 5
    assert recipe.data.keypoints == "coco"


@needs_shared
def test_two_input_nodes_read_the_first_alpha_rows():
    name = "mpii_mbv2_p3_h2_c4_in2_64"
    conv = copy.deepcopy(converted(name))
    state, _ = read_fixture(name)
    io = load_file(str(fixture_file(name)[2]))
    assert all(p.cnf.alpha.shape == (3, 4) for p in conv.model.parts)  # H=2: 3 edges
    assert any("alphas rows [3, 4]" in u for u, _ in conv.unused)
    # The other plausible reading (rows of edges from input node 1 / h1: 0, 2, 4) is wrong.
    with torch.no_grad():
        for part in conv.model.parts:
            theirs = next(t for t, o in conv.part_names.items() if o == part.name)
            part.cnf.alpha.copy_(state[f"{theirs}.alphas"][[0, 2, 4]])
        y = conv.model.eval()(io["input"])
    assert rel_err(y[:, conv.output_order], io["output"]) > 1e-3


@needs_shared
def test_pruned_file_becomes_a_pruned_checkpoint(tmp_path):
    ckpt, cfg, io_path = fixture_file("coco_mbv2_p3_h1_c4_pruned_128x96")
    out = tmp_path / "pruned.safetensors"
    result = import_official(ckpt, config=cfg, out=out)
    conv = result.conversion
    # Cell (3, 2) of each CNF and sep_conv_3x3 are physically absent, not zero weights.
    for name, spec in conv.prune.items():
        assert spec.cells == {(3, 2)} and spec.ops == {"sep_conv_3x3"}, name
        assert spec.slots == {(4, 1): {2}}
    dense = build_model(conv.recipe.model, get_layout("coco"), load_pretrained=False)
    assert result.params == count_params(conv.model).total < count_params(dense).total
    assert result.params_unpruned == count_params(dense).total
    assert any("propress_list.2" in u for u, _ in conv.unused)
    # The written checkpoint rebuilds the pruned model from its genotype and gives their output.
    saved = read_checkpoint(out)
    assert saved.metadata["input_format"] == "bgr"  # as their training fed it
    geno = saved.genotype
    assert all(c.pruned.cells == ((3, 2),) for c in geno.cnfs)
    assert all(c.pruned.ops == ("sep_conv_3x3",) for c in geno.cnfs)
    model, _ = build_from_checkpoint(out)
    io = load_file(str(io_path))
    with torch.no_grad():
        y = model.eval()(io["input"])
    assert rel_err(y[:, conv.output_order], io["output"]) < TOL


@needs_shared
def test_config_with_four_ops_for_a_three_op_file_is_reported_per_tensor(tmp_path):
    ckpt, cfg, _ = fixture_file("coco_mbv2_p5_h2_c4_nozero_128x96")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        cfg.read_text().replace("      - skip_connect", "      - Zero\n      - skip_connect")
    )
    with pytest.raises(ImportMismatch) as info:
        import_official(ckpt, config=bad, out=tmp_path / "m.safetensors")
    lines = info.value.lines
    assert len(lines) == 5  # one per part's alphas
    assert all(".alphas: file [3, 3], config [3, 4]" in line for line in lines)
    assert not (tmp_path / "m.safetensors").exists()


@needs_shared
def test_config_with_wrong_hidden_and_input_nodes_names_the_tensors(tmp_path):
    ckpt, cfg, _ = fixture_file("mpii_mbv2_p3_h2_c4_in2_64")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        cfg.read_text()
        .replace("input_nodes_num: 2", "input_nodes_num: 1")
        .replace("depth: 6", "depth: 7")
    )
    with pytest.raises(ImportMismatch) as info:
        import_official(ckpt, config=bad, inspect=True)
    text = "\n".join(info.value.lines)
    assert "upper_limb_part.alphas: file [5, 4] (2 input node(s)), config [3, 4]" in text
    assert "head_part.betas: file [6, 3]" in text


@needs_shared
def test_official_mobilenet_names_load_as_a_backbone_source():
    ckpt, _, _ = fixture_file("mpii_mbv2_p3_h1_c4_64")
    state, _ = read_fixture("mpii_mbv2_p3_h1_c4_64")
    backbone = mobilenet_v2.MobileNetV2Backbone()
    assert mobilenet_v2.load_weights(backbone, ckpt) == "official"
    ours = backbone.state_dict()
    assert torch.equal(
        ours["features.2.conv.1.0.weight"], state["backbone.features.2.conv.3.weight"]
    )
    assert torch.equal(
        ours["features.1.conv.2.running_var"], state["backbone.features.1.conv.4.running_var"]
    )
    assert torch.equal(ours["features.16.conv.3.bias"], state["backbone.features.16.conv.7.bias"])


def test_official_mobilenet_key_map_covers_every_tensor(tmp_path):
    """Original-repo names (features.k.conv.{0,1,3,4,6,7}, t=1: {0,1,3,4}) map onto all of ours."""
    src = mobilenet_v2.MobileNetV2Backbone()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    inverse = {}
    for k in src.state_dict():
        m = k.split(".")
        if k.startswith("features.0."):
            inverse[k] = k
            continue
        blk, rest = int(m[1]), ".".join(m[3:])
        table = (
            {"0.0": "0", "0.1": "1", "1": "3", "2": "4"}
            if blk == 1
            else {"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"}
        )
        sub, leaf = rest.rsplit(".", 1)
        inverse[k] = f"features.{blk}.conv.{table[sub]}.{leaf}"
    official = {v: src.state_dict()[k] for k, v in inverse.items()}
    official["features.17.conv.0.weight"] = torch.zeros(960, 160, 1, 1)  # dropped as unused
    path = tmp_path / "mbv2_official.pth"
    torch.save(official, path)
    dst = mobilenet_v2.MobileNetV2Backbone()
    assert mobilenet_v2.load_weights(dst, path) == "official"
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_pyramid_adapters_are_all_or_nothing():
    """As the released code: one matching level does not make that adapter an identity."""
    spec = FabricSpec(6, 3, 6, 4, 1, ("zero", "skip", "sep_conv_3x3", "dil_conv_3x3"), 4)
    group = PartGroup("all", tuple(range(16)))
    mbv2 = PartNet(group, spec, [24, 32, 96, 160], 8)  # level 1 has 32 = 8·C channels already
    assert all(isinstance(a, nn.Conv2d) for a in mbv2.adapters)
    matching = PartNet(group, spec, [16, 32, 64, 128], 8)
    assert all(isinstance(a, nn.Identity) for a in matching.adapters)


def test_paper_op_order_fills_the_columns_the_file_cannot_name():
    cfg = ModelConfig()
    assert fmt.PAPER_OPS[4] == cfg.ops  # the paper's subnetwork op set, in our default order
