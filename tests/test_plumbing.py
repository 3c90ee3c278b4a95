"""Small pieces every run relies on, each checked against its documented behaviour without a model:
file modes under the umask, image grids (size, pixel values, layout, which prompts), the evaluation
pipeline's student labels, export schedulers and teacher samplers, the training command line's
flag suggestions and what a pre-empted run skips, the loss and score registries, and the toy
evaluation's fixed noise."""

from __future__ import annotations

import contextlib
import errno
import os
from types import SimpleNamespace

import diffusers
import pytest
import torch
from PIL import Image

from tlcm.errors import TLCMError
from tlcm.files import honour_umask, umask_mode, write_failed
from tlcm.toy import MINIATURE_SD


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


# ---- file modes (tlcm/files.py) ----------------------------------------------------------------


def test_umask_mode_is_0666_less_the_umask():
    for mask, mode in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)):
        with umask(mask):
            assert umask_mode() == mode, oct(mask)


def test_honour_umask_reaches_the_files_of_nested_folders(tmp_path):
    """save_pretrained writes unet/ and scheduler/ below the folder: every file gets the mode."""
    files = [tmp_path / "a.json", tmp_path / "unet" / "w.safetensors", tmp_path / "x" / "y" / "z.bin"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
        f.chmod(0o600)
    with umask(0o022):
        honour_umask(tmp_path)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == dict.fromkeys(
        ["a.json", "w.safetensors", "z.bin"], "0o644"
    )


def test_reading_the_umask_leaves_it_as_it_was(tmp_path):
    """umask_mode reads the umask by setting it: it must put it back, or every later file is 0600."""
    with umask(0o022):
        assert umask_mode() == 0o644
        assert os.umask(0o022) == 0o022
        (tmp_path / "later.txt").write_text("x")
    assert oct((tmp_path / "later.txt").stat().st_mode & 0o777) == "0o644"


def test_honour_umask_leaves_folders_enterable(tmp_path):
    """Only files get the umask's (non-executable) mode: the folders keep theirs."""
    sub = tmp_path / "unet"
    sub.mkdir()
    sub.chmod(0o755)
    (sub / "w.safetensors").write_text("x")
    with umask(0o022):
        honour_umask(tmp_path)
    assert oct(sub.stat().st_mode & 0o777) == "0o755"
    assert oct((sub / "w.safetensors").stat().st_mode & 0o777) == "0o644"


def test_a_failed_write_is_one_line_with_the_reason_and_the_file():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/student/w.safetensors")
    assert str(write_failed("the student to /runs/x/student", full)) == (
        "cannot write the student to /runs/x/student: No space left on device "
        "(/runs/x/student/w.safetensors): free space there (or make it writable), then run the same "
        "command again"
    )
    assert str(write_failed("the metrics", OSError("disk gone"))).startswith(
        "cannot write the metrics: disk gone: "
    )


# ---- image grids (tlcm/images.py, tlcm/sample_grids.py) ----------------------------------------


def test_save_grid_upscales_to_at_least_min_side_and_maps_minus_one_to_black(tmp_path):
    from tlcm.images import save_grid

    # 48 px: ceil(64 / 48) = 2 -> 96 px; two in a row with make_grid's 2 px padding around each
    path = save_grid(torch.zeros(2, 3, 48, 48), tmp_path / "a.png", nrow=2)
    assert Image.open(path).size == (2 * 96 + 3 * 2, 96 + 2 * 2)
    # [-1, 1] -> [0, 255]: -1 black, 1 white, 0 mid-grey (127.5 rounds to 128); out of range clamped
    values = torch.tensor([-1.0, 1.0, 0.0, -3.0, 3.0]).view(5, 1, 1, 1).expand(5, 3, 32, 32)
    grid = Image.open(save_grid(values, tmp_path / "b.png", nrow=5)).convert("L")
    centres = [grid.getpixel((2 + 66 * i + 32, 2 + 32)) for i in range(5)]  # 32 px x 2 = 64, pad 2
    assert centres == [0, 255, 128, 0, 255]


def test_phase_grid_picks_ten_prompts_spread_over_the_set_one_row_per_step_count(tmp_path, monkeypatch):
    """write_phase_grid: columns = 10 prompts evenly picked from the training prompts, rows = the
    step counts (docstring)."""
    import tlcm.sample_grids as grids

    encoded, calls = [], []

    class Base:
        device, latent_shape, schedule = "cpu", (3, 4, 4), None

        def encode(self, prompts):
            encoded.append(list(prompts))
            return prompts, None

        def autocast(self):
            return contextlib.nullcontext()

        def decode(self, latents):
            return latents

    student = SimpleNamespace(base=Base(), denoiser=lambda: None)
    grid = SimpleNamespace(timesteps=lambda n, schedule: torch.arange(n), gamma=1.0, first_gamma=None)

    def sample(denoiser, schedule, cond, noise, timesteps, gamma, generator=None, first_gamma=None):
        calls.append(len(timesteps))
        return torch.full_like(noise, -1.0 if len(timesteps) == 1 else 1.0)

    monkeypatch.setattr(grids, "sample_latents", sample)
    prompts = [f"prompt {i}" for i in range(40)]
    path = grids.write_phase_grid(student, prompts, (1, 2), grid, tmp_path / "g.png")
    assert encoded == [[f"prompt {i}" for i in range(0, 40, 4)]] and calls == [1, 2]
    image = Image.open(path).convert("L")  # 4 px latents -> 64 px tiles: 10 columns x 2 rows
    assert image.size == (10 * 64 + 11 * 2, 2 * 64 + 3 * 2)
    assert image.getpixel((2 + 66 * 9 + 32, 34)) == 0 and image.getpixel((2 + 66 * 9 + 32, 100)) == 255


# ---- evaluation pipeline (tlcm/eval/pipeline.py) -----------------------------------------------


def test_student_labels_name_the_run_of_an_export_else_the_file_or_folder(tmp_path):
    from tlcm.eval.pipeline import student_label

    assert student_label(tmp_path / "tlcm-full" / "student") == "tlcm-full"
    assert student_label(tmp_path / "loras" / "digits.safetensors") == "digits"
    assert student_label(tmp_path / "my-unet") == "my-unet"


def test_an_export_is_sampled_with_its_own_scheduler_folder(tmp_path, monkeypatch):
    """An export's scheduler/ (its M and gammas) wins over the base's scheduler with the default M."""
    from tlcm.diffusion.scheduler import TLCMScheduler
    from tlcm.eval import pipeline
    from tlcm.export import DIFFUSERS_FILE

    export = tmp_path / "student"
    export.mkdir()
    (export / DIFFUSERS_FILE).write_bytes(b"")
    TLCMScheduler(num_milestones=4, gamma=0.3).save_pretrained(export / "scheduler")
    loaded = []
    monkeypatch.setattr(
        pipeline, "tlcm_scheduler", lambda base, grid: TLCMScheduler(num_milestones=grid.num_milestones)
    )
    monkeypatch.setattr(pipeline, "load_lora", lambda base, path: loaded.append(path))
    scheduler = pipeline.apply_student(SimpleNamespace(family=SimpleNamespace(net="unet")), export, 8)
    assert (scheduler.config.num_milestones, scheduler.config.gamma) == (4, 0.3)
    assert loaded == [export / DIFFUSERS_FILE]


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ddim", diffusers.DDIMScheduler),
        ("euler", diffusers.EulerDiscreteScheduler),
        ("euler-a", diffusers.EulerAncestralDiscreteScheduler),
        ("dpm++", diffusers.DPMSolverMultistepScheduler),
        ("pndm", diffusers.PNDMScheduler),
    ],
)
def test_teacher_scheduler_names_give_those_diffusers_samplers(name, cls):
    from tlcm.eval.pipeline import teacher_scheduler

    own = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    base = SimpleNamespace(pipe=SimpleNamespace(scheduler=own))
    got = teacher_scheduler(base, name)
    assert type(got) is cls and got.config.num_train_timesteps == 1000
    assert teacher_scheduler(base, "default") is own
    with pytest.raises(TLCMError, match="--scheduler euler_a is unknown"):
        teacher_scheduler(base, "euler_a")


