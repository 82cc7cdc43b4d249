"""Backbones: exact sizes, pyramid shapes, conv MACs and strict pretrained loading."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from posenfs_cli.config import ModelConfig
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.backbones import hrnet, mobilenet_v2, resnet
from posenfs_cli.models.backbones.pretrained import read_checkpoint

BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "mobilenet_v2": mobilenet_v2.build,
    "resnet50": resnet.build,
    "hrnet_w32": hrnet.build,
}
PARAMS = {"mobilenet_v2": 1_337_792, "resnet50": 23_508_032, "hrnet_w32": 8_128_320}
CHANNELS = {
    "mobilenet_v2": [24, 32, 96, 160],
    "resnet50": [256, 512, 1024, 2048],
    "hrnet_w32": [32, 64, 128, 256],
}

_CACHE: dict[str, nn.Module] = {}


def build(name: str, pretrained: str | Path | None = None) -> nn.Module:
    cfg = ModelConfig(backbone=name, pretrained=None if pretrained is None else str(pretrained))
    return BUILDERS[name](cfg)


def randomized(name: str) -> nn.Module:
    """A model with every parameter and BN statistic random (cached: building is slow-ish)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        model = build(name)
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.copy_(torch.rand_like(tensor) + 0.5)
                else:
                    tensor.fill_(7)
        _CACHE[name] = model
    return _CACHE[name]


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    state = {k: v.clone().contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def assert_same(a: nn.Module, b: nn.Module, counters: bool = True) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if counters or not k.endswith("num_batches_tracked"):
            assert torch.equal(sa[k], sb[k]), k


# --- sizes and shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDERS))
def test_param_count_channels_and_strides(name: str) -> None:
    model = build(name).eval()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert model.out_channels == CHANNELS[name]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 64 // s) for c, s in zip(CHANNELS[name], (4, 8, 16, 32), strict=True)
    ]


def test_mobilenet_v2_conv_macs_at_256() -> None:
    model = build("mobilenet_v2").eval()
    macs = 0

    def hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += module.weight.numel() * out.shape[2] * out.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(1, 3, 256, 256))
    for h in handles:
        h.remove()
    assert macs == pytest.approx(0.3349e9, rel=0.005)


def test_registry_names() -> None:
    if importlib.util.find_spec("posenfs_cli.models.backbones.fabric") is None:
        pytest.skip("fabric backbone not written yet")
    from posenfs_cli.models.backbones import backbone_names, build_backbone

    assert {"mobilenet_v2", "resnet50", "hrnet_w32"} <= set(backbone_names())
    model = build_backbone(ModelConfig(backbone="mobilenet_v2"))
    assert model.out_channels == CHANNELS["mobilenet_v2"]


def test_torchvision_names() -> None:
    keys = set(build("mobilenet_v2").state_dict())
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight"} <= keys
    assert {"features.2.conv.0.0.weight", "features.16.conv.3.running_var"} <= keys
    assert not any(k.startswith(("features.17", "features.18")) for k in keys)
    keys = set(build("resnet50").state_dict())
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias"} <= keys
    keys = set(build("hrnet_w32").state_dict())
    assert {
        "layer1.0.conv1.weight",
        "transition1.0.0.weight",
        "transition1.1.0.0.weight",
        "stage2.0.branches.0.0.conv1.weight",
        "stage2.0.fuse_layers.1.0.0.0.weight",
        "stage3.3.fuse_layers.0.2.0.weight",
        "transition3.3.0.0.weight",
    } <= keys


# --- pretrained round trips ---------------------------------------------------------------------

# torchvision features index -> (timm stage, index in stage), written independently of the module.
_TIMM_POS = {}
_k = 1
for _stage, _n in enumerate([1, 2, 3, 4, 3, 3, 1]):
    for _i in range(_n):
        _TIMM_POS[_k] = (_stage, _i)
        _k += 1
_TV_TO_TIMM_IR = {
    "conv.0.0": "conv_pw",
    "conv.0.1": "bn1",
    "conv.1.0": "conv_dw",
    "conv.1.1": "bn2",
    "conv.2": "conv_pwl",
    "conv.3": "bn3",
}
_TV_TO_TIMM_DS = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}


