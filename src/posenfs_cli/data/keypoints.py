"""Compatibility re-export: the layouts live in :mod:`posenfs_cli.data.layouts`."""

from posenfs_cli.data.layouts import (
    CENTER_COLOR,
    COCO,
    CROWDPOSE,
    LAYOUTS,
    LEFT_COLOR,
    MPII,
    RIGHT_COLOR,
    KeypointLayout,
    get_layout,
)

__all__ = [
    "CENTER_COLOR",
    "COCO",
    "CROWDPOSE",
    "LAYOUTS",
    "LEFT_COLOR",
    "MPII",
    "RIGHT_COLOR",
    "KeypointLayout",
    "get_layout",
]
