"""A sixth red-team audit, area "models" (2026-12-06; 24 mutants, 12 survived then, each now
caught): breakages on lines no other catalogue edits, at the model boundary: SDXL's
micro-conditioning in image pixels, SD1.5's prompt / empty prompt and SD3's pooled embeddings per
CFG half, the UNet's encoder features (text in the mid block, the gradient to the latents), the
transformer features (image stream, non-square token grid, taps up to the last block), the VAE
decode's range and shift, the frozen VAE's precision, the prompt width check, the schedule at the
training resolution, the guided teacher's doubled timesteps and per-sample scales, the
conditioning's concatenation check, the full-copy networks (a full fine-tune's student, a full-copy
auxiliary), swapped-weight calls through the network's family, weight snapshots that must not alias
the live weights, the LoRA initialisations (the student's gaussian A, the auxiliaries' symmetric A)
and the student-settings check of a resume vs a next stage. The 12 survivors are caught by new
tests in test_families.py, test_adapters.py and test_conditioning.py (each under a "Red-team round
6" heading or named in its mutant's ``tests``)."""

from run import Mutant

SD = "tlcm/models/families/sd.py"
SD3 = "tlcm/models/families/sd3.py"
TRANSFORMER = "tlcm/models/families/transformer.py"
FAMILY = "tlcm/models/families/base.py"
CONDITIONING = "tlcm/conditioning.py"
DENOISER = "tlcm/diffusion/denoiser.py"
STUDENT = "tlcm/models/student.py"
DISC = "tlcm/models/discriminator.py"
FUNCTIONAL = "tlcm/models/functional.py"
BASE = "tlcm/models/base.py"

T_FAM = "tests/test_families.py"
T_TIME_IDS = f"{T_FAM}::test_sdxl_time_ids_follow_the_configured_resolution"
T_SDXL_FEATS = f"{T_FAM}::test_sdxl_features_are_the_unets_own_block_outputs"
T_TOKENS = f"{T_FAM}::test_transformer_features_lay_the_image_tokens_row_major_on_the_grid"
T_GUIDED_SD3 = f"{T_FAM}::test_guided_teacher_is_the_pipelines_cfg_prediction[sd3]"
T_GUIDED_SDXL = f"{T_FAM}::test_guided_teacher_is_the_pipelines_cfg_prediction[sdxl]"
T_UPCAST = f"{T_FAM}::test_a_vae_config_without_force_upcast_stays_fp32"
T_INVERT = "tests/test_real_images.py::test_latents_invert_the_miniature_decode"
T_SHIFT = "tests/test_real_images.py::test_latents_honour_the_vae_shift_factor"
T_PER_SAMPLE = "tests/test_zoo_components.py::test_per_sample_guidance_equals_each_sample_guided_alone"
T_GAN_TEACHER = "tests/test_gan.py::test_teacher_unet_features_are_the_base_unets_with_adapters_off"
T_RESIZE = "tests/test_gan.py::test_pixel_discriminator_resize_reaches_every_pixel_when_shrinking"
T_FEAT_GRAD = f"{T_FAM}::test_unet_features_pass_the_gradient_to_the_latents"
T_NON_SQUARE = f"{T_FAM}::test_transformer_features_keep_a_non_square_grid"
T_TAPS = f"{T_FAM}::test_transformer_taps_are_evenly_spaced_from_the_first_block_to_the_last"
T_GUIDED_SD15 = f"{T_FAM}::test_guided_teacher_is_the_pipelines_cfg_prediction[sd15]"
T_CAT_EITHER = (
    "tests/test_conditioning.py::test_cat_refuses_an_optional_field_that_only_one_side_has_either_way"
)
T_FULL_COPIES = (
    "tests/test_adapters.py::test_a_full_finetune_student_and_a_full_copy_auxiliary_run_their_own_weights"
)
T_SNAPSHOT = "tests/test_adapters.py::test_state_dicts_are_snapshots_not_views_of_the_live_weights"
T_FRESH = "tests/test_adapters.py::test_auxiliary_gives_a_fresh_seeded_initialisation"
T_FUNCTIONAL = f"{T_FAM}::test_swapped_weight_calls_speak_the_networks_family"
T_GRID_CHECK = "tests/test_adapters.py::test_a_resume_keeps_the_grid_and_a_next_stage_may_change_it"
T_FLOW_GRID = f"{T_FAM}::test_training_grid_is_the_exported_schedulers"
T_LCM_INIT = "tests/test_adapters.py::test_the_student_lora_starts_with_diffusers_lcm_lora_init"

