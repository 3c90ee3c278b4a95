"""The twentieth round (2026-12-07, each mutant written with its test and caught): the run folder
stays locked through tlcm.train's scoring and card."""

from run import Mutant

C = "tests/test_cli_units.py"
T_SCORE_LOCK = f"{C}::test_the_run_folder_stays_locked_until_the_scores_and_card_are_written"

MUTANTS = [
    Mutant(
        "scoring-unlocked",
        "tlcm/train.py",
        "        lock = lock_run(recipe.runtime.out_dir)\n",
        "        lock = None\n",
        (T_SCORE_LOCK,),
        "another training may start in the folder while eval.json and the card are rewritten",
    ),
    Mutant(
        "lock-released-before-scoring",
        "tlcm/train.py",
        "        scores = _score(run, recipe, assets) if assets is not None else None\n",
        "        lock.release()\n"
        "        scores = _score(run, recipe, assets) if assets is not None else None\n",
        (T_SCORE_LOCK,),
        "the lock ends with the Trainer's run, before the scores (the gap walkthrough 8 left)",
    ),
]

W11 = "tests/test_walkthrough11_units.py"
T_RECORDED = f"{W11}::test_a_run_records_its_imports_and_a_reader_without_them_is_told_which"
MUTANTS += [
    Mutant(
        "imports-not-recorded",
        "tlcm/resume.py",
        '"imports": recorded_imports(),',
        '"imports": [],',
        (T_RECORDED,),
        "a run's readers are told 'pass the --import MODULE of that training run' with no name",
    ),
    Mutant(
        "import-path-recorded-relative",
        "tlcm/user_modules.py",
        "str(Path(_GIVEN[n]).resolve()) if",
        "_GIVEN[n] if",
        (T_RECORDED,),
        "a .py module given relative to the training's folder is named wrongly from anywhere else",
    ),
    Mutant(
        "import-flags-unquoted",
        "tlcm/models/folders.py",
        'flags = " ".join(f"--import {shlex.quote(m)}" for m in imports)',
        'flags = " ".join(f"--import {m}" for m in imports)',
        (T_RECORDED,),
        "a recorded path with a space is named as two arguments",
    ),
]

TR = "tests/test_trajectories.py"
T_TOKENS = f"{TR}::test_a_cache_encoded_to_another_prompt_length_is_refused_and_another_dtype_noted"
T_CACHE_CLI = f"{TR}::test_the_cache_cli_loads_the_teacher_in_the_frozen_dtype_and_prompt_length_asked"
MUTANTS += [
    Mutant(
        "cache-prompt-length-unchecked",
        "tlcm/data/trajectories.py",
        "        if tokens != ours:\n",
        "        if False:\n",
        (T_TOKENS,),
        "a cache encoded at 120 T5 tokens trains a run at 16: targets of other conditioning",
    ),
    Mutant(
        "cache-dtype-noted-when-equal",
        "tlcm/data/trajectories.py",
        "    if built is not None and built != ours:\n",
        "    if built is not None and built == ours:\n",
        (T_TOKENS,),
        "every matching cache prints a dtype warning, a mismatched one none",
    ),
    Mutant(
        "cache-rebuild-forgets-the-length",
        "tlcm/data/trajectories.py",
        '        ("max-sequence-length", max_sequence_length),\n',
        "",
        (T_TOKENS,),
        "the rebuild command builds the same wrong-length cache again",
    ),
    Mutant(
        "cache-cli-ignores-frozen-dtype",
        "tlcm/data/trajectories.py",
        "    weights = frozen_dtype(args.frozen_dtype, device, autocast=True)\n",
        "    weights = torch.float32\n",
        (T_CACHE_CLI,),
        "--frozen-dtype bf16 builds in fp32 (and the manifest says so): no way to match a bf16 run",
    ),
    Mutant(
        "cache-cli-ignores-the-length",
        "tlcm/data/trajectories.py",
        "    length = args.max_sequence_length\n",
        "    length = None\n",
        (T_CACHE_CLI,),
        "--max-sequence-length is accepted and unused",
    ),
]

