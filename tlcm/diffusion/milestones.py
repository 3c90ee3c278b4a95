"""Segment milestones of TLCM (docs/method.md, "Stage 1"; arXiv 2406.05768 Sec. 4.1, Eq. (6)) and
the few-step inference timesteps (docs/method.md, "Inference").

[0, T] is split into M segments by milestones t_0 = 0 < t_1 < ... < t_M = T. Segment s is the
half-open interval (t_s, t_{s+1}]. At inference the student runs at a subset of the M candidate
timesteps t_k - 1 (k = M..1): [999, 874, 749, 624, 499, 374, 249, 124] for M = 8, T = 1000,
exactly the authors' ``int(linspace(999, 0, 9))[:-1]`` (their inference.py).

Flow schedules (SD3, FLUX) place milestone k at T shift(k / M) (``Schedule.timestep_at``, shift 1:
k T / M, float) and sample at the milestones themselves (the top one is pure noise), as
``TLCMFlowScheduler`` does, so training and the exported scheduler share one grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Literal

import torch

from tlcm.diffusion.schedule import Schedule

POLICIES = ("authors", "trailing")
AUTHORS_MILESTONE_INDICES: dict[int, tuple[int, ...]] = {
    1: (8,),
    2: (8, 4),
    3: (8, 4, 1),
    4: (8, 6, 4, 1),
    5: (8, 6, 4, 2, 1),
    6: (8, 6, 4, 3, 2, 1),
    7: (8, 6, 5, 4, 3, 2, 1),
    8: (8, 7, 6, 5, 4, 3, 2, 1),
}
"""The authors' step tables for M = 8 (their inference.py, 1 to 8 steps; docs/method.md,
"Inference"), as milestone indices k (timestep t_k - 1). Until 2026-12-07 only 2, 3, 4 and 8 were
here and 5-7 steps took "trailing" (5: [999, 749, 624, 374, 249], never reaching the lowest
segment; theirs: [999, 749, 499, 249, 124]): a referee's walkthrough found a 5- or 6-step
comparison with the paper's Table 1 sampled other timesteps."""


