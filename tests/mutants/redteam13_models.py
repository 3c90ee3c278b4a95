"""A thirteenth red-team audit, area models (2026-12-07; 32 mutants, 20 of the 31 ordinary ones
survived the existing tests at first, each now caught; one more re-introduces a real bug): loading
(the components check's narrower text encoder, the NaN-weights error's file: a shard by the index,
the folder when several files; the one-line load error, a SafetensorError too), ``denoiser(net)``
calling the net passed, autocast for fp16 frozen weights, decode slices of at least one image, the
model folder's config reading (a JSON list, malformed JSON) and fingerprint (first / last MiB and
the size), FSDP2's units (the up blocks), sharded-UNet features by hooks (the mid block, the hooks
removed), the mid block's feature channels, the timm discriminator's input size 0 and nested
"model" weights, the checkpoint helpers on DTensors (tuples gathered, AdamW's step not sharded).

Real bug (fixed): ``load_weights`` of a torch file holding a bare tensor or a list died on
``state.get`` (AttributeError traceback) instead of a TLCMError naming the file.

Skipped as equivalent: ``len(latents) <= size`` -> ``<`` in decode (one slice = the whole batch,
same values); dropping ``net.time_embed_act`` in the SD features (None for every SD / SDXL UNet);
``unet_kwargs`` keyed on time_ids instead of pooled_embeds (SDXL sets both, SD neither); the SDXL
time ids' dtype (cast to the net's dtype by ``denoiser`` anyway); ``make_heads``' defaults (the GAN
always passes its config's); ``t.is_floating_point()`` in check_finite_weights (nonfinite_paths
reads floating tensors only; the message's "of N tensors" alone would count integer buffers); ``len(sharded) in (0, len(params))`` -> ``== 0`` in clip_grad_norm
(the mixed path gives the same norm and scaling when every parameter is sharded)."""

from run import Mutant

BASE = "tlcm/models/base.py"
FAM = "tlcm/models/families/base.py"
SD = "tlcm/models/families/sd.py"
DISC = "tlcm/models/discriminator.py"
DIST = "tlcm/distributed.py"
COND = "tlcm/conditioning.py"

BAD = "tests/test_bad_inputs.py::test_bad_input"
T_BAD_VAE = f"{BAD}[VAE of 8 latent channels (the UNet takes 4)]"
T_BAD_NAN = f"{BAD}[UNet weights corrupted (random bytes: NaN/inf)]"
T_SDXL_IDS = "tests/test_families.py::test_sdxl_time_ids_follow_the_configured_resolution"
T_COMFY = "tests/test_export.py::test_comfyui_steps_only_for_a_unet_comfyui_recognises"
T_GAN_POOLED = "tests/test_gan.py::test_pooled_heads_by_hand"
T_GAN_PATCH = "tests/test_gan.py::test_patch_heads_by_hand"
T_GAN_WEIGHTS = "tests/test_gan.py::test_backbone_weight_file_loads_and_mismatch_is_named"
T_RANKS = "tests/test_distributed.py::test_each_process_takes_the_gpu_of_its_local_rank"
T_COND = "tests/test_conditioning.py"

U = "tests/test_models_units.py"
T_U_NARROW = f"{U}::test_a_text_encoder_narrower_than_the_cross_attention_is_refused"
T_U_SHARDED = f"{U}::test_nan_weights_in_a_sharded_or_ambiguous_folder_name_the_right_file"
T_U_LOAD = f"{U}::test_a_failed_load_is_one_line_naming_the_folder"
T_U_OTHER_NET = f"{U}::test_the_denoiser_of_another_network_calls_that_network"
T_U_FP16 = f"{U}::test_fp16_frozen_weights_autocast_to_fp16"
T_U_DECODE = f"{U}::test_decode_of_latents_larger_than_one_slice_goes_one_image_at_a_time"
T_U_CONFIG = f"{U}::test_a_config_that_is_not_a_json_object_reads_as_empty"
T_U_FP = f"{U}::test_the_fingerprint_hashes_each_files_first_and_last_mib_and_its_size"
T_U_FSDP = f"{U}::test_fsdp2_units_hold_every_unet_block_leaving_only_the_small_root_layers"
T_U_NESTED = f"{U}::test_backbone_weights_nested_under_model_load"
T_U_NAMELESS = f"{U}::test_backbone_weights_without_names_are_one_clear_error"
T_U_CHANNELS = f"{U}::test_unet_feature_channels_are_those_of_the_features_and_fit_the_heads"
T_U_HOOKS = f"{U}::test_sharded_unet_features_by_hooks_are_the_block_by_block_ones"
T_U_NO_RESIZE = f"{U}::test_a_timm_discriminator_of_input_size_0_keeps_the_inputs_size"
T_U_DTENSOR = f"{U}::test_checkpointed_dtensors_gather_in_tuples_and_optimizer_steps_stay_whole"

