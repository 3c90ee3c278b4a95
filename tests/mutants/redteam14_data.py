"""A fourteenth red-team audit, area data (2026-12-07; 32 mutants, 22 survived at first, each now
caught by tests/test_data14_units.py; first run 1730 s of one core on a shared machine, the
survivors' rerun ~40 s each): the real-image source (a metadata.jsonl with a byte-order mark, a
file_name naming a folder, the caption-column hint of the first line only, a leftover .tar.partial
beside the shards, .webp members and the jpg-over-png preference, an oversized image as a one-line
refusal, the folder's fingerprint of its captions), the VAE's slices of at least one image, the
writers refusing an existing file, --check --limit below 1; the trajectory cache (a flow schedule
refused, a guidance scale of 0 kept in the rebuild command, shard size 0, the format version and
storage dtype checked, the first extra prompt named, float16 storage read back as float32, a NaN
guidance scale, M = T accepted); the prompts (every zero-width character cleaned, a JSON float
called a number) and the states' field order.

Skipped as equivalent: a shard caption's "utf-8-sig" decoded as "utf-8" (clean_prompt strips a
leading U+FEFF anyway), a prompt file's "utf-8-sig" decoded as "utf-8" (each line is cleaned,
U+FEFF included, before it is parsed). Not written: the cache sample's ``device`` default (CPU
tests hold one device) and the shard folders' glob order (the file system's, not reproducible).

No real bug found in the area."""

from run import Mutant

IMG = "tlcm/data/images.py"
TRAJ = "tlcm/data/trajectories.py"
PROMPTS = "tlcm/data/prompts.py"
STATES = "tlcm/data/states.py"

T_RI = "tests/test_real_images.py"
T_TJ = "tests/test_trajectories.py"
T_DU = "tests/test_data_units.py"
T_EV = "tests/test_evaldata_units.py"
T_BI = "tests/test_bad_inputs.py::test_bad_input"
T_NEW = "tests/test_data14_units.py"

