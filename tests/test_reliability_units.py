"""Reliability and command-line plumbing, by direct calls (no training): a checkpoint save that
fails or meets a leftover folder, the fallback's notice and weight limit, NaN in the optimizer, what
a resume refuses and how it names it, the base model a run's student loads on, the model folder
checks (listed components, every tokenizer's vocabulary, a non-UTF-8 model_index.json, the flag
named, trained_betas), tlcm.train's flag suggestions, ``evaluate student``'s gamma files, and the
evaluation and training prompt sets (COCO, PartiPrompts, seeded subsets, blank .jsonl prompts)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tlcm.checkpoint as ckpt
from tlcm.checkpoint import TrainState, load_latest, save_checkpoint, unsound
from tlcm.errors import TLCMError


def _save(out: Path, step: int, value: float, **kw) -> Path:
    return save_checkpoint(out, TrainState(0, step, step), {"w": torch.full((2,), value)}, {}, {}, **kw)


def _never_falls_back(line: str) -> None:
    pytest.fail(f"fell back: {line}")


# ---- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named-by-latest"])
def test_a_leftover_folder_of_the_saved_step_is_replaced_whole(tmp_path, named):
    """A step folder without state.json (what a crash in the middle of pruning or of an older save
    leaves, or damage to the one ``latest`` names) is no checkpoint: a save at that step writes
    every file anew, and ``latest`` then names a complete checkpoint holding the new weights."""
    _save(tmp_path, 1, 1.0)
    leftover = tmp_path / "checkpoints" / "step-0000002"
    leftover.mkdir()
    (leftover / "student.safetensors").write_bytes(b"half a file")
    if named:
        (tmp_path / "checkpoints" / "latest").write_text(leftover.name)
    _save(tmp_path, 2, 2.0)
    loaded = load_latest(tmp_path, "cpu", say=_never_falls_back)
    assert loaded.state.global_step == 2 and torch.equal(loaded.student["w"], torch.full((2,), 2.0))


def test_a_complete_folder_latest_never_named_is_replaced_whole(tmp_path):
    """A crash after a step folder's rename but before ``latest`` named it leaves a complete folder
    of an earlier attempt (other weights under ``resume-changed`` or a nondeterministic GPU). The
    next save at that step writes the current weights, optimizer and losses, not only state.json;
    a second save at the step ``latest`` now names keeps updating the position only (a phase-end
    save right after a periodic one)."""
    _save(tmp_path, 1, 1.0)
    root = tmp_path / "checkpoints"
    _save(tmp_path, 2, 7.0)  # the crashed attempt's step 2 ...
    (root / "latest").write_text("step-0000001")  # ... whose `latest` was never written
    _save(tmp_path, 2, 2.0)
    loaded = load_latest(tmp_path, "cpu", say=_never_falls_back)
    assert loaded.state.global_step == 2 and torch.equal(loaded.student["w"], torch.full((2,), 2.0))
    weights = (root / "step-0000002" / "student.safetensors").stat().st_mtime_ns
    save_checkpoint(tmp_path, TrainState(1, 2, 2), {"w": torch.full((2,), 9.0)}, {}, {})
    loaded = load_latest(tmp_path, "cpu", say=_never_falls_back)
    assert loaded.state.phase_index == 1 and torch.equal(loaded.student["w"], torch.full((2,), 2.0))
    assert (root / "step-0000002" / "student.safetensors").stat().st_mtime_ns == weights


def test_a_save_that_fails_on_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """torch.save reports a full disk as a RuntimeError ("PytorchStreamWriter failed writing file"):
    the save becomes the one-line "cannot write a checkpoint" error, its half-written temporary
    folder is removed (its space is what the next save needs) and ``latest`` still names the previous
    checkpoint; any other RuntimeError is not disguised as a full disk."""
    _save(tmp_path, 1, 1.0)
    full = "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0"

    def failing_save(obj, path, *args, **kwargs):
        raise RuntimeError(full)

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(
        TLCMError, match=r"cannot write a checkpoint to .* \(the previous checkpoints are intact\)"
    ):
        _save(tmp_path, 2, 2.0)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000001"]
    assert load_latest(tmp_path, "cpu", say=_never_falls_back).state.global_step == 1

    def broken_save(obj, path, *args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="illegal memory access") as info:
        _save(tmp_path, 2, 2.0)
    assert not isinstance(info.value, TLCMError)


def test_the_weight_limit_given_beats_the_one_the_checkpoint_recorded(tmp_path):
    """The engine passes this run's --recipes.runtime.max-weight-abs; a checkpoint whose run
    recorded a looser limit (1e31) but holds |w| = 1e30 is passed over under a limit of 1e4; without
    a limit given, its recorded one applies."""
    run = {"recipe": {"runtime": {"max_weight_abs": 1e31}}}
    _save(tmp_path, 1, 1.0, run=run)
    _save(tmp_path, 2, 1e30, run=run)
    lines: list[str] = []
    assert load_latest(tmp_path, "cpu", say=lines.append, limit=1e4).state.global_step == 1
    assert len(lines) == 1 and "student/w holds |w| = 1e+30 > 10000" in lines[0]
    assert load_latest(tmp_path, "cpu", say=_never_falls_back).state.global_step == 2


def test_the_fallback_notice_names_the_checkpoint_latest_named(tmp_path):
    """The newest two checkpoints damaged: the one line names the one ``latest`` named (step 3) and
    why, then the checkpoint used (step 1); not the second one passed over."""
    for step in (1, 2, 3):
        _save(tmp_path, step, float(step))
    root = tmp_path / "checkpoints"
    weights = root / "step-0000003" / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    (root / "step-0000002" / "state.json").write_text("{")
    lines: list[str] = []
    assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 1
    (line,) = lines
    assert line.startswith("checkpoint step-0000003: ") and "step-0000002" not in line
    assert line.endswith(f"(damaged, missing or unsound); using {root / 'step-0000001'} instead")


def test_nan_in_the_optimizer_state_is_unsound(tmp_path):
    """NaN in the optimizer's moments (or a loss's state) would make the next step NaN again:
    ``unsound`` names it, and a resume passes over such a checkpoint."""
    moments = {"state": {0: {"exp_avg": torch.tensor([0.0, float("nan")])}}}
    tree = {"student": {"w": torch.ones(2)}, "optimizer": moments, "losses": {}}
    assert unsound(tree, 1e4) == "optimizer/state/0/exp_avg holds NaN/inf"
    losses = {"fake_score": {"b": torch.tensor([float("inf")])}}
    assert unsound({"student": {"w": torch.ones(2)}, "optimizer": {}, "losses": losses}, 1e4) == (
        "losses/fake_score/b holds NaN/inf"
    )
    _save(tmp_path, 1, 1.0)
    save_checkpoint(tmp_path, TrainState(0, 2, 2), {"w": torch.ones(2)}, moments, {})
    lines: list[str] = []
    assert load_latest(tmp_path, "cpu", say=lines.append).state.global_step == 1
    assert "optimizer/state/0/exp_avg holds NaN/inf" in lines[0]


# ---- resume -----------------------------------------------------------------------------------


def test_unchecked_fields_match_whole_names_not_prefixes():
    """runtime.compile is unchecked (the same maths to rounding), and so is compile_backend; a field
    whose name merely starts with an unchecked one (here a made-up runtime.compile_mode) is not:
    changing it on a resume is refused like any other field."""
    from tlcm.config import Recipe, recipe_dict
    from tlcm.resume import recipe_changes

    saved = recipe_dict(Recipe())
    saved["runtime"]["compile_mode"] = "default"
    current = json.loads(json.dumps(saved))
    current["runtime"]["compile"] = True
    current["runtime"]["compile_backend"] = "aot_eager"
    assert recipe_changes(saved, current) == []
    current["runtime"]["compile_mode"] = "max-autotune"
    assert recipe_changes(saved, current) == ["runtime.compile-mode default -> max-autotune"]


def _record(fields: dict) -> dict:
    return {"recipe": {"phases": {"a": fields}}, "model": {"path": "m", "fingerprint": "f"}, "processes": 1}


def test_a_refusal_names_every_change_up_to_eight_then_counts_the_rest(tmp_path):
    """8 changed fields: all 8 named; 9: the first 8 named and "and 1 more"."""
    from tlcm.resume import check_resume

    folder = tmp_path / "run" / "checkpoints" / "step-0000001"
    for count, more in ((8, None), (9, "and 1 more")):
        saved = _record({f"f{i}": 0 for i in range(count)})
        current = _record({f"f{i}": 1 for i in range(count)})
        with pytest.raises(TLCMError) as info:
            check_resume(saved, current, folder, False, print)
        message = str(info.value)
        assert all(f"phases.a.f{i} 0 -> 1" in message for i in range(8)), message
        assert ("more" in message) == (more is not None) and (more is None or more in message)
        assert message.startswith(f"{tmp_path / 'run'} was trained with another recipe or model")


def test_a_damaged_latest_record_still_names_the_base_model(tmp_path):
    """sample / evaluate / export load a run's student on the base model its run records; with the
    latest checkpoint's state.json damaged, the previous checkpoint's record names it (not the
    miniature)."""
    from tlcm.resume import student_model, trained_model
    from tlcm.toy import MINIATURE_SD

    model = tmp_path / "model"
    model.mkdir()
    run = {"recipe": {"model": {"path": str(model), "max_sequence_length": 16}}}
    for step in (1, 2):
        _save(tmp_path / "run", step, 1.0, run=run)
    (tmp_path / "run" / "checkpoints" / "step-0000002" / "state.json").write_text('{"run": ')
    assert trained_model(tmp_path / "run")["path"] == model
    assert student_model(tmp_path / "run", None, None, print) == (model, 16) != (MINIATURE_SD, None)


# ---- model folders ----------------------------------------------------------------------------

SD_COMPONENTS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")


def _model(folder: Path, class_name: str, components: dict[str, str], **listed) -> Path:
    """A diffusers-like folder: model_index.json with ``class_name`` and each component (and the
    extra ``listed`` entries) listed, each component folder holding one file of that name."""
    folder.mkdir(parents=True)
    index = {"_class_name": class_name, **{c: ["diffusers", "X"] for c in components}, **listed}
    (folder / "model_index.json").write_text(json.dumps(index))
    for component, file in components.items():
        (folder / component).mkdir()
        (folder / component / file).write_text("{}")
    return folder


def _sd(folder: Path, **listed) -> Path:
    files = {c: "vocab.json" if c == "tokenizer" else "config.json" for c in SD_COMPONENTS}
    return _model(folder, "StableDiffusionPipeline", files, **listed)


def test_components_model_index_lists_must_be_there_unless_null(tmp_path):
    """A saved SD1.5 pipeline lists safety_checker / feature_extractor as [null, null] (absent on
    purpose): accepted. One listed with a class (from_pretrained would load it) but missing: refused
    in one line naming it."""
    from tlcm.models.folders import check_model_folder

    ok = _sd(tmp_path / "ok", safety_checker=[None, None], feature_extractor=[None, None])
    assert check_model_folder(ok) == "StableDiffusionPipeline"
    bad = _sd(tmp_path / "bad", safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"])
    with pytest.raises(TLCMError, match=r"lacks the component folder\(s\) safety_checker that model_index"):
        check_model_folder(bad)


def test_every_tokenizer_needs_a_vocabulary_and_a_t5_one_may_be_sentencepiece(tmp_path):
    """SDXL's tokenizer_2 without a vocabulary is refused like tokenizer; FLUX's T5 tokenizer_2
    saved by the slow T5Tokenizer holds only spiece.model: accepted."""
    from tlcm.models.folders import check_model_folder

    sdxl = {c: "vocab.json" if c.startswith("tokenizer") else "config.json" for c in SD_COMPONENTS}
    sdxl.update(text_encoder_2="config.json", tokenizer_2="special_tokens_map.json")
    folder = _model(tmp_path / "sdxl", "StableDiffusionXLPipeline", sdxl)
    with pytest.raises(TLCMError, match=r"sdxl/tokenizer_2 holds no vocabulary \(none of tokenizer.json"):
        check_model_folder(folder)
    flux = {"transformer": "config.json", "vae": "config.json", "scheduler": "scheduler_config.json"}
    flux.update(text_encoder="config.json", tokenizer="vocab.json")
    flux.update(text_encoder_2="config.json", tokenizer_2="spiece.model")
    assert check_model_folder(_model(tmp_path / "flux", "FluxPipeline", flux)) == "FluxPipeline"


def test_a_model_index_that_is_not_utf8_is_one_line(tmp_path):
    """model_index.json in UTF-16 (a Windows editor's "Unicode"): the one-line "is not valid JSON"
    error, not a UnicodeDecodeError traceback."""
    from tlcm.models.folders import check_model_folder

    folder = _sd(tmp_path / "m")
    text = (folder / "model_index.json").read_text()
    (folder / "model_index.json").write_bytes(text.encode("utf-16"))
    with pytest.raises(TLCMError, match="model_index.json is not valid JSON .*: re-save the pipeline"):
        check_model_folder(folder)


def test_the_model_folder_errors_name_the_flag_given(tmp_path):
    """tlcm.sample / evaluate pass "--model": a file, or a folder without model_index.json, is
    refused naming that flag, never the training command's --recipes.model.path."""
    from tlcm.models.folders import check_model_folder

    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    for path in (file, tmp_path):
        with pytest.raises(TLCMError) as info:
            check_model_folder(path, "--model")
        assert "--model" in str(info.value) and "--recipes" not in str(info.value), str(info.value)


def test_the_timestep_count_of_a_scheduler_with_trained_betas_is_diffusers_own(tmp_path):
    """A scheduler config with trained_betas: diffusers builds its schedule from them (the
    num_train_timesteps beside them notwithstanding), so T is their count, as DDIMScheduler's
    alphas_cumprod shows."""
    from diffusers import DDIMScheduler

    from tlcm.models.folders import scheduler_timesteps

    betas = torch.linspace(1e-4, 0.02, 50).tolist()
    config = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "trained_betas": betas}
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    reference = len(DDIMScheduler.from_config(config).alphas_cumprod)
    assert scheduler_timesteps(tmp_path) == reference == 50


