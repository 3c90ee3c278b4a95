"""The engine: every preset smoke-trains, a new loss needs no engine change, resume is exact,
SIGTERM saves, NaN/inf is named, the exported LoRA loads in plain diffusers."""

import json
import math
from dataclasses import replace

import pytest
import torch
from device_discipline import DeviceDiscipline
from diffusers import StableDiffusionPipeline
from engine_helpers import OutputNorm, OutputNormConfig, shrink, small_recipe

from recipes import PRESETS
from tlcm import TLCMScheduler, engine
from tlcm.diffusion.milestones import StudentGrid
from tlcm.engine import NonFiniteLoss, Trainer, train
from tlcm.errors import TLCMError
from tlcm.losses import LOSSES
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig
from tlcm.models.families.sd import unet_kwargs


def _local_clip(config, folder):
    return replace(config, clip_folder=str(folder)) if getattr(config, "clip_folder", "") else config


FAMILY_DIRS = {"sd15": "tiny_sd_dir", "sdxl": "tiny_sdxl_dir", "sd3": "tiny_sd3_dir", "flux": "tiny_flux_dir"}
"""Model family -> the session fixture of its tiny random pipeline folder."""


@pytest.mark.parametrize("family", sorted(FAMILY_DIRS))
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_smoke_trains_two_steps(name, family, request, tiny_clip_dir, tmp_path):
    """Every preset on every model family (tiny random pipelines; FLUX at 32 px with 16 T5 tokens):
    all phases run, every loss term is finite, the LoRA is exported, under the device checker."""
    recipe = shrink(PRESETS[name], request.getfixturevalue(FAMILY_DIRS[family]), tmp_path)
    model = replace(recipe.model, resolution=32 if family == "flux" else None, max_sequence_length=16)
    phases = {  # CLIP-based rewards (the SDXL preset's PickScore) read a tiny local CLIP folder
        n: replace(p, losses={k: _local_clip(c, tiny_clip_dir) for k, c in p.losses.items()})
        for n, p in recipe.phases.items()
    }
    with DeviceDiscipline():  # generator draws and in-step tensor factories must state their device
        run = train(replace(recipe, model=model, phases=phases))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(PRESETS[name].phases)
    for record, phase in zip(
        records, [p for p in PRESETS[name].phases.values() for _ in range(2)], strict=True
    ):
        terms = [k for k in record if k in phase.losses]
        assert sorted(terms) == sorted(phase.losses)
        assert all(torch.isfinite(torch.tensor(record[k])) for k in terms)
    assert (tmp_path / "student" / "pytorch_lora_weights.safetensors").is_file()
    assert run.state.global_step == 2 * len(PRESETS[name].phases)
    assert run.base.family.name == family


def test_registered_loss_trains_without_engine_change(tiny_sd_dir, tmp_path):
    assert LOSSES["test_output_norm"] is OutputNormConfig
    trainer = Trainer(small_recipe(tiny_sd_dir, tmp_path, steps=2))
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    trainer.run()
    after = trainer.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"mlcd", "norm"} <= set(record)


def test_resume_after_sigterm_equals_uninterrupted_run(tiny_sd_dir, tmp_path):
    """4 steps straight vs SIGTERM after step 2 (index 1) then a rerun: identical weights and losses."""
    straight = train(small_recipe(tiny_sd_dir, tmp_path / "a"))
    first = train(small_recipe(tiny_sd_dir, tmp_path / "b", sigterm_step=1))
    assert first.preempted and first.state.global_step == 2
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text() == "step-0000002"
    resumed = train(small_recipe(tiny_sd_dir, tmp_path / "b", sigterm_step=1))
    assert not resumed.preempted and resumed.state.global_step == 4
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["mlcd"] for r in log(tmp_path / "a")] == [r["mlcd"] for r in log(tmp_path / "b")]
    evals = [r["denoiser_evals"] for r in log(tmp_path / "a")]  # cumulative across the resume
    assert evals == [r["denoiser_evals"] for r in log(tmp_path / "b")] and evals[0] > 0
    assert resumed.denoiser_evals == straight.denoiser_evals == evals[-1]


PEAK_LR = 1e-3
COSINE_LRS = [
    0.0,
    PEAK_LR / 2,
    PEAK_LR,
    PEAK_LR * (1 + math.cos(math.pi / 3)) / 2,
    PEAK_LR * (1 + math.cos(2 * math.pi / 3)) / 2,
]
"""diffusers' cosine schedule with 2 warm-up steps over 5 steps (small_recipe's lr 1e-3): the lr of
each step, by hand (warm-up 0, 1/2 of the peak, then (1 + cos(pi (s - 2) / 3)) / 2 of it)."""


