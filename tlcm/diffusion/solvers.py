"""Solvers on top of ``Schedule``: DDIM/Euler steps, the teacher's multi-step solves (stage 1's
multistep denoising strategy, stage 2's p sub-steps) and the TLCM sampling step (docs/method.md
"Stage 1", "Stage 2", "Inference").

They take denoisers (tlcm/diffusion/denoiser.py): the teacher comes with its guidance inside
(``Guided``). Timesteps are per sample, (B,).
"""

from __future__ import annotations

from itertools import pairwise

import torch

from tlcm.conditioning import Conditioning
from tlcm.diffusion.denoiser import Denoiser
from tlcm.diffusion.schedule import Schedule, expand_like


def ddim_step(
    schedule: Schedule, x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM step t -> s (Song, Meng, Ermon 2021, arXiv 2010.02502, eq. 12 with sigma_t = 0,
    x0 from eps by eq. 9; arXiv 2406.05768's Psi, Eq. (3)), x (B, ...), t, s (B,).

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


def teacher_solve(
    denoiser: Denoiser,
    schedule: Schedule,
    x_t: torch.Tensor,
    t: torch.Tensor,
    s: torch.Tensor,
    cond: Conditioning,
    substeps: int = 1,
) -> torch.Tensor:
    """The teacher's ODE solve t -> s in p = ``substeps`` DDIM steps of ``denoiser`` (the guided
    teacher: CFG-DDIM; arXiv 2406.05768 Eq. (8) for p = 1 in stage 1; Sec. 4.2 / Alg. 2 cut into p
    sub-steps in stage 2, p = 3 by Sec. 5.1).

    x_t (B, ...), t, s (B,). Sub-step j goes tau_j -> tau_{j+1}, tau_j = t + (s - t) j / p, snapped
    to the schedule's grid (rounded for VP). Costs p denoiser calls. Returns x_s (B, ...).
    """
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    grid = [schedule.discretize(t + (s - t) * (j / substeps)) for j in range(substeps + 1)]
    x = x_t
    for tau, tau_next in pairwise(grid):
        x0_hat = schedule.to_x0(denoiser(x, tau, cond), x, tau)
        x = ddim_step(schedule, x, x0_hat, tau, tau_next)
    return x


def mds_trajectory(
    denoiser: Denoiser,
    schedule: Schedule,
    noise: torch.Tensor,
    t_m: torch.Tensor,
    num_steps: torch.Tensor,
    cond: Conditioning,
    rounds: int | None = None,
) -> torch.Tensor:
    """Multistep denoising strategy (MDS, stage 1; arXiv 2406.05768 Sec. 4.1, Alg. 1): data-free
    states x_{t_m} from pure noise.

    noise (B, ...) is x_T at ``schedule.max_timestep``; sample i descends to t_m[i] in
    L_i = num_steps[i] equal DDIM steps of ``denoiser`` (the guided teacher: CFG-DDIM; L = M - s:
    the top segment gets 1 step, the lowest M), tau_j = T + (t_m - T) j / L, snapped to the
    schedule's grid. All samples advance together for max(L) rounds; round r calls the denoiser
    only on the samples with r < L_i, so a sample whose grid is done stays bit-identical and no
    call is wasted: the cost is sum(L_i) samples' calls.
    The rounds' batch sizes depend on L, which the host reads: ``num_steps`` on the host (MLCD
    draws its segments there) costs no sync, on the device one per call; each round's indices
    are then found on the device with that known size (``nonzero_static``). Masking instead
    (every sample in every round, ``torch.where``) would need no sync but cost B max(L) calls, about
    2M / (M + 1) times as many for L uniform in 1..M.
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
            x0_hat = schedule.to_x0(denoiser(x, tau, cond), x, tau)
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
        x_r = x[active]
        x0_hat = schedule.to_x0(denoiser(x_r, tau, cond[active]), x_r, tau)
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

    gamma = 1: fresh noise, multistep consistency sampling (Song et al. 2023, arXiv 2303.01469,
    Alg. 1), as diffusers' LCMScheduler and the TLCM authors' inference.py: a_s x0_hat + s_s noise.
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
