"""A twelfth red-team audit, area eval (2026-12-06; 24 mutants, 21 survived at first, each now
caught): the evaluation suite's logic that runs without the metric libraries and the latent LPIPS
trainer. tlcm/eval/score.py: which image file a prompts.jsonl record names (its index, in record
order), an unfinished folder, the reference folder's image count and suffix case, a generate folder
as --teacher, the fid-t / --grid-prompts checks, the teacher's own FID (only its FID-T is left
out), the grid's shared-prompt columns; tlcm/eval/weights.py: a folder passed as a weights file, a
CLIP folder without config.json, every package of a metric checked, an absent parent package, the
default inception file = the one its source URL downloads; tlcm/eval/imagereward.py: 35 tokens, a
{"state_dict": ...} checkpoint, a checkpoint missing a layer; tlcm/latent_lpips/train.py: batches
over every training triplet, held-out triplets of the held-out images, the cosine over all steps,
the digit split at identity 1500, the 10-image minimum, --lr 0. At first only
score-image-file-of-the-next-index and score-generate-folder-as-reference-not-unwrapped (by
test_eval_generate.py's mean-score and FID-T tests) and score-grid-prompts-zero-refused (the FID-T
test passes --grid-prompts 0) were caught; each mutant now also names a unit test of
tests/test_eval_units.py. score-files-sorted-apart-from-their-prompts cannot change an output of
generate (it writes prompts.jsonl in index order) but breaks load_generated's contract for any other
record order. No equivalent mutant was written; none dropped. No bug found in the source."""

from run import Mutant

SCORE = "tlcm/eval/score.py"
WEIGHTS = "tlcm/eval/weights.py"
IMAGEREWARD = "tlcm/eval/imagereward.py"
LPIPS_TRAIN = "tlcm/latent_lpips/train.py"

T_MEAN = "tests/test_eval_generate.py::test_mean_score_averages_every_image_with_its_own_prompt"
T_FID_T = "tests/test_eval_generate.py::test_fid_t_compares_with_the_teacher_folder"
T_MISSING_WEIGHTS = "tests/test_eval.py::test_missing_weights_name_the_file_and_where_to_get_it"
T_CLIP_FOLDER = "tests/test_eval.py::test_clip_folder_with_either_tokenizer_file_and_flag_spelling"
T_IR_LAYOUT = "tests/test_eval.py::test_image_reward_loads_the_released_checkpoint_layout"
T_IR_TOKENS = "tests/test_eval.py::test_image_reward_encodes_the_prompt_tokens_with_their_padding_mask"
T_LPIPS_CORE = "tests/test_latent_lpips.py::test_training_core_two_steps_on_tiny_sd"
T_LPIPS_RECORD = "tests/test_latent_lpips.py::test_held_out_record_scores_latent_l2_as_the_baseline"

U = "tests/test_eval_units.py::"
T_PAIRS = U + "test_each_file_pairs_with_its_records_prompt_in_any_record_order"
T_PARTIAL = U + "test_a_folder_missing_any_image_is_refused"
T_REF = U + "test_reference_folder_needs_two_images_of_any_suffix_case"
T_REF_GEN = U + "test_a_generate_folder_as_reference_gives_its_images"
T_ARGS = U + "test_fid_t_needs_a_teacher_and_zero_grid_prompts_are_allowed"
T_TEACHER_ROW = U + "test_the_teacher_row_has_a_fid_but_no_fid_t_and_the_grid_shows_only_shared_prompts"
T_WFILE = U + "test_a_folder_is_not_a_weights_file_and_a_clip_folder_needs_its_config"
T_PACKAGES = U + "test_every_missing_package_is_named"
T_DEFAULTS = U + "test_default_weights_files_are_the_files_their_sources_name"
T_IR_CKPT = U + "test_image_reward_reads_a_wrapped_checkpoint_and_refuses_one_missing_a_layer"
T_IR_35 = U + "test_image_reward_reads_35_tokens_as_the_reference_implementation"
T_SPLIT = U + "test_training_samples_every_training_triplet_and_holds_out_the_heldout_images"
T_COSINE = U + "test_learning_rate_decays_on_a_cosine_to_zero_over_the_steps"
T_DIGITS = U + "test_digit_split_holds_out_identities_1500_to_1796_of_every_placement"
T_FOLDER = U + "test_an_image_folder_needs_ten_images_and_its_last_tenth_is_held_out"
T_LR = U + "test_a_zero_learning_rate_is_refused"

