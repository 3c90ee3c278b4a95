"""The device-discipline checker (tests/device_discipline.py) catches on CPU what crashes on CUDA:
generator draws that fall back to the default device, in-step tensor factories without a device;
it counts host syncs by call site and tells those that would wait for the accelerator, so a
training step of every loss is checked to wait once per optimizer step (engine.py's claim)."""

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from device_discipline import DeviceDiscipline
from torch import nn

from recipes import PRESETS
from tlcm.config import Phase, StudentConfig, smoke_recipe
from tlcm.data.prompts import load_prompts
from tlcm.data.trajectories import TrajectoryCache, build_cache
from tlcm.diffusion.milestones import StudentGrid, _on_device
from tlcm.engine import Trainer
from tlcm.losses.base import Loss, StepContext
from tlcm.losses.dmd import DMDConfig
from tlcm.losses.gan import GANConfig
from tlcm.losses.lcd import LCDConfig
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.preference import PreferenceConfig
from tlcm.models.base import BaseModel
from tlcm.rewards import shifted_prompts
from tlcm.rewards.digit import DigitReward
from tlcm.toy import MINIATURE_SD

HERE = (str(Path(__file__).resolve()),)  # police this file's code too, as if it were tlcm's


def _old_shifted_prompts(prompts: list[str], generator: torch.Generator) -> list[str]:
    """tlcm.rewards.shifted_prompts before the fix: it crashed recipes:tlcm-full on an H200 with
    "Expected a 'cpu' device type for generator but found 'cuda'"."""
    n = len(prompts)
    shift = int(torch.randint(1, n, (1,), generator=generator))
    return [prompts[(i + shift) % n] for i in range(n)]


# pytest.raises goes outside the mode: a violation that does not propagate out of the mode fails it
def test_a_draw_without_its_device_is_rejected_and_one_with_it_passes():
    g = torch.Generator().manual_seed(0)
    site = r"torch\.randint at tests/test_device_discipline\.py:\d+ draws with a generator on cpu and no"
    with pytest.raises(AssertionError, match=site), DeviceDiscipline(roots=HERE):
        torch.randint(1, 5, (1,), generator=g)
    with DeviceDiscipline(roots=HERE) as mode:
        torch.randint(1, 5, (1,), generator=g, device=g.device)
        torch.randn(2, 3, generator=g, device="cpu")
        torch.empty(3).normal_(generator=g)  # in-place: the tensor's device, which is the generator's
        if "generator" in torch.randn_like.__doc__:  # torch 2.6's *_like take no generator
            torch.randn_like(torch.zeros(2), generator=g)
        torch.multinomial(torch.ones(4), 2, generator=g)
        nn.init.uniform_(torch.empty(3), generator=g)
    assert mode.violations == []
    mismatch = "generator on cpu and device=meta"
    with pytest.raises(AssertionError, match=mismatch), DeviceDiscipline(roots=HERE):
        torch.rand(2, generator=g, device="meta")


def test_the_original_rewards_bug_is_caught_and_the_fixed_rewards_pass():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(AssertionError, match=r"torch\.randint at .*falls back"), DeviceDiscipline(roots=HERE):
        _old_shifted_prompts(["a", "b", "c"], g)
    with DeviceDiscipline() as mode:  # the fixed tlcm code, policed as in training
        assert sorted(shifted_prompts(["a", "b", "c"], g)) == ["a", "b", "c"]
        assert len(DigitReward.unrelated(None, ["a three", "a 7"], g)) == 2
    assert mode.violations == []


def test_a_swallowed_violation_still_fails_on_exit():
    g = torch.Generator()
    with pytest.raises(AssertionError, match="device discipline"), DeviceDiscipline(roots=HERE):
        try:
            torch.randperm(4, generator=g)
        except Exception:  # noqa: S110 - what a broad except in the code under test would do
            pass


class _FactoryLoss(Loss):
    def __init__(self, device: str | None) -> None:
        super().__init__()
        self.device = device

    def forward(self, ctx=None):
        scalar = torch.tensor(2.0)  # 0-dim: mixes with CUDA tensors as a scalar, allowed
        kwargs = {} if self.device is None else {"device": self.device}
        return {"x": (torch.arange(3, dtype=torch.float32, **kwargs) * scalar).sum()}


