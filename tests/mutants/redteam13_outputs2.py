"""A thirteenth red-team audit, area outputs2 (2026-12-07): the student export (tlcm/export.py),
the latent-LPIPS trainer and its data (tlcm/latent_lpips/), the CLIP-family scores and the score
registry (tlcm/scoring/), ImageReward, the evaluation prompt sets and the rewards (tlcm/rewards/),
on lines no earlier catalogue edits (36 mutants written; one proved equivalent and was dropped;
19 of the other 35 survived the existing tests at first, each now caught by
tests/test_outputs2_units.py). The survivors: the kohya file's name for a run given as "." or
"RUN/.." (the unresolved path's name), a format named twice, a full fine-tune's unet/ without its
config.json, the caller's gathered (FSDP2) weights ignored, the trainer's image folder (held-out
tenth, upper-case suffixes, short-side resize + centre crop, --steps 0, --images a file), the
latent <-> image convention of an SD3 / FLUX VAE (diffusers: (z - shift) * scale, decoded
z / scale + shift; the miniature has no shift), the aesthetic score with an empty head path, a
score registered for an unknown use, the prompt sets' edges (all of a set, every COCO image, an
empty list, blank entries), a batch of one prompt's unrelated prompt, and a prompt with a number
of several digits. The 36th mutant undoes this round's fix of a REAL BUG: ``shifted_prompts``
(tlcm/rewards/base.py) searched n - 1 offsets from the random shift, so it never looked at offset
shift - 1: in a batch ["a", "a", "b"] the second "a" got "a" as its unrelated prompt in about half
the draws although the batch has "b" (its docstring: "the same text is skipped when the batch has
another"), and the reward hinge then pushed down the reward of the image for its own prompt; it
now searches every offset mod n. (This moves the line redteam7_adversarial's
``unrelated-prompt-search-stops-early`` edits: that catalogue must follow.) Dropped as equivalent:
ImageReward's cross-attention mask all zeros (every image token masked alike: a uniform additive
shift, the softmax is unchanged; checked on a tiny model), ``save_safetensors`` without sorting
the tensors (safetensors orders them itself: the same bytes, checked), ``rpartition`` ->
``partition`` in kohya_state_dict (differs only for a module name holding ".lora_"),
``convert_state_dict``'s ``break`` (no key matches two patterns), spearman's ``[0, 1]`` ->
``[1, 0]`` and swapping two_afc's arguments (symmetric), ImageReward's ``padding="max_length"`` ->
``"longest"`` (the padding is masked). Not written: the HPSv2 folder's ``sorted(glob)`` (a folder's
listing order may happen to be sorted: no reliable test).
"""

from run import Mutant

EXPORT = "tlcm/export.py"
LTRAIN = "tlcm/latent_lpips/train.py"
LDATA = "tlcm/latent_lpips/data.py"
SCLIP = "tlcm/scoring/clip.py"
SREG = "tlcm/scoring/__init__.py"
IR = "tlcm/eval/imagereward.py"
PROMPTS = "tlcm/eval/prompts.py"
RBASE = "tlcm/rewards/base.py"
RCLIP = "tlcm/rewards/clip.py"
RDIGIT = "tlcm/toy/data.py"  # prompt_digit (moved from tlcm/rewards/digit.py)

