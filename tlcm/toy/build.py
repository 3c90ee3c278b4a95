"""Build the miniature text-to-image pipeline from a seed: ``python -m tlcm.toy.build``.

Trains, on scikit-learn's handwritten digits in two inks (white on black and black on white,
``--inks``; ``--placements N``: each placed N times at random sizes and positions,
tlcm.toy.data.place) and on 2 CPU cores, in this order:
1. the digit classifier of the toy metrics, and the reference feature statistics (real images);
2. a tiny AutoencoderKL (32x32x3 images <-> 8x8x4 latents) and its latent scaling factor;
3. a byte-level CLIPTokenizer for the prompt vocabulary and a tiny CLIPTextModel;
4. a tiny UNet2DConditionModel jointly with that text encoder (frozen afterwards): eps-prediction,
   SD's scaled_linear betas, 10% prompt dropout (the empty prompt, as StableDiffusionPipeline's
   unconditional input), EMA weights.
Writes a standard StableDiffusionPipeline folder (safetensors) plus the metric assets.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import CLIPTextConfig, CLIPTextModel

from tlcm.diffusion.schedule import Schedule, VPSchedule
from tlcm.files import honour_umask, save_tensors
from tlcm.toy.assets import ASSET_DIR
from tlcm.toy.classifier import DigitClassifier
from tlcm.toy.data import INKS, PLACE_SIZE, PLACEMENTS, all_prompts, augment, load_digit_images
from tlcm.toy.metrics import feature_statistics
from tlcm.toy.tokenizer import build_clip_tokenizer

console = Console()
BATCH = 64
"""UNet training batch size."""
N_DIGITS = 1797
"""UCI digits; the real images are their placements (tlcm.toy.data.load_digit_images)."""


def progress_bar() -> Progress:
    """The toy builds' progress bar (this module's and build_flow.py's)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
    )