MUTANTS = [
    Mutant(
        "sdxl-time-ids-in-latent-pixels",
        SD,
        "height, width = (side * pipe.vae_scale_factor for side in latent_shape[1:])",
        "height, width = (side for side in latent_shape[1:])",
        (T_TIME_IDS,),
        "SDXL's original / target size ids are the latent's side (128 at 1024 px): the UNet is told "
        "it makes 128 px images, a size it never trained on, and samples blurry low-res compositions",
    ),
    Mutant(
        "sd-mid-block-features-without-text",
        SD,
        "feats.append(net.mid_block(h, emb, **text))",
        "feats.append(net.mid_block(h, emb))",
        (T_SDXL_FEATS, T_GAN_TEACHER),
        "the teacher-feature discriminator's deepest level ignores the prompt: D cannot judge "
        "text alignment, and a cross-attention mid block crashes or runs self-attention only",
    ),
    Mutant(
        "sd-features-input-detached",
        SD,
        "h, feats = net.conv_in(x), []",
        "h, feats = net.conv_in(x.detach()), []",
        (T_FEAT_GRAD,),
        "the teacher-feature discriminator's features are cut from the student's sample: the "
        "generator's GAN loss sends no gradient to the student (the adversarial term trains nothing)",
    ),
    Mutant(
        "sd3-pooled-swapped-between-halves",
        SD3,
        "return Conditioning(emb, pooled), Conditioning(neg, neg_pooled)",
        "return Conditioning(emb, neg_pooled), Conditioning(neg, pooled)",
        (T_GUIDED_SD3,),
        "SD3's conditional half gets the empty prompt's pooled projection and the unconditional "
        "half the prompt's: CFG partly guides AWAY from the prompt's global content",
    ),
    Mutant(
        "transformer-features-text-stream",
        TRANSFORMER,
        "tokens = output[1]",
        "tokens = output[0]",
        (T_TOKENS,),
        "the MM-DiT discriminator features are the text tokens (the first of the block's "
        "(text, image) outputs): D looks at the prompt, not at the image",
    ),
    Mutant(
        "decode-clamps-to-unit-interval",
        FAMILY,
        "return vae.decode(z.to(vae.dtype)).sample.float().clamp(-1, 1)",
        "return vae.decode(z.to(vae.dtype)).sample.float().clamp(0, 1)",
        (T_INVERT,),
        "decoded images, in [-1, 1], lose their dark half (clamped at 0): grids, rewards and "
        "pixel discriminators see washed-out images",
    ),
    Mutant(
        "decode-ignores-vae-shift",
        FAMILY,
        'return vae_config.scaling_factor, getattr(vae_config, "shift_factor", None) or 0.0',
        "return vae_config.scaling_factor, 0.0",
        (T_SHIFT,),
        "SD3 / FLUX latents are decoded without the VAE's shift factor: every decoded image is "
        "off by a constant colour cast (and rewards / pixel GANs train on it)",
    ),
    Mutant(
        "vae-upcast-inverted",
        FAMILY,
        '**({"vae": torch.float32} if upcast else {})',
        '**({"vae": torch.float32} if not upcast else {})',
        (T_UPCAST,),
        "SDXL's VAE (force_upcast) runs in bf16 / fp16 and overflows to NaN images, while VAEs "
        "that are safe in half precision are kept fp32",
    ),
    Mutant(
        "text-widths-widest-encoder-not-sum",
        FAMILY,
        "return sum(e.config.hidden_size for e in encoders), getattr(pipe, self.net).config.cross_attention_dim",
        "return max(e.config.hidden_size for e in encoders), getattr(pipe, self.net).config.cross_attention_dim",
        (T_TIME_IDS,),
        "SDXL's prompt width is taken as one encoder's, not the two concatenated: every valid "
        "SDXL folder is refused at load as having mismatched text encoders",
    ),
    Mutant(
        "guided-timesteps-interleaved",
        DENOISER,
        "out = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), cond.cat(self.uncond.expand_to(batch)))",
        "out = self.denoiser(torch.cat([x, x]), t.repeat_interleave(2), cond.cat(self.uncond.expand_to(batch)))",
        (T_GUIDED_SDXL, T_GUIDED_SD3),
        "the CFG batch's timesteps are interleaved (t0, t0, t1, t1) while x and cond are tiled: "
        "sample i is denoised at another sample's noise level whenever the batch's t differ",
    ),
    Mutant(
        "guided-per-sample-w-on-the-last-axis",
        DENOISER,
        "w = scale.view(-1, *[1] * (x.dim() - 1)) if isinstance(scale, torch.Tensor) else scale",
        "w = scale.view(*[1] * (x.dim() - 1), -1) if isinstance(scale, torch.Tensor) else scale",
        (T_PER_SAMPLE,),
        "per-sample guidance scales (LCM's w ~ U[w_min, w_max]) broadcast along the latent's width: "
        "each column gets another sample's w (or it crashes when the width is not B)",
    ),
    Mutant(
        "conditioning-cat-checks-one-side-only",
        CONDITIONING,
        "if (a is None) != (b is None):",
        "if a is None and b is not None:",
        (T_CAT_EITHER,),
        "concatenating an SDXL conditioning with one that lacks pooled embeddings (a SD1.5-style "
        "uncond) is no longer refused with a one-line error: torch.cat fails on None with a "
        "TypeError deep inside a loss",
    ),
    Mutant(
        "full-finetune-student-calls-the-base",
        STUDENT,
        "return self.base.denoiser(self.net)",
        "return self.base.denoiser()",
        (T_FULL_COPIES,),
        "a full fine-tune's student denoiser is the frozen teacher: the loss has no gradient to "
        "its trainable copy (or the copy trains while every sample comes from the teacher)",
    ),
    Mutant(
        "full-copy-auxiliary-calls-the-student",
        STUDENT,
        "return self.student.base.denoiser(self.module)",
        "return self.student.base.denoiser(self.student.net)",
        (T_FULL_COPIES,),
        "DMD's full-copy fake score runs the student's network: the fake score is the student "
        "itself, its own optimizer's copy never reaches the loss, DMD's gradient is garbage",
    ),
    Mutant(
        "weights-snapshot-aliases-live-weights",
        STUDENT,
        "return {k: v.detach().clone() for k, v in full_tensors(state).items()}",
        "return {k: v.detach() for k, v in full_tensors(state).items()}",
        (T_SNAPSHOT,),
        "state_dict() snapshots share storage with the live weights: today's callers write them at "
        "once, but a kept one (a best-so-far or asynchronously written checkpoint) silently holds "
        "the weights of later optimizer steps",
    ),
    Mutant(
        "timm-antialias-when-enlarging",
        DISC,
        "shrink = max(x.shape[-2:]) > self.input_size",
        "shrink = max(x.shape[-2:]) < self.input_size",
        (T_RESIZE,),
        "1024 px images shrink to the backbone's size without antialiasing (D reads 1.6 % of "
        "the pixels, the rest get no gradient) and small ones are blurred when enlarged",
    ),
    Mutant(
        "sd15-cond-uncond-swapped",
        SD,
        "return Conditioning(emb), Conditioning(neg)",
        "return Conditioning(neg), Conditioning(emb)",
        (T_GUIDED_SD15,),
        "SD1.5's prompt and empty-prompt encodings trade places: the guided teacher pushes away "
        "from the prompt (w = 8: strongly), every distilled student learns anti-prompt images",
    ),
    Mutant(
        "sd3-token-grid-transposed",
        SD3,
        "return x.shape[-2] // p, x.shape[-1] // p",
        "return x.shape[-1] // p, x.shape[-2] // p",
        (T_NON_SQUARE,),
        "on non-square latents the MM-DiT features are laid out (w, h) instead of (h, w): the "
        "discriminator's feature maps scramble rows into columns (or fail to reshape)",
    ),
    Mutant(
        "transformer-taps-miss-the-last-block",
        TRANSFORMER,
        "return [blocks[round(i * (len(blocks) - 1) / max(count - 1, 1))] for i in range(count)]",
        "return [blocks[round(i * len(blocks) / count)] for i in range(count)]",
        (T_TAPS,),
        "the teacher-feature discriminator's taps stop short of the last transformer block "
        "(FLUX.1: 0, 5, 10, 14 of 19): D never sees the deepest, most semantic features",
    ),
    Mutant(
        "fresh-lora-a-one-sided",
        STUDENT,
        ".uniform_(-bound, bound).to(dtype)",
        ".uniform_(0, bound).to(dtype)",
        (T_FRESH,),
        "auxiliary adapters (DMD's fake score, the discriminator's trunk) start with an all-positive "
        "A: every LoRA direction correlated, the fake score adapts slower and unlike peft's init",
    ),
    Mutant(
        "student-lora-init-not-gaussian",
        STUDENT,
        'init_lora_weights="gaussian",',
        "init_lora_weights=True,",
        (T_LCM_INIT,),
        "the student's LoRA A starts from peft's kaiming-uniform (std 1/sqrt(3 fan_in), ~6x smaller "
        "here) instead of LCM-LoRA's N(0, 1/r): the published recipes' learning rates no longer fit",
    ),
    Mutant(
        "functional-call-ignores-the-family",
        FUNCTIONAL,
        "wrapper = _FamilyCall(family or DEFAULT_FAMILY, module)",
        "wrapper = _FamilyCall(DEFAULT_FAMILY, module)",
        (T_FUNCTIONAL,),
        "EMA targets and DPO references on SD3 / FLUX call the transformer as a UNet: MLCD with "
        "an EMA target and DPO fail on every flow model (wrong arguments to the transformer)",
    ),
    Mutant(
        "schedule-at-the-default-resolution",
        BASE,
        "schedule = family.schedule(pipe, shape).to(device)",
        "schedule = family.schedule(pipe, family.latent_shape(pipe)).to(device)",
        (T_FLOW_GRID,),
        "FLUX's resolution-dependent shift is computed for the pipeline's default size, not the "
        "training resolution: the student trains on another timestep grid than its exported "
        "scheduler samples at that resolution",
    ),
    Mutant(
        "grid-check-only-for-a-next-stage",
        STUDENT,
        'keys += ["num_milestones", "student_steps"] if same_grid else []',
        'keys += ["num_milestones", "student_steps"] if not same_grid else []',
        (T_GRID_CHECK,),
        "a resume with another --recipes.student.grid continues silently on a new grid (its "
        "optimizer state and milestones no longer match), while a next stage that changes the "
        "grid, as the TLCM recipes do, is refused",
    ),
]