T_EXP_LOAD = "tests/test_export.py::test_kohya_and_diffusers_files_load_as_the_student[sd]"
T_EXP_KEYS = "tests/test_export.py::test_kohya_key_mapping"
T_EXP_SAME = "tests/test_export.py::test_identical_runs_export_identical_bytes"
T_EXP_CONV = "tests/test_export.py::test_converter_writes_the_engines_bytes_and_refuses_bad_input"
T_EXP_GAMMA = "tests/test_export.py::test_the_exported_scheduler_keeps_the_grids_first_move_gamma"
T_EXP_FULL = "tests/test_export.py::test_full_finetune_snippet_loads_the_students_unet"
T_LP_HELD = "tests/test_latent_lpips.py::test_held_out_record_scores_latent_l2_as_the_baseline"
T_LP_SSIM = "tests/test_latent_lpips.py::test_proxy_ssim_is_one_on_equal_images_and_the_papers_formula"
T_LP_WB = "tests/test_latent_lpips.py::test_proxy_of_a_white_and_a_black_image_by_hand"
T_LP_TRIP = "tests/test_latent_lpips.py::test_triplets_are_the_proxy_distances_of_their_decoded_pairs"
T_LP_CORE = "tests/test_latent_lpips.py::test_training_core_two_steps_on_tiny_sd"
T_SC_NORM = "tests/test_score_maths.py::test_a_folders_preprocessor_mean_and_std_normalise_its_images"
T_SC_CLAMP = (
    "tests/test_score_maths.py::test_the_clip_reward_keeps_negative_cosines_and_the_metric_clamps_them"
)
T_SC_AES = "tests/test_score_maths.py::test_the_aesthetic_head_scores_without_dropout"
T_PLUMB = "tests/test_plumbing.py"
T_IR_STD = "tests/test_eval.py::test_image_reward_is_the_head_of_the_cls_token_standardised"
T_IR_LOAD = "tests/test_eval.py::test_image_reward_loads_the_released_checkpoint_layout"
T_PR_PARSE = "tests/test_eval.py::test_parti_hps_txt_jsonl_parsers_and_seeded_subsets"
T_PR_COCO = "tests/test_eval.py::test_coco_captions_one_seeded_caption_per_seeded_image"
T_PREF = "tests/test_preference.py"
T_PREF_CLIP = "tests/test_preference.py::test_clip_and_pickscore_rewards_by_hand"
T_PREF_AES = "tests/test_preference.py::test_aesthetic_reward_loads_heads_and_refuses_bad_files"
T_PREF_DIGIT = "tests/test_preference.py::test_digit_reward_is_the_classifiers_log_probability"

U = "tests/test_outputs2_units.py"
T_U_RUN_NAME = f"{U}::test_a_run_given_as_dot_or_dotdot_names_its_kohya_file_by_the_folder"
T_U_HEADER = f"{U}::test_the_rewritten_header_is_sorted_json_padded_with_spaces_and_loads"
T_U_DEDUP = f"{U}::test_a_format_named_twice_is_written_and_reported_once"
T_U_WEIGHTS = f"{U}::test_the_weights_the_caller_gathered_are_the_ones_exported"
T_U_FULL = f"{U}::test_a_full_fine_tune_exports_a_unet_folder_diffusers_loads"
T_U_FOLDER = f"{U}::test_a_folders_last_tenth_by_name_is_held_out_and_upper_case_suffixes_count"
T_U_CROP = f"{U}::test_a_wide_image_is_resized_by_its_short_side_and_centre_cropped"
T_U_ARGS = f"{U}::test_zero_steps_and_a_file_for_images_are_told_apart_before_anything_loads"
T_LL_FAMILY = "tests/test_latent_lpips.py::test_triplet_latents_are_scaled_as_the_familys_pipeline_does"
T_LL_MAIN = "tests/test_latent_lpips.py::test_the_trainer_scales_latents_as_its_model_folders_family"
T_U_SHIFT = f"{U}::test_latents_are_shifted_then_scaled_and_decoded_back_as_diffusers_does"
T_U_CHUNK = f"{U}::test_a_triplet_count_off_the_chunk_makes_exactly_that_many"
T_U_HEAD = f"{U}::test_the_aesthetic_score_with_an_empty_head_path_says_it_needs_one"
T_U_USE = f"{U}::test_a_score_registered_for_an_unknown_use_is_refused"
T_U_CALL = f"{U}::test_a_reward_called_on_images_scores_their_embeddings"
T_U_NEED = f"{U}::test_a_reward_without_its_folder_names_the_flag"
T_U_ONE = f"{U}::test_a_batch_of_one_prompt_is_its_own_unrelated_prompt"
T_U_UNRELATED = f"{U}::test_an_unrelated_prompt_is_another_text_whenever_the_batch_has_one"
T_U_DIGIT = f"{U}::test_the_digit_of_a_prompt_is_a_single_digit_or_a_digit_word"
T_U_WHOLE = f"{U}::test_a_prompt_set_can_be_asked_for_whole_and_blank_entries_are_not_prompts"
T_U_COCO = f"{U}::test_every_coco_image_can_be_asked_for"
T_U_PARTI = f"{U}::test_a_parti_prompt_with_commas_is_one_prompt"