# ---- tlcm.train's flags -----------------------------------------------------------------------


def test_a_misspelled_negative_flag_gets_its_negative_spelling_suggested():
    """--recipes.runtime.no-resme: the suggestion is --recipes.runtime.no-resume (a bool's
    negative flag), not --recipes.runtime.resume, which means the opposite."""
    from tlcm.train import preset_flags, unknown_arguments

    flag = "--recipes.runtime.no-resme"
    line = unknown_arguments([flag], ["recipes:mlcd", flag])
    assert f"{flag} (did you mean --recipes.runtime.no-resume?)" in line
    assert "--recipes.runtime.no-sample-grid" in preset_flags("mlcd")


# ---- evaluate student's score files -----------------------------------------------------------


def test_evaluate_student_with_a_gamma_writes_its_own_file(tmp_path, monkeypatch):
    """--gamma alone (or --first-gamma alone) writes RUN/eval-gamma<g>[-first<f>].json and leaves
    RUN/eval.json, the run's own scores, as it was; neither writes eval.json."""
    import tlcm.evaluate as evaluate
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.models.student import Student

    trained = SimpleNamespace(config=SimpleNamespace(grid=StudentGrid()), denoiser=lambda: None)
    monkeypatch.setattr(Student, "from_run", staticmethod(lambda base, run: trained))
    monkeypatch.setattr(evaluate, "_load", lambda *args: None)
    monkeypatch.setattr(evaluate, "ToyMetrics", lambda assets: None)

    def scores(base, denoiser, steps, samples_per_digit, metrics, grid):
        sampler = {"gamma": grid.gamma, "first_gamma": grid.first_gamma}  # as student_scores records it
        return [
            {"steps": n, "prompts": 10 * samples_per_digit, "alignment": 0.5, "fd": 1.0, **sampler}
            for n in steps
        ]

    monkeypatch.setattr(evaluate, "student_scores", scores)
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text("the run's own scores")
    evaluate.student(run, steps=(1,), samples_per_digit=1, gamma=0.5)
    evaluate.student(run, steps=(1,), samples_per_digit=1, first_gamma=0.0)
    assert (run / "eval.json").read_text() == "the run's own scores"
    assert sorted(p.name for p in run.iterdir()) == [
        "eval-gamma0.5.json",
        "eval-gamma1-first0.json",
        "eval.json",
    ]
    (row,) = json.loads((run / "eval-gamma0.5.json").read_text())
    assert (row["gamma"], row["first_gamma"]) == (0.5, None)


