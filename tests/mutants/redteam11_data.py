"""An eleventh red-team audit, area data (2026-12-06; 27 mutants, 18 survived at first, each now
caught): the training path's data and model plumbing. The text-embedding store's disk cache
(a chunk file whose rows differ from its manifest entry, a fingerprint blind to the tokenizer or to
the encoders' dtype, the device LRU turned FIFO), the teacher trajectory cache (k = T/M refused by
the grid and by the CLI, a prompt without trajectories accepted, stale shards of a rebuild kept,
the MLCD loss's skip not required), the frozen base (components left trainable, decode slices
counted in latent pixels, autocast in bf16 whatever the weights), the score registry's views (names
and length of the other use), the unrelated prompts' shift drawn from 0 and the wandb tracker (its
own step, a name opened twice, a failed open closed as a success). Each survivor is caught by a
unit test of tests/test_data_units.py (the embedding store's in
tests/test_embeddings.py). Dropped as equivalent: ``BaseModel.load`` without
``.eval()`` (diffusers' and transformers' ``from_pretrained`` already return every component in
eval mode, checked on the tiny SD folder), ``TrajectoryCache``'s ``row_order`` as ``arange``
(build_cache writes rows prompt by prompt, already sorted), the evicted open file of the LRU
(``last=True``: only re-opens); near-equivalent, also dropped: keeping a corrupted chunk's manifest
entry (the re-encoded chunk is written over it, or stays resident: only a repeated warning after an
eviction). No source bug found."""

from run import Mutant

EMB = "tlcm/data/embeddings.py"
TRAJ = "tlcm/data/trajectories.py"
BASE = "tlcm/models/base.py"
SCORING = "tlcm/scoring/__init__.py"
SCORING_CLIP = "tlcm/scoring/clip.py"
REWARDS = "tlcm/rewards/base.py"
DIGIT = "tlcm/toy/data.py"  # prompt_digit (moved from tlcm/rewards/digit.py)
TRACKERS = "tlcm/trackers.py"

E = "tests/test_embeddings.py::"
T_EMB_BITS_SDXL = E + "test_embeddings_are_the_bits_of_up_front_encoding_in_any_order[True-sdxl]"
T_EMB_MISS_HIT = E + "test_cache_misses_then_hits_and_partial_caches_fill_in"
T_EMB_OTHER_ENCODER = E + "test_another_text_encoder_is_refused_in_one_line"
T_EMB_CORRUPTED = E + "test_a_corrupted_chunk_is_reencoded_with_one_warning_line"
T_EMB_HALF = E + "test_half_storage_rounds_cached_and_fresh_embeddings_alike"
TR = "tests/test_trajectories.py::"
T_TRAJ_SAMPLING = TR + "test_sampling_is_deterministic_and_consistent_with_the_grid"
T_BF16 = "tests/test_frozen_dtype.py::test_bf16_frozen_fp32_adapters_and_upcast_vae"
T_SDXL_RES = "tests/test_families.py::test_sdxl_time_ids_follow_the_configured_resolution"
T_DIGIT = "tests/test_preference.py::test_digit_reward_is_the_classifiers_log_probability"
T_CLIP_BY_HAND = "tests/test_preference.py::test_clip_and_pickscore_rewards_by_hand"

U = "tests/test_data_units.py::"
T_ROWS = E + "test_a_chunk_file_holding_other_rows_than_its_manifest_entry_is_reencoded"
T_TOKENIZER = E + "test_a_cache_made_with_another_tokenizer_is_refused"
T_ENCODER_DTYPE = E + "test_a_cache_made_by_fp32_encoders_is_refused_to_bf16_encoders"
T_LRU = E + "test_resident_chunks_are_evicted_least_recently_used"
T_SKIP_BOUND = U + "test_a_skip_of_t_over_m_is_accepted_and_one_more_refused"
T_NO_TRAJECTORY = U + "test_a_cache_where_a_prompt_has_no_trajectory_is_refused"
T_STALE = U + "test_a_rebuild_into_fewer_shards_removes_the_old_ones"
T_REQUIRE = U + "test_the_mlcd_loss_requires_the_caches_milestones_and_skip"
T_FROZEN = U + "test_every_loaded_component_is_frozen_and_in_eval_mode"
T_DECODE_SLICES = U + "test_decode_slices_count_output_pixels"
T_AUTOCAST = U + "test_autocast_is_in_the_frozen_weights_dtype"
T_VIEWS = U + "test_a_views_names_and_length_are_its_uses_only"
T_UNIFORM = U + "test_unrelated_prompts_are_uniform_over_the_other_prompts"
T_WANDB_STEP = U + "test_wandb_logs_at_the_global_step"
T_OPEN_SINKS = U + "test_a_tracker_named_twice_opens_once_and_a_failed_open_closes_as_failed"