def test_cosine_lr_schedule_is_logged_and_resumes_where_it_stopped(tiny_sd_dir, tmp_path):
    """A cosine schedule with 2 warm-up steps over 5 steps: metrics.jsonl's lr is diffusers'
    warm-up-then-cosine curve, and a run interrupted after step 3 resumes on the same curve with
    the same weights."""

    def recipe(out, sigterm_step=-1):
        r = small_recipe(tiny_sd_dir, out, steps=5, sigterm_step=sigterm_step)
        phase = replace(r.phases["stage"], lr_schedule="cosine", lr_warmup_steps=2)
        return replace(r, phases={"stage": phase})

    straight = train(recipe(tmp_path / "a"))
    assert train(recipe(tmp_path / "b", sigterm_step=2)).preempted
    resumed = train(recipe(tmp_path / "b", sigterm_step=2))
    for run in ("a", "b"):
        lrs = [json.loads(x)["lr"] for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert lrs == pytest.approx(COSINE_LRS, abs=1e-12)
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_loss_is_named_and_stops_or_skips(tiny_sd_dir, tmp_path):
    """Step 2 (1-based, as metrics.jsonl) returns NaN: "stop" names the term and step and saves
    nothing; "skip" leaves the weights of that step untouched and logs it as valid JSON (null)
    (1 of 4 steps skipped: within max_skipped_fraction 0.25)."""
    with pytest.raises(NonFiniteLoss, match=r"non-finite norm, grad_norm in phase 'stage' at step 2;") as err:
        train(replace(small_recipe(tiny_sd_dir, tmp_path / "stop", poison_step=1)))
    assert err.value.exit_code == 3
    assert not (tmp_path / "stop" / "checkpoints").exists()
    recipe = small_recipe(tiny_sd_dir, tmp_path / "skip", steps=4, poison_step=1)
    recipe = replace(recipe, runtime=replace(recipe.runtime, on_nonfinite="skip"))
    trainer = Trainer(recipe)
    seen = []
    step = trainer._step
    trainer._step = lambda *a: (seen.append(trainer.student.state_dict()), step(*a))[1]  # weights before
    run = trainer.run()
    assert run.skipped_steps == [2]
    after_skip = seen[2]  # the weights entering step 3 = those entering the skipped step 2
    assert all(torch.equal(after_skip[k], seen[1][k]) for k in after_skip)
    assert all(torch.isfinite(v).all() for v in run.student.state_dict().values())
    records = [json.loads(x) for x in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert records[1]["norm"] is None and records[1]["nonfinite"] == ["norm", "grad_norm"]
    assert records[1]["skipped"] and not records[2]["skipped"]


def test_skip_gives_up_after_max_consecutive_skips(tiny_sd_dir, tmp_path):
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=4, poison_step=-2)  # -2: every step is NaN
    recipe = replace(recipe, runtime=replace(recipe.runtime, on_nonfinite="skip", max_consecutive_skips=2))
    with pytest.raises(NonFiniteLoss, match="at step 3: 3 steps in a row skipped"):
        train(recipe)


def test_blown_up_weights_are_never_saved(tiny_sd_dir, tmp_path):
    """A step leaves the student's weights infinite, or finite but absurd (x 1e30), with a finite
    loss (a blow-up): the periodic checkpoint at that step is refused and the previous one stays
    the latest."""
    for name, blowup in (("inf", {"corrupt_step": 2}), ("absurd", {"blowup_step": 2})):
        recipe = small_recipe(tiny_sd_dir, tmp_path / name, steps=4, **blowup)
        recipe = replace(recipe, runtime=replace(recipe.runtime, checkpoint_every=1))
        why = "holds NaN/inf" if name == "inf" else r"holds \|w\| = .*e\+\d+ > 10000"
        with pytest.raises(NonFiniteLoss, match=f"refusing to save a checkpoint at step 3: student/.*{why}"):
            train(recipe)
        assert (tmp_path / name / "checkpoints" / "latest").read_text() == "step-0000002"


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_finite_blow_up_stops_the_run_whatever_on_nonfinite_says(tiny_sd_dir, tmp_path, on_nonfinite):
    """The weights x 1e30 after step 2 (finite; the next forward may give NaN, which "skip" would
    skip for ever): the divergence guard stops the run at the next step, naming the step and the
    magnitude; nothing is saved or exported (before: "skip" exported a LoRA of ~1e30 with exit 0)."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=4, blowup_step=1)
    recipe = replace(recipe, runtime=replace(recipe.runtime, on_nonfinite=on_nonfinite))
    with pytest.raises(
        NonFiniteLoss,
        match=r"the student diverged in phase 'stage': after step 2 a weight has magnitude \S+ "
        r"\(> --recipes.runtime.max-weight-abs 10000\)",
    ):
        train(recipe)
    assert not (tmp_path / "student").exists() and not (tmp_path / "checkpoints").exists()


def test_skip_never_exports_a_phase_it_could_not_train(tiny_sd_dir, tmp_path):
    """Every step NaN under "skip", fewer than max_consecutive_skips: the phase ends with 3 of 3
    steps skipped, more than max_skipped_fraction, so it fails (exit 3) before its end is saved or
    the student exported (before: exit 0 and an untrained LoRA exported)."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=3, poison_step=-2)
    recipe = replace(recipe, runtime=replace(recipe.runtime, on_nonfinite="skip"))
    with pytest.raises(
        NonFiniteLoss, match=r"phase 'stage' ended with 3 of its 3 steps skipped .* nothing is exported"
    ) as err:
        train(recipe)
    assert err.value.exit_code == 3
    assert not (tmp_path / "student").exists() and not (tmp_path / "checkpoints").exists()


def test_exported_lora_loads_in_plain_diffusers_with_tlcm_scheduler(tiny_sd_dir, tmp_path):
    run = train(shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = TLCMScheduler.from_pretrained(tmp_path / "student" / "scheduler")
    kwargs = dict(num_inference_steps=2, guidance_scale=0, output_type="np", height=32, width=32)
    plain = pipe("a digit", generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(tmp_path / "student")
    lora = pipe("a digit", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert lora.shape == plain.shape and abs(lora - plain).max() > 1e-4
    # the exported LoRA is exactly the trained student: same UNet output as the engine's student
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([500])
    cond, _ = run.base.encode(["a digit"])
    with torch.no_grad():
        ours = run.student.denoiser()(x, t, cond)
        theirs = pipe.unet(x, t, encoder_hidden_states=cond.prompt_embeds).sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_lcd_continues_from_a_stage1_run(tiny_sd_dir, tmp_path):
    stage1 = train(shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path / "mlcd"))
    recipe = shrink(PRESETS["lcd"], tiny_sd_dir, tmp_path / "lcd", steps=1)
    recipe = replace(
        recipe,
        student=replace(recipe.student, init_from=tmp_path / "mlcd"),
        phases={"lcd": replace(recipe.phases["lcd"], lr=1e-12)},
    )
    stage2 = train(recipe)
    a, b = stage1.student.state_dict(), stage2.student.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-8) for k in a)
    with pytest.raises(TLCMError, match="nowhere is not a folder"):
        train(
            replace(
                recipe,
                student=replace(recipe.student, init_from=tmp_path / "nowhere"),
                runtime=replace(recipe.runtime, out_dir=tmp_path / "x"),
            )
        )


def test_sample_cli_draws_the_trained_student(tiny_sd_dir, tmp_path):
    from PIL import Image

    from tlcm.sample import SampleArgs
    from tlcm.sample import main as sample_main

    train(shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path / "run"))
    args = SampleArgs(
        prompt=("a", "b"),
        steps=2,
        model=tiny_sd_dir,
        num_per_prompt=3,
        out=tmp_path / "grid.png",
        device="cpu",
        student=tmp_path / "run",
    )
    path = sample_main(args)
    width, height = Image.open(path).size
    assert (width, height) == (3 * 66 + 2, 2 * 66 + 2)  # 32 px images upscaled to 64, 2 px padding
    with pytest.raises(TLCMError, match="in 1..8 for this student"):
        sample_main(replace(args, steps=9))


