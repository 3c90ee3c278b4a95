"""The memory plan: from a fake measure (peak = fixed + per-sample x micro-batch, less with
checkpointing), the largest divisor that fits, no checkpointing when it fits, checkpointing when
tight, fragmentation (the reserved peak) counted, one clear error when impossible; the engine runs a
phase with the planned grad_accum. measure_step measures the whole step (every loss's aux_step) and
leaves training exactly as it was (tiny SD pipeline, a fake memory reader on the CPU). A budget
binds the allocator; the SDXL / FLUX presets at the paper's batches plan under 80 GiB on a fake
H200 from the H200 figures; the large presets have the memory plan on."""

import copy
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from engine_helpers import small_recipe
from loss_cases import case_recipe

import tlcm.memory_plan as memory_plan
from recipes import PRESETS
from tlcm.engine import Trainer, train
from tlcm.errors import TLCMError
from tlcm.losses.dmd import DMDConfig
from tlcm.losses.gan import GANConfig
from tlcm.memory_plan import GiB, plan_micro_batch


def fake(fixed_gib=10.0, per_sample_gib=4.0, checkpointed_gib=1.0, oom_above=math.inf):
    calls = []

    def measure(b, checkpointing):
        calls.append((b, checkpointing))
        per = checkpointed_gib if checkpointing else per_sample_gib
        return math.inf if b > oom_above else (fixed_gib + per * b) * GiB

    return measure, calls


def test_fits_without_checkpointing_takes_the_largest_divisor():
    measure, calls = fake()
    plan = plan_micro_batch(32, 200 * GiB, measure)  # 10 + 4 * 32 = 138 <= 180
    assert (plan.micro_batch, plan.checkpointing) == (32, False)
    assert calls == [(1, False), (2, False)]  # two measurements, no checkpointed ones needed
    plan = plan_micro_batch(32, 100 * GiB, measure)  # usable 90: 10 + 4 * 16 = 74 fits, 32 not
    assert (plan.micro_batch, plan.checkpointing) == (16, False)
    assert plan.peak == pytest.approx(74 * GiB)


def test_extra_bytes_count_against_the_budget():
    measure, _ = fake(checkpointed_gib=3.0)
    plan = plan_micro_batch(32, 100 * GiB, measure, extra=20 * GiB)  # 90 - 20: 10 + 4 * 8 fits
    assert plan.micro_batch == 8 and not plan.checkpointing  # checkpointed: 16, not over twice 8


def test_tight_budget_checkpoints():
    measure, _ = fake()
    plan = plan_micro_batch(32, 40 * GiB, measure)  # usable 36: 4 without, 16 (26 GiB) with
    assert (plan.micro_batch, plan.checkpointing) == (16, True)
    measure, _ = fake(oom_above=1)
    plan = plan_micro_batch(8, 40 * GiB, measure)  # out of memory above b = 1 in both modes
    assert (plan.micro_batch, plan.checkpointing) == (1, False)


def test_user_choices_are_kept():
    measure, calls = fake()
    plan = plan_micro_batch(32, 200 * GiB, measure, checkpointing=True)
    assert (plan.micro_batch, plan.checkpointing) == (32, True) and all(c for _, c in calls)
    measure, calls = fake()
    plan = plan_micro_batch(32, 40 * GiB, measure, micro_batch=8)  # 42 GiB without: checkpoint
    assert (plan.micro_batch, plan.checkpointing) == (8, True)
    assert {b for b, _ in calls} == {8}


def test_impossible_budget_is_one_clear_line():
    measure, _ = fake()
    with pytest.raises(TLCMError) as err:
        plan_micro_batch(32, 8 * GiB, measure, phase="mlcd")
    message = str(err.value)
    assert "\n" not in message and "memory plan mlcd" in message
    assert "micro-batch 1 with gradient checkpointing needs 11.0 GiB" in message
    assert "memory-budget-gib" in message


def _linear_measure_step(measured: list, per_sample_gib: float):
    """A stand-in for ``memory_plan.measure_step``: a step of micro-batch b peaks at
    (1 + per_sample_gib * b) GiB; each (b, checkpointing) it is asked for goes to ``measured``."""

    def measure_step(trainer, phase, losses):
        def measure(b, checkpointing):
            measured.append((b, checkpointing))
            return (1 + per_sample_gib * b) * GiB

        return measure

    return measure_step


