"""Red-team round 13, area cli: direct-call tests of the command line's helpers (tlcm/train.py),
the recipe tree's documented defaults, resume's record comparison and the run-folder helpers
(tlcm/resume.py), the loss registry, tlcm.sample's flag checks, the phase-end sample grids, the
process-wide stop-signal handler and the non-finite guard's message. No training: each test runs in
well under a second or two (catalogue: tests/mutants/redteam13_cli.py)."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import tyro

from recipes import PRESETS
from tlcm.config import DataConfig, Recipe, RuntimeConfig, StudentConfig, recipe_dict, smoke_recipe
from tlcm.diffusion.milestones import StudentGrid
from tlcm.errors import TLCMError

# ---- tlcm/train.py: unknown presets and flags -------------------------------------------------


def _parses(flag: str, preset: str) -> bool:
    """Whether tyro takes ``flag`` (with a value when it is not a bool switch) for ``preset``."""
    from tlcm.train import TrainArgs

    value = PRESETS[preset]
    for attr in flag.removeprefix("--recipes.").split("."):
        if isinstance(value, dict):
            value = value.get(attr) or value.get(attr.replace("-", "_"))
        else:
            name = attr.replace("-", "_")
            value = getattr(value, name.removeprefix("no_") if not hasattr(value, name) else name, None)
    args = [f"recipes:{preset}", flag]
    if not isinstance(value, bool):
        args.append("1" if isinstance(value, int | float) else "x")
    try:
        _, unknown = tyro.cli(
            TrainArgs,
            args=args,
            config=(tyro.conf.CascadeSubcommandArgs,),
            return_unknown_args=True,
        )
    except SystemExit:  # a known flag whose dummy value tyro could not convert
        return True
    return not unknown


def test_unknown_preset_names_the_presets_as_the_command_line_spells_them():
    from tlcm.train import check_preset_names

    check_preset_names(["recipes:tlcm-full", "--recipes.runtime.seed", "1"])  # known: no error
    with pytest.raises(TLCMError) as info:
        check_preset_names(["recipes:tlcm-ful"])
    message = str(info.value)
    assert "(did you mean recipes:tlcm-full?)" in message
    listed = message.split("presets: ", 1)[1].split(", ")
    assert listed == [f"recipes:{name}" for name in PRESETS]


def test_every_suggested_flag_is_one_tyro_takes():
    """The flags an unknown one is matched to are the preset's real flags: hyphenated (tyro's
    spelling), never recipe_dict's "class" tag of a loss config, and each accepted by the parser."""
    from tlcm.train import preset_flags, unknown_arguments

    flags = preset_flags("tlcm-paper")
    assert not [f for f in flags if "_" in f]
    assert not [f for f in flags if f.endswith(".class")]
    for wanted in (
        "--recipes.phases.mlcd.lr-schedule",
        "--recipes.phases.mlcd.losses.mlcd.ema-decay",
        "--recipes.runtime.no-resume",
        "--recipes.student.grid.num-milestones",
    ):
        assert wanted in flags and _parses(wanted, "tlcm-paper"), wanted
    argv = ["recipes:mlcd", "--recipes.phases.mlcd.losses.mlcd.clas", "1"]
    line = unknown_arguments(["--recipes.phases.mlcd.losses.mlcd.clas", "1"], argv)
    suggested = line.split("(did you mean ", 1)[1].split("?)", 1)[0] if "did you mean" in line else None
    assert suggested is None or _parses(suggested, "mlcd"), line


def test_a_stray_value_is_not_called_a_flag_and_the_help_hint_names_the_preset():
    from tlcm.train import unknown_arguments

    line = unknown_arguments(["3"], ["recipes:mlcd", "3"])
    assert line == "unexpected argument(s) 3: every value follows its --recipes.FIELD flag"
    line = unknown_arguments(
        ["--recipes.phases.mlcd.stpes", "3"], ["recipes:mlcd", "--recipes.phases.mlcd.stpes", "3"]
    )
    assert line.startswith("unknown flag(s) --recipes.phases.mlcd.stpes (did you mean")
    assert "python -m tlcm.train recipes:mlcd --help lists every flag" in line
    assert "recipes:NAME" in unknown_arguments(["--x"], ["--x"])  # no preset given: the placeholder