def test_teacher_is_the_base_unet_and_student_differs(tiny_sd_dir, tmp_path):
    run = train(shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path))
    fresh = StableDiffusionPipeline.from_pretrained(tiny_sd_dir).unet
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([999, 300])
    cond, _ = run.base.encode(["a", "b"])
    with torch.no_grad():
        teacher = run.student.teacher()(x, t, cond)
        base = fresh(x, t, encoder_hidden_states=cond.prompt_embeds).sample
        student = run.student.denoiser()(x, t, cond)
    torch.testing.assert_close(teacher, base)
    assert (student - teacher).abs().max() > 1e-5
    assert all(p.requires_grad for p in run.student.trainable_parameters().values())


@pytest.mark.parametrize(
    "losses",
    [
        {"mlcd": MLCDConfig(states="single_jump", distance="huber")},
        {"mlcd": MLCDConfig(target="ema", ema_decay=0.5)},
        {"lcd": LCDConfig(full_range=True, teacher_substeps=2)},
    ],
    ids=["mlcd-single-jump-huber", "mlcd-ema-target", "lcd-full-range-q2"],
)
def test_loss_options_train(losses, tiny_sd_dir, tmp_path):
    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path)
    recipe = replace(recipe, phases={"p": replace(recipe.phases["mlcd"], losses=losses, lr=1e-2)})
    if "lcd" in losses:  # the student grid (q = 2 here) is the recipe's, not the loss's
        recipe = replace(recipe, student=replace(recipe.student, grid=StudentGrid(8, 2)))
    trainer = Trainer(recipe)
    run = trainer.run()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(record[next(iter(losses))]))
    if "mlcd" in losses and losses["mlcd"].target == "ema":
        saved = torch.load(tmp_path / "checkpoints" / "step-0000002" / "losses.pt", weights_only=True)["mlcd"]
        params = list(run.student.trainable_parameters().items())
        assert len(saved) == len(params)
        for i, (name, param) in enumerate(params):
            if "lora_B" in name:  # B starts at 0; EMA(0.5) after 2 steps = 0.25 B_1 + 0.5 B_2
                assert saved[f"ema_{i}"].abs().sum() > 0 and not torch.equal(
                    saved[f"ema_{i}"], param.detach()
                )