# ---- prompt sets ------------------------------------------------------------------------------


def _coco(path: Path, images: list[int], annotations: list[tuple[int, int, str]]) -> Path:
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in images],
        "annotations": [{"id": a, "image_id": i, "caption": c} for a, i, c in annotations],
    }
    path.write_text(json.dumps(data))
    return path


def test_coco_captions_of_images_the_file_does_not_list_are_never_drawn(tmp_path):
    """A caption whose image_id has no image entry (a trimmed file): that image is not a candidate;
    every seed draws from the three listed images, and asking for 4 is refused in one line."""
    from tlcm.eval.prompts import load_prompt_set

    anns = [(10 * i + k, i, f"photo {i} caption {k}") for i in (1, 2, 3, 9) for k in range(2)]
    path = _coco(tmp_path / "captions.json", [1, 2, 3], anns)
    for seed in range(8):
        records = load_prompt_set(path, 3, seed=seed)
        assert [r.image for r in records] == [f"{i:012d}.jpg" for i in (1, 2, 3)]
    with pytest.raises(TLCMError, match="has captions for 3 images, fewer than the 4 asked for"):
        load_prompt_set(path, 4)


def test_the_coco_caption_drawn_depends_on_the_seed_not_on_the_files_order(tmp_path):
    """The same captions with the annotations listed in another order (a re-export): the same
    prompt set for every seed; another seed another caption for some image."""
    from tlcm.eval.prompts import load_prompt_set

    anns = [(100 * i + k, i, f"photo {i} caption {k}") for i in range(1, 6) for k in range(5)]
    forward = _coco(tmp_path / "a.json", list(range(1, 6)), anns)
    backward = _coco(tmp_path / "b.json", list(range(1, 6)), anns[::-1])
    drawn = [load_prompt_set(forward, 5, seed=seed) for seed in range(6)]
    assert drawn == [load_prompt_set(backward, 5, seed=seed) for seed in range(6)]
    assert len({tuple(r.prompt for r in records) for records in drawn}) > 1


