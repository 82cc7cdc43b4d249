"""Inference copy of a model: eval BatchNorm folded into convolutions, α/β folded into constants.

``fold_for_inference(model)`` returns a frozen deep copy (the original is untouched) that computes
the same function as ``model.eval()`` up to float rounding:

1. every mixed-edge / scale-transform weight (``|O|·softmax(α)``, ``3·softmax(β)``) is multiplied
   into the BatchNorm that ends its op (or kept as a constant for the skip / identity paths), and
   the CNFs and cells stop normalising α/β (``folded``);
2. every BatchNorm that directly follows a convolution (``nn.Sequential`` neighbours, or the
   ``conv``/``bn`` and ``convK``/``bnK`` attribute pairs whose ``forward`` chains them) is folded
   into that convolution's weight and bias and replaced by ``nn.Identity``. BatchNorms after a
   pooling stay (as one per-channel affine);
3. parts of one structure (an unpruned CNF model) run fused, their weights concatenated once
   (``fused_parts``), whatever ``model.parts_exec`` the model trains with.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn

from posenfs_cli.nas.cell import Cell, MixedEdge
from posenfs_cli.nas.fabric import CNF
from posenfs_cli.nas.ops import PoolBN, Scaled, SepConv


class ConstScale(nn.Module):
    """``c · x`` for a fixed scalar ``c`` (a folded skip op or identity transform)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        return x if self.value == 1.0 else x * self.value


def _scaled_bn(bn: nn.BatchNorm2d, s: float) -> nn.BatchNorm2d:
    """An affine eval-mode BN equal to ``s · bn``."""
    # the search space's BNs all track running statistics
    assert bn.running_mean is not None and bn.running_var is not None
    out = nn.BatchNorm2d(bn.num_features, eps=bn.eps).to(bn.running_mean.device).eval()
    assert out.running_mean is not None and out.running_var is not None  # a new BN tracks them
    with torch.no_grad():
        out.running_mean.copy_(bn.running_mean)
        out.running_var.copy_(bn.running_var)
        out.weight.copy_((bn.weight if bn.weight is not None else 1.0) * s)
        out.bias.copy_((bn.bias if bn.bias is not None else 0.0) * s)
    return out


def _weight_into(module: nn.Module, s: float) -> nn.Module:
    """Put the scalar weight ``s`` into a search-space op or scale transform."""
    if isinstance(module, Scaled | nn.Identity):
        return ConstScale(s)
    if isinstance(module, SepConv | PoolBN):  # the last BN (a ReLU after it commutes, s >= 0)
        i = len(module) - 2 if isinstance(module, SepConv) else 1
        module[i] = _scaled_bn(cast(nn.BatchNorm2d, module[i]), s)
        return module
    if isinstance(module, nn.Sequential):  # Downsample: conv -> BN
        module[1] = _scaled_bn(cast(nn.BatchNorm2d, module[1]), s)
        return module
    if hasattr(module, "bn"):  # Upsample: conv -> BN -> bilinear (linear, s commutes)
        module.bn = _scaled_bn(cast(nn.BatchNorm2d, module.bn), s)
        return module
    raise TypeError(f"cannot fold a weight into {type(module).__name__}")


@torch.no_grad()
def fold_arch_weights(cnf: CNF) -> None:
    """Bake α and β into the ops and transforms of ``cnf`` (in place)."""
    aw = cnf.alpha_weights().double().cpu()
    for cell in cnf.cells:
        assert isinstance(cell, Cell)
        bw = (cell.beta.softmax(0) * 3.0).double().cpu()
        for pos, k in enumerate(cell.slot_index):
            cell.transforms[pos] = _weight_into(cell.transforms[pos], float(bw[k]))
        for e, edge in enumerate(cast("Iterable[MixedEdge]", cell.edges)):
            for pos, i in enumerate(edge.op_index):
                edge.ops[pos] = _weight_into(edge.ops[pos], float(aw[e, i]))
        cell.folded = True
    cnf.folded = True


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """``conv := bn ∘ conv`` (eval statistics), computed in float64."""
    assert bn.running_mean is not None and bn.running_var is not None  # eval statistics
    w = conv.weight.double()
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(bn.running_mean).double()
    inv = (bn.running_var.double() + bn.eps).rsqrt()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(inv)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    conv.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    bias = ((b - bn.running_mean.double()) * scale + beta).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(bias, requires_grad=False)
    else:
        conv.bias.copy_(bias)


def _attr_pairs(module: nn.Module) -> list[tuple[str, str]]:
    pairs = [("conv", "bn")] + [(f"conv{k}", f"bn{k}") for k in range(1, 10)]
    return [
        (c, b)
        for c, b in pairs
        if isinstance(getattr(module, c, None), nn.Conv2d)
        and isinstance(getattr(module, b, None), nn.BatchNorm2d)
    ]


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every conv -> BN pair of ``model`` (in place, eval statistics); returns the count."""
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    fuse_conv_bn(conv, bn)
                    module[i + 1] = nn.Identity()
                    folded += 1
        for c, b in _attr_pairs(module):
            fuse_conv_bn(getattr(module, c), getattr(module, b))
            setattr(module, b, nn.Identity())
            folded += 1
    return folded


def fold_for_inference(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of ``model`` with α/β and BatchNorm folded (see module doc)."""
    from posenfs_cli.models.fused_parts import freeze_fused, fusable  # it imports this module

    model = getattr(model, "_orig_mod", model)
    parts = getattr(model, "parts", None)
    fuse = hasattr(model, "parts_exec") and parts is not None and fusable(list(parts))
    net = copy.deepcopy(model).eval()
    for m in list(net.modules()):
        if isinstance(m, CNF):
            fold_arch_weights(m)
    fold_batch_norms(net)
    for p in net.parameters():
        p.requires_grad_(False)
    if fuse:  # exact, and fewer (larger) kernels: faster on CPU, fewer launches on a GPU
        net.parts_exec = "fused"
        freeze_fused(net)
    return net


def inference_model(
    model: nn.Module,
    device: torch.device | str = "cpu",
    channels_last: bool = True,
    compile: str | bool | None = "off",
    fold: bool = True,
) -> nn.Module:
    """The module eval/predict run: the folded copy on ``device``, channels_last weights, and
    compiled when ``compile`` resolves on (``device.resolve_compile``). The input is converted
    to channels_last by the returned wrapper. A model with nothing to fold (no BatchNorm, no
    CNF) is used as it is, not copied."""
    from posenfs_cli.device import ChannelsLast, maybe_compile

    device = torch.device(device)
    fold = fold and any(isinstance(m, nn.BatchNorm2d | CNF) for m in model.modules())
    net = (fold_for_inference(model) if fold else model).to(device).eval()
    runner: nn.Module = ChannelsLast(net) if channels_last else net
    maybe_compile(runner, compile, device, "infer")
    return runner.eval()
