"""A fifteenth red-team audit, area datamath (2026-12-07; 34 mutants, 10 of the first 30 survived
the existing tests, each now caught, and of 4 added later 1 is caught by the new tests only; ~1250 s of
one busy core): the numbers the reports rest on and the
stores that feed training. FID statistics (the outer products summed over every batch, the cached
file's count, a damaged cache file measured anew, FID of two sets by hand, FID-T against the
teacher's folder and not the reference), the Frechet distance's matrix square roots (the
symmetrising half, sqrt(S1), the cross term of non-commuting covariances), the toy FD against the
reference covariance, the toy evaluation's seeded initial and step noises (paired comparisons), the
digit classifier's features, PickScore vs CLIP score, HPSv2's tensor-first preprocessing (its
open_clip fork's eval ``image_transform``), the trajectory cache (x_tm / x_tn, shard offsets, the
prompt row, the teacher's step direction, the stored x_T, the manifest's grid and storage dtype
checked against the shards) and the embedding store (the unconditional embedding, a retrained text
encoder of the same size, a chunk another writer added meanwhile, rows, storage rounding), plus a
prompt file's zero-width ends and a reference folder's suffix case.

Real bugs found: none.

Skipped as equivalent: ``data.decode("utf-8")`` for ``"utf-8-sig"`` in load_prompts (a leading
byte-order mark is U+FEFF, which clean_prompt strips from the first line's ends before a .txt prompt
or a .jsonl line is read); ToyMetrics' ``frechet_distance(mu, self.sigma, self.mu, sigma)`` (the two
covariances swapped: Tr (S1^1/2 S2 S1^1/2)^1/2 is symmetric in S1, S2); ``fid_from_stats(b, a)``
(the distance is symmetric); ``argsort(index, stable=False)`` for the cache's row order (the shards
store rows in prompt order: at most a deterministic reordering among one prompt's trajectories,
which a draw picks uniformly anyway)."""

from run import Mutant

FID = "tlcm/eval/fid.py"
TOYM = "tlcm/toy/metrics.py"
TOYS = "tlcm/toy/scores.py"
CLS = "tlcm/toy/classifier.py"
MET = "tlcm/eval/metrics.py"
SCORE = "tlcm/eval/score.py"
TRAJ = "tlcm/data/trajectories.py"
EMB = "tlcm/data/embeddings.py"
PROMPTS = "tlcm/data/prompts.py"

U = "tests/test_datamath15_units.py"
T_EVAL = "tests/test_eval.py"
T_EU = "tests/test_eval_units.py"
T_ED = "tests/test_evaldata_units.py"
T_TOY = "tests/test_toy.py"
T_TRAJ = "tests/test_trajectories.py"
T_EMB = "tests/test_embeddings.py"