MUTANTS = [
    # ---- the export (tlcm/export.py) -------------------------------------------------------------
    Mutant(
        "export-run-name-unresolved",
        EXPORT,
        'return Path(run_dir).resolve().name or "tlcm"',
        'return Path(run_dir).name or "tlcm"',
        (T_U_RUN_NAME,),
        "`python -m tlcm.export .` (or RUN/..) names the kohya file tlcm_kohya / .._kohya, not the run's name",
    ),
    Mutant(
        "export-kohya-unknown-part-not-refused",
        EXPORT,
        'if f"lora_{part}" not in parts:',
        "if False:",
        (T_EXP_KEYS,),
        "a DoRA magnitude or other non-A/B LoRA tensor fails with a bare KeyError instead of the one-line reason",
    ),
    Mutant(
        "export-diffusers-keys-unprefixed",
        EXPORT,
        'return {f"{prefix}.{k}": v for k, v in weights.items()}, metadata',
        "return dict(weights), metadata",
        (T_EXP_LOAD,),
        "the diffusers file's keys lack unet. / transformer.: the metadata's prefixed config no longer matches",
    ),
    Mutant(
        "export-header-metadata-unsorted",
        EXPORT,
        'header["__metadata__"] = dict(sorted(header["__metadata__"].items()))',
        'header["__metadata__"] = dict(header["__metadata__"].items())',
        (T_U_HEADER, T_EXP_SAME),
        "the header's metadata stays in safetensors' hash order: two identical runs write different bytes",
    ),
    Mutant(
        "export-header-padded-with-nul",
        EXPORT,
        "f.write(raw.ljust(size))",
        'f.write(raw.ljust(size, b"\\0"))',
        (T_U_HEADER, T_EXP_LOAD),
        "the rewritten header is padded with NUL bytes: not JSON whitespace, the file may not load",
    ),
    Mutant(
        "export-scheduler-gamma-is-first-gamma",
        EXPORT,
        "        gamma=grid.gamma,\n",
        "        gamma=grid.first_gamma,\n",
        (T_EXP_GAMMA,),
        "the exported scheduler samples every move with the first move's gamma",
    ),
    Mutant(
        "export-formats-not-deduplicated",
        EXPORT,
        "for file, build in (files[f] for f in dict.fromkeys(formats) if f in files)",
        "for file, build in (files[f] for f in formats if f in files)",
        (T_U_DEDUP,),
        "--format kohya kohya writes the file twice and reports it twice",
    ),
    Mutant(
        "export-full-finetune-without-config",
        EXPORT,
        "            student.net.save_config(folder)\n",
        "            folder.mkdir(parents=True, exist_ok=True)\n",
        (T_U_FULL,),
        "a full fine-tune's unet/ folder has no config.json: from_pretrained cannot load it",
    ),
    Mutant(
        "export-given-weights-ignored",
        EXPORT,
        "weights = student.state_dict() if weights is None else weights",
        "weights = student.state_dict()",
        (T_U_WEIGHTS,),
        "the state dict the caller gathered (FSDP2) is ignored: each process exports its own shard",
    ),
    Mutant(
        "export-existing-card-never-copied",
        EXPORT,
        "            if card.is_file():\n",
        "            if False:\n",
        (T_EXP_CONV,),
        "a converted export gets a new card without the run's training record instead of the run's card",
    ),
    # ---- the latent-LPIPS trainer (tlcm/latent_lpips/train.py) -----------------------------------
    Mutant(
        "lpips-images-heldout-is-the-first-part",
        LTRAIN,
        "return x[:cut], x[cut:]",
        "return x[cut:], x[:cut]",
        (T_U_FOLDER,),
        "a folder's first nine tenths are held out and the last tenth trained on",
    ),
    Mutant(
        "lpips-images-upper-case-suffix-skipped",
        LTRAIN,
        'p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}',
        'p.suffix in {".png", ".jpg", ".jpeg", ".webp"}',
        (T_U_FOLDER,),
        "a camera's IMG_0001.JPG images are skipped",
    ),
    Mutant(
        "lpips-images-squashed-not-cropped",
        LTRAIN,
        'TF.center_crop(TF.resize(TF.pil_to_tensor(Image.open(f).convert("RGB")), size), size)',
        'TF.center_crop(TF.resize(TF.pil_to_tensor(Image.open(f).convert("RGB")), [size, size]), size)',
        (T_U_CROP,),
        "non-square images are squashed to a square instead of resized by the short side and centre-cropped",
    ),
    Mutant(
        "lpips-l2-baseline-summed",
        LTRAIN,
        "d_l2 = triplet_distances(lambda a, b: (a - b).square().flatten(1).mean(1), z)",
        "d_l2 = triplet_distances(lambda a, b: (a - b).square().flatten(1).sum(1), z)",
        (T_LP_HELD,),
        "the record's mean latent L2 is the per-latent sum, not the default distance's mean",
    ),
    Mutant(
        "lpips-zero-steps-refused",
        LTRAIN,
        'check_counts({"--steps": args.steps}, minimum=0)',
        'check_counts({"--steps": args.steps})',
        (T_U_ARGS,),
        "--steps 0 (the untrained network's held-out numbers) is refused",
    ),
    Mutant(
        "lpips-images-file-accepted",
        LTRAIN,
        "if args.images is not None and not args.images.is_dir():",
        "if args.images is not None and not args.images.exists():",
        (T_U_ARGS,),
        "--images pointing at one image file passes the check and fails later with a traceback",
    ),
    # ---- its data (tlcm/latent_lpips/data.py) ----------------------------------------------------
    Mutant(
        "lpips-ssim-dynamic-range-one",
        LDATA,
        "c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2",
        "c1, c2 = 0.01**2, 0.03**2",
        (T_LP_SSIM, T_LP_WB),
        "SSIM's stabilisers for images in [0, 1], not [-1, 1] (dynamic range L = 2)",
    ),
    Mutant(
        "lpips-latent-shift-after-scale",
        LDATA,
        "    return (z - shift) * scale\n",
        "    return z * scale - shift\n",
        (T_U_SHIFT,),
        "an SD3 / FLUX VAE's latents are scaled then shifted: not the latents the transformer sees",
    ),
    Mutant(
        "lpips-decode-shift-subtracted",
        LDATA,
        "vae.decode(z / scale + shift)",
        "vae.decode(z / scale - shift)",
        (T_U_SHIFT,),
        "an SD3 / FLUX VAE decodes latents shifted the wrong way: the proxy sees other images",
    ),
    Mutant(
        "lpips-triplets-last-chunk-whole",
        LDATA,
        "m = min(chunk, n - start)",
        "m = chunk",
        (T_U_CHUNK, T_LP_TRIP),
        "a triplet count not a multiple of the chunk makes more triplets than asked",
    ),
    # ---- CLIP-family scores and the registry -----------------------------------------------------
    Mutant(
        "clip-std-read-from-the-mean",
        SCLIP,
        'cfg.get("image_std", OPENAI_STD)',
        'cfg.get("image_mean", OPENAI_STD)',
        (T_SC_NORM,),
        "a folder's preprocessor std is its mean (a copy-paste slip)",
    ),
    Mutant(
        "clip-score-clamps-the-reward",
        SCLIP,
        "return self.scale * (cos.clamp(min=0) if clamp else cos)",
        "return self.scale * cos.clamp(min=0)",
        (T_SC_CLAMP,),
        "the reward's negative cosines are clamped: no gradient away from unrelated images",
    ),
    Mutant(
        "clip-aesthetic-without-head-accepted",
        SCLIP,
        'if name == "aesthetic" and not head_file:',
        'if name == "aesthetic" and head_file is None:',
        (T_U_HEAD,),
        "an empty head path ('') passes, and Path('') (the working folder) is not a file: a confusing error",
    ),
    Mutant(
        "scoring-unknown-use-accepted",
        SREG,
        "    if use not in USES:\n",
        "    if use is None:\n",
        (T_U_USE,),
        "register_score(name, 'metrics') registers a use nothing reads: the score silently never exists",
    ),
    Mutant(
        "imagereward-mean-and-std-swapped",
        IR,
        "REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072",
        "REWARD_STD, REWARD_MEAN = 0.16717362830052426, 1.0333394966054072",
        (T_IR_STD,),
        "ImageReward standardised by (r - std) / mean",
    ),
    # ---- prompt sets -----------------------------------------------------------------------------
    Mutant(
        "prompts-parti-read-as-csv",
        PROMPTS,
        'rows = list(csv.DictReader(f, delimiter="\\t"))',
        "rows = list(csv.DictReader(f))",
        (T_U_PARTI, T_PR_PARSE),
        "PartiPrompts.tsv read as comma-separated: no Prompt column",
    ),
    Mutant(
        "prompts-all-of-a-set-refused",
        PROMPTS,
        "if num > len(prompts):",
        "if num >= len(prompts):",
        (T_U_WHOLE,),
        "--num-prompts equal to the set's size (all of it) is refused",
    ),
    Mutant(
        "prompts-coco-all-images-refused",
        PROMPTS,
        "if num > len(ids):",
        "if num >= len(ids):",
        (T_U_COCO,),
        "asking for every captioned COCO image (5000 of val2017) is refused",
    ),
    Mutant(
        "prompts-empty-set-accepted",
        PROMPTS,
        "    if not prompts:\n",
        "    if prompts is None:\n",
        (T_U_WHOLE,),
        "an empty HPSv2 list evaluates on no prompts instead of saying so",
    ),
    Mutant(
        "prompts-blank-hps-prompts-kept",
        PROMPTS,
        "return [_clean(p) for p in data if _clean(p)]",
        "return [_clean(p) for p in data]",
        (T_U_WHOLE,),
        "a blank entry of an HPSv2 list becomes an empty prompt",
    ),
    # ---- rewards ---------------------------------------------------------------------------------
    Mutant(
        "rewards-one-prompt-batch-crashes",
        RBASE,
        "    if n < 2:\n",
        "    if n < 1:\n",
        (T_U_ONE,),
        "a batch of one prompt asks torch.randint(1, 1): the hinge crashes at batch size 1",
    ),
    Mutant(
        "rewards-unrelated-search-misses-an-offset",
        RBASE,
        "j = next((k for k in range(n) if prompts[(i + shift + k) % n] != p), 0)",
        "j = next((k for k in range(n - 1) if prompts[(i + shift + k) % n] != p), 0)",
        (T_U_UNRELATED,),
        "the REAL BUG this round fixed: the search skips offset shift - 1, so in ['a', 'a', 'b'] the "
        "second 'a' is its own unrelated prompt in about half the draws",
    ),
    Mutant(
        "rewards-call-skips-embed",
        RBASE,
        "return self.score(self.embed(images), prompts)",
        "return self.score(images, prompts)",
        (T_U_CALL, T_PREF),
        "reward(images, prompts) scores raw pixels as if they were CLIP embeddings",
    ),
    Mutant(
        "rewards-clip-is-pickscore-scaled",
        RCLIP,
        'return ClipReward("clip", _need(spec, "clip_folder", "clip"), device)',
        'return ClipReward("pickscore", _need(spec, "clip_folder", "clip"), device)',
        (T_U_CALL, T_PREF_CLIP),
        "the clip reward is scaled by exp(logit_scale), not CLIP score's 100",
    ),
    Mutant(
        "rewards-need-accepts-empty",
        RCLIP,
        "    if not value:\n",
        "    if value is None:\n",
        (T_U_NEED, T_PREF),
        "an unset --...clip-folder ('') is not named: ClipEmbedder('') fails on the working folder",
    ),
    Mutant(
        "rewards-digit-any-number",
        RDIGIT,
        "if word.isdigit() and len(word) == 1:",
        "if word.isdigit():",
        (T_U_DIGIT,),
        "a prompt with a year or a count before the digit ('2 of 10 ... seven') asks for the number",
    ),
    # added 2026-12-07 (round 14): the latent LPIPS trainer scales latents by the model folder's
    # family (Family.latent_affine: SDXL's latents_mean / latents_std), as decode and encode_images do
    Mutant(
        "lpips-triplets-ignore-family",
        LDATA,
        "z = _to_latent(vae, triplet, family)",
        "z = _to_latent(vae, triplet, DEFAULT_FAMILY)",
        (T_LL_FAMILY,),
        "the triplets of a Playground-style SDXL VAE in SD1.5's latent scaling: not what its UNet sees",
    ),
    Mutant(
        "lpips-trainer-family-dropped",
        LTRAIN,
        "train, heldout, args, progress, family)",
        "train, heldout, args, progress)",
        (T_LL_MAIN,),
        "the command line trains every model folder's latent LPIPS in SD1.5's latent scaling",
    ),
    Mutant(
        "lpips-trainer-heldout-family-dropped",
        LTRAIN,
        "args.heldout_triplets, args.latent_noise, g, **kw)",
        "args.heldout_triplets, args.latent_noise, g, progress=progress)",
        (T_LL_MAIN,),
        "held-out triplets in another latent scaling than the training ones: the 2AFC numbers mislead",
    ),
]
