"""The recipe tree's own helpers (tlcm/config.py): ``recipe_dict``, what recipe.json, the resume
record and the trackers' config are made of."""

from dataclasses import replace
from pathlib import Path

from recipes.tlcm import tlcm_full
from tlcm.config import recipe_dict


def test_recipe_dict_names_each_loss_class_and_writes_plain_json_values():
    """Each loss config carries its class name (two loss classes can have the same field values;
    the name is what tells them apart), other dataclasses do not; Paths are strings, tuples lists,
    None stays None."""
    recipe = tlcm_full()
    recipe = replace(recipe, runtime=replace(recipe.runtime, out_dir=Path("runs/x")), inference_steps=(1, 2))
    plain = recipe_dict(recipe)
    for name, phase in recipe.phases.items():
        for loss_name, loss in phase.losses.items():
            assert plain["phases"][name]["losses"][loss_name]["class"] == type(loss).__name__
        assert "class" not in plain["phases"][name]
    assert "class" not in plain["runtime"] and "class" not in plain
    assert plain["runtime"]["out_dir"] == "runs/x" and plain["inference_steps"] == [1, 2]
    assert plain["data"]["prompts"] is None