def test_full_finetune_trains_and_exports_a_unet(tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path)
    recipe = replace(recipe, student=replace(recipe.student, full_finetune=True))
    run = train(recipe)
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "student" / "unet")
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([400])
    cond, _ = run.base.encode(["a"])
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, **unet_kwargs(cond)).sample, run.student.denoiser()(x, t, cond))


def test_from_run_restores_lora_alpha_and_targets(tiny_sd_dir, tmp_path):
    """A run trained with alpha != rank reloads with the same scale (the config is in the checkpoint)."""
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path)
    recipe = replace(recipe, student=replace(recipe.student, lora_alpha=8.0, target_modules=("to_q", "to_v")))
    run = train(recipe)
    reloaded = Student.from_run(BaseModel.load(tiny_sd_dir), tmp_path)
    assert reloaded.config.lora_alpha == 8.0 and reloaded.config.target_modules == ("to_q", "to_v")
    cond, _ = run.base.encode(["a"])
    x, t = torch.randn(1, *run.base.latent_shape), torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.denoiser()(x, t, cond), run.student.denoiser()(x, t, cond))


def test_aux_step_sees_every_micro_batch_under_the_steps_autocast(tiny_sd_dir, tmp_path):
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=2)
    phase = replace(recipe.phases["stage"], batch_size=4, grad_accum=2)
    recipe = replace(recipe, phases={"stage": phase}, runtime=replace(recipe.runtime, mixed_precision="bf16"))
    trainer = Trainer(recipe)
    built = []
    build = OutputNormConfig.build
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OutputNormConfig, "build", lambda self, s: built.append(build(self, s)) or built[-1])
        trainer.run()
    assert built[0].aux_calls == [(2, True), (2, True)]


