"""Build the flow-matching miniature (SD3 layout) from a seed: ``python -m tlcm.toy.build_flow``.

The rectified-flow sibling of ``python -m tlcm.toy.build`` (miniature-sd). Same data (the UCI
digits in two inks, tlcm.toy.data.load_digit_images with the placements / inks / place_size that
assets/build_info.json records for miniature-sd) and the SAME trained VAE: miniature-sd/vae is
loaded as is, with ``shift_factor = 0.0`` registered (StableDiffusion3Pipeline decodes
``latents / scaling_factor + shift_factor``; the scaling factor is miniature-sd's). The digit
classifier and reference statistics of the toy metrics (assets/) are reused, not rebuilt.

On 1 CPU thread (``--threads``), it trains:
1. two tiny CLIPTextModelWithProjection (hidden 64, 2 layers, 4 heads, 16 positions, projection
   64; random init) for ``text_encoder`` / ``text_encoder_2``, with miniature-sd's byte-level CLIP
   tokenizer saved with ``model_max_length = 16`` as ``tokenizer`` / ``tokenizer_2`` (every prompt
   is <= 8 tokens with BOS/EOS); no T5 (``text_encoder_3 = tokenizer_3 = None``);
2. a tiny SD3Transformer2DModel (8x8x4 latents, patch 1; MMDiT blocks with RMS q/k norm) JOINTLY
   with both text encoders (frozen afterwards: as for miniature-sd, a random frozen encoder leaves
   the digits hard to tell apart), by rectified flow: sigma ~ logit-normal(0, 1) (SD3's choice;
   ``--sigma-sampling uniform``), x_t = (1 - sigma) x0 + sigma eps, timestep sigma * 1000, target
   v = eps - x0, MSE; 10% prompt dropout to the empty prompt "" (the pipeline's default negative
   prompt for CFG); AdamW 1e-3, 200 warm-up steps + cosine, grad clip 1, EMA 0.999. x0 are VAE
   latents: posterior mean * sf + posterior std * sf * noise, drawn per batch (as build.py does).

Text conditioning goes through the pipeline's OWN ``StableDiffusion3Pipeline.encode_prompt`` (not
under no_grad in diffusers 0.42, so the text encoders train through it): penultimate hidden
states of both CLIPs concatenated (16 x 128), then zero "T5" tokens of length
``max_sequence_length`` (``--max-sequence-length``, default 8; the prompt sequence is 16 + 8), and
the two pooled projections concatenated (128). The teacher thus sees exactly what plain diffusers
gives it at inference, PROVIDED the user passes the same ``max_sequence_length`` (recorded in
build_info.json), e.g.::

    pipe = StableDiffusion3Pipeline.from_pretrained(
        "tlcm/toy/assets/miniature-sd3", text_encoder_3=None, tokenizer_3=None
    )  # T5 dropped: diffusers requires the two None to be passed explicitly
    pipe("a handwritten digit seven", height=32, width=32, max_sequence_length=8,
         num_inference_steps=25, guidance_scale=2.0)

Writes a standard StableDiffusion3Pipeline folder (safetensors) with a
FlowMatchEulerDiscreteScheduler(shift=``--shift``) and a build_info.json. After saving, the folder
is reloaded and its ``encode_prompt`` checked against the trained encoders, and one prompt sampled.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from functools import partial
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from tlcm.diffusion.schedule import FlowSchedule
from tlcm.files import honour_umask
from tlcm.toy.assets import ASSET_DIR, MINIATURE_SD
from tlcm.toy.build import (
    console,
    denoising_loss,
    encode_all,
    parameter_counts,
    progress_bar,
    teacher_step,
    text_encoder_config,
)
from tlcm.toy.data import all_prompts, load_digit_images

BATCH = 64
"""Transformer training batch size."""
TOKENS = 16
"""CLIP positions (tokenizer model_max_length and text encoder max_position_embeddings)."""
MAX_SEQUENCE_LENGTH = 8
"""Zero "T5" tokens appended by encode_prompt (text_encoder_3 is None): pass it to the pipeline."""
DEFAULT_OUT = ASSET_DIR / "miniature-sd3"


def load_tokenizer() -> CLIPTokenizer:
    """miniature-sd's byte-level CLIP tokenizer, cut to 16 positions (prompts are <= 8 tokens)."""
    tok = CLIPTokenizer.from_pretrained(MINIATURE_SD / "tokenizer", model_max_length=TOKENS)
    longest = max(len(ids) for ids in tok(all_prompts() + [""]).input_ids)
    assert longest <= 8, f"a prompt has {longest} tokens (> 8)"
    return tok


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    """A tiny CLIPTextModelWithProjection (random init; trained with the transformer, then frozen)."""
    return CLIPTextModelWithProjection(text_encoder_config(tokenizer, TOKENS)).eval()


