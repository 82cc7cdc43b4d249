"""Candidate operations: the one place where ops are registered.

Every op keeps the channel count ``c`` and the spatial size. BN inside ops has no affine
parameters (as in DARTS), momentum from the model config. ``zero`` is registered with a ``None``
factory: the mixed edge keeps its α column but never builds or runs anything for it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from posenfs_cli.errors import PosenfsError

OpFactory = Callable[[int, float], nn.Module] | None
_OPS: dict[str, OpFactory] = {}

ZERO = "zero"


def register_op(name: str, factory: OpFactory) -> None:
    if name in _OPS:
        raise ValueError(f"op {name!r} registered twice")
    _OPS[name] = factory


def op_names() -> list[str]:
    return list(_OPS)


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


class SepConv(nn.Sequential):
    """Twice [depthwise 3x3 -> pointwise 1x1 -> BN -> ReLU] (DESIGN §3)."""

    def __init__(self, c: int, bn_momentum: float = 0.1, repeats: int = 2, dilation: int = 1):
        layers: list[nn.Module] = []
        for _ in range(repeats):
            layers += [
                nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c, bias=False),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c, affine=False, momentum=bn_momentum),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class PoolBN(nn.Sequential):
    def __init__(self, kind: str, c: int, bn_momentum: float = 0.1):
        pool = (
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            if kind == "avg"
            else nn.MaxPool2d(3, stride=1, padding=1)
        )
        super().__init__(pool, nn.BatchNorm2d(c, affine=False, momentum=bn_momentum))


register_op(ZERO, None)
register_op("skip", lambda c, m: nn.Identity())
register_op("sep_conv_3x3", lambda c, m: SepConv(c, m, repeats=2, dilation=1))
register_op("dil_conv_3x3", lambda c, m: SepConv(c, m, repeats=1, dilation=2))
register_op("avg_pool_3x3", lambda c, m: PoolBN("avg", c, m))
register_op("max_pool_3x3", lambda c, m: PoolBN("max", c, m))