def test_the_steps_autocast_caches_no_cast(tiny_sd_dir, tmp_path):
    """bf16 autocast's weight-cast cache is off in the step: on torch 2.6 to 2.9 a cast made under
    no_grad (a loss's target call through the student's fp32 LoRA weights) was reused by the next
    call with gradients, so the student's output had none (every bf16 loss-contract case raised
    "element 0 of tensors does not require grad" on 2.6 and 2.7; on 2.9.1, pyproject's floor, the
    second linear below has no gradient with the cache on; a loss with other paths to the weights
    would have trained silently without them). torch 2.11+ does not reuse it, so on CI only the
    setting itself can fail; on the floor (.ci/versions floors) the behaviour can."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, runtime=replace(recipe.runtime, mixed_precision="bf16")))
    assert trainer.autocast.fast_dtype == torch.bfloat16 and trainer.autocast._cache_enabled is False
    weight, x = torch.randn(4, 4, requires_grad=True), torch.randn(2, 4)
    with trainer.autocast:
        with torch.no_grad():
            torch.nn.functional.linear(x, weight)
        assert torch.nn.functional.linear(x, weight).requires_grad


def test_the_student_grid_has_one_owner_from_training_to_export(tiny_sd_dir, tmp_path):
    """Trained with M = 4 (q = 2, sampler gamma 0.5, first move 1): the checkpoint,
    Student.from_run, the sample CLI and the exported TLCMScheduler all use the M = 4 grid and that
    sampler (4 steps: [999, 749, 499, 249], not M = 8's [999, 749, 499, 124]); step counts above M
    are refused."""
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student
    from tlcm.sample import SampleArgs
    from tlcm.sample import main as sample_main

    recipe = shrink(PRESETS["tlcm-full"], tiny_sd_dir, tmp_path, steps=1)
    recipe = replace(
        recipe,
        phases={k: recipe.phases[k] for k in ("mlcd", "lcd")},
        student=replace(recipe.student, grid=StudentGrid(4, 2, gamma=0.5, first_gamma=1.0)),
        inference_steps=(),  # the default: those of 1, 2, 4, 8 <= M
    )
    assert recipe.shown_steps == (1, 2, 4)
    recipe = replace(recipe, inference_steps=(1, 4))
    train(recipe)
    scheduler = TLCMScheduler.from_pretrained(tmp_path / "student" / "scheduler")
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 749, 499, 249] and scheduler.config.gamma == 0.5
    assert scheduler.config.first_gamma == 1.0
    grid = Student.from_run(BaseModel.load(tiny_sd_dir), tmp_path).config.grid
    assert grid == StudentGrid(4, 2, 0.5, first_gamma=1.0)
    args = SampleArgs(model=tiny_sd_dir, student=tmp_path, steps=5, out=tmp_path / "s.png", device="cpu")
    with pytest.raises(TLCMError, match="in 1..4 for this student"):
        sample_main(args)
    with pytest.raises(TLCMError, match="inference-steps: each must be in 1..4"):
        train(replace(recipe, inference_steps=(8,)))


def _one_step(model_dir, out_dir, w_mlcd=1.0, w_norm=1.0, trainer_hook=None, **phase_fields):
    """One ``Trainer._step`` of MLCD + the output norm (weights ``w_*``; ``phase_fields`` replace
    the phase's, max_grad_norm 0 unless given) with SGD at lr 0, after ``trainer_hook(trainer)``:
    (the student's gradients after the step's clipping, flat (P,); the step's logged terms)."""
    recipe = small_recipe(model_dir, out_dir, steps=1)
    phase = recipe.phases["stage"]
    losses = {"mlcd": replace(phase.losses["mlcd"], weight=w_mlcd)}
    losses["norm"] = replace(phase.losses["norm"], weight=w_norm)
    phase = replace(phase, losses=losses, **{"max_grad_norm": 0.0, **phase_fields})
    trainer = Trainer(replace(recipe, phases={"stage": phase}))
    if trainer_hook:
        trainer_hook(trainer)
    built = {n: c.build(trainer.student) for n, c in phase.losses.items()}
    params = list(trainer.student.trainable_parameters().values())
    terms, finite = trainer._step(phase, built, torch.optim.SGD(params, lr=0.0), params, 0)
    assert finite
    return torch.cat([p.grad.flatten() for p in params]), terms


def test_loss_weights_scale_each_terms_gradient(tiny_sd_dir, tmp_path):
    """The student's gradient is sum_k weight_k * grad(term_k): with terms MLCD and the output norm,
    g(w = (2, 3)) = 2 g(1, 0) + 3 g(0, 1) (same draws: zero-weight terms still run)."""
    g_mlcd, _ = _one_step(tiny_sd_dir, tmp_path / "a", 1.0, 0.0)
    g_norm, _ = _one_step(tiny_sd_dir, tmp_path / "b", 0.0, 1.0)
    g_both, _ = _one_step(tiny_sd_dir, tmp_path / "c", 2.0, 3.0)
    assert g_mlcd.abs().max() > 0 and g_norm.abs().max() > 0
    torch.testing.assert_close(g_both, 2 * g_mlcd + 3 * g_norm, rtol=1e-4, atol=1e-7)


def test_gradients_are_clipped_to_max_grad_norm_and_the_unclipped_norm_is_logged(tiny_sd_dir, tmp_path):
    """max_grad_norm = c below the gradient's norm |g|: the step's gradient is g c / (|g| + 1e-6)
    (clip_grad_norm_) and grad_norm logs |g|; c = 0 (no clipping) leaves g as it is."""
    g, terms = _one_step(tiny_sd_dir, tmp_path / "free")
    norm = torch.linalg.vector_norm(g)
    torch.testing.assert_close(terms["grad_norm"], norm, rtol=1e-5, atol=0.0)
    c = float(norm) / 4
    clipped, terms = _one_step(tiny_sd_dir, tmp_path / "clipped", max_grad_norm=c)
    torch.testing.assert_close(terms["grad_norm"], norm, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(clipped, g * (c / (norm + 1e-6)), rtol=1e-5, atol=1e-9)


def test_accumulated_micro_batches_are_averaged(tiny_sd_dir, tmp_path, monkeypatch):
    """grad_accum averages: with one prompt and every micro-batch seeded alike (step_seed patched),
    the two micro-batches of batch 4 are copies of one micro-batch of 2, so batch 4 in 2 gives the
    gradient and logged terms of batch 2 in 1 (summing instead would double both)."""

    def one_prompt(trainer):
        trainer.prompts = trainer.prompts[:1]

    monkeypatch.setattr(engine, "step_seed", lambda seed, step, chunk: 7 * seed + min(chunk, 0))
    g1, terms1 = _one_step(tiny_sd_dir, tmp_path / "one", trainer_hook=one_prompt, batch_size=2)
    g2, terms2 = _one_step(tiny_sd_dir, tmp_path / "two", trainer_hook=one_prompt, batch_size=4, grad_accum=2)
    assert g1.abs().max() > 0
    torch.testing.assert_close(g2, g1, rtol=1e-5, atol=1e-9)
    for name in ("mlcd", "norm", "grad_norm"):
        torch.testing.assert_close(terms2[name], terms1[name], rtol=1e-5, atol=0.0)


def test_micro_batches_and_steps_draw_from_their_own_generators(tiny_sd_dir, tmp_path, monkeypatch):
    """Each micro-batch of each step has a generator of its own (step_seed(seed, step, j)): batch 4
    in 2 micro-batches over 2 steps sees 4 distinct seeds, and different first noise draws."""
    seen = []
    forward = OutputNorm.forward

    def recording(self, ctx):
        seen.append((ctx.step, ctx.generator.initial_seed(), ctx.randn(8).clone()))
        return forward(self, ctx)

    monkeypatch.setattr(OutputNorm, "forward", recording)
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=2)
    train(replace(recipe, phases={"stage": replace(recipe.phases["stage"], batch_size=4, grad_accum=2)}))
    assert [step for step, _, _ in seen] == [0, 0, 1, 1]
    assert len({seed for _, seed, _ in seen}) == 4
    draws = [d for _, _, d in seen]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1 :])


def test_an_ema_target_follows_every_student_update(tiny_sd_dir, tmp_path, monkeypatch):
    """After each optimizer step the engine calls every loss's after_student_step: MLCD's EMA
    target with decay 0 is then the student's weights exactly (ema <- lerp(ema, live, 1 - 0)),
    and with decay 0.5 it has moved part of the way from its start towards the student."""
    built = []
    build = MLCDConfig.build
    monkeypatch.setattr(MLCDConfig, "build", lambda self, s: built.append(build(self, s)) or built[-1])
    for decay in (0.0, 0.5):
        recipe = small_recipe(tiny_sd_dir, tmp_path / str(decay), steps=2)
        phase = recipe.phases["stage"]
        phase = replace(
            phase,
            losses={**phase.losses, "mlcd": MLCDConfig(states="single_jump", target="ema", ema_decay=decay)},
        )
        trainer = Trainer(replace(recipe, phases={"stage": phase}))
        start = {n: p.detach().clone() for n, p in trainer.student.net.named_parameters() if p.requires_grad}
        trainer.run()
        live = dict(trainer.student.net.named_parameters())
        loss = built[-1]
        pairs = [
            (getattr(loss, f"ema_{i}"), live[name].detach(), start[name])
            for i, name in enumerate(loss.ema_names)
        ]
        if decay == 0.0:
            assert all(torch.equal(ema, now) for ema, now, _ in pairs)
        else:  # summed over the weights (a weight that moved by an ulp may round back in the lerp)
            moved = sum(float((now - s).abs().sum()) for _, now, s in pairs)
            followed = sum(float((ema - s).abs().sum()) for ema, _, s in pairs)
            assert moved > 0 and 0.0 < followed / moved < 1.0


def _zero_gradient_step(model_dir, out_dir, **phase_fields):
    """One engine step (``Trainer.train_step``) of the output norm at weight 0 (every gradient
    zero, not None), lr 1e-2, constant schedule: (the phase's optimizer, the student's trainable
    weights before and after the step)."""
    recipe = small_recipe(model_dir, out_dir, steps=1)
    phase = replace(
        recipe.phases["stage"],
        lr=1e-2,
        lr_schedule="constant",
        losses={"norm": OutputNormConfig(weight=0.0)},
        **phase_fields,
    )
    trainer = Trainer(replace(recipe, phases={"stage": phase}))
    state = trainer.build_phase("stage", phase)
    before = {n: p.detach().clone() for n, p in trainer.student.trainable_parameters().items()}
    _, finite = trainer.train_step(state, 0)
    assert finite
    after = {n: p.detach().clone() for n, p in trainer.student.trainable_parameters().items()}
    return state.optimizer, before, after


def test_the_student_optimizer_uses_the_phases_weight_decay(tiny_sd_dir, tmp_path):
    """The student's AdamW decays by the phase's weight_decay, not AdamW's own default (0.01): with
    a zero gradient Adam's update is 0, so a step moves each weight only by decay, p <- p (1 - lr wd).
    weight_decay 0 (the default): no weight moves; 0.5: every weight shrinks by exactly 1 - 0.005.
    (AdamW's 0.01 would silently regularise every run, even those asking for none.)"""
    opt, before, after = _zero_gradient_step(tiny_sd_dir, tmp_path / "default")
    assert any(p.abs().max() > 0 for p in before.values())  # LoRA's A: a decay would show
    assert all(torch.equal(after[n], before[n]) for n in before)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0]
    opt, before, after = _zero_gradient_step(tiny_sd_dir, tmp_path / "decay", weight_decay=0.5)
    for name, p in before.items():
        torch.testing.assert_close(after[name], p * (1 - 1e-2 * 0.5), rtol=1e-6, atol=0.0)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5]


