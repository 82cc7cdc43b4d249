"""The part-specific pose network: shared backbone pyramid -> P part CNFs -> merged keypoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.fused_parts import check_fusable, fused_forward
from posenfs_cli.models.head import VectorHead, merge_parts
from posenfs_cli.models.parts import PartGroup
from posenfs_cli.nas.fabric import CNF, FabricSpec, PruneSpec, scale_channels


class PartNet(nn.Module):
    """One body part: 1x1 adapters for the pyramid levels it reads, a CNF subnetwork, a head."""

    def __init__(
        self,
        group: PartGroup,
        spec: FabricSpec,
        in_channels: list[int],
        vector_dim: int,
        bn_momentum: float = 0.1,
        prune: PruneSpec | None = None,
        adapters: str = "all",
    ):
        super().__init__()
        if adapters not in ("all", "per_level"):
            raise PosenfsError(f"model.adapters must be all or per_level, got {adapters!r}")
        self.name = group.name
        self.joints = group.joints
        self.cnf = CNF(spec, bn_momentum, prune)
        used = self.cnf.input_levels_used()
        self.levels: tuple[int, ...] = tuple(used)
        self.width = len(in_channels)
        # All or nothing, as the released implementation: 1x1 convs on every level unless the
        # whole pyramid already has the CNF's channels (one matching level is not enough).
        widths = [scale_channels(spec.channels, lvl) for lvl in range(len(in_channels))]
        same = list(in_channels) == widths
        self.adapters = nn.ModuleList(
            nn.Identity()
            if same or (adapters == "per_level" and in_channels[lvl] == widths[lvl])
            else nn.Conv2d(in_channels[lvl], widths[lvl], 1, bias=True)
            for lvl in used
        )
        self.head = VectorHead(scale_channels(spec.channels, 0), len(group.joints), vector_dim)

    def forward(self, pyramid: list[Tensor]) -> Tensor:
        feats: list[Tensor | None] = [None] * self.width
        for lvl, adapter in zip(self.levels, self.adapters, strict=True):
            feats[lvl] = adapter(pyramid[lvl])
        out = self.cnf(feats)[0]
        assert out is not None, f"part {self.name}: the output cell was pruned"
        maps: Tensor = self.head(out)
        return maps


class PoseNet(nn.Module):
    """Backbone + P part CNFs; output [N, K, H/4, W/4] in the dataset's native joint order."""

    merge_index: Tensor  # a buffer (register_buffer below)

    def __init__(
        self,
        backbone: nn.Module,
        parts: Sequence[nn.Module],
        num_joints: int,
        parts_exec: str = "separate",
    ):
        super().__init__()
        if parts_exec == "fused":
            check_fusable(parts)
        # "fused": the parts run as one fabric (models.fused_parts); an execution mode only
        self.parts_exec = parts_exec
        self.backbone = backbone
        self.parts = nn.ModuleList(parts)
        self.num_joints = num_joints
        # PartNet and the baseline heads all carry their group's joints
        index = [j for p in parts for j in cast("tuple[int, ...]", p.joints)]
        self.register_buffer("merge_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.identity_merge = index == list(range(num_joints))

    def forward(self, x: Tensor) -> Tensor:
        pyramid = self.backbone(x)
        if self.parts_exec == "fused":
            maps = [fused_forward(cast("list[PartNet]", list(self.parts)), pyramid)]
        else:
            maps = [part(pyramid) for part in self.parts]
        if self.identity_merge:
            return maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)
        return merge_parts(maps, self.merge_index, self.num_joints)

    # Architecture (α, β) vs weights: parameters named *.alpha / *.beta are architecture.
    def named_arch_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if name.endswith(".alpha") or name.endswith(".beta"):
                yield name, p

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def cnfs(self) -> Iterator[tuple[str, CNF]]:
        """Every searchable fabric: the backbone's (if it is a fabric) and each part's."""
        bb = getattr(self.backbone, "cnf", None)
        if isinstance(bb, CNF):
            yield "backbone", bb
        for part in self.parts:
            if isinstance(part, PartNet):  # baseline heads (models/baselines.py) have no CNF
                yield part.name, part.cnf
