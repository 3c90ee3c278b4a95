"""A sixth red-team audit, of the scores (2026-12-06; 27 mutants, 21 survived then, each now caught):
breakages on lines no other catalogue edits, in the numbers that rate a model: the FID's image
tensors, its float64 statistics, its one-image refusal and its statistics cache; the toy FD's
covariance, the toy metrics' value range, the toy evaluation's prompts per batch and per digit;
latent LPIPS (iCT's Huber constant, its weights cache, a loaded network left trainable, a pickle's
channel count, the trainer's triplet grouping, its held-out 2AFC, rank correlation and L2 baseline,
the pixel proxy's channel sum and SSIM weight, the distortions' range); the CLIP-family scores (a
folder's own normalisation, the text-embedding cache, CLIP's 77-token truncation, open_clip's unit
text embeddings, the aesthetic head's dropout, the reward left unclamped), ImageReward's token ids
and mask, and the results table's HPSv2.1 decimals. The triplet grouping is the shape-preserving
form ((3, n) then transposed); the plain (3, n) regrouping fails with a shape error for every batch
but 3, where it is the same grouping."""

from run import Mutant

DISTANCES = "tlcm/losses/distances.py"
LPIPS = "tlcm/losses/latent_lpips.py"
LPIPS_TRAIN = "tlcm/latent_lpips/train.py"
LPIPS_DATA = "tlcm/latent_lpips/data.py"
FID = "tlcm/eval/fid.py"
METRICS = "tlcm/eval/metrics.py"
IMAGEREWARD = "tlcm/eval/imagereward.py"
TOY_METRICS = "tlcm/toy/metrics.py"
TOY_SCORES = "tlcm/toy/scores.py"
CLIP = "tlcm/scoring/clip.py"
CLIP_REWARD = "tlcm/rewards/clip.py"

T_EVAL = "tests/test_eval.py"
T_LPIPS = "tests/test_latent_lpips.py"
T_TOY = "tests/test_toy.py"
T_MATHS = "tests/test_score_maths.py"

