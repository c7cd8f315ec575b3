"""Every shipped recipe is a valid training config whose default boxes build into its model."""

from pathlib import Path

import pytest

from singleshot.engine import TrainConfig
from singleshot.engine.trainer import build_model

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_there_are_recipes() -> None:
    assert {p.stem for p in RECIPES} >= {"demo", "bccd", "bccd_scratch", "small_objects"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_a_valid_config_and_builds(path: Path) -> None:
    config = TrainConfig.from_yaml(path).validate()
    model = build_model(config, num_classes=3)
    side = config.imgsz or model.default_boxes.image_size[0]
    assert tuple(model.default_boxes.image_size) == (side, side)
    if isinstance(config.default_boxes, dict):  # the recipe's fitted sizes are the model's
        assert list(model.default_boxes.min_sizes) == pytest.approx(config.default_boxes["min_sizes"])
