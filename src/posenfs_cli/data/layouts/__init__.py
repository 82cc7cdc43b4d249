"""Keypoint layouts: one ``KeypointLayout`` per dataset, found by name with ``get_layout``.

Everything that depends on the joint set (flip pairs, half-body split, skeleton and colours,
OKS sigmas, part groups, PCKh columns) is read from the layout, so adding a dataset's layout
is one new module here plus its entry in ``LAYOUTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from posenfs_cli.data.layouts.coco import COCO
from posenfs_cli.data.layouts.crowdpose import CROWDPOSE
from posenfs_cli.data.layouts.layout import (
    CENTER_COLOR,
    LEFT_COLOR,
    RIGHT_COLOR,
    KeypointLayout,
    Palette,
    PartTable,
    table_one,
)
from posenfs_cli.data.layouts.mpii import MPII
from posenfs_cli.errors import PosenfsError

# Read-only: layouts are fixed at import, never registered at run time.
LAYOUTS: Mapping[str, KeypointLayout] = MappingProxyType(
    {layout.name: layout for layout in (MPII, COCO, CROWDPOSE)}
)


def get_layout(name: str) -> KeypointLayout:
    """The layout called ``name`` (case-insensitive), or a one-line error listing them."""
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise PosenfsError(
            f"unknown keypoint layout {name!r} (choose from {', '.join(LAYOUTS)})"
        ) from None


__all__ = [
    "CENTER_COLOR",
    "COCO",
    "CROWDPOSE",
    "LAYOUTS",
    "LEFT_COLOR",
    "MPII",
    "RIGHT_COLOR",
    "KeypointLayout",
    "Palette",
    "PartTable",
    "get_layout",
    "table_one",
]
