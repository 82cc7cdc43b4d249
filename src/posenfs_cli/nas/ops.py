"""Candidate operations: the one place where ops are registered.

Every op keeps the channel count ``c`` and the spatial size. BN inside ops has no affine
parameters (as in DARTS), momentum from the model config. ``zero`` is registered with a ``None``
factory: the mixed edge keeps its α column but never builds or runs anything for it.

Every op is called as ``op(x, w)`` and returns ``w · op(x)`` for a scalar weight ``w >= 0``. Ops
that end in a BatchNorm (optionally followed by ReLU, which commutes with ``w >= 0``) apply ``w``
as that BN's scale, so the mixed edge's weighting costs no extra pass over the tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posenfs_cli.errors import PosenfsError

OpFactory = Callable[[int, float], nn.Module] | None
_OPS: dict[str, OpFactory] = {}

ZERO = "zero"


def register_op(name: str, factory: OpFactory) -> None:
    if name in _OPS:
        raise ValueError(f"op {name!r} registered twice")
    _OPS[name] = factory


def check_ops(names: list[str], where: str = "ops") -> None:
    if not names:
        raise PosenfsError(f"{where}: the op set is empty")
    unknown = [n for n in names if n not in _OPS]
    if unknown:
        raise PosenfsError(f"{where}: unknown op {unknown[0]!r} (choose from {', '.join(_OPS)})")
    if len(set(names)) != len(names):
        raise PosenfsError(f"{where}: an op is listed twice in {names}")


def build_op(name: str, c: int, bn_momentum: float = 0.1) -> nn.Module | None:
    """The module for op ``name`` at ``c`` channels; None for ``zero`` (computes nothing)."""
    check_ops([name])
    factory = _OPS[name]
    return None if factory is None else factory(c, bn_momentum)


def scaled_batch_norm(bn: nn.BatchNorm2d, x: Tensor, scale: Tensor | None) -> Tensor:
    """``scale · bn(x)`` in one BN call: ``scale`` multiplies BN's affine weight and bias."""
    if scale is None:
        return cast(Tensor, bn(x))
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum
    if momentum is None:  # cumulative moving average, as nn.BatchNorm2d
        momentum = 1.0 / float(cast(Tensor, bn.num_batches_tracked)) if bn.training else 0.0
    batch_stats = bn.training or bn.running_mean is None
    # contiguous: the CPU channels_last BN backward misreads a stride-0 (expanded) weight
    weight = scale.expand(bn.num_features).contiguous() if bn.weight is None else bn.weight * scale
    bias = None if bn.bias is None else bn.bias * scale
    track = not bn.training or bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean if track else None,
        bn.running_var if track else None,
        weight,
        bias,
        batch_stats,
        momentum,
        bn.eps,
    )


class Scaled(nn.Module):
    """``w · x``: the skip op (and the identity scale transform)."""

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        return x if w is None else x * w


class DepthwiseConv(nn.Conv2d):
    """3x3 depthwise conv. Dilation 2 under autograd on CPU runs as an undilated conv on the
    four interleaved sub-grids (same sums, same weights): the CPU backward of a dilated
    depthwise conv falls to a per-sample im2col path that is 5-10x slower."""

    def __init__(self, c: int, dilation: int = 1):
        super().__init__(c, c, 3, padding=dilation, dilation=dilation, groups=c, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv3x3(x, self.weight, self.bias, self.dilation[0])


def depthwise_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None, d: int) -> Tensor:
    """``DepthwiseConv`` as a function of its weight (``[c, 1, 3, 3]``), so the fused part
    execution (``models.fused_parts``) takes the same sub-grid path with stacked weights."""
    n, c, h, w = x.shape
    if d == 1 or x.device.type != "cpu" or not torch.is_grad_enabled() or h % d or w % d:
        return F.conv2d(x, weight, bias, 1, d, d, c)
    y = F.conv2d(_to_subgrids(x, d), weight, bias, 1, 1, 1, c)
    return _from_subgrids(y, n, d)