def test_each_step_draws_its_own_prompts_and_a_rerun_draws_the_same(tiny_sd_dir, tmp_path, monkeypatch):
    """The prompts of global step s come from a generator seeded step_seed(seed, s, -1): the steps
    of a run see different prompts (a seed without s would train on one batch of prompts forever),
    and a second run (as a resumed one) sees the same prompts at the same step (exact resume)."""
    seen = []
    forward = OutputNorm.forward

    def recording(self, ctx):
        seen.append((ctx.step, list(ctx.prompts), ctx.prompt_index.tolist()))
        return forward(self, ctx)

    monkeypatch.setattr(OutputNorm, "forward", recording)
    runs = {}
    for run in ("a", "b"):
        seen.clear()
        Trainer(small_recipe(tiny_sd_dir, tmp_path / run, steps=4)).run()
        runs[run] = list(seen)
    assert [step for step, _, _ in runs["a"]] == [0, 1, 2, 3]
    assert runs["a"] == runs["b"]
    indices = [tuple(index) for _, _, index in runs["a"]]
    assert len(set(indices)) > 1, indices
    prompts = [tuple(p) for _, p, _ in runs["a"]]
    assert len(set(prompts)) > 1, prompts


def test_aux_step_sees_the_student_after_its_update(tiny_sd_dir, tmp_path, monkeypatch):
    """The engine steps the student's optimizer, then runs every loss's aux_step (DMD2's order:
    the fake score / discriminator learns from the updated student; DMD's fake_samples="fresh"
    draws come from the student after its update). With lr > 0 the student's weights change at
    every step; what aux_step sees is the step's updated weights (those after_student_step sees),
    not those its forward used."""
    records = []
    forward, after = OutputNorm.forward, OutputNorm.after_student_step

    def weights(loss):
        params = loss.student[0].trainable_parameters().values()
        return torch.cat([p.detach().flatten().clone() for p in params])

    def recording_forward(self, ctx):
        records.append({"step": ctx.step, "forward": weights(self)})
        return forward(self, ctx)

    def recording_aux(self, contexts):
        records[-1]["aux"] = weights(self)
        return {}

    def recording_after(self):
        records[-1]["after"] = weights(self)
        return after(self)

    monkeypatch.setattr(OutputNorm, "forward", recording_forward)
    monkeypatch.setattr(OutputNorm, "aux_step", recording_aux)
    monkeypatch.setattr(OutputNorm, "after_student_step", recording_after)
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=2)
    Trainer(recipe).run()
    assert [r["step"] for r in records] == [0, 1]
    for r in records:
        assert not torch.equal(r["after"], r["forward"])  # the step moved the student
        assert torch.equal(r["aux"], r["after"])


