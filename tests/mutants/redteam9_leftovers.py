"""A ninth red-team audit, area leftovers (2026-12-06; 15 mutants, 8 survived at first, each now
caught): the replayed no-grad calls' static buffers and replay (tlcm/models/graphs.py), what earlier
rounds left of FLUX (the image ids of a non-square latent, the text ids, the guidance input, the
token grid), of the real images (the centre crop, the PNG's rounding), of metrics.jsonl (non-finite
values, the last value of a key), of the latent LPIPS trainer (held-out images, noise on the
distorted latents only) and of the stop signals (one message, from rank 0). The mutant of
``Reporter.last`` was caught at first only by test_engine.py's resume (a two-run training); it names
the unit test of tests/test_leftover_units.py instead."""

from run import Mutant

GRAPHS = "tlcm/models/graphs.py"
FLUX = "tlcm/models/families/flux.py"
IMAGES = "tlcm/data/images.py"
REPORT = "tlcm/report.py"
LPIPS_TRAIN = "tlcm/latent_lpips/train.py"
LPIPS_DATA = "tlcm/latent_lpips/data.py"
PREEMPT = "tlcm/preemption.py"

T_REPLAY = "tests/test_graphs.py::test_replayed_calls_equal_eager_calls[sd]"
T_CALLERS_INPUTS = "tests/test_graphs.py::test_a_replay_leaves_the_callers_earlier_inputs_alone"
T_FLUX_NON_SQUARE = (
    "tests/test_families.py::test_flux_on_non_square_latents_is_the_pipelines_call_and_its_token_grid"
)
T_FLUX_CALL = "tests/test_families.py::test_flux_call_is_the_pipelines"
T_FLUX_ENCODE = (
    "tests/test_families.py::test_flux_encodes_the_empty_prompt_as_uncond_and_the_pipelines_default_guidance"
)
T_CROP = "tests/test_real_images.py::test_images_are_resized_on_the_shorter_side_and_centre_cropped"
T_PNG = "tests/test_real_images.py::test_generic_writers_round_trip_random_images"
T_UNITS = "tests/test_leftover_units.py"
T_TRIPLETS = "tests/test_latent_lpips.py::test_triplets_are_the_proxy_distances_of_their_decoded_pairs"
T_REF_CLEAN = "tests/test_latent_lpips.py::test_only_the_distorted_latents_of_a_triplet_get_latent_noise"
T_STOP_LINE = "tests/test_preemption_units.py::test_the_stopping_line_is_printed_once_by_rank_0"