def milestones(
    num_segments: int = 8, schedule: Schedule | int = 1000, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Milestones [t_0 = 0, ..., t_M = T], (M + 1,), t_k = ``schedule.timestep_at(k / M)``, made on
    ``device`` (no host-to-device copy inside a training step). An int ``schedule`` is T of a VP
    schedule: t_k = round(k T / M), long.

    VP, M = 8, T = 1000 -> [0, 125, 250, ..., 875, 1000]; flow with shift 3 -> T * 3f / (1 + 2f).
    """
    num_train_timesteps = schedule if isinstance(schedule, int) else schedule.num_train_timesteps
    if not 1 <= num_segments <= num_train_timesteps:
        raise ValueError(f"num_segments must be in 1..{num_train_timesteps}, got {num_segments}")
    fraction = torch.arange(num_segments + 1, dtype=torch.float64, device=device) / num_segments
    if isinstance(schedule, int):
        return (fraction * num_train_timesteps).round().long()
    return schedule.timestep_at(fraction)


def segment_index(t: torch.Tensor, milestones: torch.Tensor) -> torch.Tensor:
    """Segment s of each timestep, t in (t_s, t_{s+1}]: (B,) -> (B,) long in 0..M-1 (t <= t_0 gives 0)."""
    index = torch.searchsorted(milestones.to(t.device, t.dtype), t, right=False) - 1
    return index.clamp(0, milestones.shape[0] - 2)


def sample_segment_timesteps(
    schedule: Schedule,
    milestones: torch.Tensor,
    batch_size: int,
    skip: float = 20,
    segments: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    lattice: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MLCD timesteps (stage 1): segment s, t_m uniform in (t_s, hi], t_n = max(t_m - k, t_s)
    (arXiv 2406.05768 Eq. (6), t_m ~ U[t_s, t_{s+1}], with Sec. 4.1's skip k = 20; the clamp at t_s
    is ours: docs/method.md, "Stage 1").

    hi = min(t_{s+1}, schedule.max_timestep): VP timesteps stop at T - 1 = 999, so the top segment
    is (875, 999] (124 integers) and every other one (t_s, t_{s+1}] (125 integers); flow timesteps
    are real numbers in (t_s, t_{s+1}]. ``segments`` (B,) long fixes s; by default s is uniform in
    0..M-1. ``lattice``: t_m uniform over the segment's points of ``ddim_lattice`` instead (LCM's
    DDIMSolver, Luo et al. 2023; a segment at least k wide holds one). Tensors live on
    ``milestones.device`` (the generator's device).
    Returns (segments, t_m, t_n), each (B,); the timesteps are long (VP) or float (flow).
    """
    device = milestones.device
    num_segments = milestones.shape[0] - 1
    if segments is None:
        segments = torch.randint(0, num_segments, (batch_size,), generator=generator, device=device)
    lo = milestones[segments].double()
    hi = milestones[segments + 1].double().clamp(max=schedule.max_timestep)
    u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
    if lattice:
        points = ddim_lattice(schedule, skip, device)
        first = torch.searchsorted(points, lo, right=True)  # the segment's points: first..last
        last = torch.searchsorted(points, hi, right=True) - 1
        t_m = points[first + (u * (last - first + 1)).floor().long().clamp(max=last - first)]
    else:
        offset = u * (hi - lo)
        t_m = hi - (offset.floor() if schedule.discrete else offset)
    t_n = torch.maximum(t_m - skip, lo)
    return segments, schedule.discretize(t_m), schedule.discretize(t_n)


def ddim_lattice(schedule: Schedule, skip: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The N = round(T / k) points of LCM's DDIM lattice (diffusers' DDIMSolver), ascending, float64:
    VP, i k - 1 for i = 1..N ({19, 39, ..., 999} for k = 20); flow (no reference: ours),
    ``schedule.timestep_at(i / N)``, the shifted grid."""
    n = max(1, round(schedule.num_train_timesteps / skip))
    i = torch.arange(1, n + 1, dtype=torch.float64, device=device)
    return i * skip - 1 if schedule.discrete else schedule.timestep_at(i / n).double()


def inference_milestone_indices(
    num_inference_steps: int, num_segments: int = 8, policy: str = "authors"
) -> list[int]:
    """Milestone indices k (descending, from M) of an n-step sampler.

    "authors": the authors' table for M = 8 (``AUTHORS_MILESTONE_INDICES``: 2 -> [8, 4],
    3 -> [8, 4, 1], 4 -> [8, 6, 4, 1], 5 -> [8, 6, 4, 2, 1], ..., 8 -> all), "trailing" for other M.
    "trailing": n evenly spaced indices starting at M,
    k_i = M - floor(i M / n + 1/2) for i = 0..n-1 (diffusers' trailing spacing on the milestones),
    e.g. M = 8: 3 -> [8, 5, 3], 4 -> [8, 6, 4, 2].
    """
    if policy not in POLICIES:
        raise ValueError(f"timestep policy must be one of {POLICIES}, got {policy!r}")
    if not 1 <= num_inference_steps <= num_segments:
        raise ValueError(
            f"num_inference_steps must be in 1..{num_segments} for M={num_segments} milestones, "
            f"got {num_inference_steps}"
        )
    if policy == "authors" and num_segments == 8 and num_inference_steps in AUTHORS_MILESTONE_INDICES:
        return list(AUTHORS_MILESTONE_INDICES[num_inference_steps])
    n, m = num_inference_steps, num_segments
    return [m - (2 * i * m + n) // (2 * n) for i in range(n)]


def inference_timesteps(
    num_inference_steps: int,
    num_segments: int = 8,
    schedule: Schedule | int = 1000,
    policy: str = "authors",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Inference timesteps t_k - offset, k from ``inference_milestone_indices``: (n,), long for VP
    (offset 1; an int ``schedule`` is a VP T), float for flow (offset 0: t_M = T is pure noise).

    VP, M = 8, T = 1000: 2 -> [999, 499], 3 -> [999, 499, 124], 4 -> [999, 749, 499, 124], 8 -> all
    eight. Flow, shift 1: 2 -> [1000, 500]. Raises ValueError for n outside 1..M.
    """
    ks = inference_milestone_indices(num_inference_steps, num_segments, policy)
    offset = 1 if isinstance(schedule, int) else schedule.inference_offset
    table = milestones(num_segments, schedule)
    values = (table[ks] - offset).tolist()
    return _on_device(tuple(values), table.dtype, torch.device(device))


@functools.lru_cache(maxsize=256)
def _on_device(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small table made on ``device`` once per (values, dtype, device) (a host-to-device copy
    syncs the stream); callers index it and never modify it."""
    return torch.tensor(values, dtype=dtype, device=device)


SHOWN_STEPS = (1, 2, 4, 8)
"""Step counts that sample grids and evaluations show by default (those <= M: ``StudentGrid.shown_steps``)."""


@dataclass(frozen=True)
class StudentGrid:
    """The student's sampling grid, held once per recipe (``--recipes.student.grid.*``).

    Every loss (MLCD's segments, LCD's states, the DMD / GAN / reward predictions, DPO's
    candidates), the sample grids, evaluation, validation and the exported ``TLCMScheduler`` read
    M and q from here, so a student trained on one grid is sampled and shipped on that grid.
    """

    num_milestones: int = 8
    """M: segments of [0, T] (MLCD) and candidate inference timesteps t_k - 1 (the paper: 8)."""
    steps: int = 4
    """q: sampling steps of the student inside training (LCD states, the DMD / GAN / reward
    one-step predictions, DPO candidates; the paper: 4); in 1..M."""
    gamma: float = 1.0
    """gamma of the student's sampler at inference (sample grids, evaluation, tlcm.sample, the
    exported TLCMScheduler): 1 = LCM (fresh noise between steps, the paper), 0 = DDIM, between:
    TCD-style. Training's q-step samples use ``training_gamma``."""
    first_gamma: float | None = None
    """gamma of the sampler's first move (from pure noise at the top timestep) when it differs
    from ``gamma`` (None: ``gamma``). E.g. 1 with gamma 0: fresh noise after the first one-step
    prediction, then deterministic DDIM moves; inference only, as ``gamma``."""
    training_gamma: float = 1.0
    """gamma of the student's q-step samples inside training (LCD states, the re-noised states of
    the DMD / GAN / reward predictions, DPO candidates): 1 = the paper's LCM sampler; lower trains
    the student on the states of the sampler it is shipped with (``gamma``)."""
    backward_simulation: Literal["sample", "chain", "data"] = "sample"
    """States of the DMD / GAN / reward / ADD one-step predictions below the top timestep (training
    only; DMD2's "backward simulation", arXiv 2405.14867 Sec. 4.5): "sample", the finished q-step
    sample re-noised to grid[k] (k per sample); "chain", DMD2's own (its sd_unified_model.py
    ``sample_backward``): the state the student's sampler reaches at grid[k] after k moves from
    fresh noise (k one per micro-batch), 1 + k student calls instead of q + 1; "data", no
    simulation: the micro-batch's real image latents noised to grid[k] (k per sample, the top
    timestep too: ADD's student inputs, arXiv 2311.17042; needs data.images), 1 student call."""

    @property
    def shown_steps(self) -> tuple[int, ...]:
        """The default step counts of sample grids and evaluations: those of ``SHOWN_STEPS`` <= M."""
        return tuple(n for n in SHOWN_STEPS if n <= self.num_milestones)

    def check(self, num_train_timesteps: int = 1000) -> None:
        """ValueError unless 1 <= q <= M <= T (q steps are a subset of the M milestones)."""
        if not 1 <= self.num_milestones <= num_train_timesteps:
            raise ValueError(
                f"num_milestones (M) must be in 1..{num_train_timesteps}, got {self.num_milestones}"
            )
        if not 1 <= self.steps <= self.num_milestones:
            raise ValueError(f"steps (q) must be in 1..{self.num_milestones} (M), got {self.steps}")
        for name in ("gamma", "training_gamma", "first_gamma"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (1: LCM, 0: DDIM), got {getattr(self, name)}")
        if self.backward_simulation not in ("sample", "chain", "data"):
            raise ValueError(
                'backward_simulation must be "sample", "chain" or "data" (real images noised to the '
                f"grid), got {self.backward_simulation!r}"
            )

    def with_sampler(self, gamma: float | None = None, first_gamma: float | None = None) -> StudentGrid:
        """This grid with a command line's sampler (``--gamma`` / ``--first-gamma``): ``gamma``
        sets every move, the first one too unless ``first_gamma`` is given; ``first_gamma`` alone
        sets only the first move. ValueError for values outside [0, 1]."""
        if gamma is None and first_gamma is None:
            return self
        first = first_gamma if first_gamma is not None or gamma is not None else self.first_gamma
        grid = replace(self, gamma=self.gamma if gamma is None else gamma, first_gamma=first)
        grid.check()
        return grid

    def describe_sampler(self) -> str:
        """ "gamma 0.2" or "gamma 0, first move 1" (file names, tables, cards)."""
        first = "" if self.first_gamma is None else f", first move {self.first_gamma:g}"
        return f"gamma {self.gamma:g}{first}"

    def timesteps(
        self,
        num_steps: int | None = None,
        schedule: Schedule | int = 1000,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """The ``num_steps``-step inference timesteps on this grid (default q) of ``schedule`` (an
        int: a VP schedule's T), (n,) long (VP) or float (flow)."""
        n = num_steps or self.steps
        return inference_timesteps(n, self.num_milestones, schedule, device=device)
