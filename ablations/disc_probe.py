"""Can a discriminator tell the miniature's real digits from a trained student's samples?
``python -m ablations.disc_probe --run runs/zoo/unet/s0/dmd2 [--miniature unet] [--ranks 0 8]
[--lrs 2e-4 1e-3] [--noise-levels 0 999] [--steps 300]``.

The GAN's own discriminator (``GANConfig(backbone="teacher", disc_rank=r, disc_lr=lr,
noise_level=n).build(student)``: the teacher-feature trunk, its heads, its optimizer) trains on
L_D (non-saturating) against a FIXED generator: the real side is ``--real`` of the miniature's real
digits (VAE-encoded, shuffled), the fake side the run's student's q-step samples (its own sampler,
q = 1 and 4) for the same captions. Both sides are re-noised to tau ~ U[clean, n] as the GAN does.
After every third of ``--steps`` updates (batch 16), D's balanced accuracy (the mean of the real
side's and the fake side's) is measured on the held-out last ``--held-out`` pairs, at fixed draws.

What it answers: whether D's features and optimiser CAN separate the sides at the GAN's budget.
It does not replay the game (the generator does not move); a row near 0.5 here means the GAN in
training cannot separate either. With n > 0 some inputs are so noisy that no D separates them,
so the attainable accuracy is below 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import torch
import tyro

from tlcm.checks import check_counts
from tlcm.data.images import encode_images
from tlcm.diffusion.sampling import sample_latents
from tlcm.errors import TLCMError, run_cli
from tlcm.losses.gan import GANConfig, accuracies, discriminator_loss, renoise_timesteps
from tlcm.models.base import BaseModel
from tlcm.models.student import Student
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3
from tlcm.toy.data import real_pairs

MINIATURES = {"unet": MINIATURE_SD, "flow": MINIATURE_SD3}

INTRO = """# Can the discriminator separate? (``python -m ablations.disc_probe``)

The GAN's teacher-feature discriminator trained on L_D against a fixed student (real: the
miniature's real digits; fake: the student's q-step samples, same captions), both sides re-noised
to tau ~ U[clean, noise_level]; balanced accuracy (0.5: chance) on held-out pairs. disc_rank 0 is
the frozen teacher trunk with 1x1 heads; r > 0 gives the trunk its own rank-r LoRA, trained with
the heads. With noise_level > 0 the attainable accuracy is below 1 (very noisy inputs cannot be
told apart). Sections are appended by each command (module docstring: ablations/disc_probe.py).
"""


@dataclass
class Args:
    """Train the GAN's discriminator against a fixed student and report its held-out accuracy."""

    run: Path
    """A tlcm run folder with a LoRA student (e.g. runs/zoo/unet/s0/dmd2)."""
    miniature: str = "unet"
    """The run's base model: unet (MINIATURE_SD) or flow (MINIATURE_SD3)."""
    ranks: tuple[int, ...] = (0, 8)
    """disc_rank values (0: the frozen teacher trunk, heads only)."""
    lrs: tuple[float, ...] = (2e-4, 1e-3)
    """disc_lr values."""
    noise_levels: tuple[int, ...] = (0, 999)
    """noise_level values (0: clean inputs)."""
    steps: int = 300
    """D updates per row (batch 16)."""
    disc_betas: tuple[float, float] = (0.0, 0.99)
    """AdamW betas of D (GANConfig's default; DMD2: 0.9 0.999)."""
    disc_weight_decay: float = 0.0
    """AdamW weight decay of D (DMD2: 0.01)."""
    disc_max_grad_norm: float = 1.0
    """Gradient clip of D's updates (DMD2: 10)."""
    qs: tuple[int, ...] = (1, 4)
    """Student step counts whose samples are the fake side."""
    real: int = 2560
    """Real digits (and as many student samples), shuffled; the last ``held_out`` are held out."""
    held_out: int = 512
    """Pairs D never trains on, where its accuracy is measured."""
    out: Path = Path("docs/disc-probe.md")
    """Markdown table (appended per run; a JSON copy beside it)."""


def samples(base: BaseModel, student: Student, cond, q: int, g: torch.Generator) -> torch.Tensor:
    """The student's q-step samples (N, C, h, w) for conditioning ``cond`` (N), its own sampler."""
    grid = student.config.grid
    timesteps = grid.timesteps(q, base.schedule).tolist()
    out = []
    with torch.no_grad():
        for i in range(0, len(cond), 256):
            c = cond[i : i + 256]
            noise = torch.randn(len(c), *base.latent_shape, generator=g)
            out.append(
                sample_latents(
                    student.denoiser(),
                    base.schedule,
                    c,
                    noise,
                    timesteps,
                    grid.gamma,
                    generator=g,
                    first_gamma=grid.first_gamma,
                )
            )
    return torch.cat(out)


