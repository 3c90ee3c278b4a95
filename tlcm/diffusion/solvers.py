"""Solvers on top of ``Schedule``: DDIM/Euler steps, classifier-free guidance, the teacher's multi-step
solves (stage 1's multistep denoising strategy, stage 2's p sub-steps) and the TLCM sampling step.

A denoiser is any callable ``denoiser(x (B, ...), t (B,), cond: Conditioning) -> model output (B, ...)``
(eps, v or x0 as the schedule's prediction type says). Timesteps are per sample, (B,).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.schedule import Schedule, expand_like

Denoiser = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def ddim_step(
    schedule: Schedule, x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM step t -> s (Song et al. 2021, eq. 12 with eta = 0), x (B, ...), t, s (B,).

    DDIM(x_t, x0_hat, t -> s) = a_s x0_hat + s_s eps_hat, eps_hat = (x_t - a_t x0_hat) / s_t.
    For a flow schedule this is exactly the Euler step x_t + (sigma_s - sigma_t) v. A step from t
    to t is the identity (up to rounding); s = schedule.clean_timestep returns x0_hat. From a clean
    state (sigma_t = 0: flow t = 0) the state is its own x0 and the step keeps it (no 0 / 0).
    """
    a_t, s_t = expand_like(schedule.alpha(t), x_t), expand_like(schedule.sigma(t), x_t)
    clean = s_t == 0  # a clean state (flow t = 0) is its own x0 and holds no noise
    x0_hat = torch.where(clean, x_t / a_t, x0_hat)
    eps_hat = torch.where(clean, 0.0, (x_t - a_t * x0_hat) / torch.where(clean, 1.0, s_t))
    return expand_like(schedule.alpha(s), x_t) * x0_hat + expand_like(schedule.sigma(s), x_t) * eps_hat


