"""Genotype JSON and checkpoint round trips, structure mismatches, pretrained loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from posenfs_cli.config import ModelConfig, Recipe
from posenfs_cli.data.layouts import MPII
from posenfs_cli.engine.checkpoint import build_from_checkpoint, read_checkpoint, save_checkpoint
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import build_model
from posenfs_cli.nas.genotype import apply_genotype, load_genotype, model_genotype, save_genotype
from tests.helpers import tiny_model


def randomized(cfg: ModelConfig):
    model = build_model(cfg, MPII)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_()
    return model


def fabric_cfg(**kw) -> ModelConfig:
    return tiny_model(**{"hidden": 2, **kw})


def test_genotype_json_round_trip_is_lossless(tmp_path):
    model = randomized(fabric_cfg())
    geno = model_genotype(model, "mpii")
    path = save_genotype(tmp_path / "g.json", geno)
    other = build_model(fabric_cfg(), MPII)
    apply_genotype(other, load_genotype(path))
    for (na, a), (nb, b) in zip(
        model.named_arch_parameters(), other.named_arch_parameters(), strict=True
    ):
        assert na == nb and torch.equal(a, b)
    assert model_genotype(other, "mpii") == geno


def test_genotype_is_human_readable():
    geno = model_genotype(randomized(fabric_cfg()), "mpii").to_json()
    names = [c["name"] for c in geno["cnfs"]]
    assert names == ["backbone", "head", "upper_limb", "lower_limb"]
    head = geno["cnfs"][1]
    assert head["keypoints"] == ["thorax", "upper_neck", "head_top"]
    assert head["ops"] == ["zero", "skip", "sep_conv_3x3", "dil_conv_3x3"]
    assert head["edges"] == [["I", "h1"], ["I", "h2"], ["h1", "h2"]]
    w = torch.tensor(head["alpha"]["weights"])
    assert torch.allclose(w, torch.tensor(head["alpha"]["logits"]).softmax(-1))
    cell = head["cells"][0]
    assert (cell["layer"], cell["scale"]) == (3, 0)
    assert [i["slot"] for i in cell["inputs"]] == ["same", "finer", "coarser"]
    assert cell["inputs"][2] == {"slot": "coarser", "from": "pyramid[1]", "transform": "up"}
    assert abs(sum(cell["beta"]["weights"]) - 1) < 1e-6


@pytest.mark.parametrize(
    "cfg,msg",
    [
        (fabric_cfg(parts=5), "genotype has CNFs"),
        (fabric_cfg(ops=["zero", "skip", "sep_conv_3x3"]), "ops differ"),
        (ModelConfig(backbone="fabric", channels=1, parts=3, hidden=1), "edges differ"),
        (fabric_cfg(cut=2), "structure differ"),
    ],
)
def test_genotype_for_another_structure_is_rejected(cfg, msg):
    geno = model_genotype(randomized(fabric_cfg()), "mpii")
    with pytest.raises(PosenfsError, match=msg):
        apply_genotype(build_model(cfg, MPII), geno)


def test_not_a_genotype(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(PosenfsError, match="not a posenfs genotype"):
        load_genotype(p)


def test_checkpoint_round_trip_rebuilds_model_without_recipe(tmp_path):
    recipe = Recipe(model=fabric_cfg())
    model = randomized(recipe.model).eval()
    path = save_checkpoint(
        tmp_path / "m.safetensors", model, recipe, epoch=3, metrics={"pckh": 50.0}
    )
    again, ckpt = build_from_checkpoint(path)
    again.eval()
    assert ckpt.epoch == 3 and ckpt.metrics == {"pckh": 50.0}
    assert ckpt.metadata["keypoints"] == "mpii" and ckpt.metadata["input_format"] == "rgb"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_checkpoint_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PosenfsError, match="not a safetensors checkpoint"):
        read_checkpoint(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(PosenfsError, match="not a posenfs checkpoint"):
        read_checkpoint(plain)
    with pytest.raises(PosenfsError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_model_loads_pretrained_backbone_with_renamed_keys(tmp_path):
    """A timm-named MobileNetV2 state dict loads into the model's backbone by explicit map."""
    from posenfs_cli.models.backbones.mobilenet_v2 import timm_key_map

    src = build_model(ModelConfig(backbone="mobilenet_v2", channels=1), MPII).backbone
    ours = src.state_dict()
    # invert the explicit timm -> ours map on every name we have
    candidates = {}
    for key in ours:
        parts = key.split(".")
        for stage in range(7):
            for idx in range(4):
                for tail in ("conv_stem", "bn1", "conv_dw", "bn2", "conv_pw", "conv_pwl", "bn3"):
                    cand = f"blocks.{stage}.{idx}.{tail}.{parts[-1]}"
                    if timm_key_map(cand) == key:
                        candidates[key] = cand
        for cand in (f"conv_stem.{parts[-1]}", f"bn1.{parts[-1]}"):
            if timm_key_map(cand) == key:
                candidates[key] = cand
    assert len(candidates) == len(ours), sorted(set(ours) - set(candidates))[:5]
    path = tmp_path / "timm_mbv2.pth"
    torch.save({"state_dict": {candidates[k]: v for k, v in ours.items()}}, path)
    model = build_model(
        ModelConfig(backbone="mobilenet_v2", channels=1, pretrained=str(path)), MPII
    )
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, ours[k]), k
