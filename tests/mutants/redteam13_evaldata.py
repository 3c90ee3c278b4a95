"""A thirteenth red-team audit, area evaldata (2026-12-07; 37 mutants, 20 survived at first, each now
caught): the evaluation suite (FID statistics and their cache, the clean-fid resize, CLIP / HPS
preprocessing and open_clip cosines, generation settings, result tables and grids) and the data
readers (image folders, webdataset shards, prompt files, the toy digits).

One REAL BUG: ``load_inception`` never set the ``weights_file`` attribute that ``image_stats`` reads
for its cache key, so every key held the constant "inception": a rescore into the same --out with
another --weights.inception was served the reference statistics of the first weights (a FID
between two feature spaces). Fixed in tlcm/eval/fid.py (the network records its weights file);
``fid-inception-weights-file-not-recorded`` re-introduces it, and
``fid-cache-key-ignores-the-inception-file`` (equivalent before the fix) is now catchable.

Survivors at first (new tests in tests/test_evaldata_units.py): the bicubic resize, a dropped
last partial batch, the Inception cache key, HPS crop-before-resize, generate's --steps 1 and
its resume check of --seed, the toy table's separator row, compare's check of score rows, jitter
strength 0, real-pair subsets in index order, the prompt files' UTF-8 error line, a lone surrogate
at index 0 and a JSON boolean's name, shard caption order (.txt over .caption), whitespace
metadata lines, ``verify``'s limit, the fingerprint of rewritten shards, the grid label's wrap
width, and the caption column's validation. Seven mutants caught at first by existing tests also
name a new unit test first (run folder kinds, the results table's separator, the grid's height,
evaluate's --steps 1, placed digits' labels, save_grid's rounding, the open_clip cosine).

Skipped: dropping ``convert("RGB")`` in ``inception_batch`` or the CLIP ``_stack`` (equivalent:
score.py converts every image to RGB before either sees it); unsorted shard globs / folders (the
test file systems list them sorted anyway: a flaky mutant)."""

from run import Mutant

FID = "tlcm/eval/fid.py"
METRICS = "tlcm/eval/metrics.py"
PIPELINE = "tlcm/eval/pipeline.py"
GENERATE = "tlcm/eval/generate.py"
TABLE = "tlcm/eval/table.py"
IMAGES = "tlcm/data/images.py"
PROMPTS = "tlcm/data/prompts.py"
TOY = "tlcm/toy/data.py"
EVALUATE = "tlcm/evaluate.py"
GRID = "tlcm/images.py"

T_EVAL = "tests/test_eval.py"
T_REAL = "tests/test_real_images.py"
T_TOY = "tests/test_toy.py"
T_SUMMARY = "tests/test_summary.py"
T_GENERATE = "tests/test_eval_generate.py"
T_RELIABILITY = "tests/test_reliability_units.py"
T_PLUMBING = "tests/test_plumbing.py"
T_OUTPUT = "tests/test_output_units.py"