AM = "tests/test_attention_mask.py"
T_AM_TO = f"{AM}::test_to_casts_the_embeddings_and_keeps_the_masks_dtype_and_batch_ops_carry_it"
T_AM_NET = f"{AM}::test_the_mask_reaches_the_unet_and_its_features"
T_AM_STORE = f"{AM}::test_the_embedding_cache_keeps_the_mask_in_its_dtype"
MUTANTS += [
    Mutant(
        "mask-cast-to-bf16",
        "tlcm/conditioning.py",
        "lambda t: t.to(*args, **kwargs) if t.is_floating_point() else t.to(device or t.device)",
        "lambda t: t.to(*args, **kwargs)",
        (T_AM_TO,),
        "a frozen-bf16 run hands the network a bf16 attention mask",
    ),
    Mutant(
        "mask-not-passed-to-the-unet",
        "tlcm/models/families/sd.py",
        '        kwargs["encoder_attention_mask"] = cond.attention_mask\n',
        "        pass\n",
        (T_AM_NET,),
        "padding tokens attended: PixArt-style predictions 0.53 off (walkthrough 11)",
    ),
    Mutant(
        "mask-dropped-from-the-features",
        "tlcm/models/families/sd.py",
        '            text["encoder_attention_mask"] = ((1 - cond.attention_mask.to(h.dtype)) * -10000.0).unsqueeze(1)\n',
        "            pass\n",
        (T_AM_NET,),
        "the teacher-feature discriminator sees unmasked features, the network masked ones",
    ),
    Mutant(
        "mask-bias-inverted",
        "tlcm/models/families/sd.py",
        "((1 - cond.attention_mask.to(h.dtype)) * -10000.0)",
        "((cond.attention_mask.to(h.dtype)) * -10000.0)",
        (T_AM_NET,),
        "the features attend to the padding and mask the prompt",
    ),
    Mutant(
        "mask-stored-as-float16",
        "tlcm/data/embeddings.py",
        "(t.to(self.storage) if t.is_floating_point() else t)",
        "t.to(self.storage)",
        (T_AM_STORE,),
        "the embedding cache rounds the mask into the storage dtype",
    ),
    Mutant(
        "mask-read-as-float",
        "tlcm/data/embeddings.py",
        "return value.to(self.dtype) if value.is_floating_point() else value",
        "return value.to(self.dtype)",
        (T_AM_STORE,),
        "a cached mask comes back in the encoder's float dtype",
    ),
]

T_DIGIT = f"{C}::test_only_a_digit_miniature_is_scored_by_the_digit_metrics_beside_it"
MUTANTS += [
    Mutant(
        "any-model-scored-by-digit-metrics",
        "tlcm/train.py",
        "        assets = digit_assets(recipe.model.path) if scored else None\n",
        '        assets = Path(__file__).parent / "toy" / "assets" if scored else None\n',
        (T_DIGIT,),
        "an SD1.5 student's card publishes the digit classifier's alignment and FD of its 512 px images",
    ),
    Mutant(
        "own-build-scored-by-bundled-metrics",
        "tlcm/train.py",
        "        metrics=ToyMetrics(assets),\n",
        "        metrics=ToyMetrics(),\n",
        (T_DIGIT,),
        "a miniature rebuilt elsewhere is scored against the bundled reference statistics",
    ),
    Mutant(
        "digit-assets-any-folder",
        "tlcm/toy/assets/__init__.py",
        "    return folder if all((folder / name).is_file() for name in METRIC_FILES) else None\n",
        "    return folder\n",
        (T_DIGIT,),
        "every model folder counts as a digit miniature",
    ),
]

T_EDGE = "tests/test_consistency_maths.py::test_mlcd_lowest_edge_clean_maps_the_lowest_segment_to_the_x0_prediction"
MUTANTS += [
    Mutant(
        "lowest-edge-clean-ignored",
        "tlcm/losses/mlcd.py",
        '        if self.config.lowest_edge == "clean":',
        "        if False:",
        (T_EDGE,),
        "lcm-lora's target keeps 0.22 of x_t at t = 19 though the recipe asks for LCM's f",
    ),
    Mutant(
        "lowest-edge-clean-maps-every-edge",
        "tlcm/losses/mlcd.py",
        "torch.where(states.t_s == 0, clean, states.t_s)",
        "clean",
        (T_EDGE,),
        "every segment maps to clean data: MLCD becomes one-segment consistency",
    ),
    Mutant(
        "lowest-edge-clean-with-random-target-time",
        "tlcm/losses/mlcd.py",
        '        if self.lowest_edge == "clean" and self.target_time != "edge":',
        "        if False:",
        (T_EDGE,),
        "TCD's random s and the clean edge are accepted together: s drawn on t = 0, then silently remapped",
    ),
]

