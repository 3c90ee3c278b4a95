"""The toy evaluation draws every random number on the host (tlcm/toy/scores.py, sampling.py): its
initial noise and its stochastic samplers' step noise come from CPU generators, so a student scored
on a GPU sees the images it would on the CPU (before, the step generator lived on the model's
device, whose stream differs: LCM / TCD samplers scored otherwise on CUDA)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from test_diffusion_solvers import SD_CONFIG
from test_eval14_units import _ToyBase

import tlcm.diffusion.sampling as sampling
from tlcm.diffusion.schedule import VPSchedule
from tlcm.toy.scores import EVAL_SEED, evaluate_toy


class _MetaBase(_ToyBase):
    """The stand-in miniature on another device than the host ("meta": shapes only)."""

    device = torch.device("meta")


def test_the_evaluation_step_generator_is_on_the_host_whatever_the_models_device():
    seen = []

    def sampler(cond, uncond, noise, gen):
        seen.append((noise.device.type, gen.device.type, gen.initial_seed()))
        return torch.zeros(len(cond), 1, 2, 2)

    metrics = lambda images, labels: SimpleNamespace(alignment=0.5, fd=1.0)  # noqa: E731
    evaluate_toy(_MetaBase(), sampler, samples_per_digit=1, metrics=metrics)
    assert seen == [("meta", "cpu", EVAL_SEED + 1)]


def test_a_host_generator_draws_the_step_noise_on_the_host_then_moves_it(monkeypatch):
    """With latents on another device, each fresh draw is made where the generator lives (the
    host: the same numbers on any device) and moved to the latents', as diffusers' randn_tensor."""
    drawn = []
    randn = torch.randn

    def spy(*args, **kwargs):
        drawn.append((kwargs.get("device"), kwargs.get("generator")))
        return randn(*args, **kwargs)

    monkeypatch.setattr(sampling.torch, "randn", spy)
    gen = torch.Generator().manual_seed(0)
    noise = torch.zeros(2, 4, 6, 6, device="meta")
    schedule = VPSchedule.from_config(SD_CONFIG)
    out = sampling.sample_latents(
        lambda x, t, c: torch.zeros_like(x), schedule, None, noise, [999, 499, 0], 1.0, generator=gen
    )
    assert out.device.type == "meta" and [(str(d), g) for d, g in drawn] == [("cpu", gen)] * 2


def test_the_phase_grids_noise_comes_from_a_host_generator(monkeypatch, tmp_path):
    """The sample grid at a phase's end starts from host noise moved to the model's device, and
    its stochastic moves draw from that host generator: the same grid on any device."""
    import tlcm.sample_grids as grids
    from tlcm.diffusion.milestones import StudentGrid

    seen = []

    def sample(denoiser, schedule, cond, noise, timesteps, gamma, generator=None, first_gamma=None):
        seen.append((noise.device.type, generator.device.type))
        return torch.zeros(len(cond), 3, 4, 4)

    monkeypatch.setattr(grids, "sample_latents", sample)
    base = _MetaBase()
    base.schedule = VPSchedule.from_config(SD_CONFIG)
    base.decode = lambda latents: latents
    student = SimpleNamespace(base=base, denoiser=lambda: None)
    grids.write_phase_grid(student, [str(i) for i in range(10)], (1, 2), StudentGrid(), tmp_path / "g.png")
    assert seen == [("meta", "cpu")] * 2 and (tmp_path / "g.png").is_file()