U = "tests/test_evaldata_units.py"
T_U_FID_RESIZE_BILINEAR = f"{U}::test_fid_resize_is_a_cubic_kernel_that_overshoots_at_an_edge"
T_U_FID_LAST_PARTIAL_BATCH_DROPPED = f"{U}::test_fid_statistics_count_every_image_of_a_last_partial_batch"
T_U_FID_CACHE_KEY_IGNORES_THE_INCEPTION_FILE = (
    f"{U}::test_fid_statistics_cached_for_one_inception_file_are_not_served_to_another"
)
T_U_HPS_CROP_BEFORE_RESIZE = f"{U}::test_hps_preprocessing_resizes_the_short_side_before_the_centre_crop"
T_U_GENERATE_ONE_STEP_REFUSED = f"{U}::test_generate_takes_one_step"
T_U_GENERATE_RESUME_IGNORES_THE_SEED = f"{U}::test_generate_refuses_to_resume_a_folder_of_another_seed"
T_U_EVALUATE_MARKDOWN_SEPARATOR_ONE_SHORT = f"{U}::test_toy_markdown_table_separator_has_a_cell_per_column"
T_U_COMPARE_ACCEPTS_ROWS_MISSING_A_SCORE = f"{U}::test_compare_refuses_a_student_score_file_without_fd"
T_U_TOY_AUGMENT_ANGLE_IGNORES_STRENGTH = f"{U}::test_jitter_of_strength_zero_is_the_identity"
T_U_TOY_REAL_PAIRS_SUBSET_UNSORTED = f"{U}::test_a_real_pair_subset_keeps_index_order"
T_U_PROMPTS_UTF8_ERROR_LINE_FROM_ZERO = f"{U}::test_a_non_utf8_prompt_file_names_the_line_of_the_bad_byte"
T_U_PROMPTS_LONE_SURROGATE_FIRST_CHARACTER_ACCEPTED = (
    f"{U}::test_a_prompt_starting_with_a_lone_surrogate_is_refused"
)
T_U_PROMPTS_JSON_BOOLEAN_CALLED_NULL = f"{U}::test_a_jsonl_boolean_line_is_called_a_boolean"
T_U_SHARDS_CAPTION_PREFERRED_OVER_TXT = f"{U}::test_a_shard_reads_key_txt_over_key_caption"
T_U_METADATA_WHITESPACE_LINE_REFUSED = f"{U}::test_a_metadata_line_of_spaces_is_blank"
T_U_VERIFY_LIMIT_IGNORED = f"{U}::test_verify_reads_only_the_first_limit_samples"
T_U_FINGERPRINT_IGNORES_SHARD_SIZES = (
    f"{U}::test_the_fingerprint_of_shards_rewritten_under_the_same_names_changes"
)
T_U_PIPELINE_RUN_NEEDS_CHECKPOINTS_AND_EXPORT = (
    f"{U}::test_a_run_folder_with_checkpoints_but_no_export_is_a_run"
)
T_U_RESULTS_SEPARATOR_ONE_CELL_SHORT = f"{U}::test_results_markdown_separator_has_a_cell_per_column"
T_U_GRID_HEIGHT_IGNORES_THE_PROMPT_BAND = (
    f"{U}::test_the_image_grids_last_row_is_whole_under_a_band_of_prompts"
)
T_U_EVALUATE_ONE_STEP_REFUSED = f"{U}::test_evaluate_takes_one_step"
T_U_TOY_PLACED_LABELS_INTERLEAVED = f"{U}::test_placed_digits_keep_the_label_of_image_i_mod_1797"
T_U_SAVE_GRID_TRUNCATES_INSTEAD_OF_ROUNDING = f"{U}::test_save_grid_quantises_like_the_image_writers"
T_U_WRAP = f"{U}::test_a_grid_label_as_long_as_the_width_stays_on_one_line"
T_U_CAPTION_COLUMN = f"{U}::test_a_metadata_line_without_the_caption_column_is_named"
T_U_OPEN_CLIP = f"{U}::test_open_clip_scores_are_the_cosine_of_the_embeddings"