def train_classifier(
    x, y, steps: int, g: torch.Generator, jitter: float = 1.0
) -> tuple[DigitClassifier, float]:
    """Train on the placements of 1500 digits with jitter; return it and its accuracy on the
    placements of the other 297 (images i and i + 1797 k are the same digit)."""
    base = torch.randperm(N_DIGITS, generator=g)
    copies = torch.arange(0, len(x), N_DIGITS)
    tr = (base[:1500, None] + copies).flatten()
    te = (base[1500:, None] + copies).flatten()
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    with progress_bar() as bar:
        task = bar.add_task("classifier", total=steps, info="")
        for _ in range(steps):
            idx = tr[torch.randint(len(tr), (BATCH,), generator=g)]
            loss = F.cross_entropy(model(augment(x[idx], g, jitter)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(task, advance=1, info=f"loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        acc = (model(x[te]).argmax(1) == y[te]).float().mean().item()
    return model, acc


def train_vae(x, steps: int, g: torch.Generator, jitter: float = 1.0) -> AutoencoderKL:
    """MSE reconstruction + 1e-5 KL on augmented digits; scaling_factor = 1 / std(latents)."""
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    )
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with progress_bar() as bar:
        task = bar.add_task("vae", total=steps, info="")
        for _ in range(steps):
            idx = torch.randint(len(x), (32,), generator=g)
            batch = augment(x[idx], g, jitter)
            post = vae.encode(batch).latent_dist
            recon = vae.decode(post.sample(generator=g)).sample
            mse = F.mse_loss(recon, batch)
            loss = mse + 1e-5 * post.kl().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(task, advance=1, info=f"mse {mse.item():.4f}")
    vae.eval()
    std = encode_all(vae, x)[0].std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


@torch.no_grad()
def encode_all(vae: AutoencoderKL, x: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std (N, 4, 8, 8) of images (N, 3, 32, 32), in chunks (bounded memory)."""
    posts = [vae.encode(x[i : i + chunk]).latent_dist for i in range(0, len(x), chunk)]
    return torch.cat([p.mean for p in posts]), torch.cat([p.std for p in posts])


def text_encoder_config(tokenizer, positions: int) -> CLIPTextConfig:
    """The miniature builds' tiny CLIP text encoder: 2 layers, 64 wide, 4 heads, ``positions``
    token positions, a 64-d projection (used by CLIPTextModelWithProjection)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=64,
    )


def build_text_encoder(tokenizer, seed: int) -> CLIPTextModel:
    """A tiny CLIPTextModel with SD's 77 positions (random init; trained with the UNet, then frozen)."""
    torch.manual_seed(seed)
    return CLIPTextModel(text_encoder_config(tokenizer, 77)).eval()


def train_unet(latents_mean, latents_std, labels, text_ids, text_encoder, steps, g, min_snr_gamma=0.0):
    """eps-prediction with SD's scaled_linear schedule and 10% prompt dropout, the tiny text encoder
    trained jointly (then frozen: a random frozen encoder left "seven" and "three" 7% apart and the
    UNet barely read the digit). ``text_ids`` (P + 1, 77): the 10 x K prompts by digit, then "".
    ``min_snr_gamma`` > 0 weights each sample's eps MSE by min(SNR_t, gamma) / SNR_t (Min-SNR,
    Hang et al. 2023): less weight on the low-noise steps, more on the noisy ones where the prompt
    decides the image. Returns the EMA (decay 0.999) UNet and text encoder."""
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    model = torch.nn.ModuleDict({"unet": unet, "text": text_encoder.train().requires_grad_(True)})
    ema = copy.deepcopy(model).requires_grad_(False)
    noise_sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    acp = noise_sched.alphas_cumprod
    schedule = VPSchedule(acp)
    snr = acp / (1 - acp)
    weight = snr.clamp(max=min_snr_gamma) / snr if min_snr_gamma > 0 else torch.ones_like(snr)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    warm = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + torch.cos(torch.tensor(s / steps * 3.14159)).item()),
    )
    n_templates = (len(text_ids) - 1) // 10
    with progress_bar() as bar:
        task = bar.add_task("unet", total=steps, info="")
        for step in range(steps):
            emb = text_encoder(text_ids)[0]
            prompt_emb, null_emb = emb[:-1].view(10, n_templates, *emb.shape[1:]), emb[-1:]
            idx = torch.randint(len(labels), (BATCH,), generator=g)
            x0 = latents_mean[idx] + latents_std[idx] * torch.randn(latents_mean[idx].shape, generator=g)
            tmpl = torch.randint(n_templates, (BATCH,), generator=g)
            cond = prompt_emb[labels[idx], tmpl]
            drop = torch.rand(BATCH, generator=g) < 0.1
            cond = torch.where(drop[:, None, None], null_emb.expand_as(cond), cond)
            t = torch.randint(1000, (BATCH,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            loss = denoising_loss(schedule, partial(unet_prediction, unet, cond=cond), x0, eps, t, weight[t])
            teacher_step(model, ema, opt, sched, loss, step)
            bar.update(task, advance=1, info=f"loss {loss.item():.4f}")
    return ema["unet"].eval(), ema["text"].eval()


def unet_prediction(
    unet: UNet2DConditionModel, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor
) -> torch.Tensor:
    """The UNet's eps at x_t (B, C, h, w), timesteps t (B,) and prompt embeddings ``cond`` (B, L, D)."""
    return unet(x_t, t, encoder_hidden_states=cond).sample


def denoising_loss(
    schedule: Schedule,
    predict,
    x0: torch.Tensor,
    eps: torch.Tensor,
    t: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The miniature teachers' training loss, scalar: x_t = alpha(t) x0 + sigma(t) eps
    (``Schedule.add_noise``), then mean_b weight_b * mean_{c,h,w} (predict(x_t, t) - target)^2 with
    target = ``Schedule.model_output_from(x0, eps, t)``: eps on the VP (eps-prediction) schedule
    (DDPM, Ho et al. 2020, arXiv 2006.11239 eq. 14, "L_simple"), v = eps - x0 on the flow schedule
    (rectified flow, SD3, Esser et al. 2024, arXiv 2403.03206 eq. 1-3 with the v target).
    x0, eps: (B, C, h, w); t: (B,) timesteps of ``schedule``; ``predict(x_t, t)`` -> (B, C, h, w);
    weight: (B,) per-sample weights (Min-SNR) or None (1)."""
    x_t = schedule.add_noise(x0, eps, t)
    err = (predict(x_t, t) - schedule.model_output_from(x0, eps, t)).square().mean((1, 2, 3))
    return (err if weight is None else weight * err).mean()


def teacher_step(model, ema, opt, sched, loss: torch.Tensor, step: int) -> None:
    """One teacher training step: backward, clip at 1, AdamW + schedule, EMA (decay ramping up to
    0.999) of ``model`` into ``ema``."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    decay = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(p, 1 - decay)


def parameter_counts(**modules: torch.nn.Module) -> dict[str, int]:
    """Parameters per named module (build_info.json)."""
    return {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tlcm.toy.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=ASSET_DIR, help="asset folder to (over)write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier-steps", type=int, default=2000)
    parser.add_argument("--vae-steps", type=int, default=1000)
    parser.add_argument("--unet-steps", type=int, default=7000)
    parser.add_argument(
        "--placements", type=int, default=PLACEMENTS, help="placements per digit (0: full-canvas digits)"
    )
    parser.add_argument(
        "--place-size", type=float, nargs=2, default=PLACE_SIZE, help="size range of a placed digit"
    )
    parser.add_argument("--min-snr-gamma", type=float, default=0.0, help="Min-SNR loss weighting (0: off)")
    parser.add_argument("--inks", type=int, default=INKS, choices=(1, 2), help="2: also black on white")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    start = time.time()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_digit_images(args.placements, inks=args.inks, size=tuple(args.place_size))
    jitter = 1.0 if args.placements == 0 else 0.5  # placed digits already vary in size and position

    classifier, acc = train_classifier(x, y, args.classifier_steps, g, jitter)
    with torch.no_grad():
        mu, sigma = feature_statistics(classifier.features(x))
    save_tensors(
        {k: v.contiguous() for k, v in classifier.state_dict().items()}, out / "digit_classifier.safetensors"
    )
    save_tensors({"mu": mu, "sigma": sigma}, out / "reference_stats.safetensors")
    console.print(f"classifier held-out accuracy {acc:.4f}")

    vae = train_vae(x, args.vae_steps, g, jitter)
    latent_mean, latent_std = encode_all(vae, x)
    with torch.no_grad():
        recon_mse = F.mse_loss(vae.decode(latent_mean[:2048]).sample, x[:2048]).item()
    sf = vae.config.scaling_factor
    console.print(f"vae recon mse {recon_mse:.5f}, scaling_factor {sf:.4f}")

    tokenizer = build_clip_tokenizer(all_prompts() + [""], out / "miniature-sd" / "tokenizer")
    text_encoder = build_text_encoder(tokenizer, args.seed)
    prompts = all_prompts()
    text_ids = tokenizer(
        prompts + [""], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    )
    unet, text_encoder = train_unet(
        latent_mean * sf,
        latent_std * sf,
        y,
        text_ids.input_ids,
        text_encoder,
        args.unet_steps,
        g,
        args.min_snr_gamma,
    )

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "miniature-sd", safe_serialization=True)
    honour_umask(out / "miniature-sd")  # its weights: 0600 as diffusers writes them
    info = {
        "seed": args.seed,
        "placements": args.placements,
        "place_size": list(args.place_size),
        "inks": args.inks,
        "classifier_heldout_accuracy": acc,
        "vae_recon_mse": recon_mse,
        "scaling_factor": sf,
        "min_snr_gamma": args.min_snr_gamma,
        "steps": {"classifier": args.classifier_steps, "vae": args.vae_steps, "unet": args.unet_steps},
        "build_seconds": round(time.time() - start, 1),
        "parameters": parameter_counts(unet=unet, vae=vae, text_encoder=text_encoder, classifier=classifier),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    console.print(info)


if __name__ == "__main__":
    main()
