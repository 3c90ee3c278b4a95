"""A third red-team audit (2026-12-06; 50 mutants, 25 survived then, each now caught): breakages
that no other catalogue makes, on lines none of their mutants edits, in the code the earlier
rounds barely touched: the model families' conditioning, shifts, sizes and features (SDXL, SD3,
FLUX), the frozen-bf16 / fp32-trainable split, the adapter switch under gradient checkpointing,
denoiser evaluation counts, the text-embedding cache, real images, checkpoint pruning, fallback and
soundness, the resume fingerprint, the export's scheduler and kohya header, tlcm.sample, the latent
LPIPS triplets, the memory plan, evaluation scores and the end-of-run summary; see run.py."""

from run import Mutant

FLUX = "tlcm/models/families/flux.py"
SD = "tlcm/models/families/sd.py"
SD3 = "tlcm/models/families/sd3.py"
TRANSFORMER = "tlcm/models/families/transformer.py"
FAMILY = "tlcm/models/families/base.py"
BASE = "tlcm/models/base.py"
ADAPTERS = "tlcm/models/adapters.py"
FUNCTIONAL = "tlcm/models/functional.py"
STUDENT = "tlcm/models/student.py"
COND = "tlcm/conditioning.py"
DENOISER = "tlcm/diffusion/denoiser.py"
EMB = "tlcm/data/embeddings.py"
IMAGES = "tlcm/data/images.py"
CKPT = "tlcm/checkpoint.py"
RESUME = "tlcm/resume.py"
EXPORT = "tlcm/export.py"
SAMPLE = "tlcm/sample.py"
LPIPS_DATA = "tlcm/latent_lpips/data.py"
PLAN = "tlcm/memory_plan.py"
METRICS = "tlcm/eval/metrics.py"
PROMPTS = "tlcm/eval/prompts.py"
SUMMARY = "tlcm/summary.py"

T_FAMILIES = "tests/test_families.py"
T_PIPE = "tests/test_diffusion_pipelines.py"
T_COND = "tests/test_conditioning.py"
T_ADAPTERS = "tests/test_adapters.py"
T_FROZEN = "tests/test_frozen_dtype.py"
T_PRECISION = "tests/test_precision.py"
T_EMB = "tests/test_embeddings.py"
T_REAL = "tests/test_real_images.py"
T_CKPT = "tests/test_checkpoint.py"
T_EXPORT = "tests/test_export.py"
T_SAMPLE = "tests/test_sample.py"
T_FUSE = "tests/test_sample_fuse.py"
T_LPIPS = "tests/test_latent_lpips.py"
T_PLAN = "tests/test_memory_plan.py"
T_EVAL = "tests/test_eval.py"
T_EVAL_GEN = "tests/test_eval_generate.py"
T_SUMMARY = "tests/test_summary.py"
T_GRAPHS = "tests/test_graphs.py"
T_SOLVE = "tests/test_diffusion_solvers.py"
T_ENGINE = "tests/test_engine.py"
T_ZOO = "tests/test_zoo.py"