def build_transformer(layers: int, heads: int, head_dim: int) -> SD3Transformer2DModel:
    """A tiny MMDiT over 8x8x4 latents (patch 1: 64 image tokens), inner dim heads * head_dim."""
    return SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=128,  # 64 + 64: the two CLIPs' hidden states side by side
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=128,  # 64 + 64: the two CLIPs' pooled projections
        pos_embed_max_size=8,
        qk_norm="rms_norm",
    )


def encode(pipe: StableDiffusion3Pipeline, prompts: list[str], max_sequence_length: int):
    """(prompt_embeds (N, 16 + msl, 128), pooled (N, 128)) by the pipeline's own encode_prompt."""
    emb, _, pooled, _ = pipe.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        prompt_3=None,
        device=torch.device("cpu"),
        do_classifier_free_guidance=False,
        max_sequence_length=max_sequence_length,
    )
    return emb, pooled


def sample_sigma(n: int, how: str, g: torch.Generator) -> torch.Tensor:
    """Training noise levels in (0, 1): logit-normal(0, 1) (SD3) or uniform."""
    if how == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=g))
    return torch.rand(n, generator=g)


def flow_prediction(
    transformer: SD3Transformer2DModel,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    pooled: torch.Tensor,
) -> torch.Tensor:
    """The transformer's velocity at x_t (B, C, h, w) and flow timesteps t = sigma T (B,), prompt
    embeddings ``cond`` (B, L, D) and ``pooled`` (B, P): what diffusers' SD3 pipeline feeds it."""
    out = transformer(hidden_states=x_t, timestep=t, encoder_hidden_states=cond, pooled_projections=pooled)
    return out.sample