MUTANTS = [
    Mutant(
        "pseudo-huber-default-c-tenfold",
        DISTANCES,
        "def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.03)",
        "def pseudo_huber(pred: torch.Tensor, target: torch.Tensor, c: float = 0.3)",
        (f"{T_LPIPS}::test_registered_distances_by_hand",),
        "MLCD / LCD with distance 'huber' use c = 0.3 instead of iCT's 0.03: the loss is near l2 / 2c "
        "for every error the consistency targets have, not l1-like for large ones.",
    ),
    Mutant(
        "lpips-cache-ignores-the-file-time",
        LPIPS,
        "_cached(path.resolve(), path.stat().st_mtime_ns, pred.device, pred.dtype)",
        "_cached(path.resolve(), 0, pred.device, pred.dtype)",
        (f"{T_LPIPS}::test_a_weights_file_retrained_in_place_is_reread",),
        "A latent LPIPS file retrained in place (python -m tlcm.latent_lpips.train --out the same "
        "path) is not reread in the same process: the loss keeps using the old network.",
    ),
    Mutant(
        "lpips-loaded-network-not-frozen",
        LPIPS,
        "return net.to(device).eval().requires_grad_(False)",
        "return net.to(device).eval()",
        (f"{T_LPIPS}::test_a_loaded_network_is_frozen_and_gathers_no_gradients",),
        "The loaded distance network's parameters require grad: every MLCD / LCD step builds and "
        "keeps gradients for the LPIPS weights (memory) although they are never trained.",
    ),
    Mutant(
        "lpips-train-triplets-regrouped",
        LPIPS_TRAIN,
        "taps = [t.unflatten(0, (-1, 3)) for t in net.features(z.flatten(0, 1))]",
        "taps = [t.unflatten(0, (3, -1)).transpose(0, 1) for t in net.features(z.flatten(0, 1))]",
        (f"{T_LPIPS}::test_training_regresses_each_triplets_own_pairs",),
        "The trainer compares latents of different triplets (the flattened (n, 3) batch regrouped as "
        "(3, n) and transposed: the shapes fit): the regression targets belong to other pairs, the "
        "trained distance is noise.",
    ),
    Mutant(
        "lpips-2afc-ranks-ref-a-against-a-b",
        LPIPS_TRAIN,
        "== (p[:, 0] < p[:, 1])).float()",
        "== (p[:, 0] < p[:, 2])).float()",
        (f"{T_LPIPS}::test_two_afc_and_spearman_by_hand",),
        "The held-out 2AFC agreement (docs/latent_lpips.md's headline number) compares the network's "
        "ref-a vs ref-b ranking with the proxy's ref-a vs a-b one: a meaningless score.",
    ),
    Mutant(
        "lpips-spearman-of-sort-orders-not-ranks",
        LPIPS_TRAIN,
        "ranks = torch.stack([d.flatten().argsort().argsort(), p.flatten().argsort().argsort()]).float()",
        "ranks = torch.stack([d.flatten().argsort(), p.flatten().argsort()]).float()",
        (f"{T_LPIPS}::test_two_afc_and_spearman_by_hand",),
        "The held-out rank correlation correlates the sorting permutations, not the ranks: a wrong "
        "Spearman number in the weights file's record.",
    ),
    Mutant(
        "lpips-l2-baseline-is-the-network",
        LPIPS_TRAIN,
        '"heldout_2afc_latent_l2": round(two_afc(d_l2, p), 4)',
        '"heldout_2afc_latent_l2": round(two_afc(d_net, p), 4)',
        (f"{T_LPIPS}::test_held_out_record_scores_latent_l2_as_the_baseline",),
        "The record's latent-L2 baseline 2AFC is the trained network's own: the comparison that says "
        "whether latent LPIPS beats L2 always reads a tie.",
    ),
    Mutant(
        "lpips-proxy-features-mean-over-channels",
        LPIPS_DATA,
        "(f[: len(x)] - f[len(x) :]).square().sum(1).mean(dim=(1, 2)) / 3",
        "(f[: len(x)] - f[len(x) :]).square().mean(1).mean(dim=(1, 2)) / 3",
        (f"{T_LPIPS}::test_proxy_feature_distance_sums_over_channels",),
        "The proxy's feature term is divided by each tap's channel count (LPIPS sums the squared "
        "unit-feature differences over channels): the target under-weights features against SSIM.",
    ),
    Mutant(
        "fid-images-transposed",
        FID,
        "out.append(torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1))",
        "out.append(torch.from_numpy(np.asarray(square).copy()).permute(2, 1, 0))",
        (f"{T_EVAL}::test_fid_images_reach_inception_as_channels_rows_columns",),
        "Inception sees every image transposed (H and W swapped, (H, W, 3) -> (3, W, H)): FID is "
        "computed on mirrored-diagonal images, not comparable with published numbers.",
    ),
    Mutant(
        "fid-cache-key-ignores-file-sizes",
        FID,
        "entries = [[str(f.resolve()), (s := f.stat()).st_size, s.st_mtime_ns] for f in files]",
        "entries = [[str(f.resolve())] for f in files]",
        (f"{T_EVAL}::test_fid_stats_cache_is_not_reused_for_rewritten_images",),
        "A reference or teacher folder regenerated under the same file names reuses its stale cached "
        "Inception statistics: FID against the old images.",
    ),
    Mutant(
        "toy-fd-biased-covariance",
        TOY_METRICS,
        "return f.mean(0), torch.cov(f.T)",
        "return f.mean(0), torch.cov(f.T, correction=0)",
        (f"{T_TOY}::test_feature_statistics_are_the_unbiased_ones_fid_uses",),
        "The toy FD uses the biased (N) covariance of the generated features against the unbiased "
        "reference statistics: a bias that depends on the number of prompts.",
    ),
    Mutant(
        "toy-metrics-images-unclamped",
        TOY_METRICS,
        "feats = self.classifier.features(images.float().clamp(-1, 1))",
        "feats = self.classifier.features(images.float())",
        (f"{T_TOY}::test_toy_metrics_score_images_clamped_to_the_saved_range",),
        "Decoded images beyond [-1, 1] reach the classifier unclamped: the toy alignment and FD score "
        "values no saved image has (a saved PNG clips them).",
    ),
    Mutant(
        "toy-eval-prompts-of-the-first-batch",
        TOY_SCORES,
        "cond, uncond = base.encode(prompts[start : start + batch_size])",
        "cond, uncond = base.encode(prompts[:batch_size])",
        (f"{T_TOY}::test_evaluation_generates_every_batch_for_its_own_prompts",),
        "Every evaluation batch after the first is generated for the first batch's prompts but scored "
        "against its own digits: the alignment of 500 prompts collapses once batches differ.",
    ),
    Mutant(
        "clip-folder-mean-read-from-std",
        CLIP,
        'torch.tensor(cfg.get("image_mean", OPENAI_MEAN))',
        'torch.tensor(cfg.get("image_std", OPENAI_MEAN))',
        (f"{T_MATHS}::test_a_folders_preprocessor_mean_and_std_normalise_its_images",),
        "A CLIP folder with its own preprocessor_config.json (PickScore's, a SigLIP-like mean) is "
        "normalised with its std as mean: every CLIP score, PickScore and aesthetic is off.",
    ),
    Mutant(
        "clip-text-cache-keys-misaligned",
        CLIP,
        "self._text.update(zip(new, emb, strict=True))",
        "self._text.update(zip(prompts, emb))",
        (f"{T_MATHS}::test_text_embeddings_do_not_depend_on_what_was_cached_before",),
        "The text cache stores new embeddings under the batch's first prompts: a prompt seen before "
        "gets another prompt's embedding once a batch mixes cached and new prompts.",
    ),
    Mutant(
        "open-clip-text-not-unit",
        METRICS,
        "text = self.model.encode_text(self.tokenizer(prompts).to(self.device), normalize=True)",
        "text = self.model.encode_text(self.tokenizer(prompts).to(self.device))",
        (f"{T_EVAL}::test_open_clip_score_is_100_times_the_cosine_clamped_at_zero",),
        "The open_clip CLIP score and HPSv2.1 multiply by the text embedding's norm: not a cosine, "
        "scores of prompts with larger embeddings inflated.",
    ),
    Mutant(
        "clip-reward-clamped-at-zero",
        CLIP_REWARD,
        "return self.model.score(features, prompts)",
        "return self.model.score(features, prompts, clamp=True)",
        (f"{T_MATHS}::test_the_clip_reward_keeps_negative_cosines_and_the_metric_clamps_them",),
        "The CLIP reward clamps negative cosines to 0 like the metric: images far from their prompt "
        "get no gradient from preference learning, exactly where it is needed.",
    ),
    Mutant(
        "imagereward-ids-and-mask-swapped",
        IMAGEREWARD,
        "return self.model(pixels, tokens.input_ids, tokens.attention_mask).float().cpu()",
        "return self.model(pixels, tokens.attention_mask, tokens.input_ids).float().cpu()",
        (f"{T_EVAL}::test_image_reward_encodes_the_prompt_tokens_with_their_padding_mask",),
        "ImageReward reads the attention mask as token ids: every prompt of the same length scores "
        "the same, the metric ignores what the prompt says.",
    ),
    Mutant(
        "fid-one-image-accepted",
        FID,
        "if self.n < 2:",
        "if self.n < 1:",
        (f"{T_EVAL}::test_fid_needs_two_images_per_set",),
        "A folder of one image passes: its covariance divides by N - 1 = 0 and the FID is NaN in the "
        "results table instead of an error that says FID needs 2 images.",
    ),
    Mutant(
        "toy-student-scores-ignore-the-prompt-count",
        TOY_SCORES,
        "scores = evaluate_toy(base, sampler, samples_per_digit, metrics=metrics)",
        "scores = evaluate_toy(base, sampler, metrics=metrics)",
        (f"{T_TOY}::test_student_score_rows_put_each_score_in_its_column",),
        "The student's scores always use 50 prompts per digit whatever --samples-per-digit says, while "
        "their rows report 10 x samples_per_digit prompts: FDs compared across prompt counts.",
    ),
    Mutant(
        "clip-long-prompts-not-truncated",
        CLIP,
        'self.tokenizer(new, padding=True, truncation=True, return_tensors="pt")',
        'self.tokenizer(new, padding=True, return_tensors="pt")',
        (f"{T_MATHS}::test_prompts_beyond_clips_77_tokens_are_cut_as_clip_does",),
        "A prompt longer than CLIP's 77 tokens (common in PartiPrompts / HPS prompt sets) crashes "
        "the CLIP score, PickScore and the CLIP rewards instead of being cut as CLIP does.",
    ),
    Mutant(
        "lpips-pickle-in-channels-from-the-output-width",
        LPIPS,
        'return state["blocks.0.0.weight"].shape[1], widths',
        'return state["blocks.0.0.weight"].shape[0], widths',
        (T_LPIPS,),
        "A latent LPIPS pickle (no metadata) is rebuilt with its first block's width as latent "
        "channels: loading the weights fails or, where the widths coincide, accepts wrong latents.",
    ),
    Mutant(
        "table-hps-two-decimals",
        "tlcm/eval/table.py",
        '"hps": ("HPSv2.1", 4),',
        '"hps": ("HPSv2.1", 2),',
        (f"{T_EVAL}::test_results_table_places_and_rounds_the_extra_metrics",),
        "HPSv2.1 (a raw cosine near 0.27-0.32) is printed with 2 decimals: the models of the table "
        "all read 0.28 or 0.29, the differences the paper reports vanish.",
    ),
    Mutant(
        "aesthetic-head-dropout-left-on",
        CLIP,
        "return head.eval().requires_grad_(False)",
        "return head.requires_grad_(False)",
        (f"{T_MATHS}::test_the_aesthetic_head_scores_without_dropout",),
        "The LAION aesthetic MLP scores in training mode: its dropout layers make every aesthetic "
        "score (metric and reward) random, a different number each run for the same image.",
    ),
    Mutant(
        "fid-stats-accumulated-in-float32",
        FID,
        'x = features.detach().to("cpu", torch.float64).flatten(1)',
        'x = features.detach().to("cpu", torch.float32).flatten(1)',
        (T_EVAL,),
        "Inception statistics summed in float32: sum(x x^T) - N mu mu^T cancels catastrophically for "
        "features far from 0 over thousands of images, and the FID drifts with the image count.",
    ),
    Mutant(
        "lpips-proxy-ssim-term-not-halved",
        LPIPS_DATA,
        "return self.feature_distance(x, y) + (1 - self.ssim(x, y)) / 2",
        "return self.feature_distance(x, y) + (1 - self.ssim(x, y))",
        (f"{T_LPIPS}::test_proxy_of_a_white_and_a_black_image_by_hand",),
        "The latent LPIPS target weighs the SSIM term twice as much as the docs' P(x, y) says: the "
        "shipped distance's scale and ranking follow another proxy.",
    ),
    Mutant(
        "lpips-distortions-leave-the-image-range",
        LPIPS_DATA,
        "    return x.clamp(-1, 1)\n",
        "    return x\n",
        (f"{T_LPIPS}::test_distortions_stay_in_the_image_range",),
        "Distorted training images (contrast, brightness, noise) go beyond [-1, 1] into the VAE and "
        "the proxy: triplets of images no decoder produces.",
    ),
]