MUTANTS = [
    Mutant(
        "fid-outer-of-the-last-batch-only",
        FID,
        "self.outer += x.T @ x",
        "self.outer = x.T @ x",
        (U, f"{T_EVAL}::test_fid_of_identical_sets_is_zero_and_stats_stream"),
        "the covariance of a streamed set would hold only its last batch's outer products",
    ),
    Mutant(
        "fid-saved-count-off-by-one",
        FID,
        '"n": torch.tensor(self.n)}',
        '"n": torch.tensor(self.n - 1)}',
        (U,),
        "a cached reference's N off by one biases its mean and covariance in every later FID",
    ),
    Mutant(
        "fid-batch-drops-its-last-image",
        FID,
        "chunk = files[start : start + batch_size]",
        "chunk = files[start : start + batch_size - 1]",
        (U, f"{T_ED}::test_fid_statistics_count_every_image_of_a_last_partial_batch"),
        "each batch loses an image: FID over fewer images than the folder holds",
    ),
    Mutant(
        "fid-from-stats-compares-a-set-with-itself",
        FID,
        "frechet_distance(*a.mean_cov(), *b.mean_cov())",
        "frechet_distance(*a.mean_cov(), *a.mean_cov())",
        (U, f"{T_EVAL}::test_fid_of_two_gaussians_is_the_closed_form"),
        "every FID would be 0",
    ),
    Mutant(
        "fid-damaged-cache-is-a-traceback",
        FID,
        "except (SafetensorError, OSError, KeyError):\n        return None",
        "except (OSError, KeyError):\n        return None",
        (U,),
        "a stray or half-written fid_stats file stops scoring with a safetensors traceback",
    ),
    Mutant(
        "fd-sqrtm-symmetrised-without-the-half",
        TOYM,
        "torch.linalg.eigh((m + m.T) / 2)",
        "torch.linalg.eigh(m + m.T)",
        (U, "tests/test_toy.py::test_frechet_distance_by_hand"),
        "the square root of 2 S: every FD's cross term off by sqrt 2",
    ),
    Mutant(
        "fd-root-of-sigma1-dropped",
        TOYM,
        "root1 = _sqrtm_psd(sigma1)",
        "root1 = sigma1",
        (U, "tests/test_toy.py::test_frechet_distance_by_hand"),
        "(S1 S2 S1)^1/2 in place of (S1^1/2 S2 S1^1/2)^1/2",
    ),
    Mutant(
        "fd-cross-term-a-product-of-roots",
        TOYM,
        "cross = _sqrtm_psd(root1 @ sigma2 @ root1)",
        "cross = root1 @ _sqrtm_psd(sigma2)",
        (U, f"{T_EVAL}::test_fid_of_two_gaussians_is_the_closed_form"),
        "S1^1/2 S2^1/2 is the cross term only when the covariances commute",
    ),
    Mutant(
        "toy-fd-against-its-own-covariance",
        TOYM,
        "frechet_distance(mu, sigma, self.mu, self.sigma)",
        "frechet_distance(mu, sigma, self.mu, sigma)",
        (U, "tests/test_toy.py::test_toy_metrics_on_real_and_wrong_labels"),
        "the toy FD would compare the means only (the covariance term cancels)",
    ),
    Mutant(
        "toy-eval-noise-unseeded",
        TOYS,
        'noise = torch.randn((len(prompts), *base.latent_shape), generator=noise_gen, device="cpu")',
        'noise = torch.randn((len(prompts), *base.latent_shape), device="cpu")',
        (U,),
        "samplers no longer see the same initial noise: the paired comparison breaks",
    ),
    Mutant(
        "toy-eval-step-noise-unseeded",
        TOYS,
        "latents = sampler(cond, uncond, noise[start : start + batch_size].to(base.device), step_gen)",
        "latents = sampler(cond, uncond, noise[start : start + batch_size].to(base.device), None)",
        (U,),
        "a stochastic sampler's fresh noise from the global RNG: scores change run to run",
    ),
    Mutant(
        "toy-student-gamma-ignored",
        TOYS,
        "                student_grid.gamma,",
        "                1.0,",
        (
            U,
            "tests/test_eval14_units.py::test_a_student_is_scored_on_its_own_grid_and_sampler_and_each_score_in_its_column",
        ),
        "a student scored with gamma 1 whatever its grid's gamma",
    ),
    Mutant(
        "classifier-last-silu-dropped",
        CLS,
        "nn.Conv2d(2 * width, feature_dim, 3, padding=1),\n            nn.SiLU(),",
        "nn.Conv2d(2 * width, feature_dim, 3, padding=1),",
        (U, "tests/test_toy.py::test_toy_metrics_on_real_and_wrong_labels"),
        "the FD features are no longer the trained classifier's",
    ),
    Mutant(
        "classifier-max-pooled-features",
        CLS,
        "nn.AdaptiveAvgPool2d(1)",
        "nn.AdaptiveMaxPool2d(1)",
        (U, "tests/test_toy.py::test_toy_metrics_on_real_and_wrong_labels"),
        "the FD features are no longer the trained classifier's",
    ),
    Mutant(
        "pickscore-scored-as-clip-score",
        MET,
        'TransformersClip("pickscore", need_clip_folder(weights.pickscore, "pickscore"), device)',
        'TransformersClip("clip", need_clip_folder(weights.pickscore, "pickscore"), device)',
        (U, f"{T_EVAL}::test_clip_score_pickscore_and_aesthetic_on_a_tiny_clip_folder"),
        "PickScore reported as 100 max(cos, 0) instead of exp(logit_scale) cos",
    ),
    Mutant(
        "hps-with-clips-preprocessing",
        MET,
        "T.Compose(hps_order) if hps else clip_transform(size)",
        "clip_transform(size) if hps else T.Compose(hps_order)",
        (U, f"{T_EVAL}::test_open_clip_score_and_hps_on_a_tiny_architecture"),
        "HPSv2 resizes the float tensor; resizing the 8-bit image first shifts every score",
    ),
    Mutant(
        "fid-t-against-the-reference",
        SCORE,
        "ref_stats = {m: image_stats(net, refs[m], args.batch_size, cache, advance) for m in fids}",
        'ref_stats = {m: image_stats(net, refs["fid"] or refs[m], args.batch_size, cache, advance) for m in fids}',
        (U,),
        "FID-T would be a second FID against the real images",
    ),
    Mutant(
        "cache-sample-swaps-x-tm-and-x-tn",
        TRAJ,
        "TrajectoryStates(pairs[:, 0], t_m, t_n, t_s, pairs[:, 1])",
        "TrajectoryStates(pairs[:, 1], t_m, t_n, t_s, pairs[:, 0])",
        (U, f"{T_TRAJ}::test_sampling_is_deterministic_and_consistent_with_the_grid"),
        "MLCD would map the less noisy state to the noisier one",
    ),
    Mutant(
        "cache-shard-starts-off-by-one-shard",
        TRAJ,
        'for s in manifest["shards"]]).cumsum(0)[:-1]',
        'for s in manifest["shards"]]).cumsum(0)[1:]',
        (U, f"{T_TRAJ}::test_sampling_is_deterministic_and_consistent_with_the_grid"),
        "rows read from the wrong shard offsets",
    ),
    Mutant(
        "cache-sample-prompt-from-the-wrong-row",
        TRAJ,
        "prompts = (host[3] if together else prompt_index.cpu()).long()",
        "prompts = (host[2] if together else prompt_index.cpu()).long()",
        (U, f"{T_TRAJ}::test_sampling_is_deterministic_and_consistent_with_the_grid"),
        "the trajectory of another prompt than the sample's",
    ),
    Mutant(
        "cache-build-steps-backwards",
        TRAJ,
        "for i in (g, g + 1))",
        "for i in (g + 1, g))",
        (U, f"{T_TRAJ}::test_cached_states_equal_a_direct_teacher_recomputation"),
        "the teacher would step from t_n up to t_m",
    ),
    Mutant(
        "cache-build-last-shard-counted-full",
        TRAJ,
        '"samples": len(rows), "sha256"',
        '"samples": shard_size, "sha256"',
        (U, f"{T_TRAJ}::test_sampling_is_deterministic_and_consistent_with_the_grid"),
        "a last partial shard listed as full: the cache never opens",
    ),
    Mutant(
        "cache-open-ignores-the-grid",
        TRAJ,
        '            "grid": grid,\n            "num_milestones": num_milestones,',
        '            "num_milestones": num_milestones,',
        (U,),
        "a manifest of other timesteps serves states under the wrong t_m / t_n",
    ),
    Mutant(
        "cache-open-accepts-another-storage-dtype-layout",
        TRAJ,
        'want = ([n, len(grid), *base.latent_shape], DTYPES[manifest["dtype"]][1], [n], "I64")',
        'want = ([n, len(grid), *base.latent_shape], states.get_dtype(), [n], "I64")',
        (U,),
        "shards in another dtype than manifest.json says pass the check",
    ),
    Mutant(
        "embeddings-uncond-is-the-first-prompt",
        EMB,
        "values[name] = take(prefix + name, rows)",
        "values[name] = take(name, rows)",
        (U, f"{T_EMB}::test_embeddings_are_the_bits_of_up_front_encoding_in_any_order"),
        "CFG's unconditional embedding would be the first prompt's",
    ),
    Mutant(
        "embeddings-fingerprint-sizes-only",
        EMB,
        'f"{file.stat().st_size} bytes, sha256 {sha256_file(file)}"',
        'f"{file.stat().st_size} bytes"',
        (U, f"{T_EMB}::test_a_cache_made_with_another_tokenizer_is_refused"),
        "a retrained text encoder of the same size gets the old embeddings",
    ),
    Mutant(
        "embeddings-write-forgets-another-writers-chunks",
        EMB,
        "            self._read_manifest(strict=False)  # keep what another writer added meanwhile\n",
        "",
        (U,),
        "two runs sharing a cache drop each other's chunks from manifest.json",
    ),
    Mutant(
        "embeddings-row-off-by-one",
        EMB,
        "pieces = [chunk[name][r : r + 1].to(device, non_blocking=True) for chunk, r in rows]",
        "pieces = [chunk[name][max(r - 1, 0) : max(r, 1)].to(device, non_blocking=True) for chunk, r in rows]",
        (U, f"{T_EMB}::test_embeddings_are_the_bits_of_up_front_encoding_in_any_order"),
        "each prompt gets its neighbour's embedding",
    ),
    Mutant(
        "embeddings-fresh-not-rounded-to-storage",
        EMB,
        "(t.to(self.storage) if t.is_floating_point() else t).contiguous()",
        "t.contiguous()",
        (U, f"{T_EMB}::test_half_storage_rounds_cached_and_fresh_embeddings_alike"),
        "fresh and cached embeddings differ in their bits",
    ),
    Mutant(
        "embeddings-fingerprint-without-encoder-dtype",
        EMB,
        'out[f"{folder.name} dtype"] = str(module.dtype).removeprefix("torch.")',
        "pass",
        (U, f"{T_EMB}::test_a_cache_made_by_fp32_encoders_is_refused_to_bf16_encoders"),
        "embeddings of fp32 encoders served to a bf16 run",
    ),
    Mutant(
        "toy-eval-step-seed-equals-noise-seed",
        TOYS,
        "manual_seed(EVAL_SEED + 1)",
        "manual_seed(EVAL_SEED)",
        (U,),
        "the first fresh step noise equals the initial noise (correlated draws)",
    ),
    Mutant(
        "cache-build-first-state-unwritten",
        TRAJ,
        "states[local, 0] = x.cpu().to(states.dtype)",
        "pass",
        (U, f"{T_TRAJ}::test_cached_states_equal_a_direct_teacher_recomputation"),
        "x_T of every trajectory left uninitialised",
    ),
    Mutant(
        "prompts-clean-keeps-zero-width",
        PROMPTS,
        'return _ENDS.sub("", text)',
        "return text.strip()",
        ("tests/test_data14_units.py::test_every_zero_width_character_is_cleaned_from_a_prompts_ends",),
        "a zero-width space at a prompt's end makes another prompt (tokens, cache keys)",
    ),
    Mutant(
        "score-reference-suffix-case-sensitive",
        SCORE,
        "if p.suffix.lower() in IMAGE_SUFFIXES",
        "if p.suffix in IMAGE_SUFFIXES",
        (f"{T_EU}::test_reference_folder_needs_two_images_of_any_suffix_case",),
        "photos named .JPG are left out of the reference set",
    ),
]