MUTANTS = [
    # ---- FLUX ------------------------------------------------------------------------------
    Mutant(
        "flux-shift-tokens-not-packed",
        FLUX,
        "tokens = (latent_shape[1] // 2) * (latent_shape[2] // 2)",
        "tokens = latent_shape[1] * latent_shape[2]",
        (T_FAMILIES, T_PIPE),
        "the resolution shift computed for 4x the image tokens FLUX sees (2 x 2 packing forgotten)",
    ),
    Mutant(
        "flux-base-max-shift-swapped",
        FLUX,
        'config.get("base_shift", 0.5),\n            config.get("max_shift", 1.15),',
        'config.get("max_shift", 1.15),\n            config.get("base_shift", 0.5),',
        (T_FAMILIES, T_PIPE),
        "calculate_shift with base and max shift swapped: the schedule's shift falls with resolution",
    ),
    Mutant(
        "flux-scheduler-mu-not-logged",
        FLUX,
        'return math.log(schedule.shift) if pipe.scheduler.config.get("use_dynamic_shifting") else None',
        'return schedule.shift if pipe.scheduler.config.get("use_dynamic_shifting") else None',
        (T_FAMILIES, T_EXPORT, T_PIPE),
        "the exported scheduler gets mu = exp(mu): sampled on another grid than trained",
    ),
    Mutant(
        "flux-uncond-is-first-prompt",
        FLUX,
        'return one(prompts), one([""]).expand_to(len(prompts))',
        "return one(prompts), one(prompts[:1]).expand_to(len(prompts))",
        (T_FAMILIES,),
        "FLUX's unconditional branch is the first prompt, not the empty prompt",
    ),
    Mutant(
        "flux-student-guidance-one",
        FLUX,
        "guidance = torch.full((len(texts),), STUDENT_GUIDANCE, device=device, dtype=emb.dtype)",
        "guidance = torch.full((len(texts),), 1.0, device=device, dtype=emb.dtype)",
        (T_FAMILIES,),
        "a guidance-distilled FLUX student is trained with guidance input 1, sampled with 3.5",
    ),
    Mutant(
        "flux-latent-side-not-halved-for-packing",
        FLUX,
        "(resolution or pipe.default_sample_size * pipe.vae_scale_factor) // (pipe.vae_scale_factor * 2)",
        "(resolution or pipe.default_sample_size * pipe.vae_scale_factor) // pipe.vae_scale_factor",
        (T_FAMILIES,),
        "FLUX latents twice as wide as the resolution asks (the packing factor applied twice)",
    ),
    Mutant(
        "flux-sample-kwargs-no-guidance",
        FLUX,
        'return {"guidance_scale": STUDENT_GUIDANCE}',
        'return {"guidance_scale": 0.0}',
        (T_FAMILIES, T_EXPORT),
        "the model card tells users to sample a guidance-distilled student with guidance 0",
    ),
    # ---- SD / SDXL / SD3 / transformer features ----------------------------------------------
    Mutant(
        "sdxl-target-size-default-1024",
        SD,
        "return [height, width, 0, 0, height, width]",
        "return [height, width, 0, 0, 1024, 1024]",
        (T_FAMILIES, T_EMB),
        "SDXL's target size is the default 1024 px, not the training resolution",
    ),
    Mutant(
        "sdxl-features-drop-time-embedding",
        SD,
        "emb = emb + aug if aug is not None else emb",
        "emb = aug if aug is not None else emb",
        (T_FAMILIES,),
        "SDXL's discriminator features lose the timestep embedding (only the added text/time ids)",
    ),
    Mutant(
        "sd3-text-width-ignores-t5",
        SD3,
        "return (takes if t5 is None else t5.config.hidden_size), takes",
        "return takes, takes",
        (T_FAMILIES,),
        "an SD3 folder with a T5 of the wrong width is accepted (check_components compares equal widths)",
    ),
    Mutant(
        "transformer-features-not-transposed",
        TRANSFORMER,
        "return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)",
        "return tokens.reshape(tokens.shape[0], tokens.shape[2], h, w)",
        (T_FAMILIES,),
        "image tokens (B, N, D) reshaped to (B, D, h, w) without the transpose: scrambled features",
    ),
    Mutant(
        "family-latent-multiple-off-by-one",
        FAMILY,
        'return 2 ** max(len(net_config.get("block_out_channels", ())) - 1, 0)',
        'return 2 ** len(net_config.get("block_out_channels", ()))',
        (T_FAMILIES, "tests/test_cli.py"),
        "a UNet's latent side must be a multiple of 2^(levels), one halving too many: good sizes refused",
    ),
    Mutant(
        "family-vae-upcast-default-off",
        FAMILY,
        'upcast = bool(read_config(Path(path) / "vae" / "config.json").get("force_upcast", True))',
        'upcast = bool(read_config(Path(path) / "vae" / "config.json").get("force_upcast", False))',
        (T_FROZEN, T_FAMILIES, T_PRECISION),
        "a VAE config without force_upcast is loaded in bf16 (diffusers' default is True)",
    ),
    Mutant(
        "family-fingerprint-skips-optional",
        FAMILY,
        "for component in (*self.components, *self.optional_components):",
        "for component in self.components:",
        (T_FAMILIES, T_CKPT),
        "swapping SD3's T5 leaves the fingerprint unchanged: a resume on another text encoder passes",
    ),
    # ---- base model, frozen dtype, adapters ----------------------------------------------------
    Mutant(
        "frozen-dtype-bf16-fp16-swapped",
        BASE,
        'FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}',
        'FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.float16, "fp16": torch.bfloat16}',
        (T_FROZEN, T_PRECISION),
        "frozen_dtype bf16 loads fp16 weights and vice versa",
    ),
    Mutant(
        "base-evaluations-count-calls",
        BASE,
        "self.evaluations += x.shape[0]  # a host int: no sync",
        "self.evaluations += 1  # a host int: no sync",
        (T_ENGINE, T_GRAPHS, T_ZOO),
        "denoiser evaluations counted in calls, not samples: the equal-evaluation comparisons are off",
    ),
    Mutant(
        "functional-evaluations-count-calls",
        FUNCTIONAL,
        "counter.evaluations += x.shape[0]  # a host int: no sync",
        "counter.evaluations += 1  # a host int: no sync",
        (T_ENGINE, T_ZOO),
        "EMA-target / reference calls counted once per call, not per sample",
    ),
    Mutant(
        "adapter-checkpoint-reentrant",
        ADAPTERS,
        "module.__call__, *args, use_reentrant=False, context_fn=self._checkpoint_contexts",
        "module.__call__, *args, use_reentrant=True",
        (T_ADAPTERS,),
        "reentrant checkpointing: no per-adapter recompute context, and no LoRA gradients through "
        "blocks whose inputs need none",
    ),
    Mutant(
        "adapter-live-ignores-disabled",
        ADAPTERS,
        "if first._disable_adapters:\n            return TEACHER",
        "if first._disable_adapters is None:\n            return TEACHER",
        (T_ADAPTERS,),
        "the live selection reads the student while adapters are off: a nested use(TEACHER) restores wrong",
    ),
    Mutant(
        "student-adapter-not-fp32",
        STUDENT,
        "cast_adapter_dtype(base.net, STUDENT_ADAPTER)  # fp32 on bf16 / fp16 frozen weights",
        'cast_adapter_dtype(base.net, "default")  # fp32 on bf16 / fp16 frozen weights',
        (T_FROZEN, T_PRECISION),
        "the student's LoRA stays in the frozen bf16 dtype (cast of a wrong adapter name: a no-op)",
    ),
    Mutant(
        "fp32-copy-upcasts-bf16",
        STUDENT,
        "if base.net.dtype == torch.float32:\n        return copy.deepcopy(base.net)",
        "if base.net.dtype != torch.float16:\n        return copy.deepcopy(base.net).float()",
        (T_FROZEN, T_PRECISION),
        "a full fine-tune on bf16 frozen weights starts from the upcast bf16 copy (low bits lost)",
    ),
    # ---- conditioning, guidance ------------------------------------------------------------------
    Mutant(
        "conditioning-cat-order-swapped",
        COND,
        "values[f.name] = None if a is None else torch.cat([a, b])",
        "values[f.name] = None if a is None else torch.cat([b, a])",
        (T_COND, T_SOLVE),
        "cat puts the other conditioning first: CFG's cond / uncond halves swapped",
    ),
    Mutant(
        "with-guidance-ignores-scale",
        COND,
        "return replace(self, guidance=value.expand_as(self.guidance).clone())",
        "return replace(self, guidance=self.guidance.clone())",
        (T_COND, T_FAMILIES),
        "a guidance-distilled teacher keeps the encoded guidance whatever w is asked",
    ),
    Mutant(
        "guided-shortcut-at-zero",
        DENOISER,
        "if not isinstance(scale, torch.Tensor) and scale == 1:",
        "if not isinstance(scale, torch.Tensor) and scale == 0:",
        (T_COND, T_SOLVE, "tests/test_losses.py"),
        "w = 0 (the unconditional model) returns the conditional output",
    ),
    # ---- embeddings cache, real images -----------------------------------------------------------
    Mutant(
        "embeddings-uncond-is-first-prompt",
        EMB,
        'out |= {name: value, f"uncond_{name}": getattr(uncond, name)[:1]}',
        'out |= {name: value, f"uncond_{name}": getattr(cond, name)[:1]}',
        (T_EMB,),
        "the stored unconditional embedding is the first prompt's",
    ),
    Mutant(
        "embeddings-fingerprint-default-size",
        EMB,
        "base.family.encoded_sizes(base.pipe, base.latent_shape)",
        "base.family.encoded_sizes(base.pipe, base.family.latent_shape(base.pipe))",
        (T_EMB, T_FAMILIES + "::test_sdxl_time_ids_follow_the_configured_resolution"),
        "the cache fingerprint records the default resolution's SDXL time ids: another resolution's "
        "cache is reused",
    ),
    Mutant(
        "embeddings-key-drops-last-prompt",
        EMB,
        "chunk = self.prompts[k * self.chunk_size : (k + 1) * self.chunk_size]",
        "chunk = self.prompts[k * self.chunk_size : (k + 1) * self.chunk_size - 1]",
        (T_EMB,),
        "a chunk's cache key ignores its last prompt: an edited last prompt reuses the stale embedding",
    ),
    Mutant(
        "embeddings-evicts-fresh-chunk",
        EMB,
        "while len(self._resident) > 1 and self._resident_size() > self.resident_bytes:",
        "while self._resident and self._resident_size() > self.resident_bytes:",
        (T_EMB,),
        "a chunk larger than the budget is evicted at once: re-encoded at every request",
    ),
    Mutant(
        "images-transposed",
        IMAGES,
        "x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0",
        "x = torch.from_numpy(pixels.copy()).permute(2, 1, 0).float() / 255.0",
        (T_REAL,),
        "(H, W, 3) pixels to (3, W, H): every training image transposed",
    ),
    Mutant(
        "images-not-to-minus-one-one",
        IMAGES,
        "return (x * 2 - 1).clamp(-1, 1)",
        "return x.clamp(-1, 1)",
        (T_REAL,),
        "images in [0, 1] where the VAE takes [-1, 1]",
    ),
    Mutant(
        "images-vae-sample-var-not-std",
        IMAGES,
        "z = z + posterior.std.float() * eps",
        "z = z + posterior.var.float() * eps",
        (T_REAL,),
        "the VAE posterior sample scaled by the variance, not the std",
    ),
    # ---- checkpoints, resume -------------------------------------------------------------------
    Mutant(
        "checkpoint-prunes-newest",
        CKPT,
        'for old in sorted(p for p in root.glob("step-*") if p != final)[: -keep or None]:',
        'for old in sorted((p for p in root.glob("step-*") if p != final), reverse=True)[: -keep or None]:',
        (T_CKPT,),
        "pruning deletes the newest checkpoints and keeps the oldest",
    ),
    Mutant(
        "checkpoint-fallback-oldest-first",
        CKPT,
        'folders = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)',
        'folders = sorted(p for p in root.glob("step-*") if p.is_dir())',
        (T_CKPT,),
        "a damaged latest falls back to the oldest checkpoint instead of the newest sound one",
    ),
    Mutant(
        "checkpoint-weight-limit-signed",
        CKPT,
        "by_device.setdefault(tensor.device, []).append((path, tensor.detach().abs().max().float()))",
        "by_device.setdefault(tensor.device, []).append((path, tensor.detach().max().float()))",
        (T_CKPT,),
        "a blown-up student weight that is large and negative passes the soundness check",
    ),
    Mutant(
        "resume-fingerprint-first-slice-only",
        RESUME,
        "handle.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))",
        "handle.seek(SAMPLE_BYTES * i)",
        (T_CKPT,),
        "a large weights file is hashed over its first MiB only: another fine-tune's weights pass",
    ),
    Mutant(
        "resume-run-length-overrides-flag",
        RESUME,
        'length = max_sequence_length if max_sequence_length is not None else trained.get("max_sequence_length")',
        'length = trained.get("max_sequence_length") or max_sequence_length',
        (T_CKPT,),
        "--max-sequence-length is ignored whenever the run recorded one",
    ),
    # ---- export, sampling ------------------------------------------------------------------------
    Mutant(
        "kohya-metadata-dim-alpha-swapped",
        EXPORT,
        '"ss_network_dim": str(config.lora_rank),\n        "ss_network_alpha": str(config.lora_alpha),',
        '"ss_network_dim": str(config.lora_alpha),\n        "ss_network_alpha": str(config.lora_rank),',
        (T_EXPORT,),
        "kohya's header reports rank as alpha and alpha as rank (A1111 shows and sorts by them)",
    ),
    Mutant(
        "diffusers-lora-prefix-unet",
        EXPORT,
        "prefix = student.base.family.net",
        'prefix = "unet"',
        (T_EXPORT, T_FAMILIES),
        "an SD3 / FLUX LoRA exported under unet.: load_lora_weights finds nothing to load",
    ),
    Mutant(
        "export-scheduler-first-gamma-is-gamma",
        EXPORT,
        "first_gamma=grid.first_gamma,\n    )",
        "first_gamma=grid.gamma,\n    )",
        (T_EXPORT,),
        "the exported scheduler's first move uses gamma instead of the grid's first_gamma",
    ),
    Mutant(
        "sample-prompts-interleaved",
        SAMPLE,
        "prompts = [p for p in args.prompt for _ in range(args.num_per_prompt)]",
        "prompts = [p for _ in range(args.num_per_prompt) for p in args.prompt]",
        (T_SAMPLE, T_FUSE),
        "the grid's rows mix prompts (one row per prompt is promised)",
    ),
    Mutant(
        "sample-steps-bound-off-by-one",
        SAMPLE,
        "if not 1 <= args.steps <= grid.num_milestones:",
        "if not 1 <= args.steps < grid.num_milestones:",
        (T_SAMPLE, T_FUSE),
        "a student cannot be sampled with M steps (its full grid)",
    ),
    # ---- latent LPIPS data, memory plan ---------------------------------------------------------
    Mutant(
        "lpips-ssim-cov-factor",
        LPIPS_DATA,
        "s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))",
        "s = (2 * mx * my + c1) * (cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))",
        (T_LPIPS,),
        "SSIM's structure term without its factor 2: SSIM(x, x) is not 1",
    ),
    Mutant(
        "lpips-uint8-to-zero-one",
        LPIPS_DATA,
        "x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x",
        "x = x.float() / 255 if x.dtype == torch.uint8 else x",
        (T_LPIPS,),
        "uint8 images mapped to [0, 1] where the VAE and the proxy take [-1, 1]",
    ),
    Mutant(
        "lpips-third-pair-is-ref-b",
        LPIPS_DATA,
        "ps.append(torch.stack([proxy(ref, a), proxy(ref, b), proxy(a, b)], 1).cpu())",
        "ps.append(torch.stack([proxy(ref, a), proxy(ref, b), proxy(ref, b)], 1).cpu())",
        (T_LPIPS,),
        "the (a, b) target is the (ref, b) distance",
    ),
    Mutant(
        "plan-prefers-checkpointing",
        PLAN,
        "if False in chosen and (True not in chosen or 2 * chosen[False][0] >= chosen[True][0]):",
        "if False in chosen and (True not in chosen or chosen[False][0] >= chosen[True][0]):",
        (T_PLAN,),
        "gradient checkpointing chosen for any larger micro-batch, though it costs ~a third more compute",
    ),
    Mutant(
        "plan-fit-fixed-at-zero-batch",
        PLAN,
        "return p1 - per_sample * b1, per_sample",
        "return p1, per_sample",
        (T_PLAN,),
        "the fitted line's intercept is the first measurement: every prediction too high by b1 samples",
    ),
    # ---- evaluation, summary --------------------------------------------------------------------
    Mutant(
        "eval-pickscore-clamped",
        METRICS,
        'self.clip, self.clamp = self.model.clip, name == "clip"',
        'self.clip, self.clamp = self.model.clip, name != "aesthetic"',
        (T_EVAL,),
        "PickScore clamped at 0 like the CLIP score",
    ),
    Mutant(
        "coco-captions-by-caption-id",
        PROMPTS,
        'captions.setdefault(ann.get("image_id"), []).append((ann.get("id", 0), _clean(ann["caption"])))',
        'captions.setdefault(ann.get("id"), []).append((ann.get("id", 0), _clean(ann["caption"])))',
        (T_EVAL, T_EVAL_GEN),
        "COCO captions grouped by caption id: prompts paired with the wrong reference images",
    ),
    Mutant(
        "summary-teacher-worst-w",
        SUMMARY,
        'if r["steps"] not in best or r["fd"] < best[r["steps"]]["fd"]:',
        'if r["steps"] not in best or r["fd"] > best[r["steps"]]["fd"]:',
        (T_SUMMARY,),
        "the summary compares the student with the teacher's worst w",
    ),
    Mutant(
        "summary-teacher-columns-swapped",
        SUMMARY,
        "them = (f\"{t['alignment']:.3f}\", f\"{t['fd']:.2f}\", f\"{t['w']:g}\")",
        "them = (f\"{t['fd']:.2f}\", f\"{t['alignment']:.3f}\", f\"{t['w']:g}\")",
        (T_SUMMARY,),
        "the teacher's alignment printed under FD and vice versa",
    ),
]