def test_in_step_factories_need_a_device_and_scalars_or_code_outside_steps_do_not():
    unstated = r"torch\.arange at .* makes a \(3,\) tensor inside a training step with no device="
    with pytest.raises(AssertionError, match=unstated), DeviceDiscipline(roots=HERE):
        _FactoryLoss(None)()
    with DeviceDiscipline(roots=HERE) as mode:
        _FactoryLoss("cpu")()
        torch.arange(3)  # not inside a training step
    assert mode.violations == []


def test_host_syncs_are_counted_by_call_site():
    def step_like():
        x = torch.arange(4.0, device="cpu")
        value = x.sum().item()
        kept = x[x > 1]
        moved = x.to(torch.device("cpu"))
        return value, kept, moved, bool(x.any()), float(x[0])

    with DeviceDiscipline(roots=HERE, count_syncs=True) as mode:
        step_like()
    ops = sorted(op for (_, site, op, _), n in mode.syncs.items() if site.startswith("tests/"))
    assert ops == ["__bool__", "__float__", "item", "to(device)", "x[bool mask]"]


def test_device_syncs_are_told_from_host_reads():
    """Reads of host tensors (factories, host-generator draws, .cpu() copies) wait for nothing;
    reads of device tensors (the step generator's draws, parameters, .to(device) copies) do."""
    host, step = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    weight = nn.Parameter(torch.ones(3))
    with DeviceDiscipline(roots=HERE, count_syncs=True) as mode:
        mode.host_generators.add(host)
        drawn = torch.randint(5, (3,), generator=host, device=host.device)
        moved = drawn.to(torch.device("cpu"), non_blocking=True)  # on CPU an alias, on the device
        (moved * 2).tolist()
        drawn.tolist(), (drawn + torch.arange(3)).tolist()
        bool((torch.randn(3, generator=step, device=step.device) > 0).any())
        float((weight.detach() * 2).sum())
        weight.detach().cpu().tolist()  # the copy waits, the read of the copy does not
    assert sorted(op for (_, _, op, _) in mode.device_syncs) == ["__bool__", "__float__", "cpu", "tolist"]
    assert sum(mode.syncs.values()) == 7 and sum(mode.device_syncs.values()) == 4


def _accelerator_step(mode: DeviceDiscipline, monkeypatch) -> None:
    """Make training steps behave as on an accelerator for ``mode``: each step's host_generator is a
    registered host generator seeded like the step's (not the step's own CPU generator), and syncs
    are labelled with the global step."""

    def host_generator(ctx):
        def make():
            generator = torch.Generator().manual_seed(ctx.generator.initial_seed())
            mode.host_generators.add(generator)
            return generator

        return ctx.shared("host_generator", make)

    step = Trainer._step

    def labelled(self, phase, losses, opt, params, global_step):
        mode.label = str(global_step)
        return step(self, phase, losses, opt, params, global_step)

    monkeypatch.setattr(StepContext, "host_generator", property(host_generator))
    monkeypatch.setattr(Trainer, "_step", labelled)


def _waits_per_step(mode: DeviceDiscipline) -> dict[str, Counter]:
    """{global step: Counter of (file, op) device syncs inside that step}."""
    steps: dict[str, Counter] = {}
    for label, site, op, n in mode.sync_table(in_step=True, device=True):
        steps.setdefault(label, Counter())[(site.split(":")[0], op)] += n
    return steps


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A teacher trajectory cache of the miniature (M = 2, k = 250, one trajectory per prompt)."""
    out, w = tmp_path_factory.mktemp("trajectories"), PRESETS["tlcm-paper"].model.guidance_scale
    build_cache(BaseModel.load(MINIATURE_SD), load_prompts(None), out, 1, 2, 250, w, batch_size=64)
    return out


def _phase(grad_accum: int = 1, **losses) -> Phase:
    return Phase(steps=2, batch_size=2, grad_accum=grad_accum, losses=losses)


ENGINE_CHECK = ("tlcm/engine.py", "__bool__")
"""The engine's one sync per optimizer step: is every term and the gradient norm finite?"""
TABLE_COPY = ("tlcm/diffusion/milestones.py", "tensor(data, device=)")
"""A milestone table's first copy to the device (cached: once per process)."""


