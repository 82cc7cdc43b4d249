"""Parts in one pass: the P part CNFs of an unpruned model run as one fabric of P·c channels.

Parts that share one structure differ only in their weights, so every layer can run once over
the parts' activations concatenated along channels (part-major: part p owns channels
``[p·c, (p+1)·c)``): convolutions become grouped convolutions over the parts' weights
concatenated per forward, each BatchNorm one ``F.batch_norm`` over the concatenated statistics
(written back to every part's buffers in training), α/β weights per-channel scales. The
parameters stay in the per-part modules (the concatenations are cheap copies autograd splits
back), so state dicts, checkpoints, genotypes and the α/β optimisers see no difference. Only the
heads (a different number of joints per part) run per part. On a GPU this cuts the kernel
launches per forward roughly P-fold; outputs equal the separate execution up to float rounding.

Works on the training model and on the folded inference copy (``models.fold``) alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.fold import ConstScale
from posenfs_cli.models.head import vector_scores
from posenfs_cli.nas.cell import Cell, Downsample, MixedEdge, Upsample
from posenfs_cli.nas.fabric import CNF
from posenfs_cli.nas.ops import (
    DepthwiseConv,
    PoolBN,
    Scaled,
    SepConv,
    dense_grad,
    depthwise_conv3x3,
)

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PartNet

PARTS_EXEC = ("separate", "fused")
_HINT = "; use model.parts_exec=separate"


def _structure(part: Any) -> list[Any]:
    """Everything two parts must share to run fused: module types, tensor shapes, BN settings."""
    sig: list[Any] = [part.cnf.spec, part.levels, part.width, part.head.vector_dim]
    for name, m in part.named_modules():
        if name.startswith("head"):
            continue
        sig.append((name, type(m).__name__))
        sig += [tuple(t.shape) for t in m.parameters(recurse=False)]
        if isinstance(m, nn.BatchNorm2d):
            sig.append((m.momentum, m.eps, m.track_running_stats, m.running_mean is None))
        if isinstance(m, nn.Conv2d):
            sig.append((m.stride, m.padding, m.dilation, m.groups, m.padding_mode))
    sig.append(part.head.conv.in_channels)
    return sig


def fusable(parts: Sequence[Any]) -> bool:
    """Whether ``parts`` can run fused (see ``check_fusable``)."""
    try:
        check_fusable(parts)
    except PosenfsError:
        return False
    return True


def check_fusable(parts: Sequence[Any]) -> None:
    """One clear line unless ``parts`` are unpruned CNF parts of one structure."""
    if not parts or not all(isinstance(getattr(p, "cnf", None), CNF) for p in parts):
        raise PosenfsError("model.parts_exec=fused needs CNF parts (model.head=cnf)" + _HINT)
    first = _structure(parts[0])
    for p in parts:
        if not p.cnf.prune.is_empty():
            raise PosenfsError(
                f"model.parts_exec=fused needs an unpruned model; part {p.name!r} is pruned" + _HINT
            )
        if _structure(p) != first:
            raise PosenfsError(
                f"model.parts_exec=fused needs parts of one structure; {parts[0].name!r} and "
                f"{p.name!r} differ" + _HINT
            )


_PREFIX = "fused_"


def _frozen(
    m0: nn.Module, name: str, mods: Sequence[nn.Module], precomputed: bool = True
) -> Tensor | None:
    """The parts' ``name`` tensors concatenated: precomputed on a frozen inference copy
    (``freeze_fused``), else concatenated now (so autograd reaches every part's parameter)."""
    pre = m0._buffers.get(_PREFIX + name) if precomputed else None
    if pre is not None:
        return pre
    if getattr(m0, name) is None:
        return None
    return torch.cat([cast(Tensor, getattr(m, name)) for m in mods])


def freeze_fused(model: nn.Module) -> None:
    """Concatenate the parts' weights once, as non-persistent buffers on the first part's
    modules (state dicts keep their keys; ``.to()`` moves them), so a fused forward of the frozen
    inference copy (``models.fold``) launches no concatenations. Only for a copy whose weights
    never change again."""
    parts = getattr(model, "parts", None)
    if getattr(model, "parts_exec", None) != "fused" or parts is None:
        return
    channels = 0  # of the cell the modules below belong to (named_modules is pre-order)
    for mods in zip(*(p.modules() for p in parts), strict=True):
        m0 = mods[0]
        if isinstance(m0, Cell):
            channels = m0.channels
        names: tuple[str, ...] = ()
        if isinstance(m0, nn.Conv2d):
            names = ("weight", "bias")
        elif isinstance(m0, nn.BatchNorm2d) and not m0.training:
            names = ("weight", "bias", "running_mean", "running_var")
        for name in names:
            if getattr(m0, name) is not None:
                cat = torch.cat([getattr(m, name).detach() for m in mods])
                m0.register_buffer(_PREFIX + name, cat, persistent=False)
        if isinstance(m0, ConstScale):  # a folded skip op or identity transform of the cell
            vec = torch.tensor([cast(ConstScale, m).value for m in mods]).repeat_interleave(
                channels
            )
            m0.register_buffer(_PREFIX + "value", vec.view(1, -1, 1, 1), persistent=False)


def _per_channel(w: Tensor, c: int) -> Tensor:
    """``[P, ...]`` per-part weights -> ``[..., P·c]``: each part's weight on its c channels."""
    w = w.movedim(0, -1)
    return w.unsqueeze(-1).expand(*w.shape, c).flatten(-2)


def _conv(convs: Sequence[nn.Module], x: Tensor, shared_input: bool = False) -> Tensor:
    """The parts' convolutions as one: grouped over the part blocks, or dense (``shared_input``:
    every part reads the same ``x``, as the adapters on the backbone pyramid)."""
    c0 = cast(nn.Conv2d, convs[0])
    weight, bias = cast(Tensor, _frozen(c0, "weight", convs)), _frozen(c0, "bias", convs)
    if isinstance(c0, DepthwiseConv):
        return depthwise_conv3x3(x, weight, bias, c0.dilation[0])
    groups = c0.groups * (1 if shared_input else len(convs))
    padding = cast("tuple[int, ...]", c0.padding)  # never 'same' in this model
    return F.conv2d(x, weight, bias, c0.stride, padding, c0.dilation, groups)


def _batch_norm(bns: Sequence[nn.Module], x: Tensor, w: Tensor | None) -> Tensor:
    """``w · bn_p(x_p)`` for every part in one call; mirrors ``nas.ops.scaled_batch_norm``."""
    b0 = cast(nn.BatchNorm2d, bns[0])
    norms = cast("list[nn.BatchNorm2d]", list(bns))
    if b0.training and b0.num_batches_tracked is not None:
        torch._foreach_add_([cast(Tensor, b.num_batches_tracked) for b in norms], 1)
    momentum = b0.momentum
    if momentum is None:  # cumulative moving average: the parts count batches alike
        momentum = 1.0 / float(cast(Tensor, b0.num_batches_tracked)) if b0.training else 0.0
    weight = w if b0.weight is None else _frozen(b0, "weight", norms)
    if b0.weight is not None and w is not None:
        weight = cast(Tensor, weight) * w
    bias = _frozen(b0, "bias", norms)
    if bias is not None and w is not None:
        bias = bias * w
    track = (not b0.training or b0.track_running_stats) and b0.running_mean is not None
    if not track:
        return F.batch_norm(x, None, None, weight, bias, True, momentum, b0.eps)
    if not b0.training:
        mean = cast(Tensor, _frozen(b0, "running_mean", norms))
        var = cast(Tensor, _frozen(b0, "running_var", norms))
        return F.batch_norm(x, mean, var, weight, bias, False, momentum, b0.eps)
    # training: one copy of every part's statistics, updated in place by F.batch_norm (through
    # two views), then written back to the parts' buffers in one call
    stats = [cast(Tensor, b.running_mean) for b in norms] + [
        cast(Tensor, b.running_var) for b in norms
    ]
    both = torch.cat(stats)
    mean, var = both.chunk(2)
    y = F.batch_norm(x, mean, var, weight, bias, True, momentum, b0.eps)
    torch._foreach_copy_(stats, torch.split(both, b0.num_features))
    return y


def _layer(mods: Sequence[nn.Module], x: Tensor, w: Tensor | None = None) -> Tensor:
    m0 = mods[0]
    if isinstance(m0, nn.BatchNorm2d):
        return _batch_norm(mods, x, w)
    assert w is None, f"no weight can ride on {type(m0).__name__}"
    if isinstance(m0, nn.Identity):  # a BatchNorm folded into its convolution
        return x
    if isinstance(m0, nn.Conv2d):
        return _conv(mods, x)
    if isinstance(m0, nn.ReLU):
        return F.relu(x, inplace=m0.inplace)
    if isinstance(m0, nn.AvgPool2d | nn.MaxPool2d):  # per channel, no parameters
        return cast(Tensor, m0(x))
    raise TypeError(f"fused parts cannot run {type(m0).__name__}")


def _op(mods: Sequence[nn.Module], x: Tensor, w: Tensor | None) -> Tensor:
    """The parts' op or scale transform (one module type) on the fused ``x``; ``w``: [P·c]."""
    m0 = mods[0]
    if isinstance(m0, Scaled):
        return x if w is None else x * w.view(1, -1, 1, 1)
    if isinstance(m0, ConstScale):
        values = [cast(ConstScale, m).value for m in mods]
        if all(v == 1.0 for v in values):
            return x
        vec = m0._buffers.get(_PREFIX + "value")
        if vec is None:
            vec = torch.tensor(values, dtype=x.dtype, device=x.device)
            vec = vec.repeat_interleave(x.shape[1] // len(mods)).view(1, -1, 1, 1)
        return x * vec
    if isinstance(m0, Upsample):
        ups = cast("list[Upsample]", list(mods))
        y = _conv([u.conv for u in ups], x)
        y = _layer([u.bn for u in ups], y, w)
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=True)
    if isinstance(m0, SepConv | PoolBN | Downsample):  # w rides in the last BatchNorm
        seqs = cast("list[nn.Sequential]", list(mods))
        scaled = len(m0) - 2 if isinstance(m0, SepConv) else 1
        for i in range(len(m0)):
            x = _layer([s[i] for s in seqs], x, w if i == scaled else None)
        return x
    raise TypeError(f"fused parts cannot run {type(m0).__name__}")


def _interleave(nodes: list[Tensor], parts: int) -> Tensor:
    """Hidden nodes ``[N, P·c, h, w]`` -> ``[N, P·H·c, h, w]`` grouped by part, so the out 1x1
    conv (over each part's concatenated hidden nodes) runs grouped. One copy, layout kept."""
    n, pc, h, w = nodes[0].shape
    c = pc // parts
    if nodes[0].is_contiguous(memory_format=torch.channels_last) and not nodes[0].is_contiguous():
        nhwc = torch.stack([t.permute(0, 2, 3, 1).reshape(n, h, w, parts, c) for t in nodes], 4)
        return nhwc.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.stack([t.reshape(n, parts, c, h, w) for t in nodes], 2).flatten(1, 3)


def _cell(cells: Sequence[Cell], prev: list[Tensor | None], aw: Tensor | None) -> Tensor:
    """``Cell.forward`` of every part at once; ``aw``: α weights ``[E, |O|, P·c]`` or None."""
    c0, parts = cells[0], len(cells)
    bw = None
    if not c0.folded:
        bw = _per_channel(torch.stack([c.beta for c in cells]).softmax(-1) * 3.0, c0.channels)
    acc: Tensor | None = None
    for pos, (k, src) in enumerate(zip(c0.slot_index, c0.sources, strict=True)):
        x = prev[src]
        assert x is not None, f"cell ({c0.layer},{c0.scale}) reads a pruned cell"
        y = _op([c.transforms[pos] for c in cells], x, None if bw is None else bw[k])
        acc = y if acc is None else acc + y
    if acc is None:
        raise RuntimeError(f"cell ({c0.layer},{c0.scale}) has no live input slot")
    first = torch.relu_(acc)
    nodes: list[Tensor | None] = [first] + [None] * c0.hidden
    for e, (i, j) in enumerate(c0.pairs):
        x = nodes[i]
        if x is None:
            x = nodes[i] = torch.zeros_like(first)
        edges = [cast(MixedEdge, c.edges[e]) for c in cells]
        out: Tensor | None = None
        for pos, o in enumerate(edges[0].op_index):
            y = _op([edge.ops[pos] for edge in edges], x, None if aw is None else aw[e, o])
            out = y if out is None else out + y
        if out is not None:
            node = nodes[j]
            nodes[j] = out if node is None else node + out
    hidden = [n if n is not None else torch.zeros_like(first) for n in nodes[1:]]
    h = hidden[0] if c0.hidden == 1 else _interleave([dense_grad(t) for t in hidden], parts)
    return _conv([c.out for c in cells], h)


def _cnf(cnfs: Sequence[CNF], prev: list[Tensor | None]) -> list[Tensor | None]:
    """``CNF.forward`` of every part at once, on part-major fused inputs."""
    c0 = cnfs[0]
    aw = None
    if not c0.folded:
        aw = torch.stack([c.alpha for c in cnfs]).softmax(-1) * c0.num_ops  # [P, E, |O|]
    per_width: dict[int, Tensor] = {}
    groups = zip(*(c.cells for c in cnfs), strict=True)
    for width, scales in zip(c0.layer_widths, c0.layer_scales, strict=True):
        out: list[Tensor | None] = [None] * width
        for s in scales:
            cells = cast("tuple[Cell, ...]", next(groups))
            ch = cells[0].channels
            if aw is not None and ch not in per_width:
                per_width[ch] = _per_channel(aw, ch).contiguous()
            out[s] = _cell(cells, prev, per_width.get(ch))
        prev = out
    return prev


def fused_forward(parts: Sequence[PartNet], pyramid: list[Tensor]) -> Tensor:
    """Every part's maps, concatenated along channels in part order: ``[N, Σ K_p, h, w]``,
    what ``torch.cat([part(pyramid) for part in parts], 1)`` computes."""
    p0 = parts[0]
    feats: list[Tensor | None] = [None] * p0.width
    for pos, lvl in enumerate(p0.levels):
        adapters = [p.adapters[pos] for p in parts]
        if isinstance(adapters[0], nn.Identity):
            feats[lvl] = pyramid[lvl].repeat(1, len(parts), 1, 1)
        else:
            feats[lvl] = _conv(adapters, pyramid[lvl], shared_input=True)
    out = _cnf([p.cnf for p in parts], feats)[0]
    assert out is not None, "the output cell was pruned"
    # the heads differ in width (joints per part): split back for the 1x1 convs only
    chunks = torch.relu(out).chunk(len(parts), 1)
    raw = torch.cat([p.head.conv(t) for p, t in zip(parts, chunks, strict=True)], 1)
    return vector_scores(raw, sum(p.head.num_joints for p in parts), p0.head.vector_dim)