T_LOST = "tests/test_cli_units.py::test_a_rank_that_lost_a_collective_says_so_in_one_line"
MUTANTS += [
    Mutant(
        "lost-collective-traceback-on-rank-1",
        "tlcm/distributed.py",
        '    if os.environ.get("RANK", "0") in ("", "0") or not collective_failure(err):\n        return None\n    return OtherProcessFailed(',
        "    if True:\n        return None\n    return OtherProcessFailed(",
        (T_LOST,),
        "rank 1 prints gloo's traceback below rank 0's one-line disk-full error (walkthrough 8)",
    ),
    Mutant(
        "lost-collective-hides-rank-0s-error",
        "tlcm/distributed.py",
        '    if os.environ.get("RANK", "0") in ("", "0") or not collective_failure(err):\n        return None\n    return OtherProcessFailed(',
        "    if not collective_failure(err):\n        return None\n    return OtherProcessFailed(",
        (T_LOST,),
        "rank 0's own lost collective (rank 1 died) reads 'rank 0's error says why': a line pointing at itself",
    ),
    Mutant(
        "any-rank-1-error-is-a-lost-collective",
        "tlcm/distributed.py",
        '    if os.environ.get("RANK", "0") in ("", "0") or not collective_failure(err):\n        return None\n    return OtherProcessFailed(',
        '    if os.environ.get("RANK", "0") in ("", "0"):\n        return None\n    return OtherProcessFailed(',
        (T_LOST,),
        "a CUDA error on rank 1 is reported as another process's failure",
    ),
]

RS = "tests/test_walkthrough8_resume_units.py"
T_KEEPS = f"{RS}::test_another_process_count_that_keeps_the_micro_batches_resumes"
T_HINT = f"{RS}::test_a_changed_split_is_refused_naming_the_grad_accum_that_keeps_it"
T_NO_ACCUM = f"{RS}::test_a_split_no_grad_accum_keeps_or_the_memory_plan_chose_is_refused_saying_why"
MUTANTS += [  # the resume-split fix (walkthrough 8), checked by hand when it landed, catalogued here
    Mutant(
        "split-ignores-grad-accum",
        "tlcm/resume.py",
        "        splits[name] = processes * accum if fixed else None\n",
        "        splits[name] = processes if fixed else None\n",
        (T_KEEPS, T_HINT),
        "2 x 1 -> 1 x 2 (the same micro-batches) is refused; 2 x 1 -> 1 x 1 is taken as the same",
    ),
    Mutant(
        "split-unknown-counts-as-kept",
        "tlcm/resume.py",
        "        (kept if split is not None and split == after[name] else changed).append(name)\n",
        "        (kept if split == after[name] else changed).append(name)\n",
        (T_NO_ACCUM,),
        "a memory-planned run (split chosen on the device, not recorded) resumes on other processes unchecked",
    ),
    Mutant(
        "split-hint-floor-division-wrong",
        "tlcm/resume.py",
        '            flags.append(f"--recipes.phases.{name}.grad-accum {split // processes}")\n',
        '            flags.append(f"--recipes.phases.{name}.grad-accum {split}")\n',
        (T_HINT,),
        "the refusal names a grad-accum that changes the split again",
    ),
    Mutant(
        "split-hint-offers-an-unsplittable-accum",
        "tlcm/resume.py",
        "        elif split % processes or (planned and split == processes):  # grad-accum 1: the plan's\n",
        "        elif planned and split == processes:  # grad-accum 1: the plan's\n",
        (T_NO_ACCUM,),
        "3 micro-batches over 2 processes: the refusal suggests grad-accum 1 (3 // 2), another split",
    ),
]
