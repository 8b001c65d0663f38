"""The named training recipes, and the `shipped` recipe against the model that ships."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from brainmri.config import Settings
from brainmri.models.bundle import default_bundle_dir
from brainmri.training.recipes import RECIPES, RecipeName, make_config
from brainmri_api.schemas import TrainRequest


def test_recipe_names_match_the_recipes() -> None:
    """The API, the settings and `brainmri submit train` validate against RecipeName."""
    assert set(get_args(RecipeName)) == set(RECIPES)


def test_shipped_recipe_is_what_trained_the_default_model() -> None:
    metadata = json.loads((default_bundle_dir() / "metadata.json").read_text())
    trained_with = metadata["provenance"]["config"]
    recipe = RECIPES["shipped"]
    assert {key: trained_with[key] for key in recipe} == recipe
    # every knob that shapes the model is set by the recipe, not left to a default
    config = make_config("shipped").as_dict()
    for key in ("img_size", "lr", "drop_rate", "invert_prob", "ema_decay", "label_smoothing"):
        assert config[key] == trained_with[key], key


def test_shipped_recipe_is_offered_and_scheduled_by_default() -> None:
    assert TrainRequest(dataset="s3://datasets/x/", recipe="shipped").recipe == "shipped"
    with pytest.raises(ValidationError, match="simple"):
        TrainRequest(dataset="s3://datasets/x/", recipe="fancy")
    assert Settings().retrain_recipe == "shipped"
    assert make_config("shipped").augment_config.invert_p == 0.2