# ---- the training command line (tlcm/train.py) -------------------------------------------------


def test_a_misspelled_flag_with_its_value_after_equals_gets_a_suggestion():
    """The flag is matched without its ``=VALUE``: a long value (a path) does not hide the flag."""
    from tlcm.train import unknown_arguments

    flag = "--recipes.data.prompt=/data/prompts/handwritten-digits.txt"
    line = unknown_arguments([flag], ["recipes:mlcd", flag])
    assert f"{flag} (did you mean --recipes.data.prompts?)" in line


@pytest.mark.parametrize(
    ("preempted", "is_main", "scored"), [(True, True, False), (False, False, False), (False, True, True)]
)
def test_only_a_finished_run_on_rank_0_is_scored_and_summarised(
    preempted, is_main, scored, monkeypatch, tmp_path
):
    """A pre-empted run saved a checkpoint to resume from: no scores, no summary (exit 75 follows)."""
    import tlcm.engine
    import tlcm.train

    done = []
    run = SimpleNamespace(
        preempted=preempted, is_main=is_main, out_dir=tmp_path, train_seconds=1.0, denoiser_evals=0
    )
    monkeypatch.setattr(tlcm.engine, "train", lambda recipe: run)
    monkeypatch.setattr(tlcm.train, "_score", lambda run, recipe, assets: done.append("scored") or [])
    monkeypatch.setattr(tlcm.train, "run_summary", lambda *a: done.append("summary") or "")
    runtime = SimpleNamespace(fsdp=False, eval_samples_per_digit=1, out_dir=tmp_path)
    recipe = SimpleNamespace(runtime=runtime, model=SimpleNamespace(path=MINIATURE_SD))
    assert tlcm.train.train_and_score(recipe) is run
    assert done == (["scored", "summary"] if scored else [])