MUTANTS = [
    # ---- text embeddings (tlcm/data/embeddings.py) -------------------------------------------
    Mutant(
        "embeddings-corrupted-chunk-trusted-on-first-open",
        EMB,
        'if entry["sha256"] not in self._verified and sha256_file(file) != entry["sha256"]:',
        'if entry["sha256"] in self._verified and sha256_file(file) != entry["sha256"]:',
        (T_EMB_CORRUPTED,),
        "a chunk file is hashed only once it was already verified: a corrupted file is read as it is",
    ),
    Mutant(
        "embeddings-chunk-rows-unchecked",
        EMB,
        'if rows != entry["rows"] or "uncond_prompt_embeds" not in slices:',
        'if "uncond_prompt_embeds" not in slices:',
        (T_ROWS,),
        "a chunk file holding fewer rows than manifest.json lists is read: prompts past its end fail "
        "deep in safetensors' slicing (or read another chunk's rows) instead of being re-encoded",
    ),
    Mutant(
        "embeddings-storage-dtype-unchecked",
        EMB,
        'if manifest.get("dtype") != self.storage_name:',
        'if manifest.get("dtype") not in STORAGE:',
        (T_EMB_OTHER_ENCODER,),
        "a cache stored in float32 is used by a run asking float16 (or the reverse): cached and "
        "fresh embeddings are no longer the same bits",
    ),
    Mutant(
        "embeddings-fingerprint-ignores-the-tokenizer",
        EMB,
        'p.name.startswith(("text_encoder", "tokenizer"))',
        'p.name.startswith("text_encoder")',
        (T_TOKENIZER,),
        "a cache made with another tokenizer (other token ids for the same words) is accepted",
    ),
    Mutant(
        "embeddings-fingerprint-ignores-the-encoder-dtype",
        EMB,
        "        module = getattr(base.pipe, folder.name, None)\n",
        "        module = None\n",
        (T_ENCODER_DTYPE,),
        "a float16 cache made by fp32 text encoders is read by a run whose encoders are bf16: "
        "the cached embeddings are not what its encoders give",
    ),
    Mutant(
        "embeddings-resident-chunks-are-fifo-not-lru",
        EMB,
        "            self._resident.move_to_end(k)\n",
        "",
        (T_LRU,),
        "the device LRU evicts the oldest-encoded chunk even when it was just used: chunk 0 (asked "
        "again and again) is re-encoded as other chunks come in",
    ),
    Mutant(
        "embeddings-picked-rows-stay-in-storage-dtype",
        EMB,
        "return value.to(self.dtype) if value.is_floating_point() else value",
        "return value",
        (T_EMB_HALF,),
        "with float16 storage the conditioning reaches the network in float16, not the encoder's dtype",
    ),
    Mutant(
        "embeddings-shared-fields-not-expanded",
        EMB,
        "values[name] = None if value is None else value.expand(len(rows), *value.shape[1:])",
        "values[name] = value",
        (T_EMB_BITS_SDXL,),
        "SDXL's time ids stay (1, 6) for a batch of B prompts",
    ),
    Mutant(
        "embeddings-manifest-rows-are-the-chunk-size",
        EMB,
        '"rows": len(tensors["prompt_embeds"]),',
        '"rows": self.chunk_size,',
        (T_EMB_MISS_HIT,),
        "the last, shorter chunk is listed with chunk_size rows: its file never validates and is "
        "re-encoded by every run",
    ),
    # ---- trajectory cache (tlcm/data/trajectories.py) ----------------------------------------
    Mutant(
        "trajectories-skip-of-t-over-m-refused",
        TRAJ,
        "if not 1 <= skip <= limit:",
        "if not 1 <= skip < limit:",
        (T_SKIP_BOUND,),
        "k = T/M (each segment one teacher jump, the documented upper bound) is refused",
    ),
    Mutant(
        "trajectories-prompt-without-samples-accepted",
        TRAJ,
        "if len(cache.prompt_count) != len(prompts) or int(cache.prompt_count.min()) < 1:",
        "if len(cache.prompt_count) != len(prompts):",
        (T_NO_TRAJECTORY,),
        "a cache where a prompt has no trajectory opens: sampling that prompt reads the next "
        "prompt's first trajectory",
    ),
    Mutant(
        "trajectories-stale-shards-kept",
        TRAJ,
        "        stale.unlink()\n",
        "        pass\n",
        (T_STALE,),
        "rebuilding a cache with fewer shards leaves the old shard files in the folder",
    ),
    Mutant(
        "trajectories-require-ignores-skip",
        TRAJ,
        '            ("skip", skip, self.skip, "the MLCD loss\'s skip"),\n',
        "",
        (T_REQUIRE,),
        "an MLCD loss with another skip k trains on the cache's pairs (t_n = t_m - k of another k)",
    ),
    Mutant(
        "trajectories-cli-skip-of-t-over-m-refused",
        TRAJ,
        "if args.skip > steps // args.num_milestones:",
        "if args.skip >= steps // args.num_milestones:",
        (T_SKIP_BOUND,),
        "the CLI refuses k = T/M, which trajectory_grid and the loss accept",
    ),
    Mutant(
        "trajectories-prompt-index-round-robin",
        TRAJ,
        '"prompt_index": rows // samples_per_prompt}',
        '"prompt_index": rows % len(prompts)}',
        (T_TRAJ_SAMPLING,),
        "rows are labelled as if prompts alternated (row r of prompt r % P) though they are stored "
        "prompt by prompt: a prompt is trained on other prompts' trajectories",
    ),
    # ---- the frozen base (tlcm/models/base.py) -----------------------------------------------
    Mutant(
        "base-components-left-trainable",
        BASE,
        "module.requires_grad_(False).eval()",
        "module.eval()",
        (T_FROZEN,),
        "the frozen text encoders, VAE and network keep requires_grad: the backward fills their "
        "gradients (memory) and a full-parameter optimizer would see them",
    ),
    Mutant(
        "base-decode-slices-counted-in-latent-pixels",
        BASE,
        "DECODE_PIXELS // (latents.shape[-2] * latents.shape[-1] * f * f)",
        "DECODE_PIXELS // (latents.shape[-2] * latents.shape[-1])",
        (T_DECODE_SLICES,),
        "the decode budget counted in latent pixels: f^2 = 64 times the images per VAE call",
    ),
    Mutant(
        "base-autocast-always-bf16",
        BASE,
        "return torch.autocast(self.device.type, dtype=dtype)",
        "return torch.autocast(self.device.type, dtype=torch.bfloat16)",
        (T_AUTOCAST,),
        "fp16 frozen weights are sampled and decoded under bf16 autocast",
    ),
    Mutant(
        "base-resolution-ignored",
        BASE,
        "shape = family.latent_shape(pipe, resolution)",
        "shape = family.latent_shape(pipe)",
        (T_SDXL_RES,),
        "--recipes.model.resolution has no effect: the latents keep the pipeline's default size",
    ),
    # ---- scores and rewards ------------------------------------------------------------------
    Mutant(
        "scoring-view-lists-every-score",
        SCORING,
        "return iter([name for name, uses in SCORES.items() if self.use in uses])",
        "return iter(list(SCORES))",
        (T_VIEWS,),
        "REWARDS lists metric-only scores (and METRICS reward-only ones): the unknown-reward message "
        "offers names build_reward cannot load",
    ),
    Mutant(
        "scoring-view-counts-every-score",
        SCORING,
        "return sum(self.use in uses for uses in SCORES.values())",
        "return len(SCORES)",
        (T_VIEWS,),
        "len(REWARDS) counts metric-only scores",
    ),
    Mutant(
        "clip-score-scale-one",
        SCORING_CLIP,
        'if name == "pickscore" else 100.0',
        'if name == "pickscore" else 1.0',
        (T_CLIP_BY_HAND,),
        "CLIP score as cos, not 100 cos (Hessel et al. 2021): the reward's scale drops 100-fold",
    ),
    Mutant(
        "shifted-prompts-shift-may-be-zero",
        REWARDS,
        "shift = int(torch.randint(1, n, (1,), generator=generator, device=generator.device))",
        "shift = int(torch.randint(0, n, (1,), generator=generator, device=generator.device))",
        (T_UNIFORM,),
        "shift 0 falls through to the next prompt: partner one place on is drawn twice as often, "
        "the unrelated prompts no longer uniform over the batch's others",
    ),
    Mutant(
        "digit-prompt-comma-kept",
        DIGIT,
        'for word in prompt.replace(",", " ").split():',
        "for word in prompt.split():",
        (T_DIGIT,),
        'the template "the number 7, handwritten" names no digit ("7," is not a digit)',
    ),
    # ---- trackers ----------------------------------------------------------------------------
    Mutant(
        "trackers-wandb-logs-at-its-own-step",
        TRACKERS,
        "self.run.log(values, step=step)",
        "self.run.log(values)",
        (T_WANDB_STEP,),
        "wandb numbers its own steps (0, 1, ...): after a resume or a skipped record the steps "
        "differ from metrics.jsonl's global steps",
    ),
    Mutant(
        "trackers-a-repeated-name-opens-twice",
        TRACKERS,
        "for name in dict.fromkeys(names):",
        "for name in names:",
        (T_OPEN_SINKS,),
        "--recipes.runtime.trackers wandb wandb opens two runs that log every record twice",
    ),
    Mutant(
        "trackers-failed-open-closes-as-success",
        TRACKERS,
        "            sink.close(failed=True)\n",
        "            sink.close()\n",
        (T_OPEN_SINKS,),
        "a tracker opened before another one failed to open is closed as a successful run",
    ),
]