def to_timm(key: str) -> str:
    if key.startswith("features.0.0."):
        return "conv_stem." + key[len("features.0.0.") :]
    if key.startswith("features.0.1."):
        return "bn1." + key[len("features.0.1.") :]
    m = re.match(r"features\.(\d+)\.(conv\.\d+(?:\.\d+)?)\.(\w+)$", key)
    assert m is not None, key
    stage, index = _TIMM_POS[int(m[1])]
    sub = (_TV_TO_TIMM_DS if stage == 0 else _TV_TO_TIMM_IR)[m[2]]
    return f"blocks.{stage}.{index}.{sub}.{m[3]}"


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_mobilenet_v2_timm_round_trip(tmp_path: Path, suffix: str) -> None:
    a = randomized("mobilenet_v2")
    state = {to_timm(k): v for k, v in a.state_dict().items()}
    assert state["blocks.1.0.conv_pwl.weight"].shape == (24, 96, 1, 1)
    assert state["blocks.0.0.conv_dw.weight"].shape == (32, 1, 3, 3)
    # Parts timm has and we do not build.
    state["blocks.6.0.conv_pw.weight"] = torch.zeros(960, 160, 1, 1)
    state["conv_head.weight"] = torch.zeros(1280, 320, 1, 1)
    state["bn2.weight"] = torch.zeros(1280)
    state["classifier.weight"] = torch.zeros(1000, 1280)
    if suffix == ".pth":  # and without the BN counters, as old checkpoints
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = save(state, tmp_path / f"mbv2_timm{suffix}")
    assert mobilenet_v2.detect_naming(read_checkpoint(path)) == "timm"
    assert_same(a, build("mobilenet_v2", path), counters=suffix != ".pth")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_mobilenet_v2_torchvision_round_trip(tmp_path: Path, suffix: str) -> None:
    a = randomized("mobilenet_v2")
    state = dict(a.state_dict())
    state["features.17.conv.2.weight"] = torch.zeros(320, 960, 1, 1)
    state["features.18.0.weight"] = torch.zeros(1280, 320, 1, 1)
    state["classifier.1.weight"] = torch.zeros(1000, 1280)
    path = save(state, tmp_path / f"mbv2_tv{suffix}")
    assert_same(a, build("mobilenet_v2", path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_resnet50_round_trip(tmp_path: Path, suffix: str) -> None:
    a = randomized("resnet50")
    state = dict(a.state_dict())
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    path = save(state, tmp_path / f"r50{suffix}")
    assert_same(a, build("resnet50", path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_hrnet_round_trip(tmp_path: Path, suffix: str) -> None:
    a = randomized("hrnet_w32")
    state = dict(a.state_dict())
    state["stage4.0.branches.3.0.conv1.weight"] = torch.zeros(256, 256, 3, 3)
    state["final_layer.weight"] = torch.zeros(16, 32, 1, 1)
    state["final_layer.bias"] = torch.zeros(16)
    path = save(state, tmp_path / f"hrnet{suffix}")
    assert_same(a, build("hrnet_w32", path))


def test_wrapped_torch_checkpoint(tmp_path: Path) -> None:
    a = randomized("resnet50")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in a.state_dict().items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(wrapped, path)
    assert_same(a, build("resnet50", path))


# --- strictness ---------------------------------------------------------------------------------


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = dict(randomized("hrnet_w32").state_dict())
    del state["stage3.2.fuse_layers.2.1.0.0.weight"]
    path = save(state, tmp_path / "missing.safetensors")
    with pytest.raises(PosenfsError) as err:
        build("hrnet_w32", path)
    assert "stage3.2.fuse_layers.2.1.0.0.weight" in str(err.value)
    assert str(path) in str(err.value)


def test_missing_key_named_in_timm_file(tmp_path: Path) -> None:
    state = {to_timm(k): v for k, v in randomized("mobilenet_v2").state_dict().items()}
    del state["blocks.3.2.conv_dw.weight"]
    path = save(state, tmp_path / "mbv2.safetensors")
    with pytest.raises(PosenfsError, match=r"features\.9\.conv\.1\.0\.weight"):
        build("mobilenet_v2", path)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    state = dict(randomized("resnet50").state_dict())
    state["layer2.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    path = save(state, tmp_path / "shape.pth")
    with pytest.raises(PosenfsError, match=r"layer2\.1\.conv2\.weight.*\[128, 128, 1, 1\]"):
        build("resnet50", path)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    state = dict(randomized("mobilenet_v2").state_dict())
    state["extra.head.weight"] = torch.zeros(3)
    path = save(state, tmp_path / "extra.safetensors")
    with pytest.raises(PosenfsError, match=r"unexpected.*extra\.head\.weight"):
        build("mobilenet_v2", path)


def test_nonexistent_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(PosenfsError, match="nope.safetensors"):
        build("mobilenet_v2", path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PosenfsError, match="garbage.pth"):
        build("resnet50", path)