def test_engine_runs_the_planned_micro_batch(tiny_sd_dir, tmp_path, monkeypatch, capfd):
    measured = []
    monkeypatch.setattr(memory_plan, "measure_step", _linear_measure_step(measured, 2))
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    recipe = replace(
        recipe,
        phases={"stage": replace(recipe.phases["stage"], batch_size=4)},
        runtime=replace(recipe.runtime, memory_budget_gib=5.0),  # usable 4.5: micro-batch 1 fits
    )
    run = train(recipe)
    assert measured[:2] == [(1, False), (2, False)]
    assert run.state.global_step == 1
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["mlcd"])
    assert not run.student.net.is_gradient_checkpointing  # the plan left checkpointing off
    out = " ".join(capfd.readouterr().err.split())
    assert "memory plan stage: micro-batch 1 x accum 4, checkpointing off" in out


def test_the_reserved_line_counts_fragmentation():
    """The allocator's limit acts on reserved memory: a step whose reserved peak grows faster than
    its allocated one gets a smaller micro-batch than the allocated line alone would give."""

    def measure(b, checkpointing):
        return memory_plan.Peak((10 + 4 * b) * GiB, (12 + 5 * b) * GiB)

    plan = plan_micro_batch(32, 100 * GiB, measure, checkpointing=False)  # usable 90
    assert plan.micro_batch == 8  # allocated: 16 (74 GiB); reserved: 16 needs 92, 8 needs 52
    assert plan.peak == pytest.approx(52 * GiB)


def test_a_measured_peak_over_the_budget_is_never_planned():
    """Out of memory at the second candidate: only the first one's measured peak is known, and a
    peak over the usable budget is refused in each mode, not planned because it ran once."""

    def measure(b, checkpointing):
        return math.inf if b > 1 else (30 if checkpointing else 50) * GiB

    with pytest.raises(TLCMError, match="micro-batch 1 with gradient checkpointing needs 30.0 GiB"):
        plan_micro_batch(8, 30 * GiB, measure)  # usable 27: neither 50 nor 30 fits
    plan = plan_micro_batch(8, 40 * GiB, measure)  # usable 36: only the checkpointed 30 fits
    assert (plan.micro_batch, plan.checkpointing, plan.peak) == (1, True, 30 * GiB)


def test_a_peak_that_falls_with_the_batch_is_held_flat():
    """Two measurements where the larger micro-batch peaked lower (allocator noise, a cache freed
    in between) give no negative per-sample bytes: the line through b = 1 and 2 is held flat at the
    first peak. 30 GiB then 20 GiB under 40 (usable 36): every divisor of 8 is predicted at 30 GiB
    and 8 is planned at 30 (a falling line would predict 30 - 10 (8 - 1) = -40 GiB). 50 then 30
    GiB: b = 1 ran over the usable 36, so nothing is planned (a falling line would call b = 4, at
    50 - 20 x 3 = -10 GiB, a fit)."""
    falls = {1: 30 * GiB, 2: 20 * GiB}
    plan = plan_micro_batch(8, 40 * GiB, lambda b, ckpt: falls.get(b, math.inf), checkpointing=False)
    assert (plan.micro_batch, plan.checkpointing, plan.peak) == (8, False, 30 * GiB)
    over = {1: 50 * GiB, 2: 30 * GiB}
    with pytest.raises(TLCMError, match="micro-batch 1 needs 50.0 GiB"):
        plan_micro_batch(8, 40 * GiB, lambda b, ckpt: over.get(b, math.inf), checkpointing=False)


