"""Opt-in sparsity regularisers on the architecture weights, and their entropy for logging.

The paper prunes structures whose softmax weight is exactly 0, but notes that this is rare: in
float32 a softmax entry is exactly 0 only once its logit trails the row maximum by about 104
(88 where denormals are flushed). Three penalties (recipe ``train.sparsity``, scaled by
``train.sparsity_weight`` and added to the loss by the trainer) push α rows and β vectors toward
one-hot:

- ``entropy``: mean normalised Shannon entropy (0 = one-hot, 1 = uniform). Smooth; the losers'
  weights shrink geometrically but practically never reach an exact 0, so pair it with
  ``posenfs prune --threshold 1e-3`` (a removed module was scaled by ≤ 3e-3 relative to the
  strongest) and read the output difference the command reports.
- ``l1``: the L1 mass outside the strongest entry, ``1 − max p`` (L1 of the whole softmax row is
  always 1, so this is the part pruning would remove). Its gradient also fades as p → 0; same
  pairing as ``entropy``.
- ``gap``: a hinge on logit gaps, ``mean_i relu(1 − (z_max − z_i) / 110)`` over non-max entries.
  Its gradient does not fade, so unused entries keep moving until they trail by 110 and their
  softmax underflows to an exact 0: ``posenfs prune`` at threshold 0 then removes them with
  bit-identical outputs. Its slope is only 1/110 per logit, so it needs about 100x the weight of
  ``entropy``, and many steps (Adam moves a logit by ≲ lr per step: 110 / 1e-3 ≈ 1e5 steps at
  the paper's arch lr), so it suits full-length searches or a larger arch lr.

Recommended: ``train.sparsity: entropy`` with an undecayed arch lr (the shipped recipe
``synthetic/sparse``: weight 0.01, arch lr 0.05), then ``posenfs prune --threshold 0.01``,
reading the output difference it reports and checking with ``posenfs eval``; measured results are in
``benchmarks/README.md``. The ``zero`` op is left out of the α terms (see ``_arch_rows``).

A sparsemax normaliser is not offered: softmax is hard-wired in ``CNF.alpha_weights`` and
``Cell.input_node``, and swapping it would change the search space itself, not add a loss term.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import torch
from torch import Tensor, nn

from posenfs_cli.errors import PosenfsError
from posenfs_cli.nas.ops import ZERO

if TYPE_CHECKING:
    from collections.abc import Iterable

    from posenfs_cli.nas.cell import Cell
    from posenfs_cli.nas.fabric import CNF


class HasFabrics(Protocol):
    """What the penalties need of a model (a PoseNet has it): its searchable fabrics."""

    def cnfs(self) -> Iterable[tuple[str, CNF]]: ...


SPARSITY_KINDS = ("none", "entropy", "l1", "gap")
GAP_MARGIN = 110.0  # float32 softmax of a logit trailing by ≥ ~104 is exactly 0


def check_sparsity(kind: str, weight: float) -> None:
    if kind not in SPARSITY_KINDS:
        raise PosenfsError(
            f"train.sparsity: unknown kind {kind!r} (choose from {', '.join(SPARSITY_KINDS)})"
        )
    if not weight >= 0 or math.isinf(weight):
        raise PosenfsError(f"train.sparsity_weight must be a finite number >= 0, got {weight}")


def _arch_rows(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(α matrices [edges, real ops], β vectors [3]) of every CNF and live cell of ``model``.

    The ``zero`` column is left out: pushing α toward one-hot must choose among ops that
    compute something. With it, a tie at initialisation can crown ``zero`` on every edge and
    silence whole CNFs (seen with ``gap`` at a large arch lr); and ``zero`` builds nothing, so
    there is nothing to prune for it anyway.
    """
    model = getattr(model, "module", model)
    net = cast("HasFabrics", getattr(model, "_orig_mod", model))
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    for _name, cnf in net.cnfs():
        real = [i for i, op in enumerate(cnf.spec.ops) if op != ZERO]
        alphas.append(cnf.alpha if len(real) == len(cnf.spec.ops) else cnf.alpha[:, real])
        betas.extend(cell.beta for cell in cast("Iterable[Cell]", cnf.cells))
    return alphas, betas


def _norm_entropy(logits: Tensor) -> Tensor:
    """Normalised entropy per row (last dim); log_softmax keeps 0·log 0 finite in backward."""
    n = logits.shape[-1]
    if n < 2:
        return logits.new_zeros(logits.shape[:-1])
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1) / math.log(n)


def _off_mass(logits: Tensor) -> Tensor:
    """``1 − max softmax``: L1 mass outside the strongest entry, in [0, 1 − 1/n]."""
    n = logits.shape[-1]
    if n < 2:
        return logits.new_zeros(logits.shape[:-1])
    return (1.0 - logits.softmax(-1).amax(-1)) / (1.0 - 1.0 / n)


def _gap_hinge(logits: Tensor) -> Tensor:
    n = logits.shape[-1]
    if n < 2:
        return logits.new_zeros(logits.shape[:-1])
    gaps = logits.amax(-1, keepdim=True) - logits  # 0 at the max
    hinge = torch.relu(1.0 - gaps / GAP_MARGIN)
    return (hinge.sum(-1) - 1.0) / (n - 1)  # the max entry contributes exactly 1


_PER_ROW = {"entropy": _norm_entropy, "l1": _off_mass, "gap": _gap_hinge}


def _mean_rows(
    fn: Callable[[Tensor], Tensor], alphas: list[Tensor], betas: list[Tensor]
) -> tuple[Tensor | None, ...]:
    a = torch.cat([fn(x).reshape(-1) for x in alphas]).mean() if alphas else None
    b = fn(torch.stack(betas)).mean() if betas else None
    return a, b


def sparsity_penalty(model: nn.Module, kind: str, weight: float) -> Tensor:
    """``weight · ½(mean over α rows + mean over β vectors)`` of the chosen per-row penalty.

    Each term is in [0, 1], so ``weight`` is the most the penalty can add to the loss. α rows
    and β vectors count equally whatever the number of cells. ``none`` (or weight 0) gives a
    constant 0 with no graph.
    """
    check_sparsity(kind, weight)
    alphas, betas = _arch_rows(model)
    device = alphas[0].device if alphas else torch.device("cpu")
    if kind == "none" or weight == 0 or not (alphas or betas):
        return torch.zeros((), device=device)
    terms = [t for t in _mean_rows(_PER_ROW[kind], alphas, betas) if t is not None]
    return weight * torch.stack(terms).mean()


@torch.no_grad()
def arch_entropy(model: nn.Module) -> dict[str, float]:
    """Mean normalised entropy of α rows and of β vectors (1 = uniform, 0 = one-hot)."""
    alphas, betas = _arch_rows(model)
    a, b = _mean_rows(_norm_entropy, alphas, betas)
    out: dict[str, float] = {}
    if a is not None:
        out["alpha_entropy"] = float(a)
    if b is not None:
        out["beta_entropy"] = float(b)
    return out