MUTANTS = [
    # ---- score.py: a generate folder, the reference folders, the arguments, the rows, the grid ----
    Mutant(
        "score-image-file-of-the-next-index",
        SCORE,
        """folder / "images" / f"{r['index']:05d}.png" for r in records]""",
        """folder / "images" / f"{r['index'] + 1:05d}.png" for r in records]""",
        (T_MEAN, T_PAIRS),
        "record k reads image k + 1: every prompt scored with its neighbour's image (and the last missing)",
    ),
    Mutant(
        "score-files-sorted-apart-from-their-prompts",
        SCORE,
        """files = [folder / "images" / f"{r['index']:05d}.png" for r in records]""",
        """files = sorted(folder / "images" / f"{r['index']:05d}.png" for r in records)""",
        (T_MEAN, T_PAIRS),
        "files in name order, prompts in record order: a folder whose records are out of index order "
        "(resumed, sharded) pairs images with other prompts",
    ),
    Mutant(
        "score-partial-folder-accepted",
        SCORE,
        "    if done < len(files):\n",
        "    if done == 0:\n",
        (T_MEAN, T_FID_T, T_PARTIAL),
        "an unfinished generate folder is scored (then crashes opening a missing image, or is a subset)",
    ),
    Mutant(
        "score-reference-of-one-image-accepted",
        SCORE,
        "    if len(files) < 2:\n",
        "    if len(files) < 1:\n",
        (T_FID_T, T_REF),
        "FID's covariance of one image is 0 / 0: the one-line error must come first",
    ),
    Mutant(
        "score-reference-upper-case-suffix-skipped",
        SCORE,
        "if p.suffix.lower() in IMAGE_SUFFIXES]",
        "if p.suffix in IMAGE_SUFFIXES]",
        (T_FID_T, T_REF),
        "a reference folder of .JPG files (cameras, some datasets) holds no images",
    ),
    Mutant(
        "score-generate-folder-as-reference-not-unwrapped",
        SCORE,
        """    if (folder / "meta.json").is_file():
        return load_generated(folder, flag).files""",
        """    if (folder / "meta.json").is_dir():
        return load_generated(folder, flag).files""",
        (T_FID_T, T_REF_GEN),
        "--teacher (a generate folder) is read as a plain image folder: its images/ are not found",
    ),
    Mutant(
        "score-fid-t-checks-the-reference",
        SCORE,
        """if "fid-t" in args.metrics and args.teacher is None:""",
        """if "fid-t" in args.metrics and args.reference is None:""",
        (T_FID_T, T_ARGS),
        "--metrics fid-t without --teacher passes the checks and fails late (Path(None))",
    ),
    Mutant(
        "score-grid-prompts-zero-refused",
        SCORE,
        "args.grid_prompts < 0:",
        "args.grid_prompts < 1:",
        (T_FID_T, T_ARGS),
        "--grid-prompts 0 (no grid, documented as >= 0) is refused",
    ),
    Mutant(
        "score-teachers-own-fid-left-out",
        SCORE,
        """same = m == "fid-t" and run.folder""",
        """same = m in ("fid", "fid-t") and run.folder""",
        (T_FID_T, T_TEACHER_ROW),
        "the teacher's FID against COCO is dropped with its FID-T against itself",
    ),
    Mutant(
        "score-grid-columns-of-different-prompts",
        SCORE,
        "if len({r.prompts[i] for r in runs}) == 1]",
        "if len({r.prompts[i] for r in runs}) >= 1]",
        (T_FID_T, T_TEACHER_ROW),
        "grid columns whose rows show other prompts under one prompt's title",
    ),
    # ---- weights.py -------------------------------------------------------------------------------
    Mutant(
        "weights-a-folder-accepted-as-the-file",
        WEIGHTS,
        '    if not path.is_file():\n        raise TLCMError(f"{path} is missing',
        '    if not path.exists():\n        raise TLCMError(f"{path} is missing',
        (T_MISSING_WEIGHTS, T_IR_LAYOUT, T_WFILE),
        "a folder where the .pt should be passes, then torch.load fails with IsADirectoryError",
    ),
    Mutant(
        "weights-clip-folder-without-config",
        WEIGHTS,
        """    if not (path / "config.json").is_file():""",
        """    if not path.is_dir():""",
        (T_MISSING_WEIGHTS, T_CLIP_FOLDER, T_WFILE),
        "a CLIP folder without config.json passes: transformers fails later, without the download hint",
    ),
    Mutant(
        "weights-only-the-first-package-checked",
        WEIGHTS,
        "missing = [m for m in modules if not _importable(m)]",
        "missing = [m for m in modules[:1] if not _importable(m)]",
        (T_MISSING_WEIGHTS, T_PACKAGES),
        "the second package of a metric (e.g. open_clip after torch) is not checked",
    ),
    Mutant(
        "weights-missing-parent-package-importable",
        WEIGHTS,
        "module set to None\n        return False",
        "module set to None\n        return True",
        (T_MISSING_WEIGHTS, T_PACKAGES),
        "a submodule of an absent package (find_spec raises) counts as installed",
    ),
    Mutant(
        "weights-inception-default-is-torchmetrics-name",
        WEIGHTS,
        """inception: Path = ROOT / "weights-inception-2015-12-05-6726825d.pth\"""",
        """inception: Path = ROOT / "pt_inception-2015-12-05-6726825d.pth\"""",
        (T_MISSING_WEIGHTS, T_DEFAULTS),
        "the default path is not the file the error tells the user to download",
    ),
    # ---- imagereward.py ---------------------------------------------------------------------------
    Mutant(
        "imagereward-77-tokens",
        IMAGEREWARD,
        "MAX_TOKENS = 35",
        "MAX_TOKENS = 77",
        (T_IR_TOKENS, T_IR_35),
        "CLIP's context length, not ImageReward's max_length=35: longer prompts score other rewards",
    ),
    Mutant(
        "imagereward-wrapped-checkpoint-not-unwrapped",
        IMAGEREWARD,
        """convert_state_dict(state.get("state_dict", state))""",
        """convert_state_dict(state)""",
        (T_IR_LAYOUT, T_IR_CKPT),
        "a checkpoint saved as {'state_dict': ...} maps no key and is refused",
    ),
    Mutant(
        "imagereward-missing-keys-checked-the-wrong-way",
        IMAGEREWARD,
        "missing = sorted(set(self.model.state_dict()) - set(state))",
        "missing = sorted(set(state) - set(self.model.state_dict()))",
        (T_IR_LAYOUT, T_IR_CKPT),
        "a checkpoint missing a layer loads with strict=False: that layer stays random",
    ),
    # ---- latent_lpips/train.py --------------------------------------------------------------------
    Mutant(
        "lpips-batches-index-the-heldout-count",
        LPIPS_TRAIN,
        "idx = torch.randint(args.triplets,",
        "idx = torch.randint(args.heldout_triplets,",
        (T_LPIPS_CORE, T_SPLIT),
        "batches draw from the first --heldout-triplets training triplets only (or past the end)",
    ),
    Mutant(
        "lpips-heldout-triplets-from-training-images",
        LPIPS_TRAIN,
        "test = make_triplets(vae, proxy, heldout_images,",
        "test = make_triplets(vae, proxy, train_images,",
        (T_LPIPS_CORE, T_LPIPS_RECORD, T_SPLIT),
        "the held-out 2AFC is measured on the training images",
    ),
    Mutant(
        "lpips-cosine-over-half-the-steps",
        LPIPS_TRAIN,
        "CosineAnnealingLR(opt, max(args.steps, 1))",
        "CosineAnnealingLR(opt, max(args.steps // 2, 1))",
        (T_LPIPS_CORE, T_COSINE),
        "the learning rate reaches 0 half way and climbs back to lr at the end",
    ),
    Mutant(
        "lpips-digit-1500-trained-on",
        LPIPS_TRAIN,
        "% 1797 >= 1500",
        "% 1797 > 1500",
        (T_LPIPS_CORE, T_DIGITS),
        "digit 1500 (the first held-out identity) in the training set",
    ),
    Mutant(
        "lpips-too-few-images-accepted",
        LPIPS_TRAIN,
        "if len(files) < 10:",
        "if len(files) < 2:",
        (T_LPIPS_CORE, T_FOLDER),
        "a folder of < 10 images has an empty held-out tenth",
    ),
    Mutant(
        "lpips-zero-learning-rate-accepted",
        LPIPS_TRAIN,
        "args.lr > 0)",
        "args.lr >= 0)",
        (T_LPIPS_CORE, T_LR),
        "--lr 0 trains nothing for minutes and writes the random network",
    ),
]