MUTANTS = [
    # ---- replayed calls ----------------------------------------------------------------------
    Mutant(
        "graphs-static-buffers-alias-the-first-inputs",
        GRAPHS,
        "static = [v.detach().clone() for v in leaves]",
        "static = [v.detach() for v in leaves]",
        (T_REPLAY, T_CALLERS_INPUTS),
        "the capture's static buffers are the first call's own tensors: every later replay copies its "
        "inputs into them, overwriting the caller's latents of the first call",
    ),
    Mutant(
        "graphs-selection-ignores-disabled-adapters",
        GRAPHS,
        "return (layer._disable_adapters, tuple(layer.active_adapters), layer.merged)",
        "return (tuple(layer.active_adapters), layer.merged)",
        (T_REPLAY,),
        "the teacher (adapters off) and the student share a capture: one of them replays the other",
    ),
    Mutant(
        "graphs-trace-replay-not-written-to-the-output",
        GRAPHS,
        "            output.copy_(traced(*static))",
        "            traced(*static)",
        (T_REPLAY,),
        "every replay returns the capture's first output, whatever the new inputs",
    ),
    # ---- FLUX --------------------------------------------------------------------------------
    Mutant(
        "flux-image-ids-of-the-transposed-grid",
        FLUX,
        "img_ids=image_ids(h // 2, w // 2, x.device, x.dtype)",
        "img_ids=image_ids(w // 2, h // 2, x.device, x.dtype)",
        (T_FLUX_CALL, T_FLUX_NON_SQUARE),
        "on non-square latents the tokens get the positions of the transposed image: wrong rotary "
        "positions, a scrambled prediction",
    ),
    Mutant(
        "flux-text-ids-ones",
        FLUX,
        "txt_ids = torch.zeros(cond.prompt_embeds.shape[1], 3, device=x.device, dtype=x.dtype)",
        "txt_ids = torch.ones(cond.prompt_embeds.shape[1], 3, device=x.device, dtype=x.dtype)",
        (T_FLUX_CALL,),
        "the text tokens sit at position (1, 1, 1), not FluxPipeline's zeros: another prediction",
    ),
    Mutant(
        "flux-guidance-input-when-not-embedded",
        FLUX,
        "if pipe.transformer.config.guidance_embeds:",
        "if not pipe.transformer.config.guidance_embeds:",
        (T_FLUX_ENCODE, T_FLUX_CALL),
        "FLUX.1-dev gets no guidance input (its call fails or is unguided), schnell one it ignores",
    ),
    Mutant(
        "flux-token-grid-transposed",
        FLUX,
        "return x.shape[-2] // 2, x.shape[-1] // 2",
        "return x.shape[-1] // 2, x.shape[-2] // 2",
        (T_FLUX_NON_SQUARE,),
        "on non-square latents the features are laid out on the transposed grid: the feature "
        "losses compare tokens at the wrong places",
    ),
    # ---- real images -------------------------------------------------------------------------
    Mutant(
        "images-top-left-crop",
        IMAGES,
        "x = TF.center_crop(x, [self.resolution, self.resolution])",
        "x = x[..., : self.resolution, : self.resolution]",
        (T_CROP,),
        "a wide or tall image is cropped at its top-left corner, not its centre: the subject is cut",
    ),
    Mutant(
        "images-png-pixels-truncated",
        IMAGES,
        "pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)",
        "pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).to(torch.uint8)",
        (T_PNG,),
        "written images are darker by up to one level: a written data set does not read back",
    ),
    # ---- metrics.jsonl -----------------------------------------------------------------------
    Mutant(
        "report-only-nan-is-nonfinite",
        REPORT,
        "bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]",
        "bad = [k for k, v in record.items() if isinstance(v, float) and math.isnan(v)]",
        (T_UNITS,),
        "an infinite loss is written as Infinity: metrics.jsonl is no longer valid JSON",
    ),
    Mutant(
        "report-last-value-of-the-first-line",
        REPORT,
        "for line in reversed(self.path.read_text().splitlines()):",
        "for line in self.path.read_text().splitlines():",
        (T_UNITS,),
        "a resumed run continues its running totals (denoiser evaluations) from the first line's",
    ),
    # ---- latent LPIPS trainer ----------------------------------------------------------------
    Mutant(
        "lpips-heldout-is-the-first-nine-tenths",
        LPIPS_TRAIN,
        "cut = len(x) - len(x) // 10",
        "cut = len(x) // 10",
        (T_UNITS,),
        "a folder's training uses a tenth of the images and holds out nine tenths",
    ),
    Mutant(
        "lpips-noise-on-the-reference-latent",
        LPIPS_DATA,
        "z[1:] += sigma.to(device) * torch.randn(z[1:].shape, generator=g).to(device)",
        "z[:2] += sigma.to(device) * torch.randn(z[:2].shape, generator=g).to(device)",
        (T_TRIPLETS, T_REF_CLEAN),
        "the reference latent is noised and b never: triplets no longer compare E(x) with distortions",
    ),
    # ---- stop signals ------------------------------------------------------------------------
    Mutant(
        "preempt-every-rank-prints",
        PREEMPT,
        'if self.received is None and os.environ.get("RANK", "0") in ("", "0"):',
        "if self.received is None:",
        (T_STOP_LINE,),
        "under torchrun every rank prints the stopping message: N copies of one line",
    ),
    Mutant(
        "preempt-ctrl-c-hint-under-torchrun",
        PREEMPT,
        'again = " (Ctrl-C again: abort without saving)" if single and signum == signal.SIGINT else ""',
        'again = " (Ctrl-C again: abort without saving)" if signum == signal.SIGINT else ""',
        (T_STOP_LINE,),
        "under torchrun the line promises that a second Ctrl-C aborts, where it only repeats the request",
    ),
]
