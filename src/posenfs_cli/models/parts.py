"""Body-part groups: the layout's Table I groups, random or custom ones, as native indices."""

from __future__ import annotations

import random
from dataclasses import dataclass

from posenfs_cli.data.layouts import KeypointLayout
from posenfs_cli.errors import PosenfsError


@dataclass(frozen=True)
class PartGroup:
    name: str
    joints: tuple[int, ...]  # native indices, sorted

    def names(self, layout: KeypointLayout) -> list[str]:
        return [layout.names[j] for j in self.joints]


def _to_groups(
    layout: KeypointLayout, named: list[tuple[str, list[str]]], check_cover: bool = True
) -> list[PartGroup]:
    groups = []
    seen_names = set()
    for name, joints in named:
        if name in seen_names:
            raise PosenfsError(f"part name {name!r} is used twice")
        seen_names.add(name)
        if not joints:
            raise PosenfsError(f"part {name!r} has no keypoints")
        idx = sorted({layout.index(j) for j in joints})
        groups.append(PartGroup(name, tuple(idx)))
    if check_cover:
        covered = {j for g in groups for j in g.joints}
        missing = [layout.names[j] for j in range(layout.num_joints) if j not in covered]
        if missing:
            raise PosenfsError(
                f"keypoints not covered by any part (they would never be predicted): "
                f"{', '.join(missing)}"
            )
    return groups


def random_partition(layout: KeypointLayout, parts: int, seed: int) -> list[PartGroup]:
    """A seeded random partition of all joints into ``parts`` non-empty groups (paper control)."""
    k = layout.num_joints
    if not 1 <= parts <= k:
        raise PosenfsError(f"random parts must be between 1 and {k}, got {parts}")
    rng = random.Random(seed)
    order = list(range(k))
    rng.shuffle(order)
    # First `parts` joints seed the groups (non-empty), the rest go to random groups.
    assign = {j: i for i, j in enumerate(order[:parts])}
    for j in order[parts:]:
        assign[j] = rng.randrange(parts)
    return [
        PartGroup(f"random_{i}", tuple(sorted(j for j, g in assign.items() if g == i)))
        for i in range(parts)
    ]


def resolve_parts(
    layout: KeypointLayout,
    parts: int | str,
    groups: dict[str, list[str]] | None = None,
    random_parts: int = 3,
    seed: int = 0,
) -> list[PartGroup]:
    """Body-part groups for ``parts`` = 1/3/5/8, 'random', or 'custom' (``groups`` by name)."""
    if groups and parts not in ("custom",):
        parts = "custom"
    if parts == "custom":
        if not groups:
            raise PosenfsError("parts: custom needs model.groups {part name: [keypoint names]}")
        return _to_groups(layout, list(groups.items()))
    if parts == "random":
        return random_partition(layout, random_parts, seed)
    if isinstance(parts, str) and parts.isdigit():
        parts = int(parts)
    named = layout.part_table(parts) if isinstance(parts, int) else None
    if named is None:
        counts = ", ".join(str(p) for p in layout.part_counts)
        raise PosenfsError(
            f"parts must be {counts} (paper Table I, {layout.name} layout), 'random' or "
            f"'custom'; got {parts!r}"
        )
    return _to_groups(layout, [(name, list(joints)) for name, joints in named])