# ---- tlcm/train.py: what a finished run does --------------------------------------------------


@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    """train_and_score with the engine, the scores, the model card and the summary stood in for:
    returns (run, calls), calls[i] = (what, args, kwargs)."""
    import tlcm.card
    import tlcm.engine
    import tlcm.toy.scores
    import tlcm.train

    calls: list[tuple] = []
    denoiser = object()
    run = SimpleNamespace(
        preempted=False,
        is_main=True,
        out_dir=tmp_path,
        train_seconds=1.0,
        denoiser_evals=0,
        base="base",
        student=SimpleNamespace(denoiser=lambda: denoiser),
    )
    scores = [{"steps": 1, "alignment": 0.5}]

    def student_scores(*args, **kwargs):
        calls.append(("scores", args, kwargs))
        return scores

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(tlcm.engine, "train", lambda recipe: run)
    monkeypatch.setattr(tlcm.toy.scores, "student_scores", student_scores)
    monkeypatch.setattr(tlcm.card, "write_model_card", lambda *a, **k: calls.append(("card", a, k)))
    monkeypatch.setattr(tlcm.train, "run_summary", lambda *a: calls.append(("summary", a, {})) or "")
    return run, calls, denoiser, scores


def _recipe(tmp_path: Path, **runtime) -> Recipe:
    grid = StudentGrid(num_milestones=4, steps=2)
    return Recipe(student=StudentConfig(grid=grid), runtime=RuntimeConfig(out_dir=tmp_path, **runtime))


def test_a_finished_run_is_scored_at_the_grids_step_counts_on_its_own_grid(fake_training, tmp_path):
    """No inference_steps: the student grid's default (1, 2, 4 for M = 4), on that grid (not the
    default M = 8 one); the scores land in RUN/eval.json and the summary."""
    import tlcm.train

    run, calls, denoiser, scores = fake_training
    recipe = _recipe(tmp_path, eval_samples_per_digit=3)
    assert tlcm.train.train_and_score(recipe) is run
    (what, args, kwargs) = calls[0]
    assert what == "scores" and args == ("base", denoiser, (1, 2, 4), 3)
    assert kwargs.pop("metrics").mu.shape == (64,)  # the bundled miniature's digit metrics
    assert kwargs == {"student_grid": StudentGrid(num_milestones=4, steps=2)}
    assert json.loads((tmp_path / "eval.json").read_text()) == scores
    assert [c[0] for c in calls] == ["scores", "card", "summary"] and calls[2][1][3] == scores


def test_only_a_digit_miniature_is_scored_by_the_digit_metrics_beside_it(
    fake_training, tmp_path, tiny_sd_dir, capfd
):
    """Another model (here a tiny SD folder, no metric assets beside it) is not scored: one line
    says why and what to do, and no eval.json is written; a miniature built elsewhere is scored by
    the classifier and FD statistics its build wrote beside it, not the bundled ones."""
    import tlcm.train
    from tlcm.files import save_tensors
    from tlcm.toy import ASSET_DIR

    _, calls, _, _ = fake_training
    recipe = _recipe(tmp_path / "run", eval_samples_per_digit=2)
    tlcm.train.train_and_score(replace(recipe, model=replace(recipe.model, path=tiny_sd_dir)))
    said = " ".join(capfd.readouterr().err.split())
    assert f"no end-of-run scores: {tiny_sd_dir} is not a digit miniature" in said
    assert "--recipes.runtime.eval-samples-per-digit 0" in said
    assert [c[0] for c in calls] == ["summary"] and not (tmp_path / "eval.json").exists()
    build = tmp_path / "build"
    build.mkdir()
    (build / "miniature-sd").mkdir()
    shutil.copy(ASSET_DIR / "digit_classifier.safetensors", build)
    save_tensors(
        {"mu": torch.full((64,), 7.0), "sigma": torch.eye(64)}, build / "reference_stats.safetensors"
    )
    tlcm.train.train_and_score(replace(recipe, model=replace(recipe.model, path=build / "miniature-sd")))
    scored = [c for c in calls if c[0] == "scores"]
    assert len(scored) == 1 and torch.equal(scored[0][2]["metrics"].mu, torch.full((64,), 7.0))
    assert "no end-of-run scores" not in capfd.readouterr().err