def guided_output(
    denoiser: Denoiser,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning | None,
    w: float,
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): out(x, null) + w (out(x, c) - out(x, null)).

    x (B, ...), t (B,), cond of B samples, uncond of 1 or B samples. One denoiser call of batch 2B
    (cond first, then uncond); w == 1 makes one call of batch B and needs no ``uncond``.
    Guidance acts on the raw model output: every conversion of ``Schedule`` is affine in the output
    at fixed (x_t, t), so this equals guiding eps, x0 or v alike.
    A guidance-distilled network (``cond.guidance`` set, FLUX.1-dev) takes w as an input instead:
    one call of batch B with ``cond.with_guidance(w)``.
    """
    if cond.guidance is not None:
        return denoiser(x, t, cond.with_guidance(w))
    if w == 1:
        return denoiser(x, t, cond)
    if uncond is None:
        raise ValueError(f"classifier-free guidance with w={w} needs an unconditional embedding")
    batch = x.shape[0]
    out = denoiser(torch.cat([x, x]), torch.cat([t, t]), cond.cat(uncond.expand_to(batch)))
    out_cond, out_uncond = out.chunk(2)
    return out_uncond + w * (out_cond - out_uncond)


def teacher_solve(
    denoiser: Denoiser,
    schedule: Schedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning | None,
    w: float,
    substeps: int = 1,
) -> torch.Tensor:
    """The teacher's ODE solve t -> s in p = ``substeps`` CFG-DDIM steps (stage 2 uses p = 3).

    x_t (B, ...), t, s (B,). Sub-step j goes tau_j -> tau_{j+1}, tau_j = t + (s - t) j / p, snapped
    to the schedule's grid (rounded for VP). Costs p guided denoiser calls. Returns x_s (B, ...).
    """
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    grid = [schedule.discretize(t + (s - t) * (j / substeps)) for j in range(substeps + 1)]
    x = x_t
    for tau, tau_next in pairwise(grid):
        x0_hat = schedule.to_x0(guided_output(denoiser, x, tau, cond, uncond, w), x, tau)
        x = ddim_step(schedule, x, x0_hat, tau, tau_next)
    return x


def mds_trajectory(
    denoiser: Denoiser,
    schedule: Schedule,
    noise: torch.Tensor,
    t_m: torch.Tensor,
    num_steps: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning | None,
    w: float,
    rounds: int | None = None,
) -> torch.Tensor:
    """Multistep denoising strategy (MDS, stage 1): data-free states x_{t_m} from pure noise.

    noise (B, ...) is x_T at ``schedule.max_timestep``; sample i descends to t_m[i] in
    L_i = num_steps[i] equal CFG-DDIM steps (L = M - s: the top segment gets 1 step, the lowest M),
    tau_j = T + (t_m - T) j / L, snapped to the schedule's grid. All samples advance together for
    max(L) rounds; round r calls the denoiser only on the samples with r < L_i, so a sample whose
    grid is done stays bit-identical and no call is wasted: the cost is sum(L_i) guided calls.
    The rounds' batch sizes depend on L, which the host reads: ``num_steps`` on the host (MLCD
    draws its segments there) costs no sync, on the device one per call; each round's indices
    are then found on the device with that known size (``nonzero_static``). Masking instead
    (every sample in every round, ``torch.where``) would need no sync but cost B max(L) calls, about
    2M / (M + 1) times as many for L uniform in 1..M. ``uncond`` holds 1 or B samples.
    ``rounds`` (>= max L) makes that masked form instead: exactly ``rounds`` calls of batch B
    whatever L is, as FSDP2 needs (every process must make the same network calls); the results
    equal the default's up to batch-size-dependent rounding. Returns x_{t_m} (B, ...).
    """
    given, num_steps = num_steps, num_steps.to(t_m.device, non_blocking=True)
    start = torch.full_like(t_m, schedule.max_timestep, dtype=torch.float64)
    steps = num_steps.to(torch.float64)
    if rounds is not None:
        x = noise
        for r in range(rounds):
            tau = schedule.discretize(start + (t_m - start) * (r / steps).clamp(max=1))
            tau_next = schedule.discretize(start + (t_m - start) * ((r + 1) / steps).clamp(max=1))
            x0_hat = schedule.to_x0(guided_output(denoiser, x, tau, cond, uncond, w), x, tau)
            moving = (num_steps > r).view(-1, *[1] * (x.dim() - 1))
            x = torch.where(moving, ddim_step(schedule, x, x0_hat, tau, tau_next), x)
        return x
    lengths = given.tolist()  # no sync for host num_steps (one otherwise)
    x = noise
    for r in range(max(lengths, default=0)):
        count = sum(n > r for n in lengths)
        active = torch.nonzero_static(num_steps > r, size=count).squeeze(1)
        tau = schedule.discretize(start + (t_m - start) * (r / steps))[active]
        tau_next = schedule.discretize(start + (t_m - start) * ((r + 1) / steps))[active]
        uncond_r = uncond[active] if uncond is not None and len(uncond) > 1 else uncond
        x_r = x[active]
        x0_hat = schedule.to_x0(guided_output(denoiser, x_r, tau, cond[active], uncond_r, w), x_r, tau)
        x = x.index_copy(0, active, ddim_step(schedule, x_r, x0_hat, tau, tau_next))
    return x


def tlcm_step(
    schedule: Schedule,
    x_t: torch.Tensor,
    x0_hat: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    gamma: float,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One few-step sampling move t -> s from the student's x0_hat, x (B, ...), t, s (B,).

    gamma = 1: fresh noise, LCM-style (Luo et al. 2023, Alg. 1): a_s x0_hat + s_s noise.
    gamma = 0: deterministic DDIM, ``ddim_step``; ``noise`` may be None.
    0 < gamma < 1: TCD's strategic stochastic sampling (Zheng et al. 2024, arXiv 2402.19159):
    DDIM to s' = c + (1 - gamma)(s - c) (c = clean timestep, snapped to the grid; TCD floors
    (1 - gamma) s instead, so gamma = 1 lands on t = 0, not on clean data), then forward-diffuse
    s' -> s with fresh noise:
    x_s = (a_s / a_s') x_s' + sqrt(s_s^2 - (a_s s_s' / a_s')^2) noise.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if gamma == 0.0:
        return ddim_step(schedule, x_t, x0_hat, t, s)
    if noise is None:
        raise ValueError(f"tlcm_step with gamma={gamma} needs fresh noise")
    clean = schedule.clean_timestep
    s_mid = schedule.discretize(clean + (1.0 - gamma) * (s - clean))
    x_mid = ddim_step(schedule, x_t, x0_hat, t, s_mid)
    ratio = schedule.alpha(s) / schedule.alpha(s_mid)
    std = (schedule.sigma(s) ** 2 - (ratio * schedule.sigma(s_mid)) ** 2).clamp(min=0).sqrt()
    return expand_like(ratio, x_t) * x_mid + expand_like(std, x_t) * noise
