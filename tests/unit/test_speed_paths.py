"""Speed paths compute the same function: scaled BN, sub-grid dilated conv, inference folding."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import MPII
from posenfs_cli.models.build import build_model
from posenfs_cli.models.fold import fold_for_inference
from posenfs_cli.nas.ops import DepthwiseConv, scaled_batch_norm


def test_dilated_depthwise_subgrid_path_equals_dilated_conv():
    torch.manual_seed(0)
    conv = DepthwiseConv(6, dilation=2)
    ref = copy.deepcopy(conv)
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 6, 12, 10).contiguous(memory_format=fmt).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        seen: list[torch.Tensor] = []
        z = x * 1.0  # not a leaf: a leaf's .grad is copied to the leaf's layout anyway
        z.register_hook(seen.append)
        y = conv(z)
        y2 = nn.functional.conv2d(x2, ref.weight, None, 1, 2, 2, 6)
        assert y.is_contiguous(memory_format=fmt)
        assert torch.allclose(y, y2, atol=1e-6)
        g = torch.randn_like(y)
        y.backward(g)
        y2.backward(g)
        assert torch.allclose(x.grad, x2.grad, atol=1e-5)
        assert seen[0].is_contiguous(memory_format=fmt)  # the input's gradient keeps the layout
        assert torch.allclose(conv.weight.grad, ref.weight.grad, atol=1e-4)


def _layout(t: object) -> str | None:
    """'cl' / 'nchw' / 'other' for a 4-D tensor whose layout matters, else None."""
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        return None
    if t.shape[1] == 1 or t.shape[2] * t.shape[3] == 1:  # both layouts at once
        return None
    if t.is_contiguous(memory_format=torch.channels_last):
        return "cl"
    return "nchw" if t.is_contiguous() else "other"


@pytest.mark.parametrize(
    "cfg",
    [
        dict(parts_exec="separate"),
        dict(parts_exec="fused"),
        dict(parts_exec="separate", hidden=2),  # hidden nodes are concatenated
        dict(parts_exec="fused", hidden=2, backbone="fabric"),
    ],
    ids=["separate", "fused", "hidden2", "fused-hidden2-fabric"],
)
def test_channels_last_training_step_never_mixes_layouts(cfg, one_thread):
    """No op but a convolution of a channels_last forward + backward reads channels_last and
    NCHW tensors together: on CPU a mixed-layout elementwise op (a ReLU backward, a gradient
    sum) is 10-20x slower, and one NCHW gradient spreads to every op upstream. (A convolution
    converts its input once; the heads' NCHW output gradient reaches their 1x1 convs so.)"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from posenfs_cli.device import ChannelsLast

    mixed: list[str] = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kinds = {_layout(a) for a in tree_flatten((args, kwargs))[0]} - {None}
            if "cl" in kinds and len(kinds) > 1 and "convolution" not in str(func):
                mixed.append(f"{func}: {sorted(kinds)}")
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = build_model(ModelConfig(channels=4, parts=3, **cfg), MPII, load_pretrained=False)
    net = ChannelsLast(model).train()
    x = torch.randn(2, 3, 64, 64)
    with Watch():
        net(x).square().mean().backward()
    assert not mixed, mixed[:5]


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("affine", [False, True])
def test_scaled_batch_norm_equals_bn_times_weight(affine, fmt):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5, affine=affine)
    if affine:
        nn.init.uniform_(bn.weight)
        nn.init.uniform_(bn.bias)
    ref = copy.deepcopy(bn)
    x = torch.randn(3, 5, 4, 4).contiguous(memory_format=fmt).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    w = torch.tensor(0.7, requires_grad=True)
    w2 = w.detach().clone().requires_grad_()
    y = scaled_batch_norm(bn, x, w)
    y2 = ref(x2) * w2
    assert torch.allclose(y, y2, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    assert torch.allclose(w.grad, w2.grad, atol=1e-5)
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    for a, b in zip(bn.buffers(), ref.buffers(), strict=True):
        assert torch.allclose(a.float(), b.float())
    bn.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(scaled_batch_norm(bn, x, w), ref(x) * w, atol=1e-6)


def _random_model(backbone: str = "mobilenet_v2") -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone=backbone, channels=2, parts=3)
    model = build_model(cfg, MPII, load_pretrained=False)
    with torch.no_grad():
        for p in model.arch_parameters():
            p.normal_()
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(torch.randn(2, 3, 64, 64))
    return model.eval()


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "fabric"])
def test_fold_for_inference_is_exact_and_leaves_the_original(backbone):
    model = _random_model(backbone)
    before = copy.deepcopy(model.state_dict())
    folded = fold_for_inference(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        got = folded(x)
    assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max().item())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.weight_parameters())
    assert not any(p.requires_grad for p in folded.parameters())
    # only BNs after a pooling op remain
    convs_then_bn = [
        m
        for m in folded.modules()
        if isinstance(m, nn.Sequential)
        and any(
            isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)
            for a, b in zip(m, list(m)[1:], strict=False)
        )
    ]
    assert not convs_then_bn