MUTANTS = [
    # ---------------------------------------------------------------- images.py: opening
    Mutant(
        "metadata-byte-order-mark-kept",
        IMG,
        'text = file.read_bytes().decode("utf-8-sig")',
        'text = file.read_bytes().decode("utf-8")',
        (f"{T_NEW}::test_a_metadata_file_with_a_byte_order_mark_opens",),
        "a metadata.jsonl saved by Windows Notepad (leading BOM) is refused as 'not JSON' at line 1",
    ),
    Mutant(
        "metadata-file-name-a-folder-accepted",
        IMG,
        "if not image.is_file():",
        "if not image.exists():",
        (f"{T_NEW}::test_a_file_name_naming_a_folder_is_refused_when_opened",),
        "a file_name naming a folder opens, and fails only mid-run when the image is read",
    ),
    Mutant(
        "metadata-caption-column-hint-on-a-later-line",
        IMG,
        "and captions and not files:  # the first line",
        "and captions:  # the first line",
        (f"{T_NEW}::test_the_caption_column_hint_is_for_the_first_line_only",),
        "a later line missing the caption tells the user to switch --caption-column, which the "
        "earlier lines used correctly",
    ),
    Mutant(
        "shards-folder-takes-partial-shards",
        IMG,
        'found = sorted(p.glob("*.tar"))',
        'found = sorted(p.glob("*.tar*"))',
        (f"{T_NEW}::test_a_folder_of_shards_ignores_a_leftover_partial_shard",),
        "a folder of shards also indexes a writer's leftover .tar.partial (duplicated or truncated samples)",
    ),
    Mutant(
        "shards-glob-without-match-silent",
        IMG,
        '        if not found:\n            raise TLCMError(f"no file matches {pattern}: {self._hint}")\n',
        "",
        (T_RI,),
        "a glob matching nothing says 'holds no image-text pairs' without naming the pattern",
    ),
    Mutant(
        "shards-webp-not-read",
        IMG,
        'IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")',
        'IMAGE_EXTENSIONS = ("jpg", "png", "jpeg")',
        (f"{T_NEW}::test_webp_members_are_images_and_jpg_is_preferred",),
        "KEY.webp + KEY.txt (LAION shards) refused as a caption without its image",
    ),
    Mutant(
        "shards-png-preferred-over-jpg",
        IMG,
        'IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")',
        'IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")',
        (f"{T_NEW}::test_webp_members_are_images_and_jpg_is_preferred",),
        "a sample holding KEY.jpg and KEY.png trains on the png (diffusers' LCM scripts take the jpg)",
    ),
    Mutant(
        "shards-caption-without-image-skipped",
        IMG,
        "if image is None and text is not None:",
        "if image is None and text is None:",
        (T_RI,),
        "a caption whose image is missing is silently dropped (and a KEY.json-only key crashes)",
    ),
    # ---------------------------------------------------------------- images.py: reading
    Mutant(
        "image-decompression-bomb-uncaught",
        IMG,
        "except (OSError, EOFError, ValueError, SyntaxError, Image.DecompressionBombError) as err:",
        "except (OSError, EOFError, ValueError, SyntaxError) as err:",
        (f"{T_NEW}::test_an_oversized_image_is_a_one_line_refusal",),
        "an oversized image raises PIL's DecompressionBombError mid-run instead of a one-line refusal",
    ),
    Mutant(
        "image-divided-by-256",
        IMG,
        "x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0",
        "x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 256.0",
        (T_RI,),
        "white reads as 0.992, not 1",
    ),
    Mutant(
        "shard-caption-not-cleaned",
        IMG,
        'return clean_prompt(raw.decode("utf-8-sig"))',
        'return raw.decode("utf-8-sig")',
        (T_RI,),
        "a shard caption keeps its trailing newline: another prompt than the folder layout's",
    ),
    Mutant(
        "fingerprint-ignores-the-metadata",
        IMG,
        "digest.update((self.root / METADATA).read_bytes())",
        "digest.update(str(self.root).encode())",
        (f"{T_NEW}::test_the_fingerprint_of_an_image_folder_follows_its_captions",),
        "edited captions (same count) keep the fingerprint: a resume does not see the data changed",
    ),
    # ---------------------------------------------------------------- images.py: latents, writing, CLI
    Mutant(
        "encode-slice-of-zero-images",
        IMG,
        "size = max(1, _ENCODE_PIXELS // (images.shape[-2] * images.shape[-1]))",
        "size = _ENCODE_PIXELS // (images.shape[-2] * images.shape[-1])",
        (f"{T_NEW}::test_images_larger_than_a_slice_are_encoded_one_at_a_time",),
        "images above 1024 x 1024 pixels split into slices of 0: encode fails",
    ),
    Mutant(
        "writers-accept-a-file-as-folder",
        IMG,
        "if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):",
        "if out_dir.exists() and any(out_dir.iterdir()):",
        (f"{T_NEW}::test_the_writers_refuse_an_existing_file",),
        "--write-miniature onto an existing file: a raw NotADirectoryError, not the one-line refusal",
    ),
    Mutant(
        "cli-limit-unchecked",
        IMG,
        '        "--limit": args.limit,\n',
        "",
        (f"{T_NEW}::test_the_check_commands_limit_below_one_is_refused",),
        "--check --limit 0 (or -1) reads nothing and reports success",
    ),
    # ---------------------------------------------------------------- trajectories.py
    Mutant(
        "trajectories-flow-schedule-accepted",
        TRAJ,
        "    if not schedule.discrete:\n        raise ValueError(",
        "    if False:\n        raise ValueError(",
        (f"{T_NEW}::test_a_flow_schedule_has_no_trajectory_grid",),
        "a flow (SD3 / FLUX) teacher gets a VP integer grid, not the refusal pointing at states mds",
    ),
    Mutant(
        "trajectories-rebuild-drops-a-zero-guidance",
        TRAJ,
        'extra = "".join(f" --{flag} {v}" for flag, v in flags if v is not None)',
        'extra = "".join(f" --{flag} {v}" for flag, v in flags if v)',
        (f"{T_NEW}::test_the_rebuild_command_keeps_a_guidance_scale_of_zero",),
        "a run with guidance scale 0 is told to rebuild without --guidance-scale: the default 8.0 again",
    ),
    Mutant(
        "trajectories-build-shard-size-zero",
        TRAJ,
        "if min(samples_per_prompt, shard_size, batch_size) < 1 or not prompts:",
        "if min(samples_per_prompt, batch_size) < 1 or not prompts:",
        (f"{T_NEW}::test_a_shard_size_of_zero_is_refused_before_the_folder_is_made",),
        "build_cache(shard_size=0) raises range()'s ValueError after the folder was made",
    ),
    Mutant(
        "trajectories-build-stores-float16-always",
        TRAJ,
        "states = torch.empty(len(rows), len(grid), *shape, dtype=DTYPES[dtype][0])",
        "states = torch.empty(len(rows), len(grid), *shape, dtype=torch.float16)",
        (T_TJ, T_DU),
        "a float32 cache is written in float16 under a float32 manifest",
    ),
    Mutant(
        "trajectories-version-unchecked",
        TRAJ,
        "if found != (FORMAT, VERSION) or",
        "if found[0] != FORMAT or",
        (f"{T_NEW}::test_another_format_version_or_storage_dtype_is_refused",),
        "a cache of another format version is read as this one",
    ),
    Mutant(
        "trajectories-dtype-unchecked",
        TRAJ,
        'if found != (FORMAT, VERSION) or manifest.get("dtype") not in DTYPES:',
        "if found != (FORMAT, VERSION):",
        (f"{T_NEW}::test_another_format_version_or_storage_dtype_is_refused",),
        "an unknown storage dtype in manifest.json raises a bare KeyError, not the one-line refusal",
    ),
    Mutant(
        "trajectories-prompt-difference-past-the-shorter",
        TRAJ,
        "i = min(len(want), len(found or [])) if i is None else i",
        "i = max(len(want), len(found or [])) if i is None else i",
        (f"{T_NEW}::test_a_prompt_list_extending_the_caches_names_the_first_extra_prompt",),
        "when one prompt list extends the other, the refusal names no prompt (#3 = [] on both sides)",
    ),
    Mutant(
        "trajectories-require-rebuild-names-the-caches-values",
        TRAJ,
        "self.prompt_file,\n                    num_milestones,\n                    skip,",
        "self.prompt_file,\n                    self.num_milestones,\n                    self.skip,",
        (T_TJ, T_DU),
        "the loss's refusal tells the user to rebuild the cache it already has",
    ),
    Mutant(
        "trajectories-sample-keeps-the-storage-dtype",
        TRAJ,
        "pairs = pairs.to(device, torch.float32, non_blocking=True)",
        "pairs = pairs.to(device, non_blocking=True)",
        (f"{T_NEW}::test_states_are_stored_in_the_asked_dtype_and_read_as_float32",),
        "a float16 cache hands the MLCD loss float16 states (documented float32)",
    ),
    Mutant(
        "trajectories-cli-nan-guidance-accepted",
        TRAJ,
        "if not math.isfinite(args.guidance_scale):",
        "if math.isinf(args.guidance_scale):",
        (f"{T_NEW}::test_the_cli_checks_refuse_a_nan_guidance_scale_and_take_m_equal_t",),
        "--guidance-scale nan builds a cache of NaN states",
    ),
    Mutant(
        "trajectories-cli-m-equal-t-refused",
        TRAJ,
        "if args.num_milestones > steps:",
        "if args.num_milestones >= steps:",
        (f"{T_NEW}::test_the_cli_checks_refuse_a_nan_guidance_scale_and_take_m_equal_t",),
        "--num-milestones T (every step a milestone, skip 1) refused though trajectory_grid takes it",
    ),
    Mutant(
        "trajectories-cli-counts-of-zero-accepted",
        TRAJ,
        '        if value is not None and value < 1:\n            raise TLCMError(f"{flag} must be >= 1, got {value}")',
        '        if value is not None and value < 0:\n            raise TLCMError(f"{flag} must be >= 1, got {value}")',
        (f"{T_BI}[--samples-per-prompt 0]", T_TJ, T_DU),
        "--samples-per-prompt 0 passes the checks",
    ),
    # ---------------------------------------------------------------- prompts.py
    Mutant(
        "prompts-zero-width-non-joiner-kept",
        PROMPTS,
        'ZERO_WIDTH = "\\u200b\\u200c\\u200d\\u2060\\ufeff"',
        'ZERO_WIDTH = "\\u200b\\u200d\\u2060\\ufeff"',
        (f"{T_NEW}::test_every_zero_width_character_is_cleaned_from_a_prompts_ends",),
        "a prompt ending in U+200C keeps it: another token sequence than the clean prompt",
    ),
    Mutant(
        "prompts-trailing-whitespace-kept",
        PROMPTS,
        '_ENDS = re.compile(f"^[\\\\s{ZERO_WIDTH}]+|[\\\\s{ZERO_WIDTH}]+$")',
        '_ENDS = re.compile(f"^[\\\\s{ZERO_WIDTH}]+")',
        (T_RI, T_EV, "tests/test_reliability_units.py"),
        "'a red cube ' and 'a red cube' are two prompts",
    ),
    Mutant(
        "prompts-json-float-called-null",
        PROMPTS,
        'int: "number", float: "number"}',
        'int: "number"}',
        (f"{T_NEW}::test_a_jsonl_number_line_is_called_a_number",),
        "a .jsonl line 3.5 is refused as 'a JSON null'",
    ),
    Mutant(
        "prompts-folder-not-refused",
        PROMPTS,
        '    if path.is_dir():\n        raise TLCMError(f"prompt file {path} is a folder, not a file: {hint}")\n',
        "",
        (f"{T_BI}[prompt file is a folder]", T_EV),
        "a folder named p.txt: 'does not exist', which it does",
    ),
    # ---------------------------------------------------------------- states.py
    Mutant(
        "states-t-n-and-t-s-swapped",
        STATES,
        "    t_n: torch.Tensor\n    t_s: torch.Tensor\n",
        "    t_s: torch.Tensor\n    t_n: torch.Tensor\n",
        (T_TJ, "tests/test_objectives.py"),
        "every positional TrajectoryStates reads its skip target as its segment edge",
    ),
]