def _to_subgrids(x: Tensor, d: int) -> Tensor:
    """``[n, c, h, w]`` -> ``[n·d·d, c, h/d, w/d]``, sub-grid ``(i, j)`` of sample ``k`` at
    ``k·d·d + i·d + j``. The rearranging copy is done in ``x``'s own memory order, so the result
    (and, in the backward, the gradient of ``x``) keeps it: a channels_last gradient that turned
    NCHW here made every elementwise op upstream mix layouts, 10-20x slower on CPU."""
    n, c, h, w = x.shape
    if _fmt(x) is torch.channels_last:
        t = x.permute(0, 2, 3, 1).reshape(n, h // d, d, w // d, d, c)
        t = t.permute(0, 2, 4, 1, 3, 5).reshape(n * d * d, h // d, w // d, c)
        return t.permute(0, 3, 1, 2)
    t = x.reshape(n, c, h // d, d, w // d, d).permute(0, 3, 5, 1, 2, 4)
    return t.reshape(n * d * d, c, h // d, w // d)


def _from_subgrids(y: Tensor, n: int, d: int) -> Tensor:
    """Inverse of ``_to_subgrids`` (again one copy in ``y``'s memory order)."""
    _, c, hs, ws = y.shape
    if _fmt(y) is torch.channels_last:
        t = y.permute(0, 2, 3, 1).reshape(n, d, d, hs, ws, c)
        t = t.permute(0, 3, 1, 4, 2, 5).reshape(n, hs * d, ws * d, c)
        return t.permute(0, 3, 1, 2)
    t = y.reshape(n, d, d, c, hs, ws).permute(0, 3, 4, 1, 5, 2)
    return t.reshape(n, c, hs * d, ws * d)


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient dense in the input's layout."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.fmt = _fmt(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        return g.contiguous(memory_format=ctx.fmt)


def dense_grad(x: Tensor) -> Tensor:
    """``x``, but its gradient arrives dense. Put before a concatenation along channels: the
    backward of ``cat`` hands each input a strided channel slice of the output's gradient, and
    the CPU BatchNorm backward on such a slice is ~10x slower than on a dense copy."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x
    return cast(Tensor, _DenseGrad.apply(x))  # type: ignore[no-untyped-call]  # torch: untyped


def _fmt(x: Tensor) -> torch.memory_format:
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


class SepConv(nn.Sequential):
    """Twice [depthwise 3x3 -> pointwise 1x1 -> BN -> ReLU]; ``w`` rides in the last BN."""

    def __init__(self, c: int, bn_momentum: float = 0.1, repeats: int = 2, dilation: int = 1):
        layers: list[nn.Module] = []
        for _ in range(repeats):
            layers += [
                DepthwiseConv(c, dilation),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c, affine=False, momentum=bn_momentum),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        last_bn = len(self) - 2
        for i, layer in enumerate(self):
            x = scaled_batch_norm(cast(nn.BatchNorm2d, layer), x, w) if i == last_bn else layer(x)
        return x


class PoolBN(nn.Sequential):
    def __init__(self, kind: str, c: int, bn_momentum: float = 0.1):
        pool = (
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            if kind == "avg"
            else nn.MaxPool2d(3, stride=1, padding=1)
        )
        super().__init__(pool, nn.BatchNorm2d(c, affine=False, momentum=bn_momentum))

    def forward(self, x: Tensor, w: Tensor | None = None) -> Tensor:
        return scaled_batch_norm(cast(nn.BatchNorm2d, self[1]), self[0](x), w)


register_op(ZERO, None)
register_op("skip", lambda c, m: Scaled())
register_op("sep_conv_3x3", lambda c, m: SepConv(c, m, repeats=2, dilation=1))
register_op("dil_conv_3x3", lambda c, m: SepConv(c, m, repeats=1, dilation=2))
register_op("avg_pool_3x3", lambda c, m: PoolBN("avg", c, m))
register_op("max_pool_3x3", lambda c, m: PoolBN("max", c, m))
