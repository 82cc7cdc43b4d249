"""One check of a run's recipe before anything is built or written.

It sits above ``config``, ``data`` and ``models`` because its rules come from all three: the
recipe's numbers and input size, the keypoint layout, the model structure and ops, the part
groups of the layout.
"""

from __future__ import annotations

import os

from posenfs_cli.config import Recipe, check_recipe_values
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.errors import PosenfsError
from posenfs_cli.models.build import part_groups, validate_model_config


def validate(recipe: Recipe) -> Recipe:
    """Every rule a run's recipe must pass, checked once, before any folder or worker exists,
    so a typo costs nothing and reads as one line instead of a shape error deep in the
    network. Returns the recipe unchanged."""
    check_recipe_values(recipe)
    validate_model_config(recipe.model)
    part_groups(recipe.model, get_layout(recipe.data.keypoints))
    return recipe


def max_threads() -> int:
    """The most CPU threads ``--threads`` may ask for: this machine's CPU count. More only
    oversubscribes the cores (slower), and a huge count crashes OpenMP (a segfault)."""
    return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """The one rule for a CPU thread count (``profile``, ``experiment``): None keeps torch's
    default; otherwise an integer between 1 and :func:`max_threads`."""
    if threads is None:
        return None
    top = max_threads()
    ok = isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= top
    if not ok:
        raise PosenfsError(
            f"{option} must be >= 1 and at most {top} (this machine's CPU count), got {threads}"
        )
    return threads
