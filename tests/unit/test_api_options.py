"""Typed options become typed recipe values; one validate() holds the rules."""

from __future__ import annotations

import pytest

from posenfs_cli.config import ConfigError, load_recipe, set_values
from posenfs_cli.engine.train_run import build_recipe
from posenfs_cli.errors import PosenfsError
from posenfs_cli.options import RecipeOptions
from posenfs_cli.validation import validate


def test_options_are_typed_values_not_strings():
    opts = RecipeOptions(input_size="384x288", parts="5", pretrained="none", amp="off", lr=0.5)
    assert opts.values() == {
        "data.input_size": [384, 288],
        "train.lr": 0.5,
        "train.amp": "off",
        "model.parts": 5,
        "model.pretrained": None,
    }


def test_build_recipe_keeps_strings_yaml_would_change():
    rec = build_recipe(RecipeOptions(recipe="synthetic/tiny", amp="off", compile="on"))
    assert rec.train.amp == "off" and rec.train.compile == "on"


def test_user_set_strings_still_parse_as_yaml():
    rec = build_recipe(RecipeOptions(recipe="synthetic/tiny", sets=["model.ops=[skip,zero]"]))
    assert rec.model.ops == ["skip", "zero"]


def test_set_values_type_checks():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        set_values(load_recipe("synthetic/tiny"), {"train.epochs": "3"})


@pytest.mark.parametrize("size", [[100, 100], [112, 112], [64, 48], [16, 16]])
def test_one_input_size_rule_multiples_of_32(size):
    rec = set_values(load_recipe("synthetic/tiny"), {"data.input_size": size})
    with pytest.raises(ConfigError, match="multiples of 32"):
        validate(rec)


def test_validate_holds_model_parts_and_ops_rules():
    rec = load_recipe("synthetic/tiny")
    validate(set_values(rec, {"data.input_size": [96, 64]}))
    with pytest.raises(PosenfsError, match="unknown op"):
        validate(set_values(rec, {"model.ops": ["skip", "conv_9x9"]}))
    with pytest.raises(PosenfsError, match="parts must be"):
        validate(set_values(rec, {"model.parts": 4}))