GLOO_LOST = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:5"


@pytest.mark.parametrize(
    ("rank", "error", "one_line"),
    [
        ("1", GLOO_LOST, True),
        ("1", "NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited", True),
        ("0", GLOO_LOST, False),
        ("1", "CUDA error: an illegal memory access was encountered", False),
    ],
)  # fmt: skip
def test_a_rank_that_lost_a_collective_says_so_in_one_line(
    fake_training, tmp_path, monkeypatch, rank, error, one_line
):
    """Rank 0 stopped with an error of its own (walkthrough 8: a full disk under its checkpoint);
    another rank's collective then fails: one line, exit 1, pointing at rank 0's error, instead of
    a gloo / NCCL traceback. Rank 0's own collective failure, or another error, is raised as it is."""
    import tlcm.engine
    import tlcm.train
    from tlcm.distributed import OtherProcessFailed

    def train(recipe):
        raise RuntimeError(error)

    monkeypatch.setattr(tlcm.engine, "train", train)
    monkeypatch.setenv("RANK", rank)
    recipe = _recipe(tmp_path / "run", eval_samples_per_digit=0)
    if not one_line:
        with pytest.raises(RuntimeError, match=re.escape(error)):
            tlcm.train.train_and_score(recipe)
        return
    with pytest.raises(OtherProcessFailed) as info:
        tlcm.train.train_and_score(recipe)
    assert info.value.exit_code == 1 and isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value).startswith("another process stopped (rank 0's error says why)")


def test_the_run_folder_stays_locked_until_the_scores_and_card_are_written(
    fake_training, tmp_path, monkeypatch
):
    """Rank 0 holds RUN/.lock from before the Trainer (which shares it) until eval.json and the
    card are written: another training of the folder is refused meanwhile; released after."""
    import tlcm.card
    import tlcm.train
    from tlcm.files import LOCK_FILE

    locked = []
    card = tlcm.card.write_model_card

    def write_card(*args, **kwargs):
        locked.append((tmp_path / LOCK_FILE).is_file() and _locked_elsewhere(tmp_path / LOCK_FILE))
        card(*args, **kwargs)

    monkeypatch.setattr(tlcm.card, "write_model_card", write_card)
    tlcm.train.train_and_score(_recipe(tmp_path, eval_samples_per_digit=2))
    assert locked == [True] and not (tmp_path / LOCK_FILE).exists()


def _locked_elsewhere(path: Path) -> bool:
    """Whether another process's non-blocking flock of ``path`` is refused."""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(7)\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(path)]).returncode == 7


@pytest.mark.parametrize(("fsdp", "world", "per_digit", "scored"), [
    (True, None, 2, True),  # FSDP on one process is ignored (RuntimeConfig.fsdp): scored
    (True, "1", 2, True),
    (True, "2", 2, False),  # shards need every rank: skipped
    (False, "2", 2, True),
    (False, None, 0, False),  # 0: off
])  # fmt: skip
def test_scoring_is_off_at_zero_samples_and_skipped_only_for_real_shards(
    fake_training, tmp_path, monkeypatch, fsdp, world, per_digit, scored
):
    import tlcm.train

    _, calls, _, _ = fake_training
    if world is not None:
        monkeypatch.setenv("WORLD_SIZE", world)
    tlcm.train.train_and_score(_recipe(tmp_path, fsdp=fsdp, eval_samples_per_digit=per_digit))
    assert ("scores" in [c[0] for c in calls]) == scored
    assert calls[-1][0] == "summary"


def test_a_preempted_run_exits_75_and_a_finished_one_returns(monkeypatch, tmp_path):
    """main's documented exit codes: 75 after a stop signal saved a checkpoint, else a return (0)."""
    import tlcm.train

    recipe = replace(PRESETS["mlcd"], runtime=replace(PRESETS["mlcd"].runtime, out_dir=tmp_path / "run"))
    for preempted in (True, False):
        monkeypatch.setattr(
            tlcm.train, "train_and_score", lambda r, p=preempted: SimpleNamespace(preempted=p)
        )
        if preempted:
            with pytest.raises(SystemExit) as info:
                tlcm.train.main(tlcm.train.TrainArgs(recipes=recipe))
            assert info.value.code == 75
        else:
            assert tlcm.train.main(tlcm.train.TrainArgs(recipes=recipe)) is None