def test_a_prompt_subset_is_drawn_with_the_seed_in_the_files_order(tmp_path):
    """--num-prompts N of a .txt set: random.Random(seed).sample of the line indices, kept in file
    order; the same seed the same prompts, other seeds other ones; N = 0 is refused."""
    from tlcm.eval.prompts import load_prompt_set

    prompts = [f"prompt {i}" for i in range(20)]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    for seed in (0, 1, 7):
        expected = [prompts[i] for i in sorted(random.Random(seed).sample(range(20), 5))]
        assert [r.prompt for r in load_prompt_set(tmp_path / "p.txt", 5, seed=seed)] == expected
    assert (
        len({tuple(r.prompt for r in load_prompt_set(tmp_path / "p.txt", 5, seed=s)) for s in range(4)}) > 1
    )
    coco = _coco(tmp_path / "c.json", [1], [(1, 1, "a photo")])
    for path in (tmp_path / "p.txt", coco):
        with pytest.raises(TLCMError, match="--num-prompts must be >= 1, got 0"):
            load_prompt_set(path, 0)


def test_a_parti_file_with_a_byte_order_mark_is_read(tmp_path):
    """PartiPrompts.tsv saved with a UTF-8 byte-order mark (Excel, Notepad): its "Prompt" column is
    still found."""
    from tlcm.eval.prompts import load_prompt_set

    (tmp_path / "parti.tsv").write_text("\ufeffPrompt\tCategory\nA cat\tAnimals\nA red cube\tThings\n")
    assert [r.prompt for r in load_prompt_set(tmp_path / "parti.tsv")] == ["A cat", "A red cube"]