MUTANTS = [
    # ---- tlcm/models/base.py ----------------------------------------------------------------------
    Mutant(
        "base-latent-channel-check-dropped",
        BASE,
        "    if channels != takes:\n",
        "    if channels != takes and channels < takes:\n",
        (T_BAD_VAE,),
        "a VAE making more latent channels than the UNet takes loads; fails at the sample grid",
    ),
    Mutant(
        "base-text-width-check-only-refuses-wider",
        BASE,
        "    if width != attends:\n",
        "    if width > attends:\n",
        (T_U_NARROW,),
        "a text encoder narrower than the UNet's cross-attention loads; fails at the first prompt",
    ),
    Mutant(
        "base-nan-weights-name-the-model-folder",
        BASE,
        "where = _weights_file(path / component, bad[0])",
        "where = _weights_file(path, bad[0])",
        (T_BAD_NAN,),
        "the NaN weights error names the model folder, not the component's weights file",
    ),
    Mutant(
        "base-weights-file-first-of-several",
        BASE,
        "return files[0] if len(files) == 1 else folder",
        "return files[0] if files else folder",
        (T_U_SHARDED,),
        "a component folder with several weight files: the error names one of them at random (sorted first)",
    ),
    Mutant(
        "base-weights-file-names-the-index",
        BASE,
        "            return folder / shard\n",
        "            return index\n",
        (T_U_SHARDED,),
        "sharded weights: the error names the index json instead of the shard holding the tensor",
    ),
    Mutant(
        "base-denoiser-ignores-the-net-passed",
        BASE,
        "net = self.net if net is None else net",
        "net = self.net",
        (T_U_OTHER_NET,),
        "denoiser(net) calls the base network whatever net is passed (a full-copy student = teacher)",
    ),
    Mutant(
        "base-autocast-only-for-bf16",
        BASE,
        "        if dtype == torch.float32:\n            return nullcontext()",
        "        if dtype != torch.bfloat16:\n            return nullcontext()",
        (T_U_FP16,),
        "fp16 frozen weights: sampling / decode run without autocast (fp32 LoRA branch on fp16 input)",
    ),
    Mutant(
        "base-load-error-keeps-newlines",
        BASE,
        'detail = " ".join(str(err).split())',
        "detail = str(err)",
        (T_U_LOAD,),
        "a multi-line diffusers error makes a multi-line TLCMError (documented: one line)",
    ),
    Mutant(
        "base-load-safetensor-error-escapes",
        BASE,
        "except (OSError, ValueError, KeyError, SafetensorError) as err:",
        "except (OSError, ValueError, KeyError) as err:",
        (T_U_LOAD,),
        "a damaged safetensors header escapes as a traceback instead of the one-line error",
    ),
    Mutant(
        "base-decode-slice-may-be-empty",
        BASE,
        "size = max(1, DECODE_PIXELS",
        "size = max(0, DECODE_PIXELS",
        (T_U_DECODE,),
        "latents whose one image is over DECODE_PIXELS: slices of 0 images (split(0) fails)",
    ),
    # ---- tlcm/models/families/base.py ------------------------------------------------------------
    Mutant(
        "family-read-config-returns-a-list",
        FAM,
        "return config if isinstance(config, dict) else {}",
        "return config",
        (T_U_CONFIG,),
        "a config.json holding a JSON list crashes component_dtypes (AttributeError) before loading",
    ),
    Mutant(
        "family-read-config-malformed-json-raises",
        FAM,
        "    except (OSError, ValueError):\n        return {}",
        "    except OSError:\n        return {}",
        (T_U_CONFIG,),
        "a malformed config.json raises JSONDecodeError here instead of loading's one-line error",
    ),
    Mutant(
        "family-fingerprint-samples-64-kib",
        FAM,
        "FINGERPRINT_SAMPLE = 1 << 20",
        "FINGERPRINT_SAMPLE = 1 << 16",
        (T_U_FP,),
        "only the first and last 64 KiB of each weights file are hashed: a retrained layer in between is unseen",
    ),
    Mutant(
        "family-fingerprint-drops-the-size",
        FAM,
        'f"{file.relative_to(path).as_posix()}:{size}:"',
        'f"{file.relative_to(path).as_posix()}:"',
        (T_U_FP,),
        "a weights file that grew in its middle (same first and last MiB) keeps the fingerprint",
    ),
    Mutant(
        "family-latent-side-assumes-factor-8",
        FAM,
        "resolution // pipe.vae_scale_factor",
        "resolution // 8",
        (T_SDXL_IDS,),
        "the latent side at a configured resolution assumes SD's VAE factor 8",
    ),
    Mutant(
        "family-shard-modules-drops-up-blocks",
        FAM,
        "return [*net.down_blocks, net.mid_block, *net.up_blocks]",
        "return [*net.down_blocks, net.mid_block]",
        (T_U_FSDP,),
        "FSDP2 leaves the UNet's decoder half in the root unit: gathered whole for every forward",
    ),
    Mutant(
        "family-text-width-counts-one-encoder",
        FAM,
        'n.startswith("text_encoder") and m is not None',
        'n == "text_encoder" and m is not None',
        (T_SDXL_IDS,),
        "SDXL's prompt width counts only its first text encoder: every SDXL folder refused",
    ),
    Mutant(
        "family-tapped-features-keep-their-hooks",
        FAM,
        "                hook.remove()",
        "                pass",
        (T_U_HOOKS,),
        "every sharded feature pass leaves its hooks on the UNet: each later forward appends to dead lists",
    ),
    # ---- tlcm/models/families/sd.py --------------------------------------------------------------
    Mutant(
        "sd-comfy-detects-by-last-channels",
        SD,
        "return net.config.block_out_channels[0] == 320",
        "return net.config.block_out_channels[-1] == 320",
        (T_COMFY,),
        "ComfyUI detection reads the last block's channels: real SD1.5 / SDXL get no ComfyUI steps",
    ),
    Mutant(
        "sd-feature-channels-mid-is-first",
        SD,
        "return [*channels, channels[-1]]",
        "return [*channels, channels[0]]",
        (T_U_CHANNELS,),
        "the mid block's head is sized for the first block's channels",
    ),
    Mutant(
        "sd-sharded-features-miss-the-mid-block",
        SD,
        "blocks = [*net.down_blocks, net.mid_block]",
        "blocks = [*net.down_blocks]",
        (T_U_HOOKS,),
        "an FSDP2-sharded UNet's features lack the mid block: one level fewer than feature_channels",
    ),
    # ---- tlcm/models/discriminator.py ------------------------------------------------------------
    Mutant(
        "disc-heads-leaky-slope-default",
        DISC,
        "nn.Sequential(nn.Conv2d(c, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 1, 1))",
        "nn.Sequential(nn.Conv2d(c, hidden, 1), nn.LeakyReLU(), nn.Conv2d(hidden, 1, 1))",
        (T_GAN_POOLED,),
        "the projected heads use slope 0.01, not the documented 0.2",
    ),
    Mutant(
        "disc-patch-logits-flatten-batch",
        DISC,
        "return [head(f.float()).flatten(1) for heads, f in pairs for head in heads]",
        "return [head(f.float()).flatten() for heads, f in pairs for head in heads]",
        (T_GAN_PATCH,),
        "patch logits lose the batch dimension",
    ),
    Mutant(
        "disc-input-size-0-still-resizes",
        DISC,
        "if self.input_size and tuple(x.shape[-2:]) != size:",
        "if tuple(x.shape[-2:]) != size:",
        (T_U_NO_RESIZE,),
        "input_size 0 (documented: no resizing) interpolates to 0 x 0 (fails)",
    ),
    Mutant(
        "disc-weights-model-key-not-unwrapped",
        DISC,
        'for key in ("state_dict", "model"):',
        'for key in ("state_dict",):',
        (T_U_NESTED,),
        'a checkpoint nesting its weights under "model" (timm / DeiT style) is refused as all keys missing',
    ),
    Mutant(
        "disc-weights-missing-keys-reversed",
        DISC,
        "missing = sorted(set(own) - set(state))",
        "missing = sorted(set(state) - set(own))",
        (T_GAN_WEIGHTS,),
        "the classifier keys the backbone lacks are called missing; keys it needs go unreported",
    ),
    Mutant(
        "disc-weights-stem-not-adapted",
        DISC,
        "state[stem].shape[1] != own[stem].shape[1]",
        "state[stem].shape[1] == own[stem].shape[1]",
        (T_GAN_WEIGHTS,),
        "ImageNet weights on a 4-channel latent backbone: the stem is not adapted (shape mismatch)",
    ),
    Mutant(
        "disc-weights-without-names-crash",
        DISC,
        "    if not isinstance(state, dict):  # a pickled tensor or list: no names to load by\n",
        "    if False:  # a pickled tensor or list: no names to load by\n",
        (T_U_NAMELESS,),
        "REAL BUG (fixed): a torch file holding a bare tensor or list: AttributeError traceback (state.get)",
    ),
    # ---- tlcm/distributed.py -----------------------------------------------------------------------
    Mutant(
        "dist-rank-is-the-local-rank",
        DIST,
        'rank = int(os.environ.get("RANK", "0"))',
        'rank = int(os.environ.get("LOCAL_RANK", "0"))',
        (T_RANKS,),
        "multi-node: every node has a rank 0 (several processes write checkpoints)",
    ),
    Mutant(
        "dist-reshard-shards-the-step-count",
        DIST,
        "if isinstance(p, DTensor) and torch.is_tensor(value) and value.shape == p.shape:",
        "if isinstance(p, DTensor) and torch.is_tensor(value):",
        (T_U_DTENSOR,),
        "AdamW's scalar step tensor is sharded like the parameter on resume (fails)",
    ),
    Mutant(
        "dist-full-tensors-skips-tuples",
        DIST,
        "if isinstance(tree, list | tuple):",
        "if isinstance(tree, list):",
        (T_U_DTENSOR,),
        "DTensors inside tuples reach the checkpoint sharded (each rank's shard only)",
    ),
    # ---- tlcm/conditioning.py --------------------------------------------------------------------
    Mutant(
        "cond-expand-check-only-larger",
        COND,
        "        if len(self) != 1:\n",
        "        if len(self) > batch:\n",
        (T_COND,),
        "expanding 2 samples to 4: torch's RuntimeError instead of the ValueError naming the sizes",
    ),
    Mutant(
        "sdxl-latents-ignore-the-vaes-mean-and-std",
        "tlcm/models/families/sd.py",
        "        if mean is None or std is None:\n",
        "        if True:\n",
        (
            "tests/test_models_units.py::test_sdxl_latents_use_the_vaes_per_channel_mean_and_std_as_diffusers_does",
        ),
        "an SDXL VAE with latents_mean / latents_std decodes and encodes unlike StableDiffusionXLPipeline",
    ),
    Mutant(
        "sdxl-latents-mean-and-std-swapped",
        "tlcm/models/families/sd.py",
        "        return vae_config.scaling_factor / view(std), view(mean)\n",
        "        return vae_config.scaling_factor / view(mean), view(std)\n",
        (
            "tests/test_models_units.py::test_sdxl_latents_use_the_vaes_per_channel_mean_and_std_as_diffusers_does",
        ),
        "the per-channel mean scales and the std shifts",
    ),
]