def probe(args: Args, base, student, real, fake, cond, rank: int, lr: float, noise: int) -> list[float]:
    """Balanced held-out accuracy after each third of ``args.steps`` updates of one D."""
    config = GANConfig(
        backbone="teacher",
        input="latent",
        disc_rank=rank,
        disc_lr=lr,
        noise_level=noise,
        disc_betas=args.disc_betas,
        disc_weight_decay=args.disc_weight_decay,
        disc_max_grad_norm=args.disc_max_grad_norm,
    )
    gan = config.build(student)
    d, schedule, n_train = gan.discriminator, base.schedule, len(real) - args.held_out

    def side(z: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((len(z),), float(schedule.clean_timestep))
        if noise:  # the GAN's uniform tau_distribution
            t = renoise_timesteps(schedule, torch.rand(len(z), generator=g), noise)
            z = schedule.add_noise(z, torch.randn(z.shape, generator=g), t)
        return z, t

    def held_out() -> float:
        idx = torch.arange(n_train, len(real))
        with torch.no_grad():
            zr, tr = side(real[idx], torch.Generator().manual_seed(9))
            zf, tf = side(fake[idx], torch.Generator().manual_seed(9))
            return accuracies(d(zr, tr, cond[idx]), d(zf, tf, cond[idx])).mean().item()

    def d_loss(batch) -> torch.Tensor:  # L_D of one (real, tau, fake, tau, cond) batch
        zr, tr, zf, tf, c = batch
        return discriminator_loss(d(zr, tr, c), d(zf, tf, c), "nonsaturating").mean()

    g, scores = torch.Generator().manual_seed(2), []
    thirds = {max(1, args.steps * k // 3) for k in (1, 2, 3)}  # updates after 1/3, 2/3 and all
    for step in range(args.steps):
        idx = torch.randint(0, n_train, (16,), generator=g)
        (zr, tr), (zf, tf) = side(real[idx], g), side(fake[idx], g)
        gan.optimizer.step(d_loss, [(zr, tr, zf, tf, cond[idx])])
        if step + 1 in thirds:
            scores.append(held_out())
    return scores


def check_args(args: Args) -> None:
    """Refuse, before anything loads, counts the probe cannot use: fewer than 3 D updates (the
    table's three columns), no held-out pair or none to train on, an unknown miniature."""
    check_counts({"--steps": args.steps, "--real": args.real, "--held-out": args.held_out})
    check_counts({"--qs": min(args.qs, default=1)})
    check_counts({"--ranks": min(args.ranks, default=0)}, minimum=0)
    if args.steps < 3:
        raise TLCMError(f"--steps must be >= 3 (accuracy after 1/3, 2/3 and 3/3 of them), got {args.steps}")
    if args.held_out >= args.real:
        raise TLCMError(
            f"--held-out ({args.held_out}) must be below --real ({args.real}): D needs pairs to train on"
        )
    if args.miniature not in MINIATURES:
        raise TLCMError(f"--miniature must be one of {', '.join(MINIATURES)}, got {args.miniature!r}")


def main(args: Args) -> None:
    check_args(args)
    torch.manual_seed(0)
    base = BaseModel.load(MINIATURES[args.miniature])
    student = Student.from_run(base, args.run)
    x, texts, _ = real_pairs(args.real, seed=1)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(5))  # ink-balanced held-out
    x, texts = x[order], [texts[i] for i in order.tolist()]
    g = torch.Generator().manual_seed(0)
    real = encode_images(base, x, g)
    with torch.no_grad():
        parts = [base.encode(texts[i : i + 256])[0] for i in range(0, len(texts), 256)]
    cond = parts[0]
    for part in parts[1:]:
        cond = cond.cat(part)
    rows = []
    for q in args.qs:
        fake = samples(base, student, cond, q, g)
        for rank, lr, noise in product(args.ranks, args.lrs, args.noise_levels):
            start = time.time()
            scores = probe(args, base, student, real, fake, cond, rank, lr, noise)
            row = {"q": q, "disc_rank": rank, "disc_lr": lr, "noise_level": noise, "accuracy": scores}
            rows.append(row)
            print(
                f"q={q} rank={rank} lr={lr:g} noise={noise}: {scores} ({time.time() - start:.0f} s)",
                flush=True,
            )
    header = (
        f"\n## {args.run} ({args.miniature}), {args.steps} D updates, batch 16, held-out {args.held_out}, "
        f"AdamW betas {args.disc_betas}, weight decay {args.disc_weight_decay:g}, "
        f"clip {args.disc_max_grad_norm:g}\n\n"
        "| student steps q | disc_rank | disc_lr | noise_level | balanced accuracy after 1/3, 2/3, 3/3 |\n"
        "|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['q']} | {r['disc_rank']} | {r['disc_lr']:g} | {r['noise_level']} | "
        + " / ".join(f"{a:.3f}" for a in r["accuracy"])
        + " |"
        for r in rows
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text(INTRO)
    with args.out.open("a") as f:
        f.write(header + "\n".join(lines) + "\n")
    with args.out.with_suffix(".json").open("a") as f:
        f.write(json.dumps({"run": str(args.run), "miniature": args.miniature, "rows": rows}) + "\n")
    print(f"appended to {args.out} (and {args.out.with_suffix('.json')})")


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args, prog="python -m ablations.disc_probe")))