def test_a_training_step_of_every_loss_waits_for_the_device_once(cache_dir, tmp_path, monkeypatch):
    """MLCD (MDS states, and cached trajectories), LCD, reward feedback, DPO, DMD + a pixel GAN,
    2 micro-batches per step where it matters: one device sync per optimizer step (the engine's
    finite check), plus one milestone table's first copy. MLCD's segment draws, the cache's rows
    and the rewards' unrelated prompts come from the host generator, and the prompt indices stay on
    the host (before: one sync per micro-batch each, three for the cache)."""
    phases = {
        "mlcd": _phase(2, mlcd=MLCDConfig()),
        "cache": _phase(2, mlcd=MLCDConfig(skip=250, states="cache")),
        "lcd": _phase(lcd=LCDConfig()),
        "reward": _phase(2, preference=PreferenceConfig(mode="reward")),
        "dpo": _phase(preference=PreferenceConfig(mode="dpo")),
        "gan": _phase(dmd=DMDConfig(fake_updates=2), gan=GANConfig()),
    }
    recipe = smoke_recipe(PRESETS["tlcm-paper"], MINIATURE_SD, tmp_path, resume=False)
    student = StudentConfig(lora_rank=4, lora_alpha=4.0, grid=StudentGrid(2, 2))
    data = replace(recipe.data, trajectory_cache=cache_dir)
    mode = DeviceDiscipline(count_syncs=True)
    _accelerator_step(mode, monkeypatch)
    _on_device.cache_clear()  # a fresh process: tables cached by earlier tests were made outside the mode
    with mode:
        Trainer(replace(recipe, student=student, data=data, phases=phases)).run()
    steps = _waits_per_step(mode)
    assert sum(waits.pop(TABLE_COPY, 0) for waits in steps.values()) == 1
    assert steps == {str(s): Counter({ENGINE_CHECK: 1}) for s in range(12)}


def test_dmd2_switches_wait_for_the_device_once(tmp_path, monkeypatch):
    """DMD2's backward simulation (``backward_simulation="chain"``: its step count k is a host draw
    that the host reads) with fresh student draws for every fake update: still one device sync per
    optimizer step, plus one milestone table's first copy."""
    phases = {
        "dmd2": _phase(2, dmd=DMDConfig(fake_updates=2, fake_samples="fresh", fake_t_min=0, fake_t_max=999))
    }
    recipe = smoke_recipe(PRESETS["tlcm-paper"], MINIATURE_SD, tmp_path, resume=False)
    grid = StudentGrid(4, 4, backward_simulation="chain")
    student = StudentConfig(lora_rank=4, lora_alpha=4.0, grid=grid)
    mode = DeviceDiscipline(count_syncs=True)
    _accelerator_step(mode, monkeypatch)
    _on_device.cache_clear()
    with mode:
        Trainer(replace(recipe, student=student, phases=phases)).run()
    steps = _waits_per_step(mode)
    assert sum(waits.pop(TABLE_COPY, 0) for waits in steps.values()) == 1
    assert steps == {str(s): Counter({ENGINE_CHECK: 1}) for s in range(2)}


def test_add_waits_for_the_device_once(tmp_path, monkeypatch):
    """recipes:add's losses (ADD's distillation on decoded images, the hinge GAN on real data) with
    the student's states real latents noised to its grid (``backward_simulation="data"``): one
    device sync per optimizer step, plus one milestone table's first copy."""
    from loss_cases import real_images

    (add,) = PRESETS["add"].phases.values()
    recipe = smoke_recipe(PRESETS["tlcm-paper"], MINIATURE_SD, tmp_path, resume=False)
    student = StudentConfig(lora_rank=4, lora_alpha=4.0, grid=PRESETS["add"].student.grid)
    data = replace(recipe.data, images=real_images(tmp_path), prompts=None)
    mode = DeviceDiscipline(count_syncs=True)
    _accelerator_step(mode, monkeypatch)
    _on_device.cache_clear()
    with mode:
        Trainer(replace(recipe, student=student, data=data, phases={"add": _phase(2, **add.losses)})).run()
    steps = _waits_per_step(mode)
    assert sum(waits.pop(TABLE_COPY, 0) for waits in steps.values()) == 1
    assert steps == {str(s): Counter({ENGINE_CHECK: 1}) for s in range(2)}


def test_cache_rows_for_host_indices_and_host_draws_wait_for_nothing(cache_dir):
    """The cache's remaining sync is the prompt indices' copy to the host: given host indices (the
    engine holds them there) and the host generator, sampling states waits for no device."""
    base, prompts = BaseModel.load(MINIATURE_SD), load_prompts(None)
    with DeviceDiscipline(count_syncs=True) as mode:  # the cache's tables are made on the host
        cache = TrajectoryCache.open(cache_dir, base, prompts)
        host = torch.Generator().manual_seed(0)
        mode.host_generators.add(host)
        states = cache.sample(torch.arange(2), host, torch.device("cpu"))
    assert states.x_tm.shape[0] == 2 and not mode.device_syncs