# ---- registries (tlcm/losses/registry.py, tlcm/scoring) ----------------------------------------


def test_a_loss_name_is_registered_once():
    from tlcm.losses.base import LossConfig
    from tlcm.losses.registry import LOSSES, loss_config, register_loss

    class First(LossConfig):
        pass

    class Second(LossConfig):
        pass

    try:
        register_loss("redteam-probe")(First)
        register_loss("redteam-probe")(First)  # the same class again (a re-import): fine
        with pytest.raises(ValueError, match="already registered"):
            register_loss("redteam-probe")(Second)
        assert LOSSES["redteam-probe"] is First
    finally:
        LOSSES.pop("redteam-probe", None)
    with pytest.raises(TLCMError, match="unknown loss 'redteam-probe'"):
        loss_config("redteam-probe")


def test_a_score_use_is_registered_once_and_deleting_one_use_keeps_the_other():
    from tlcm.scoring import METRICS, REWARDS, SCORES, register_score

    def metric(weights, device):
        return "metric"

    def reward(spec, device):
        return "reward"

    try:
        register_score("redteam-probe", "metric")(metric)
        register_score("redteam-probe", "reward")(reward)
        with pytest.raises(ValueError, match="already registered"):
            register_score("redteam-probe", "metric")(reward)
        del REWARDS["redteam-probe"]
        assert METRICS["redteam-probe"] is metric and "redteam-probe" not in REWARDS
        del METRICS["redteam-probe"]
        assert "redteam-probe" not in SCORES
    finally:
        SCORES.pop("redteam-probe", None)


# ---- toy evaluation noise (tlcm/toy/scores.py) -------------------------------------------------


def test_each_evaluation_batch_starts_from_its_own_slice_of_the_fixed_noise():
    """10 x samples_per_digit images from one seeded draw (EVAL_SEED = 1234 on the host), in
    batches: image i starts from noise i whatever the batch size."""
    from test_eval14_units import _ToyBase

    from tlcm.toy.scores import evaluate_toy

    seen = []
    scores = evaluate_toy(
        _ToyBase(),
        lambda cond, uncond, noise, gen: noise,
        3,
        batch_size=7,
        metrics=lambda *a: seen.append(a) or 0,
    )
    expected = torch.randn((30, 1, 2, 2), generator=torch.Generator().manual_seed(1234))
    assert scores == 0 and torch.equal(seen[0][0], expected)
