"""A resume compares the training data by content (tlcm/resume.py, ``data_fingerprint``): a prompt file
edited in place is refused like a changed recipe field; the same prompts elsewhere resume; a record
from before data fingerprints resumes without the check."""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_helpers import interrupt_after, small_recipe

from tlcm.engine import Trainer, train
from tlcm.errors import TLCMError
from tlcm.resume import check_resume, data_fingerprint, run_changes


class _Images:
    """Stands in for an ImageTextSource: only its ``fingerprint()`` is read."""

    def __init__(self, value: str) -> None:
        self.value = value

    def fingerprint(self) -> str:
        return self.value


def test_the_data_fingerprint_reads_every_prompt_in_order_and_the_image_source():
    prompts = ["a cat", "a dog", "a bird"]
    base = data_fingerprint(prompts)
    assert base["prompts"] == 3 and len(base["fingerprint"]) == 16
    assert data_fingerprint(list(prompts)) == base  # a pure function of the prompts
    assert data_fingerprint(["a dog", "a cat", "a bird"])["fingerprint"] != base["fingerprint"]  # order
    assert data_fingerprint(["a cat", "a dog", "a birds"])["fingerprint"] != base["fingerprint"]  # last
    assert data_fingerprint(["a cat", "a dog"])["fingerprint"] != base["fingerprint"]
    # prompts are separated: "ab" + "c" is not "a" + "bc"
    assert data_fingerprint(["ab", "c"])["fingerprint"] != data_fingerprint(["a", "bc"])["fingerprint"]
    with_images = data_fingerprint(prompts, _Images("x1"))
    assert with_images["fingerprint"] != base["fingerprint"]
    assert data_fingerprint(prompts, _Images("x2"))["fingerprint"] != with_images["fingerprint"]
    assert data_fingerprint(prompts, _Images("x1")) == with_images


def _record(prompts, *, data=True):
    record = {"recipe": {}, "model": {"path": "m", "fingerprint": "f"}, "processes": 1}
    return {**record, "data": data_fingerprint(prompts)} if data else record


def test_changed_data_is_a_change_and_an_older_record_is_not_compared(tmp_path):
    old, new = _record(["a", "b"]), _record(["a", "b", "c"])
    (change,) = run_changes(old, new)
    assert change.startswith("training data changed (2 -> 3 prompts, fingerprint ")
    assert old["data"]["fingerprint"] in change and new["data"]["fingerprint"] in change
    assert run_changes(old, _record(["a", "b"])) == []
    assert run_changes(_record(["a"], data=False), new) == []  # a checkpoint from before the check
    folder = tmp_path / "run" / "checkpoints" / "step-0000001"
    with pytest.raises(TLCMError, match="another recipe or model: training data changed"):
        check_resume(old, new, folder, False, print)
    said: list[str] = []
    check_resume(old, new, folder, True, said.append)
    assert len(said) == 1 and "training data changed" in said[0]


def test_a_prompt_file_edited_in_place_is_refused_and_the_same_prompts_elsewhere_resume(
    tiny_sd_dir, tmp_path
):
    """The run's own prompt file gains a line between two sessions: the resume names the change.
    A copy of the original file under another name is refused for its path (a recipe field), not
    for its data; the original restored resumes."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=3)
    recipe = replace(recipe, data=replace(recipe.data, prompts=prompts))
    first = Trainer(recipe)
    interrupt_after(first, 1)
    assert first.run().preempted
    prompts.write_text("a red square\na blue circle\na green star\n")
    with pytest.raises(TLCMError, match=r"training data changed \(2 -> 3 prompts"):
        train(recipe)
    copy = tmp_path / "same.txt"
    copy.write_text("a red square\na blue circle\n")
    moved = replace(recipe, data=replace(recipe.data, prompts=copy))
    trainer = Trainer(moved)
    # only the recipe's data.prompts path differs: the recipe check names it, the data check does not
    with pytest.raises(TLCMError) as err:
        trainer._restore()
    assert "data.prompts" in str(err.value) and "training data changed" not in str(err.value)
    prompts.write_text("a red square\na blue circle\n")  # restored: resumes
    assert train(recipe).state.global_step == 3


def test_the_record_of_a_run_holds_its_data(tiny_sd_dir, tmp_path):
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)
    trainer = Trainer(recipe)
    assert trainer.record["data"] == data_fingerprint(trainer.prompts)