def test_a_phase_fails_beyond_the_documented_quarter_of_its_own_steps_skipped(tmp_path):
    """``check_skipped`` at the end of a 4-step phase ending at global step 10 (its steps are 7..10)
    with the default max-skipped-fraction, 0.25 (docs/design.md): 1 of its steps skipped (1 <= 0.25
    x 4) passes, 2 fail; step 6 is the previous phase's last step and 11 the next phase's first, so
    neither counts."""
    from tlcm.config import RuntimeConfig
    from tlcm.guards import check_skipped

    rt = RuntimeConfig(out_dir=tmp_path)
    check_skipped(rt, "p", 4, 10, [7])
    check_skipped(rt, "p", 4, 10, [6, 10, 11])
    check_skipped(rt, "p", 4, 10, [3, 5, 6])
    with pytest.raises(NonFiniteLoss, match="phase 'p' ended with 2 of its 4 steps skipped"):
        check_skipped(rt, "p", 4, 10, [6, 7, 10])


def test_skip_allows_the_documented_ten_steps_in_a_row(tmp_path):
    """Default max-consecutive-skips 10 (RuntimeConfig's docstring): the 10th skipped step in a row
    is skipped (one line said), the 11th stops the run."""
    from tlcm.config import RuntimeConfig
    from tlcm.guards import nonfinite

    rt = RuntimeConfig(out_dir=tmp_path, on_nonfinite="skip")
    said = []
    nonfinite(rt, "p", 12, {"loss": torch.tensor(float("nan"))}, 10, said.append)
    assert said == ["[yellow]skipped step 12 of p: non-finite loss"]
    with pytest.raises(NonFiniteLoss, match="at step 13: 11 steps in a row skipped"):
        nonfinite(rt, "p", 13, {"loss": torch.tensor(float("nan"))}, 11, said.append)


def _free_step_trainer(model_dir, out_dir, dist=None, **phase_fields):
    """A Trainer of ``small_recipe`` (5 steps; ``phase_fields`` replace the phase's) whose
    micro-batches cost nothing: ``context`` records (step, prompt indices, generator seed) of each
    micro-batch in ``trainer.seen``, and the objective is 0 * the student's weights (zero gradients,
    not None). ``dist``: the process it plays (no process group: averages are the caller's to fake)."""
    recipe = small_recipe(model_dir, out_dir, steps=5)
    phase = replace(recipe.phases["stage"], losses={"norm": OutputNormConfig()}, **phase_fields)
    trainer = Trainer(replace(recipe, phases={"stage": phase}), dist)
    params = list(trainer.student.trainable_parameters().values())
    trainer.seen = []

    def context(order, generator, step):
        trainer.seen.append((step, order.tolist(), generator.initial_seed()))

    trainer.context = context
    trainer.objective = lambda phase, losses, ctx: (sum(p.sum() for p in params) * 0.0, {})
    return trainer, phase


def test_the_prompt_draw_reaches_every_prompt(tiny_sd_dir, tmp_path):
    """A step's prompts are uniform over ALL the prompts (with real images: all image-text pairs):
    over 40 steps of batch 2 from 5 prompts (80 draws; each prompt missed with probability
    (4/5)^80 ~ 2e-8, and the draws are seeded) every index 0..4 appears, none outside."""
    trainer, phase = _free_step_trainer(tiny_sd_dir, tmp_path)
    trainer.prompts = [f"prompt {i}" for i in range(5)]
    params = list(trainer.student.trainable_parameters().values())
    opt = torch.optim.SGD(params, lr=0.0)
    for step in range(40):
        trainer._step(phase, {}, opt, params, step)
    drawn = {i for _, order, _ in trainer.seen for i in order}
    assert drawn == {0, 1, 2, 3, 4}