def test_plan_phase_plans_the_per_process_batch_and_keeps_a_users_grad_accum(monkeypatch):
    """2 processes, a global batch of 16: each plans its own 8. Peak 1 + 0.8 b GiB plus the AdamW
    moments of 1 GiB of trainable weights (2 GiB) under 10 GiB (usable 9): b = 4 needs 6.2 GiB,
    b = 8 needs 9.4, so micro-batch 4, grad_accum 8 / 4 = 2. A recipe's grad_accum 4 fixes the
    micro-batch at 8 / 4 = 2 (the only one measured) and is kept."""
    from tlcm.config import Phase, RuntimeConfig

    measured = []
    monkeypatch.setattr(memory_plan, "measure_step", _linear_measure_step(measured, 0.8))
    lines = []
    trainer = SimpleNamespace(
        recipe=SimpleNamespace(runtime=RuntimeConfig(memory_budget_gib=10.0)),
        dist=SimpleNamespace(device=torch.device("cpu"), world_size=2),
        student=SimpleNamespace(set_gradient_checkpointing=lambda on: None),
        reporter=SimpleNamespace(print=lines.append),
    )
    weights = [torch.empty(GiB // 4, device="meta")]  # 1 GiB of fp32 trainable weights
    phase = Phase(steps=1, lr=1e-3, batch_size=16, losses={})
    planned = memory_plan.plan_phase(trainer, "p", phase, {}, weights)
    assert planned.grad_accum == 2 and {b for b, _ in measured} == {1, 2}
    assert "micro-batch 4 x accum 2" in lines[-1]
    measured.clear()
    planned = memory_plan.plan_phase(trainer, "p", replace(phase, grad_accum=4), {}, weights)
    assert planned.grad_accum == 4 and {b for b, _ in measured} == {2}


# --- measure_step: the whole step, and nothing of it left behind -------------------------------


class FakeMemory:
    """CudaMemory's interface on the CPU: the peak is what the spies below report."""

    OutOfMemory = MemoryError

    def __init__(self):
        self.state, self.events = 0.0, []
        self._peak = memory_plan.Peak(0.0, 0.0)

    def bump(self, peak, event):
        self.events.append(event)
        self._peak = memory_plan.Peak(
            max(self._peak.allocated, peak.allocated), max(self._peak.reserved, peak.reserved)
        )

    def reset(self):
        self.events.append("reset")
        self._peak = memory_plan.Peak(0.0, 0.0)

    def reset_peak(self):
        self._peak = memory_plan.Peak(0.0, 0.0)

    def allocated(self):
        return 500.0 + self.state

    def peak(self):
        self.events.append("peak")
        return self._peak

    def release(self):
        self.events.append("release")


def dmd_gan_phase(tiny_sd_dir, tmp_path):
    """A Trainer on the tiny SD pipeline and a phase of DMD (a fake-score LoRA) + GAN (timm
    discriminator heads), both with AdamW state made at their first update, and its losses."""
    recipe = case_recipe("dmd", tiny_sd_dir, tmp_path, steps=1, batch_size=2)
    gan = GANConfig(input="latent", input_size=0, r1_weight=1.0, disc_lr=1e-2)
    phase = replace(recipe.phases["p"], losses={"dmd": DMDConfig(fake_updates=2, fake_lr=1e-2), "gan": gan})
    recipe = replace(recipe, phases={"p": phase})
    trainer = Trainer(recipe)
    torch.manual_seed(0)
    losses = {n: c.build(trainer.student).to(trainer.dist.device) for n, c in phase.losses.items()}
    return trainer, phase, losses


def spy_aux_steps(losses, memory, seen):
    """Wrap each loss's aux_step: record its call, check it changed its loss's state, draw from the
    global RNG (as a loss with dropout would), and report an aux peak and 150 bytes of new state."""
    for name, loss in losses.items():
        original = loss.aux_step

        def aux_step(contexts, name=name, loss=loss, original=original):
            out = original(contexts)
            optimizer = loss.opt if name == "dmd" else loss.optimizer
            seen.append((name, len(contexts), contexts[0].batch_size, len(optimizer.opt.state) > 0))
            torch.rand(1)
            if getattr(memory, "oom_in", None) == name:
                raise memory.OutOfMemory("fake out of memory")
            memory.state += 150.0
            memory.bump(memory_plan.Peak(1200.0, 1250.0), f"aux:{name}")
            return out

        loss.aux_step = aux_step


def spy_objective(trainer, memory):
    original = trainer.objective

    def objective(*args):
        out = original(*args)
        memory.bump(memory_plan.Peak(1000.0, 1100.0), "objective")
        return out

    trainer.objective = objective


def test_measure_step_measures_the_whole_step_with_every_aux_step(tiny_sd_dir, tmp_path):
    trainer, phase, losses = dmd_gan_phase(tiny_sd_dir, tmp_path)
    memory, seen = FakeMemory(), []
    spy_objective(trainer, memory)
    spy_aux_steps(losses, memory, seen)
    measure = memory_plan.measure_step(trainer, phase, losses, memory=memory)
    peak = measure(2, False)
    # every loss's aux_step ran on the measured micro-batch and made its optimizer state
    assert seen == [("dmd", 1, 2, True), ("gan", 1, 2, True)]
    assert memory.events == ["reset", "objective", "peak", "aux:dmd", "aux:gan", "peak", "release"]
    # max(objective peak + the state aux_step left (2 x 150), aux_step's own peak)
    assert peak == memory_plan.Peak(1300.0, 1400.0)


def test_measure_step_leaves_training_exactly_as_it_was(tiny_sd_dir, tmp_path):
    """Measuring (with and without checkpointing) changes no loss state, no student weight, no RNG
    and leaves no gradient: the next training step equals that of a Trainer that never measured."""

    def states(trainer, losses):
        tree = {
            "student": trainer.student.state_dict(),
            **{n: v.checkpoint_state() for n, v in losses.items()},
        }
        return clone_tree(tree)

    trainer, phase, losses = dmd_gan_phase(tiny_sd_dir, tmp_path / "a")
    before, rng = states(trainer, losses), torch.get_rng_state()
    memory, seen = FakeMemory(), []
    spy_aux_steps(losses, memory, seen)
    measure = memory_plan.measure_step(trainer, phase, losses, memory=memory)
    measure(1, False)
    measure(2, True)
    memory.oom_in = "gan"  # out of memory in the discriminator's update, after DMD's updates
    assert measure(2, False) == memory_plan.Peak(math.inf, math.inf)
    assert [s[-1] for s in seen] == [True] * 6  # aux_step did change the losses' state meanwhile
    trainer.student.set_gradient_checkpointing(False)  # what plan_phase does with its plan
    assert_equal_trees(states(trainer, losses), before)
    assert torch.equal(torch.get_rng_state(), rng)
    params = [*trainer.student.net.parameters(), *[p for loss in losses.values() for p in loss.parameters()]]
    assert all(p.grad is None for p in params)
    for loss in losses.values():
        del loss.aux_step  # back to the class's

    reference, _, reference_losses = dmd_gan_phase(tiny_sd_dir, tmp_path / "b")
    steps = []
    for t, ls in ((trainer, losses), (reference, reference_losses)):
        params = list(t.student.trainable_parameters().values())
        opt = torch.optim.AdamW(params, lr=phase.lr)
        terms, finite = t._step(phase, ls, opt, params, 0)
        steps.append((clone_tree(terms), states(t, ls)))
    assert_equal_trees(steps[0], steps[1])


def clone_tree(tree):
    if torch.is_tensor(tree):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: clone_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(clone_tree(v) for v in tree)
    return copy.deepcopy(tree)


def assert_equal_trees(a, b, path="tree"):
    if torch.is_tensor(a):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_equal_trees(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_trees(x, y, f"{path}/{i}")
    else:
        assert a == b, path


# --- the large presets at the paper's batches under an 80 GiB budget ------------------------------

H200_TOTAL, OUTSIDE = 139.8 * GiB, 0.5 * GiB
"""A fake H200 as torch sees it, and what the CUDA context holds outside the allocator."""


@pytest.fixture
def fake_h200(monkeypatch):
    """torch.cuda's memory queries of an H200 with 10 GiB reserved; records the allocator cap."""
    reserved, caps = 10 * GiB, []
    monkeypatch.setattr(
        torch.cuda, "mem_get_info", lambda device=None: (H200_TOTAL - OUTSIDE - reserved, H200_TOTAL)
    )
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, device=None: caps.append((f, device))
    )
    return caps


def test_a_budget_binds_the_allocator(fake_h200):
    cuda = torch.device("cuda", 0)
    budget = memory_plan.bind_budget(cuda, 80 * GiB)  # an 80 GB card's budget on the H200
    assert budget.limit == 80 * GiB - OUTSIDE and budget.outside == OUTSIDE
    assert fake_h200 == [(pytest.approx((80 * GiB - OUTSIDE) / H200_TOTAL), cuda)]
    fake_h200.clear()
    assert memory_plan.bind_budget(cuda, None).limit == H200_TOTAL - OUTSIDE  # the device: no cap
    assert fake_h200 == []
    with pytest.raises(TLCMError, match="in use outside"):
        memory_plan.bind_budget(cuda, 0.25 * GiB)
    assert memory_plan.bind_budget(torch.device("cpu"), 5 * GiB).limit == 5 * GiB


# H200 figures (../shared/GPU.md, docs/design.md "Memory arithmetic per phase"), GiB: MLCD at
# micro-batch 8 with checkpointing peaked at 23.9, at 16 without it ran out of memory at 138.5;
# preference 2 x 4: 56.8; DMD + GAN 2 x 2: 64.9; all with the frozen base in fp32 (13.7 after load,
# with the student LoRA). Per sample = (peak - after load - the student's gradients and moments
# [- DMD's fake-score LoRA, its moments and resnet18]) / micro-batch.
LORA_SDXL = 196_751_360 * 4 / GiB  # rank-64 LoRA on the LCM-LoRA targets of SDXL's UNet, fp32
FROZEN_SDXL = ((2_567_463_684 + 123_060_480 + 694_659_840) * 2 + 83_653_863 * 4) / GiB  # bf16, VAE fp32
PICKSCORE = 986_109_441 * 4 / GiB  # CLIP ViT-H/14, fp32
RESNET18 = 11_689_512 * 4 / GiB
CKPT = {
    "mlcd": (23.9 - 13.7 - 3 * LORA_SDXL) / 8,
    "preference": (56.8 - 13.7 - 3 * LORA_SDXL) / 2,
    "dmd_gan": (64.9 - 13.7 - 6 * LORA_SDXL - RESNET18) / 2,
}
UNCHECKPOINTED = (138.5 - 13.7 - 3 * LORA_SDXL) / 16 - CKPT["mlcd"]  # more per UNet forward with grads
STEP_FIXED = {  # a step's bytes that do not grow with the micro-batch (without the student's moments)
    "mlcd": FROZEN_SDXL + 2 * LORA_SDXL,
    "preference": FROZEN_SDXL + 2 * LORA_SDXL + PICKSCORE,
    "dmd_gan": FROZEN_SDXL + 5 * LORA_SDXL + RESNET18,
}
SDXL_PLANS = {"mlcd": (32, True), "lcd": (32, True), "preference": (2, False), "dmd_gan": (1, False)}
"""The plans docs/design.md's table expects at 80 GiB."""
LORA_FLUX = 179_306_496 * 4 / GiB
FROZEN_FLUX = ((11_901_408_320 + 4_762_310_656 + 123_060_480) * 2 + 83_819_683 * 4) / GiB
FLUX_CKPT = 4.0  # estimate: 57 block inputs of 4608 tokens x 3072 in fp32 (3.0 GiB) + one block's
FLUX_FIXED = {
    "mlcd": FROZEN_FLUX + 2 * LORA_FLUX,
    "preference": FROZEN_FLUX + 2 * LORA_FLUX + PICKSCORE,
    "dmd_gan": FROZEN_FLUX + 5 * LORA_FLUX + RESNET18,
}
FLUX_PLANS = {"mlcd": (8, True), "lcd": (8, True), "preference": (1, True), "dmd_gan": (1, True)}


def sdxl_measure(name):
    kind = "mlcd" if name == "lcd" else name

    def measure(b, checkpointing):
        per = CKPT[kind] + (0.0 if checkpointing else UNCHECKPOINTED)
        return (STEP_FIXED[kind] + per * b) * GiB

    return measure


def flux_measure(name):
    kind = "mlcd" if name == "lcd" else name

    def measure(b, checkpointing):
        assert checkpointing  # the preset checkpoints: the plan only checks it
        return (FLUX_FIXED[kind] + (FLUX_CKPT + CKPT[kind] - CKPT["mlcd"]) * b) * GiB

    return measure


@pytest.mark.parametrize(
    ("preset", "measure", "lora", "plans"),
    [
        ("tlcm-full-sdxl", sdxl_measure, LORA_SDXL, SDXL_PLANS),
        ("tlcm-full-flux", flux_measure, LORA_FLUX, FLUX_PLANS),
    ],
)
def test_presets_fit_an_80_gib_budget_on_an_h200(preset, measure, lora, plans, fake_h200, monkeypatch):
    """``--recipes.runtime.memory-budget-gib 80`` on a 140 GiB card: every phase of the preset at
    the paper's batch gets a plan whose predicted peak (with the student's AdamW moments) is under
    90% of 80 GiB less the CUDA context, and the allocator is capped there."""
    recipe = PRESETS[preset]
    recipe = replace(recipe, runtime=replace(recipe.runtime, memory_budget_gib=80.0))

    def measure_step(trainer, phase, losses):  # the phase by its losses
        return measure("dmd_gan" if "dmd" in phase.losses else next(iter(phase.losses)))

    monkeypatch.setattr(memory_plan, "measure_step", measure_step)
    plans_made, plan_micro_batch = [], memory_plan.plan_micro_batch

    def recorded(*args, **kwargs):
        plans_made.append(plan_micro_batch(*args, **kwargs))
        return plans_made[-1]

    monkeypatch.setattr(memory_plan, "plan_micro_batch", recorded)
    switched, lines = [], []
    trainer = SimpleNamespace(
        recipe=recipe,
        dist=SimpleNamespace(device=torch.device("cuda", 0), world_size=1),
        student=SimpleNamespace(set_gradient_checkpointing=switched.append),
        reporter=SimpleNamespace(print=lines.append),
    )
    student_lora = [torch.empty(round(lora * GiB / 4), device="meta")]  # fp32: its moments are `extra`
    usable = 0.9 * (80 * GiB - OUTSIDE)
    got = {}
    for name, phase in recipe.phases.items():
        planned = memory_plan.plan_phase(trainer, name, phase, {}, student_lora)
        micro = phase.batch_size // planned.grad_accum
        got[name] = (micro, switched[-1])
        assert plans_made[-1].peak <= usable and f"memory plan {name}: micro-batch {micro} x" in lines[-1]
    assert got == plans
    assert [f for f, _ in fake_h200] == [pytest.approx((80 * GiB - OUTSIDE) / H200_TOTAL)] * len(plans)


@pytest.mark.parametrize("name", ["tlcm-full-sdxl", "tlcm-full-sd3", "tlcm-full-flux"])
def test_large_presets_fit_without_tuning(name):
    """The memory plan is on (budget: the device), every phase's grad_accum is left to it at the
    paper's batches; FLUX checkpoints (nothing fits 80 GB without) and shards under torchrun."""
    recipe = PRESETS[name]
    rt = recipe.runtime
    assert rt.memory_plan and rt.memory_budget_gib is None
    assert {n: (p.batch_size, p.grad_accum) for n, p in recipe.phases.items()} == {
        "mlcd": (32, 1),
        "lcd": (32, 1),
        "preference": (8, 1),
        "dmd_gan": (4, 1),
    }
    assert rt.gradient_checkpointing == (name == "tlcm-full-flux") and rt.fsdp == (name == "tlcm-full-flux")


def test_sdxl_help_shows_the_settings_that_make_it_fit(capsys):
    from tlcm.train import cli

    with pytest.raises(SystemExit):
        cli(["recipes:tlcm-full-sdxl", "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    memory_plan_help = text.split("--recipes.runtime.memory-plan, --recipes.runtime.no-memory-plan")[1]
    memory_plan_help = memory_plan_help.split("--recipes.runtime.memory-budget-gib")[0]
    assert "80 GB GPU" in memory_plan_help and memory_plan_help.rstrip().endswith("(default: True)")
    assert "fixed values that fit" in memory_plan_help  # the fallback without the plan
    assert "Binding" in text.split("--recipes.runtime.memory-budget-gib")[1]