# ---- tlcm/config.py: documented defaults -------------------------------------------------------


def test_every_preset_resumes_a_rerun_by_default():
    """README: "A run resumes from RUN/checkpoints/latest when started again"; the switch off is
    --recipes.runtime.no-resume."""
    from tlcm.train import TrainArgs

    assert all(recipe.runtime.resume for recipe in PRESETS.values())
    args = tyro.cli(TrainArgs, args=["recipes:mlcd"], config=(tyro.conf.CascadeSubcommandArgs,))
    assert args.recipes.runtime.resume


def test_the_default_caption_column_reads_the_image_folders_tlcm_writes(tmp_path):
    """save_image_folder (and --write-miniature) write diffusers' layout: file_name + text; the
    recipe's default caption column must read those captions."""
    from tlcm.data.images import ImageTextSource, save_image_folder

    folder = save_image_folder(tmp_path / "digits", torch.zeros(2, 3, 8, 8), ["a one", "a two"])
    source = ImageTextSource(folder, 8, caption_column=DataConfig().caption_column)
    assert [source.text(i) for i in range(len(source))] == ["a one", "a two"]


def test_a_smoke_recipe_never_evaluates_and_runs_on_the_device_given():
    """smoke_recipe's docstring: no evaluation, even for a preset that scores at its end; the device
    is its argument (benchmarks pass a GPU)."""
    preset = PRESETS["tlcm-full"]
    assert preset.runtime.eval_samples_per_digit > 0  # otherwise the test shows nothing
    smoke = smoke_recipe(preset, Path("model"), Path("out"))
    assert smoke.runtime.eval_samples_per_digit == 0 and not smoke.runtime.sample_grid
    assert smoke.runtime.device == "cpu"  # the default
    assert smoke_recipe(preset, Path("model"), Path("out"), device="cuda:1").runtime.device == "cuda:1"


# ---- tlcm/resume.py ------------------------------------------------------------------------------


def test_the_fields_design_md_calls_free_may_change_on_a_resume_and_the_seed_may_not():
    """docs/design.md's list of fields free to change (resume.UNCHECKED), all changed at once: no
    change reported; the seed (its example of a refusal) and the base model's settings are."""
    from tlcm.resume import recipe_changes

    base = PRESETS["tlcm-full"]
    rt = base.runtime
    free = replace(
        base,
        model=replace(base.model, path=Path("/elsewhere/model")),
        student=replace(base.student, init_from=Path("runs/x"), init_from_unfinished=True),
        data=replace(base.data, embedding_cache=Path("/cache/emb")),
        runtime=replace(
            rt,
            out_dir=Path("runs/moved"),
            log_every=rt.log_every + 4,
            trackers=("tensorboard",),
            checkpoint_every=rt.checkpoint_every + 7,
            sample_grid=not rt.sample_grid,
            eval_samples_per_digit=rt.eval_samples_per_digit + 1,
            export_formats=("diffusers", "kohya"),
            on_nonfinite="skip",
            max_consecutive_skips=rt.max_consecutive_skips + 1,
            max_skipped_fraction=0.5,
            max_weight_abs=rt.max_weight_abs * 10,
            device="cpu",
            gradient_checkpointing=not rt.gradient_checkpointing,
            compile=not rt.compile,
            compile_backend="aot_eager",
            graphs=not rt.graphs,
            resume=not rt.resume,
            resume_changed=not rt.resume_changed,
        ),
        inference_steps=(1, 3),
    )
    assert recipe_changes(recipe_dict(base), recipe_dict(free)) == []
    reseeded = replace(base, runtime=replace(rt, seed=rt.seed + 1))
    assert recipe_changes(recipe_dict(base), recipe_dict(reseeded)) == [
        f"runtime.seed {rt.seed} -> {rt.seed + 1}"
    ]
    guided = replace(base, model=replace(base.model, guidance_scale=3.0))
    assert recipe_changes(recipe_dict(base), recipe_dict(guided)) == [
        f"model.guidance-scale {base.model.guidance_scale:g} -> 3"
    ]


