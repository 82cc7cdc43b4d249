"""Parameter counts of a PoseNet by owner (backbone, each part, α/β), as the paper's tables
report them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple, cast

if TYPE_CHECKING:
    from posenfs_cli.models.posenet import PartNet, PoseNet


def _owner(name: str, part_names: list[str]) -> str:
    if name.startswith("parts."):
        return part_names[int(name.split(".")[1])]
    return "backbone"


class ParamCount(NamedTuple):
    """Parameter counts; ``total`` is backbone + parts, without the α/β counted in ``arch``."""

    total: int
    backbone: int
    parts: dict[str, int]
    arch: int


def count_params(model: PoseNet) -> ParamCount:
    """Parameter counts by owner: the backbone, each part, and the architecture (α/β)."""
    part_names = [p.name for p in cast("Iterable[PartNet]", model.parts)]
    per_part = dict.fromkeys(part_names, 0)
    backbone = arch = 0
    for name, p in model.named_parameters():
        if name.endswith(".alpha") or name.endswith(".beta"):
            arch += p.numel()
            continue
        owner = _owner(name, part_names)
        if owner == "backbone":
            backbone += p.numel()
        else:
            per_part[owner] += p.numel()
    return ParamCount(backbone + sum(per_part.values()), backbone, per_part, arch)