def test_a_jsonl_prompt_of_blanks_is_refused_naming_its_line(tmp_path):
    """A .jsonl "prompt" of whitespace and zero-width characters is no prompt: one line naming the
    file and line, not an empty training prompt."""
    from tlcm.data.prompts import load_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a digit"}\n{"prompt": " \\u200b "}\n')
    with pytest.raises(
        TLCMError, match=r'p.jsonl:2: expected a JSON object with a non-empty string "prompt"'
    ):
        load_prompts(path)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"], ids=["U+2028", "U+2029", "U+0085"])
def test_a_jsonl_prompt_holding_a_unicode_line_separator_is_one_prompt(tmp_path, separator):
    """JSON Lines breaks lines at \\n only, and JSON allows U+2028 / U+2029 / U+0085 raw inside a
    string: json.dumps(..., ensure_ascii=False) writes them so (scraped captions hold them). Such a
    file is read as the json module reads each line (before: str.splitlines cut the object in two,
    "not JSON")."""
    from tlcm.data.prompts import load_prompts
    from tlcm.eval.prompts import load_prompt_set

    records = [{"prompt": f"a digit{separator}seven"}, {"prompt": "a digit four"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert separator in path.read_text(encoding="utf-8")  # written raw, not escaped
    assert load_prompts(path) == [r["prompt"] for r in records]
    assert [r.prompt for r in load_prompt_set(path)] == [r["prompt"] for r in records]