def _model(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_the_fingerprint_covers_each_files_path_not_only_its_name(tmp_path):
    """design.md: sha256 over each file's path, size and content: the same bytes in another
    component folder is another model folder."""
    from tlcm.resume import model_fingerprint

    index = {"model_index.json": b"{}"}
    a = _model(tmp_path / "a", {**index, "unet/weights.bin": b"w" * 100})
    b = _model(tmp_path / "b", {**index, "vae/weights.bin": b"w" * 100})
    assert model_fingerprint(a) != model_fingerprint(b)


def test_models_under_a_hidden_folder_are_still_fingerprinted(tmp_path):
    """Hidden paths inside the model folder are skipped, not the folders above it: two models in
    ~/.cache/huggingface (a hidden parent) must not share one fingerprint."""
    from tlcm.resume import model_fingerprint

    cache = tmp_path / ".cache" / "huggingface"
    a = _model(cache / "a", {"model_index.json": b"{}", "unet/w.bin": b"a" * 64})
    b = _model(cache / "b", {"model_index.json": b"{}", "unet/w.bin": b"b" * 64})
    assert model_fingerprint(a) != model_fingerprint(b)
    c = _model(tmp_path / "c", {"model_index.json": b"{}", "unet/w.bin": b"a" * 64})
    assert model_fingerprint(a) == model_fingerprint(c)  # the same files elsewhere: the same model


def _record(path: str, fingerprint: str, lr: float = 1e-3) -> dict:
    return {
        "recipe": {"phases": {"a": {"lr": lr}}},
        "model": {"path": path, "fingerprint": fingerprint},
        "processes": 1,
    }


def test_a_refusal_names_the_run_folder_and_says_how_the_model_changed(tmp_path):
    """The refusal names RUN (what --recipes.runtime.out-dir took), not RUN/checkpoints; another
    model folder reads "A -> B", the same folder with other weights "A changed"."""
    from tlcm.resume import check_resume, run_changes

    run = tmp_path / "run"
    folder = run / "checkpoints" / "step-0000002"
    with pytest.raises(TLCMError) as info:
        check_resume(_record("m", "f", 1e-3), _record("m", "f", 2e-3), folder, False, print)
    assert str(info.value).startswith(
        f"{run} was trained with another recipe or model: phases.a.lr 0.001 -> 0.002"
    )
    moved = run_changes(_record("/a", "f1"), _record("/b", "f2"))
    assert moved == ["base model /a -> /b (fingerprint f1 -> f2)"]
    in_place = run_changes(_record("/a", "f1"), _record("/a", "f2"))
    assert in_place == ["base model /a changed (fingerprint f1 -> f2)"]
    assert run_changes(_record("/a", "f1"), _record("/b", "f1")) == []  # a moved model resumes


def _fake_run(run: Path, base: Path) -> Path:
    step = run / "checkpoints" / "step-0000001"
    step.mkdir(parents=True)
    (step / "state.json").write_text(json.dumps({"run": {"recipe": {"model": {"path": str(base)}}}}))
    (run / "checkpoints" / "latest").write_text("step-0000001")
    return run


def test_a_student_on_its_own_base_gets_no_note_and_on_another_one_does(tmp_path):
    from tlcm.resume import student_model

    base = _model(tmp_path / "base", {"model_index.json": b"{}", "unet/w.bin": b"a" * 64})
    run = _fake_run(tmp_path / "run", base)
    notes: list[str] = []
    moved = tmp_path / "moved"
    shutil.copytree(base, moved)
    assert student_model(run, moved, None, notes.append) == (moved, None) and notes == []
    (moved / "unet" / "w.bin").write_bytes(b"b" * 64)
    assert student_model(run, moved, None, notes.append) == (moved, None)
    assert notes == [f"note: {run} was trained on {base}; using its student on --model {moved}"]


def test_a_runs_checkpoints_or_export_folder_names_the_run(tmp_path):
    from tlcm.resume import run_folder

    run = tmp_path / "run"
    (run / "checkpoints" / "step-0000001").mkdir(parents=True)
    (run / "student").mkdir()
    assert run_folder(run / "checkpoints", "--student") == run
    assert run_folder(run / "student", "--student") == run
    assert run_folder(run, "--student") == run
    lone = tmp_path / "student"  # a folder named so, but no run around it
    lone.mkdir()
    assert run_folder(lone, "--student") == lone


def test_init_from_another_base_model_suggests_the_checkpoints_model():
    """The fix offered is the base model the init_from run was trained on (passing this run's own
    --recipes.model.path again would change nothing)."""
    from tlcm.resume import check_init_base

    with pytest.raises(TLCMError) as info:
        check_init_base(
            _record("/models/a", "fa"), _record("/models/b", "fb"), "--recipes.student.init-from x"
        )
    assert str(info.value).endswith("start from a run of this model, or pass --recipes.model.path /models/a")
    check_init_base(_record("/models/a", "f"), _record("/models/b", "f"), "--flag")  # moved: fine


# ---- tlcm/losses/registry.py ----------------------------------------------------------------------


def test_loss_config_applies_the_overrides():
    from tlcm.losses import loss_config

    default = loss_config("mlcd")
    custom = loss_config("mlcd", weight=default.weight * 3)
    assert custom.weight == default.weight * 3 and type(custom) is type(default)


# ---- tlcm/sample.py ----------------------------------------------------------------------------------


def test_the_teacher_takes_at_most_t_minus_one_steps_refused_before_loading(tmp_path):
    """ddim_timesteps allows 1..T-1 (from T on the rounded grid repeats timesteps): check_sample_args
    refuses --steps T in one line, before the model loads, and takes T - 1."""
    from tlcm.models.folders import scheduler_timesteps
    from tlcm.sample import SampleArgs, check_sample_args
    from tlcm.toy import MINIATURE_SD

    t = scheduler_timesteps(MINIATURE_SD)
    args = SampleArgs(model=MINIATURE_SD, device="cpu", out=tmp_path / "g.png")
    check_sample_args(replace(args, steps=t - 1))
    with pytest.raises(TLCMError, match=rf"use --steps 1\.\.{t - 1}$"):
        check_sample_args(replace(args, steps=t))


def test_one_blank_prompt_among_others_is_refused(tmp_path):
    from tlcm.sample import SampleArgs, main

    args = SampleArgs(prompt=("a seven", "  "), device="cpu", out=tmp_path / "g.png")
    with pytest.raises(TLCMError, match="--prompt #2 of 2 is empty: give it text or drop it"):
        main(args)


# ---- tlcm/sample_grids.py ------------------------------------------------------------------------


def _phase_grid(tmp_path, monkeypatch, seed: int, first_gamma: float | None):
    """write_phase_grid with a stand-in base and sampler: the (noise, gamma, first_gamma) it got."""
    import tlcm.sample_grids as grids

    got = []

    class Base:
        device, latent_shape, schedule = "cpu", (3, 4, 4), None

        def encode(self, prompts):
            return prompts, None

        def autocast(self):
            return contextlib.nullcontext()

        def decode(self, latents):
            return latents.clamp(-1, 1)

    def sample(denoiser, schedule, cond, noise, timesteps, gamma, generator=None, first_gamma=None):
        got.append((noise.clone(), gamma, first_gamma))
        return noise

    monkeypatch.setattr(grids, "sample_latents", sample)
    grid = SimpleNamespace(timesteps=lambda n, s: torch.arange(n), gamma=0.25, first_gamma=first_gamma)
    student = SimpleNamespace(base=Base(), denoiser=lambda: None)
    grids.write_phase_grid(student, ["a", "b"], (1,), grid, tmp_path / f"{seed}.png", seed=seed)
    return got[0]


def test_phase_grids_use_the_grids_first_move_gamma_and_the_seed_given(tmp_path, monkeypatch):
    noise0, gamma, first = _phase_grid(tmp_path, monkeypatch, 0, 0.5)
    assert (gamma, first) == (0.25, 0.5)
    noise1, _, _ = _phase_grid(tmp_path, monkeypatch, 1, 0.5)
    assert torch.equal(noise1, torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(noise0, noise1)


# ---- tlcm/preemption.py --------------------------------------------------------------------------


@pytest.fixture
def restored_handlers(monkeypatch):
    """No process-wide handler before; every stop signal's handler put back after the test."""
    from tlcm import preemption

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(preemption, "_process", None)
    before = {s: signal.getsignal(s) for s in preemption.STOP_SIGNALS}
    yield preemption
    for s, handler in before.items():
        signal.signal(s, handler)


def test_a_signal_during_loading_is_kept_for_the_training_block(restored_handlers, capfd):
    """python -m tlcm.train installs the process handler once; a signal it received while the model
    loaded is what the training loop's stop_signals block sees (and installing again keeps it)."""
    preemption = restored_handlers
    process = preemption.install_for_process()
    process.handle(signal.SIGTERM)
    assert preemption.install_for_process() is process and process.received == "SIGTERM"
    with preemption.stop_signals() as stop:
        assert stop is process and stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == process.handle  # the block restores nothing of it
    capfd.readouterr()


# ---- tlcm/guards.py ------------------------------------------------------------------------------------


def test_a_nonfinite_step_names_only_its_nonfinite_terms(tmp_path):
    from tlcm.guards import NonFiniteLoss, nonfinite

    terms = {"mlcd": torch.tensor(0.5), "gan": torch.tensor(math.nan), "grad_norm": torch.tensor(math.inf)}
    said: list[str] = []
    skip = RuntimeConfig(out_dir=tmp_path, on_nonfinite="skip")
    nonfinite(skip, "mlcd", 4, terms, 1, said.append)
    assert said == ["[yellow]skipped step 4 of mlcd: non-finite gan, grad_norm"]
    with pytest.raises(NonFiniteLoss, match=r"^non-finite gan, grad_norm in phase 'mlcd' at step 4;"):
        nonfinite(RuntimeConfig(out_dir=tmp_path), "mlcd", 4, terms, 1, said.append)


def test_a_mostly_skipped_phase_says_how_many_of_its_steps(tmp_path):
    """10 steps, fraction 0.25: 2 skipped pass; 3 (more than 2.5) fail, counted in this phase only
    (global steps 11..20; step 10 belongs to the previous phase)."""
    from tlcm.guards import NonFiniteLoss, check_skipped

    rt = RuntimeConfig(out_dir=tmp_path, on_nonfinite="skip")
    check_skipped(rt, "lcd", 10, 20, [10, 12, 19])
    with pytest.raises(
        NonFiniteLoss, match=r"^phase 'lcd' ended with 3 of its 10 steps skipped \(non-finite"
    ):
        check_skipped(rt, "lcd", 10, 20, [10, 11, 12, 19])


# ---- --import: a researcher's recipes and losses outside the repository (2026-12-07) --------------

MY_RECIPES = """
from dataclasses import dataclass, replace

from recipes.tlcm import mlcd
from tlcm.losses import LossConfig, register_loss


@register_loss("{loss}")
@dataclass
class MyLossConfig(LossConfig):
    pass


def mine():
    recipe = mlcd()
    return replace(recipe, phases={{"mlcd": replace(recipe.phases["mlcd"], steps=3)}})


PRESETS = {{"{preset}": mine()}}
DESCRIPTIONS = {{"{preset}": "three mlcd steps of my own", "not-mine": "a preset the module does not have"}}
"""


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A module ``cli_units_recipes`` on sys.path with a preset and a loss; tlcm.train's presets
    restored afterwards."""
    import tlcm.train
    from tlcm.losses.registry import LOSSES

    (tmp_path / "cli_units_recipes.py").write_text(
        MY_RECIPES.format(loss="cli-units-probe", preset="cli-units-mine")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tlcm.train, "PRESETS", dict(tlcm.train.PRESETS))
    monkeypatch.setattr(tlcm.train, "DESCRIPTIONS", dict(tlcm.train.DESCRIPTIONS))
    monkeypatch.setattr(tlcm.train, "Presets", tlcm.train.Presets)
    monkeypatch.delitem(sys.modules, "cli_units_recipes", raising=False)
    yield tlcm.train
    LOSSES.pop("cli-units-probe", None)


def test_import_adds_the_modules_presets_and_registers_its_losses(own_module, monkeypatch):
    from tlcm.losses.registry import LOSSES

    seen = []
    monkeypatch.setattr(own_module, "main", seen.append)
    own_module.cli(
        ["recipes:cli-units-mine", "--import", "cli_units_recipes", "--recipes.phases.mlcd.lr", "0.002"]
    )
    (args,) = seen
    assert args.recipes.phases["mlcd"].steps == 3 and args.recipes.phases["mlcd"].lr == 0.002
    assert "cli-units-probe" in LOSSES and "cli-units-mine" in own_module.PRESETS
    assert own_module.import_recipe_modules(["--import=cli_units_recipes", "recipes:mlcd"]) == [
        "recipes:mlcd"
    ]


def test_every_preset_has_a_line_in_the_help_and_an_imported_one_brings_its_own(own_module, capsys):
    """--help lists each preset with one line (recipes.DESCRIPTIONS; a module's own DESCRIPTIONS
    for its presets, and only for those)."""
    from recipes import DESCRIPTIONS, PRESETS

    assert set(DESCRIPTIONS) == set(PRESETS)
    with pytest.raises(SystemExit):
        own_module.cli(["--import", "cli_units_recipes", "--help"])
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for name in ("tlcm-full", "pcm", "tlcm-full-sdxl", "cli-units-mine"):
        assert f"recipes:{name} {(own_module.DESCRIPTIONS | DESCRIPTIONS)[name]}" in shown
    assert "three mlcd steps of my own" in shown and "not-mine" not in own_module.DESCRIPTIONS


def test_import_refusals_say_what_and_how(own_module, tmp_path):
    with pytest.raises(
        TLCMError, match=r"--import nowhere_recipes: no module named 'nowhere_recipes' \(from .*\): run from"
    ):
        own_module.import_recipe_modules(["--import", "nowhere_recipes"])
    with pytest.raises(TLCMError, match=r"--import needs a module name"):
        own_module.import_recipe_modules(["recipes:mlcd", "--import"])
    (tmp_path / "clashing_recipes.py").write_text(
        "from recipes import mlcd\nPRESETS = {'tlcm-full': mlcd()}\n"
    )
    with pytest.raises(
        TLCMError, match=r"--import clashing_recipes: its preset 'tlcm-full' is already a preset"
    ):
        own_module.import_recipe_modules(["--import", "clashing_recipes"])
    (tmp_path / "broken_recipes.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):  # its own import: the traceback
        own_module.import_recipe_modules(["--import", "broken_recipes"])
    (tmp_path / "broken2_recipes.py").write_text("import broken2\n")  # a missing package its name starts with
    with pytest.raises(ModuleNotFoundError, match="'broken2'"):
        own_module.import_recipe_modules(["--import", "broken2_recipes"])
    (tmp_path / "odd_recipes.py").write_text("PRESETS = {'odd': 3}\n")
    with pytest.raises(TLCMError, match=r"PRESETS\['odd'\] is not a tlcm.config.Recipe \(got int\)"):
        own_module.import_recipe_modules(["--import", "odd_recipes"])


def test_import_takes_a_py_files_path_and_an_unknown_recipe_names_a_module_without_presets(
    own_module, tmp_path, monkeypatch
):
    """--import path/to/file.py imports the file (its folder first on sys.path), so its presets
    join; a missing file is refused naming it. A recipe name no preset has, after an --import of
    a module without PRESETS, says that module added none and how a module adds them."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "path_recipes.py").write_text(MY_RECIPES.format(loss="cli-units-path", preset="cli-units-path"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "path_recipes", raising=False)
    own_module.IMPORTED.clear()  # tlcm/user_modules.py's record (conftest restores it)
    try:
        assert own_module.import_recipe_modules(["--import", str(folder / "path_recipes.py")]) == []
        assert "cli-units-path" in own_module.PRESETS and own_module.IMPORTED == {"path_recipes": 1}
    finally:
        from tlcm.losses.registry import LOSSES

        LOSSES.pop("cli-units-path", None)
    with pytest.raises(TLCMError, match=r"--import .*missing\.py: no such file \(from .*\): pass the path"):
        own_module.import_recipe_modules(["--import", str(tmp_path / "missing.py")])
    (tmp_path / "losses_only.py").write_text("X = 1\n")
    own_module.import_recipe_modules(["--import", "losses_only"])
    with pytest.raises(
        TLCMError, match=r"unknown recipe recipes:my-new; --import losses_only added no presets"
    ):
        own_module.check_preset_names(["recipes:my-new"])
    own_module.IMPORTED.clear()
    with pytest.raises(TLCMError) as err:
        own_module.check_preset_names(["recipes:my-new"])
    assert "added no presets" not in str(err.value)
