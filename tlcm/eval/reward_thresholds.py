"""``python -m tlcm.evaluate reward-thresholds``: where a reward's hinge thresholds sit on a model.

The paper's reward feedback (arXiv 2406.05768 Eq. (11), ``tlcm.losses.preference``, mode "reward")
trains on L = relu(s0 - r(x, c)) + lambda_neg relu(r(x, c_neg) - s_neg) with s0 = 16 and s_neg = 0
on the MPS scale. Those numbers mean nothing on another reward's scale: on a reward whose matched
scores all exceed s0, the first hinge never trains; one whose unrelated scores all exceed s_neg
pushes every sample's unrelated score down. This command samples the teacher (DDIM + CFG) on
prompts, scores each image with its own prompt and with an unrelated one (the reward's
``unrelated``, as training draws it), and prints both distributions' quantiles and the share of
samples on which each hinge of the given thresholds is active, so s0 and s_neg can be set on the
reward's own scale. The student's training-time samples (its one-step predictions) score lower
than these teacher samples: more of them fall under s0.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tlcm.checks import check_counts, check_device, check_out_file
from tlcm.errors import TLCMError
from tlcm.files import write_failed
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
"""The quantiles printed of each score distribution."""


def hinge_shares(matched: torch.Tensor, unrelated: torch.Tensor, s0: float, s_neg: float) -> dict:
    """The share of samples (0..1) on which each hinge is active: r(x, c) < s0 (the first term has
    a gradient) and r(x, c_neg) > s_neg (the second has). ``matched`` / ``unrelated``: (N,)."""
    return {
        "s0": s0,
        "s_neg": s_neg,
        "positive_active": (matched < s0).float().mean().item(),
        "negative_active": (unrelated > s_neg).float().mean().item(),
    }


def quantiles(scores: torch.Tensor) -> dict[str, float]:
    """{"q0": min, "q10", ..., "q100": max} of ``scores`` (N,)."""
    values = torch.quantile(scores.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return {f"q{round(q * 100)}": v for q, v in zip(QUANTILES, values.tolist(), strict=True)}


def reward_thresholds(
    reward: str = "digit",
    clip_folder: str = "",
    head_file: str = "",
    s0: float | None = None,
    s_neg: float | None = None,
    model: Path = MINIATURE_SD,
    prompts: Path | None = None,
    samples: int = 64,
    steps: int = 25,
    guidance_scale: float = TEACHER_GUIDANCE_SCALE,
    batch_size: int = 8,
    seed: int = 0,
    device: str | None = None,
    out: Path | None = None,
) -> dict:
    """Score the teacher's samples with a reward, matched and unrelated prompts: the quantiles of
    both and the share of samples on which the hinge thresholds --s0 / --s-neg are active.

    Args:
        reward: The reward model (tlcm.rewards: digit, clip, pickscore, aesthetic, or a registered one).
        clip_folder: Local transformers CLIP folder of the clip / pickscore / aesthetic rewards.
        head_file: The aesthetic reward's MLP head weights.
        s0: The hinge threshold on the matched reward to check (default: the reward's own, what
            PreferenceConfig's None trains with: 16, the paper's MPS value, for the CLIP-family
            rewards; log 0.99 for digit).
        s_neg: The hinge threshold on the unrelated reward to check (default: the reward's own: the
            paper's 0; log 0.01 for digit).
        model: The teacher's diffusers folder.
        prompts: Prompt file (.txt / .jsonl; default: the miniature's 40 prompts), cycled to --samples.
        samples: Images to sample and score.
        steps: Teacher DDIM steps.
        guidance_scale: Teacher CFG scale w (use your recipe's: the SDXL preset trains at 8).
        batch_size: Images per teacher batch.
        seed: Seed of the noise and of the unrelated prompts' draw.
        device: Torch device (default: cuda when torch sees a GPU, else cpu).
        out: Also write the numbers to this .json file.
    """
    from tlcm.data.prompts import load_prompts
    from tlcm.diffusion.denoiser import Guided
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
    from tlcm.losses.preference import PreferenceConfig, unrelated_prompts
    from tlcm.models.base import BaseModel, frozen_dtype
    from tlcm.rewards import REWARDS, RewardSpec, build_reward

    check_counts({"--samples": samples, "--steps": steps, "--batch-size": batch_size})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device, "--device")
    if reward not in REWARDS:
        raise TLCMError(f"--reward {reward!r} is not a reward: use one of {', '.join(sorted(REWARDS))}")
    try:  # its weights, before the teacher loads: the loss config's own check
        PreferenceConfig(mode="reward", reward=reward, clip_folder=clip_folder, head_file=head_file).validate(
            1000, StudentGrid()
        )
    except ValueError as err:
        raise TLCMError(
            "--" + str(err).replace("clip_folder", "clip-folder").replace("head_file", "head-file")
        ) from err
    if out is not None:
        check_out_file(out, "--out", (".json",))
    texts = load_prompts(prompts, "--prompts")
    texts = [texts[i % len(texts)] for i in range(samples)]
    base = BaseModel.load(model, device, frozen_dtype("auto", device, autocast=True), "--model")
    scorer = build_reward(reward, RewardSpec(clip_folder, head_file), base.device)
    s0 = scorer.s0 if s0 is None else s0  # as Preference.thresholds reads a config's None
    s_neg = scorer.s_neg if s_neg is None else s_neg
    host = torch.Generator().manual_seed(seed)
    matched, unrelated = [], []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"sampling and scoring {samples} teacher images", total=samples)
        for start in range(0, samples, batch_size):
            batch = texts[start : start + batch_size]
            cond, uncond = base.encode(batch)
            noise = torch.randn((len(batch), *base.latent_shape), generator=host).to(base.device)
            teacher = Guided(base.denoiser(), guidance_scale, uncond[:1])
            with base.autocast():
                latents = sample_latents(
                    teacher, base.schedule, cond, noise, teacher_timesteps(steps, base.schedule), 0.0
                )
                images = base.decode(latents).float()
            features = scorer.embed(images)
            matched.append(scorer.score(features, batch).float().cpu())
            others = unrelated_prompts(scorer, batch, texts, host)  # as training draws them
            unrelated.append(scorer.score(features, others).float().cpu())
            progress.advance(task, len(batch))
    r_pos, r_neg = torch.cat(matched), torch.cat(unrelated)
    result = {
        "reward": reward,
        "model": str(model),
        "samples": samples,
        "steps": steps,
        "guidance_scale": guidance_scale,
        "matched": quantiles(r_pos),
        "unrelated": quantiles(r_neg),
        **hinge_shares(r_pos, r_neg, s0, s_neg),
    }
    table = Table(
        "quantile", "matched prompt", "unrelated prompt", title=f"{reward} of the teacher's samples"
    )
    for q, pos, neg in zip(QUANTILES, result["matched"].values(), result["unrelated"].values(), strict=True):
        table.add_row(f"{q:.0%}", f"{pos:.4g}", f"{neg:.4g}")
    console = Console()
    console.print(table)
    negative = (
        f"s_neg = {s_neg:g}: the unrelated hinge relu(r_neg - s_neg) on {result['negative_active']:.0%}"
        if scorer.reads_prompts
        else f"{reward} scores the image alone (r_neg = r), so reward feedback drops its unrelated hinge"
    )
    console.print(
        f"s0 = {s0:g}: the matched hinge relu(s0 - r) is active on {result['positive_active']:.0%} of "
        f"these samples; {negative}. At 0 % a term never trains; at 100 % it pushes every sample. "
        "Set --recipes.phases.<phase>.losses.preference.s0 / .s-neg on this scale (the student's "
        "training samples score lower than the teacher's)."
    )
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as err:
            raise write_failed(f"the thresholds to {out}", err) from err
        console.print(f"wrote {out}")
    return result