MUTANTS = [
    # ---- FID statistics -------------------------------------------------------------------------
    Mutant(
        "fid-stats-reset-every-batch",
        FID,
        "if self.n == 0:",
        "if self.n >= 0:",
        (T_EVAL,),
        "each batch restarts the sums while the count keeps growing: only the last batch is measured",
    ),
    Mutant(
        "fid-counts-features-not-images",
        FID,
        "self.n += x.shape[0]",
        "self.n += x.shape[1]",
        (T_EVAL,),
        "the image count is the feature width: the mean and covariance are divided by the wrong N",
    ),
    Mutant(
        "fid-resize-bilinear",
        FID,
        ".resize((INCEPTION_SIZE,) * 2, Image.Resampling.BICUBIC)",
        ".resize((INCEPTION_SIZE,) * 2, Image.Resampling.BILINEAR)",
        (T_U_FID_RESIZE_BILINEAR,),
        "not clean-fid's PIL bicubic resize: FIDs no longer compare with the published ones",
    ),
    Mutant(
        "fid-last-partial-batch-dropped",
        FID,
        "for start in range(0, len(files), batch_size):",
        "for start in range(0, len(files) - batch_size + 1, batch_size):",
        (T_U_FID_LAST_PARTIAL_BATCH_DROPPED,),
        "drop_last: the images of a last partial batch are never measured",
    ),
    Mutant(
        "fid-cache-key-ignores-the-inception-file",
        FID,
        "    entries += [[inception.name, inception.stat().st_size if inception.is_file() else None]]\n",
        "",
        (T_U_FID_CACHE_KEY_IGNORES_THE_INCEPTION_FILE,),
        "reference statistics cached with other Inception weights are served as these weights' ones",
    ),
    Mutant(
        "fid-inception-weights-file-not-recorded",
        FID,
        "    net.weights_file = Path(path)  # image_stats' cache key: statistics of other weights are others\n",
        "",
        (T_U_FID_CACHE_KEY_IGNORES_THE_INCEPTION_FILE,),
        "REAL BUG (fixed): load_inception never set net.weights_file, so image_stats keyed its cache on "
        "the constant 'inception': a rescore with other --weights.inception reused stale statistics",
    ),
    # ---- CLIP-family preprocessing -------------------------------------------------------------
    Mutant(
        "clip-transformers-mean-std-swapped",
        METRICS,
        "clip_transform(self.clip.size, mean, std)",
        "clip_transform(self.clip.size, std, mean)",
        (T_EVAL,),
        "the CLIP normalisation divides by the mean and subtracts the std",
    ),
    Mutant(
        "hps-crop-before-resize",
        METRICS,
        "            T.Resize(size, BICUBIC),\n            T.CenterCrop(size),\n",
        "            T.CenterCrop(size),\n            T.Resize(size, BICUBIC),\n",
        (T_U_HPS_CROP_BEFORE_RESIZE,),
        "HPS scores a centre patch of the full-size image instead of the resized whole",
    ),
    # ---- pipeline / generate --------------------------------------------------------------------
    Mutant(
        "pipeline-run-needs-checkpoints-and-export",
        PIPELINE,
        'if (path / "checkpoints").is_dir() or (path / "student").is_dir():',
        'if (path / "checkpoints").is_dir() and (path / "student").is_dir():',
        (T_U_PIPELINE_RUN_NEEDS_CHECKPOINTS_AND_EXPORT, T_GENERATE),
        "a run folder without an export (only checkpoints/) is refused as no student",
    ),
    Mutant(
        "pipeline-student-M-steps-refused",
        PIPELINE,
        "if not 1 <= steps <= m:",
        "if not 1 <= steps < m:",
        (T_GENERATE,),
        "a student cannot sample its full M steps",
    ),
    Mutant(
        "generate-one-step-refused",
        GENERATE,
        "if args.steps is not None and args.steps < 1:",
        "if args.steps is not None and args.steps <= 1:",
        (T_U_GENERATE_ONE_STEP_REFUSED,),
        "--steps 1, the one-step student the papers score, is refused",
    ),
    Mutant(
        "generate-resume-ignores-the-seed",
        GENERATE,
        'changed = [k for k in meta if k != "label" and old.get(k) != meta[k]]',
        'changed = [k for k in meta if k not in ("label", "seed") and old.get(k) != meta[k]]',
        (T_U_GENERATE_RESUME_IGNORES_THE_SEED,),
        "a rerun with another --seed mixes two seeds' images (and prompt subsets) in one folder",
    ),
    # ---- tables ---------------------------------------------------------------------------------
    Mutant(
        "results-separator-one-cell-short",
        TABLE,
        'lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]',
        'lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(metrics)]',
        (T_U_RESULTS_SEPARATOR_ONE_CELL_SHORT, T_EVAL),
        "the markdown separator row lacks the model and steps cells: not a table on GitHub",
    ),
    Mutant(
        "grid-height-ignores-the-prompt-band",
        TABLE,
        "size = (label_width + cols * (thumb + pad), top + len(rows) * (thumb + pad))",
        "size = (label_width + cols * (thumb + pad), len(rows) * (thumb + pad))",
        (T_U_GRID_HEIGHT_IGNORES_THE_PROMPT_BAND, T_OUTPUT),
        "with prompts above the columns, the last row of images is cut off",
    ),
    Mutant(
        "evaluate-markdown-separator-one-short",
        EVALUATE,
        '"|" + "---|" * len(columns)]',
        '"|" + "---|" * (len(columns) - 1)]',
        (T_U_EVALUATE_MARKDOWN_SEPARATOR_ONE_SHORT,),
        "the toy tables' separator row lacks a cell: not a table on GitHub",
    ),
    Mutant(
        "evaluate-one-step-refused",
        EVALUATE,
        "if not steps or min(steps) < 1:",
        "if not steps or min(steps) <= 1:",
        (T_U_EVALUATE_ONE_STEP_REFUSED, T_SUMMARY),
        "--steps 1 refused by teacher-table and student",
    ),
    Mutant(
        "compare-refuses-an-unrecorded-count",
        EVALUATE,
        "if ours and theirs and ours != theirs:",
        "if ours != theirs:",
        (T_SUMMARY,),
        "a score file written before prompt counts were recorded no longer compares",
    ),
    Mutant(
        "compare-accepts-rows-missing-a-score",
        EVALUATE,
        "set(keys) <= r.keys()",
        "set(keys) & r.keys()",
        (T_U_COMPARE_ACCEPTS_ROWS_MISSING_A_SCORE,),
        "an eval.json row without fd passes the check and fails later with a KeyError",
    ),
    # ---- toy data -------------------------------------------------------------------------------
    Mutant(
        "toy-eval-prompts-one-template-per-digit",
        TOY,
        "prompts.append(prompt_for(d, i))",
        "prompts.append(prompt_for(d, d))",
        (T_TOY,),
        "each digit is evaluated with a single template, not every template",
    ),
    Mutant(
        "toy-place-centre-range-s",
        TOY,
        "centre = (u[:, 2:] * 2 - 1) * (1 - s)[:, None]",
        "centre = (u[:, 2:] * 2 - 1) * s[:, None]",
        (T_TOY,),
        "placed digits run off the canvas",
    ),
    Mutant(
        "toy-augment-zero-padding",
        TOY,
        'padding_mode="border"',
        'padding_mode="zeros"',
        (T_TOY,),
        "jitter uncovers grey (0) borders instead of the background",
    ),
    Mutant(
        "toy-augment-angle-ignores-strength",
        TOY,
        "angle = u[:, 0] * 0.1745 * strength",
        "angle = u[:, 0] * 0.1745",
        (T_U_TOY_AUGMENT_ANGLE_IGNORES_STRENGTH,),
        "strength 0 still rotates: the jitter cannot be turned off",
    ),
    Mutant(
        "toy-placed-labels-interleaved",
        TOY,
        "y = y.repeat(placements)",
        "y = y.repeat_interleave(placements)",
        (T_U_TOY_PLACED_LABELS_INTERLEAVED, T_TOY),
        "placed images are concatenated placement by placement, labels repeated digit by digit",
    ),
    Mutant(
        "toy-real-pairs-subset-unsorted",
        TOY,
        "[:n].sort().values",
        "[:n]",
        (T_U_TOY_REAL_PAIRS_SUBSET_UNSORTED,),
        "a subset of real pairs comes in permutation order, not index order (documented)",
    ),
    # ---- prompt files ---------------------------------------------------------------------------
    Mutant(
        "prompts-utf8-error-line-from-zero",
        PROMPTS,
        'line = data[: err.start].count(b"\\n") + 1',
        'line = data[: err.start].count(b"\\n")',
        (T_U_PROMPTS_UTF8_ERROR_LINE_FROM_ZERO,),
        "a non-UTF-8 prompt file's error names the line above the bad byte",
    ),
    Mutant(
        "prompts-lone-surrogate-first-character-accepted",
        PROMPTS,
        "if (bad := _lone_surrogate(prompt)) is not None:",
        "if bad := _lone_surrogate(prompt):",
        (T_U_PROMPTS_LONE_SURROGATE_FIRST_CHARACTER_ACCEPTED,),
        "a prompt starting with a lone surrogate (index 0) passes and fails in the tokenizer",
    ),
    Mutant(
        "prompts-json-boolean-called-null",
        PROMPTS,
        'bool: "boolean", ',
        "",
        (T_U_PROMPTS_JSON_BOOLEAN_CALLED_NULL,),
        "a .jsonl line `true` is reported as a JSON null",
    ),
    # ---- real image-text sources ----------------------------------------------------------------
    Mutant(
        "shards-caption-preferred-over-txt",
        IMAGES,
        "text = next((members[e] for e in TEXT_EXTENSIONS if e in members), None)",
        "text = next((members[e] for e in reversed(TEXT_EXTENSIONS) if e in members), None)",
        (T_U_SHARDS_CAPTION_PREFERRED_OVER_TXT,),
        "KEY.caption is read over KEY.txt (documented order: txt, text, caption)",
    ),
    Mutant(
        "metadata-whitespace-line-refused",
        IMAGES,
        "            if not line.strip():\n                continue\n            try:\n                record = json.loads(line)",
        "            if not line:\n                continue\n            try:\n                record = json.loads(line)",
        (T_U_METADATA_WHITESPACE_LINE_REFUSED,),
        "a metadata.jsonl line of spaces is reported as bad JSON",
    ),
    Mutant(
        "verify-limit-ignored",
        IMAGES,
        "count = len(self) if limit is None else min(limit, len(self))",
        "count = len(self) if limit is None else max(limit, len(self))",
        (T_U_VERIFY_LIMIT_IGNORED,),
        "--check --limit N reads every sample (and an N past the end raises IndexError)",
    ),
    Mutant(
        "fingerprint-ignores-shard-sizes",
        IMAGES,
        'digest.update(f"{shard.name}/{shard.stat().st_size}\\n".encode())',
        'digest.update(f"{shard.name}\\n".encode())',
        (T_U_FINGERPRINT_IGNORES_SHARD_SIZES,),
        "a resume over re-written shards of the same names is not noticed",
    ),
    # ---- image grids ----------------------------------------------------------------------------
    Mutant(
        "save-grid-truncates-instead-of-rounding",
        GRID,
        '(grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")',
        '(grid.permute(1, 2, 0).numpy() * 255).astype("uint8")',
        (T_U_SAVE_GRID_TRUNCATES_INSTEAD_OF_ROUNDING, T_PLUMBING),
        "grids are darker by up to one level than the PNGs the image writers make of the same tensor",
    ),
    # ---- added after the first run ----------------------------------------------------------------
    Mutant(
        "generate-every-rank-takes-rank-zeros-share",
        GENERATE,
        "todo = [i for i in range(rank, len(records), world)",
        "todo = [i for i in range(0, len(records), world)",
        (T_GENERATE,),
        "under torchrun every process makes rank 0's images; the others' are never made",
    ),
    Mutant(
        "teacher-table-prompt-count-per-digit",
        EVALUATE,
        '"prompts": 10 * samples_per_digit,',
        '"prompts": samples_per_digit,',
        (T_SUMMARY,),
        "the teacher table records the prompts per digit as the prompt count: compare refuses it",
    ),
    Mutant(
        "grid-label-wrap-one-short",
        TABLE,
        "if line and len(line) + 1 + len(word) > width:",
        "if line and len(line) + 1 + len(word) >= width:",
        (T_U_WRAP, T_OUTPUT),
        "a label of exactly the width is wrapped",
    ),
    Mutant(
        "metadata-caption-column-not-validated",
        IMAGES,
        'for key in ("file_name", col):',
        'for key in ("file_name", "text"):',
        (T_U_CAPTION_COLUMN, T_REAL),
        "with --caption-column, a line lacking that column fails later with a KeyError",
    ),
    Mutant(
        "open-clip-cosine-averaged",
        METRICS,
        "cos = (image.float() * text.float()).sum(-1)",
        "cos = (image.float() * text.float()).mean(-1)",
        (T_U_OPEN_CLIP, T_EVAL),
        "open_clip CLIP score / HPS are the cosine divided by the embedding width",
    ),
]