def test_two_processes_split_the_global_batch_as_one_process_accumulates_it(
    tiny_sd_dir, tmp_path, monkeypatch
):
    """Data parallelism shards the step's prompts: with batch 4, process r of 2 (one micro-batch
    each) trains on micro-batch r of the global draw with generator seed step_seed(seed, s, r),
    exactly what one process accumulating 2 micro-batches sees as its micro-batches 0 and 1 (the
    gradients' and terms' averages over processes are faked as identities: no process group)."""
    monkeypatch.setattr(engine, "average_gradients", lambda params, world: None)
    monkeypatch.setattr(engine, "average_terms", lambda terms, world: terms)
    seen = {}
    for name, dist, accum in (("one", None, 2), ("rank0", (0, 2), 1), ("rank1", (1, 2), 1)):
        info = dist and engine.DistInfo(*dist, torch.device("cpu"))
        trainer, phase = _free_step_trainer(
            tiny_sd_dir, tmp_path / name, info, batch_size=4, grad_accum=accum
        )
        params = list(trainer.student.trainable_parameters().values())
        for step in (0, 1):
            trainer._step(phase, {}, torch.optim.SGD(params, lr=0.0), params, step)
        seen[name] = trainer.seen
    by_step = lambda s, name: [m for m in seen[name] if m[0] == s]  # noqa: E731
    for step in (0, 1):
        assert by_step(step, "rank0") + by_step(step, "rank1") == by_step(step, "one")
        assert sum(len(order) for _, order, _ in by_step(step, "one")) == 4
    assert seen["rank0"] != seen["rank1"]


def test_the_lr_schedule_steps_once_per_optimizer_step_whatever_the_accumulation(tiny_sd_dir, tmp_path):
    """The lr schedule counts optimizer steps, not micro-batches: with 2 accumulated micro-batches,
    a cosine schedule of 5 steps with 2 warm-up steps gives the steps diffusers' curve
    0, peak / 2, peak, peak (1 + cos(pi / 3)) / 2, peak (1 + cos(2 pi / 3)) / 2 (COSINE_LRS), as
    without accumulation (test_cosine_lr_schedule_is_logged_and_resumes_where_it_stopped)."""
    trainer, phase = _free_step_trainer(
        tiny_sd_dir, tmp_path, batch_size=4, grad_accum=2, lr_schedule="cosine", lr_warmup_steps=2
    )
    state = trainer.build_phase("stage", phase)
    state.losses = {}
    lrs = []
    for step in range(5):
        lrs.append(state.optimizer.param_groups[0]["lr"])
        trainer.train_step(state, step)
    assert lrs == pytest.approx(COSINE_LRS, abs=1e-12)
    assert len(trainer.seen) == 10  # 2 micro-batches a step


def test_the_weight_guard_reads_the_largest_weight_magnitude():
    """max_weight_abs bounds each weight's magnitude, so weight_peak is max |w| over every trainable
    tensor: for (3, -4) and ((1, -2)) it is 4 (the l2 norm of all weights would be sqrt(30) = 5.48,
    the largest tensor's norm 5); an empty tensor is passed over; no weights at all: 0."""
    from tlcm.guards import weight_peak

    params = [torch.nn.Parameter(torch.tensor([3.0, -4.0])), torch.nn.Parameter(torch.tensor([[1.0, -2.0]]))]
    cpu = torch.device("cpu")
    assert weight_peak([*params, torch.nn.Parameter(torch.empty(0))], cpu).item() == 4.0
    assert weight_peak([params[1]], cpu).item() == 2.0
    assert weight_peak([], cpu).item() == 0.0


@pytest.mark.parametrize(("bad", "stops"), [({0, 2, 4}, False), ({1, 2}, True)], ids=["apart", "in-a-row"])
def test_max_consecutive_skips_counts_only_skips_in_a_row(tiny_sd_dir, tmp_path, bad, stops, recwarn):
    """on_nonfinite "skip" with max_consecutive_skips 1 (and any fraction allowed): 5 steps whose
    global steps ``bad`` are non-finite (the step is faked: it only reports). Steps 0, 2, 4 are 3
    skips, never 2 in a row: the run ends; steps 1, 2 are 2 in a row: it stops at step 3 (1-based).
    A skipped step still advances the lr schedule, without torch's warning that no optimizer step
    came before it (the run's own line already says the step was skipped)."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=5)
    runtime = replace(recipe.runtime, on_nonfinite="skip", max_consecutive_skips=1, max_skipped_fraction=1.0)
    trainer = Trainer(replace(recipe, runtime=runtime))
    nan = float("nan")
    trainer._step = lambda phase, losses, opt, params, at: (
        {"norm": torch.tensor(nan if at in bad else 1.0)},
        at not in bad,
    )
    if stops:
        with pytest.raises(NonFiniteLoss, match="at step 3: 2 steps in a row skipped"):
            trainer.run()
    else:
        assert trainer.run().skipped_steps == [1, 3, 5]
    assert not [w for w in recwarn if "lr_scheduler" in str(w.message)]