def train_transformer(pipe, latents_mean, latents_std, labels, steps, g, max_sequence_length, sigma_sampling):
    """Rectified flow (v = eps - x0) with the two text encoders trained jointly through
    ``pipe.encode_prompt``; returns the EMA (0.999) modules and the last 100 steps' mean loss."""
    prompts = all_prompts() + [""]
    n_templates = (len(prompts) - 1) // 10
    model = torch.nn.ModuleDict(
        {"transformer": pipe.transformer, "text": pipe.text_encoder, "text_2": pipe.text_encoder_2}
    )
    model.train().requires_grad_(True)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    warm = 200
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    schedule = FlowSchedule()  # training noise: x_t = (1 - sigma) x0 + sigma eps, sigma = t / T (no shift)
    losses: list[float] = []
    log_every = max(1, steps // 40)
    start = time.time()
    with progress_bar() as bar:
        task = bar.add_task("transformer", total=steps, info="")
        for step in range(steps):
            emb, pooled = encode(pipe, prompts, max_sequence_length)
            prompt_emb = emb[:-1].view(10, n_templates, *emb.shape[1:])
            prompt_pooled = pooled[:-1].view(10, n_templates, -1)
            idx = torch.randint(len(labels), (BATCH,), generator=g)
            x0 = latents_mean[idx] + latents_std[idx] * torch.randn(latents_mean[idx].shape, generator=g)
            tmpl = torch.randint(n_templates, (BATCH,), generator=g)
            cond, cond_pooled = prompt_emb[labels[idx], tmpl], prompt_pooled[labels[idx], tmpl]
            drop = torch.rand(BATCH, generator=g) < 0.1
            cond = torch.where(drop[:, None, None], emb[-1:].expand_as(cond), cond)
            cond_pooled = torch.where(drop[:, None], pooled[-1:].expand_as(cond_pooled), cond_pooled)
            sigma = sample_sigma(BATCH, sigma_sampling, g)
            eps = torch.randn(x0.shape, generator=g)
            predict = partial(flow_prediction, pipe.transformer, cond=cond, pooled=cond_pooled)
            loss = denoising_loss(schedule, predict, x0, eps, sigma * schedule.num_train_timesteps)
            teacher_step(model, ema, opt, sched, loss, step)
            losses.append(loss.item())
            bar.update(task, advance=1, info=f"loss {loss.item():.4f}")
            if not console.is_terminal and ((step + 1) % log_every == 0 or step + 1 == steps):
                el = time.time() - start
                console.print(
                    f"step {step + 1}/{steps} loss(avg100) {sum(losses[-100:]) / len(losses[-100:]):.4f}"
                    f" {el / (step + 1):.3f} s/step, eta {el / (step + 1) * (steps - step - 1) / 60:.1f} min"
                )
    final = sum(losses[-100:]) / len(losses[-100:])
    return ema["transformer"].eval(), ema["text"].eval(), ema["text_2"].eval(), final


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tlcm.toy.build_flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pipeline folder to (over)write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6000, help="transformer training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--layers", type=int, default=4, help="MMDiT blocks")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--head-dim", type=int, default=16, help="channels per head")
    parser.add_argument("--max-sequence-length", type=int, default=MAX_SEQUENCE_LENGTH)
    parser.add_argument("--sigma-sampling", choices=("logit_normal", "uniform"), default="logit_normal")
    parser.add_argument("--shift", type=float, default=1.0, help="FlowMatchEulerDiscreteScheduler shift")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    start = time.time()
    out: Path = args.out
    base_info = json.loads((ASSET_DIR / "build_info.json").read_text())
    data = {
        "placements": base_info["placements"],
        "inks": base_info["inks"],
        "size": tuple(base_info["place_size"]),
    }
    x, y = load_digit_images(**data)

    vae = AutoencoderKL.from_pretrained(MINIATURE_SD / "vae").eval().requires_grad_(False)
    vae.register_to_config(shift_factor=0.0)
    sf = vae.config.scaling_factor
    latent_mean, latent_std = encode_all(vae, x)

    tokenizer = load_tokenizer()
    tokenizer_2 = copy.deepcopy(tokenizer)
    text_encoder, text_encoder_2 = build_text_encoder(tokenizer), build_text_encoder(tokenizer_2)
    transformer = build_transformer(args.layers, args.heads, args.head_dim)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=args.shift)

    def pipeline(transformer, text_encoder, text_encoder_2) -> StableDiffusion3Pipeline:
        return StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2,
            text_encoder_3=None,
            tokenizer_3=None,
        )

    pipe = pipeline(transformer, text_encoder, text_encoder_2)
    pipe.set_progress_bar_config(disable=True)
    console.print(
        f"data {tuple(x.shape)}, scaling_factor {sf:.4f}, transformer "
        f"{sum(p.numel() for p in transformer.parameters())} parameters"
    )
    transformer, text_encoder, text_encoder_2, final_loss = train_transformer(
        pipe,
        latent_mean * sf,
        latent_std * sf,
        y,
        args.steps,
        g,
        args.max_sequence_length,
        args.sigma_sampling,
    )
    pipe = pipeline(transformer, text_encoder, text_encoder_2)
    train_seconds = time.time() - start
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    honour_umask(out)  # its weights: 0600 as diffusers writes them

    # The saved folder, loaded by plain diffusers, encodes prompts as training did, and samples.
    check = ["a handwritten digit seven", "the number 3, handwritten", ""]
    loaded = StableDiffusion3Pipeline.from_pretrained(out, text_encoder_3=None, tokenizer_3=None)
    loaded.set_progress_bar_config(disable=True)
    with torch.no_grad():
        trained = encode(pipe, check, args.max_sequence_length)
        reloaded = encode(loaded, check, args.max_sequence_length)
        for a, b in zip(trained, reloaded, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        img = loaded(
            check[0],
            height=32,
            width=32,
            num_inference_steps=4,
            guidance_scale=2.0,
            max_sequence_length=args.max_sequence_length,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images
    assert img.shape == (1, 32, 32, 3) and bool(torch.isfinite(torch.from_numpy(img)).all())

    info = {
        "seed": args.seed,
        "data": {"placements": data["placements"], "place_size": list(data["size"]), "inks": data["inks"]},
        "vae": "miniature-sd/vae (shift_factor 0.0)",
        "scaling_factor": sf,
        "max_sequence_length": args.max_sequence_length,
        "tokenizer_max_length": TOKENS,
        "sigma_sampling": args.sigma_sampling,
        "scheduler_shift": args.shift,
        "steps": args.steps,
        "batch": BATCH,
        "threads": args.threads,
        "sizes": {
            "transformer": {
                "num_layers": args.layers,
                "num_attention_heads": args.heads,
                "attention_head_dim": args.head_dim,
                "inner_dim": args.heads * args.head_dim,
                "joint_attention_dim": 128,
                "pooled_projection_dim": 128,
                "patch_size": 1,
                "qk_norm": "rms_norm",
            },
            "text_encoder": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 256, "projection": 64},
        },
        "final_loss": final_loss,
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.time() - start, 1),
        "parameters": parameter_counts(
            transformer=transformer, text_encoder=text_encoder, text_encoder_2=text_encoder_2, vae=vae
        ),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    console.print(info)


if __name__ == "__main__":
    main()
