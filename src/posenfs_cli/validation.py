"""One check of a run's recipe before anything is built or written.

It sits above ``config``, ``data`` and ``models`` because its rules come from all three: the
recipe's numbers and input size, the keypoint layout, the model structure and ops, the part
groups of the layout.
"""

from __future__ import annotations

from posenfs_cli.config import Recipe, check_recipe_values
from posenfs_cli.data.layouts import get_layout
from posenfs_cli.models.build import part_groups, validate_model_config


def validate(recipe: Recipe) -> Recipe:
    """Every rule a run's recipe must pass, checked once, before any folder or worker exists,
    so a typo costs nothing and reads as one line instead of a shape error deep in the
    network. Returns the recipe unchanged."""
    check_recipe_values(recipe)
    validate_model_config(recipe.model)
    part_groups(recipe.model, get_layout(recipe.data.keypoints))
    return recipe
