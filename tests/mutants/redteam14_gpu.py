"""A fourteenth red-team audit, area gpu (2026-12-07; 35 mutants, 33 survived the existing tests at
first, each now caught; 2780 s of one core): lines of the GPU benchmark (benchmarks/gpu*.py), the
replayed no-grad calls (tlcm/models/graphs.py) and the transformer families
(tlcm/models/families/transformer.py) that no earlier catalogue edits. Each mutant lists the
existing test files first, then its test in tests/test_gpu14_units.py (direct calls, CUDA faked, ~12
s). Rerun against the existing files alone, only SD3's and FLUX's heads / head dim swapped were
caught (their per-head q / k RMSNorms change the parameter count). Covered: gpu.py's model folders
(built once, only those of the selected sections), flux-inference (FLUX's folder, 1024 px unless
tiny), the FLUX student's export, --mini-fraction 1; gpu_runs' sync on "cuda:0" and the PickScore
stand-in; the speed section's peak per variant, the forced SDPA kernel over the timed steps, a
refused group loading nothing, the compiled rows' backend and dynamo's reset; the options' time
limit; gpu.md's miniature, inference, projection, models, FSDP and checkpointing tables; the
full-size networks' attention heads and head dims (parameter counts cannot see them), SDXL's linear
projections, the saved dtype and the cleaned folder; FLUX's single-stream blocks sharded and
compiled, the text stream's LoRA output projection, FLUX's feature width (the tiny models' equal the
text width: only the full size tells); CallGraphs' key (dtype, the conditioning fields present),
``clear`` after a weight is replaced, and the CUDA branch's stream order and warm-up.

One REAL bug, fixed: gpu_report._miniature gave the fp32 run the time limit refused ({"precision":
"no", "status": "skipped (time limit)", "scores": []}) a row of blanks, shorter than the header:
gpu.md showed it as a run that measured nothing. Now its status fills the row;
test_a_miniature_run_the_time_limit_refused_says_so_in_its_row; mutant
gpu14-report-skipped-miniature-row-blank puts it back.

A second real bug, fixed by the lead after the round: gpu_speed.time_variant did not sync after
the sync-counted step, so the device work it queued after train_step's own sync (opt.step, aux
steps) was timed in the first timed step (with --steps 2 the SDXL median is a mean); now it syncs
there (test_the_first_timed_speed_step_does_not_pay_for_the_sync_counted_one, mutant
gpu14-speed-no-sync-after-the-counted-step).

Not written as equivalent or cosmetic: the speed row's terms from the first vs the last timed step
(eager and every variant use the same steps), ``free``'s empty_cache (the allocator reuses its
cache and empties it before an out-of-memory error), the 5 heads of SDXL's first attention width
(its first down block has no attention), the CLIP activations and FLUX's rope axes split (no
timing or count sees them)."""

from run import Mutant

GPU = "benchmarks/gpu.py"
MODELS = "benchmarks/gpu_models.py"
RUNS = "benchmarks/gpu_runs.py"
SPEED = "benchmarks/gpu_speed.py"
OPTIONS = "benchmarks/gpu_options.py"
REPORT = "benchmarks/gpu_report.py"
GRAPHS = "tlcm/models/graphs.py"
TRANSFORMER = "tlcm/models/families/transformer.py"

T = "tests/test_gpu14_units.py"
T_BENCH = "tests/test_gpu_bench_units.py"
T_UNITS = "tests/test_benchmark_units.py"
T_MODELS = "tests/test_gpu_models_units.py"
T_GRAPHS = "tests/test_graphs.py"
T_FAMILIES = "tests/test_families.py"

MUTANTS = [
    # ---- gpu.py: model folders, sections, parsing ----------------------------------------------
    Mutant(
        "gpu14-model-folder-rebuilt-every-time",
        GPU,
        "        if not (folder / BUILT).is_file():\n",
        "        if True:\n",
        (T_BENCH, f"{T}::test_a_model_folder_is_built_once_and_reused_by_later_sections"),
        "every section rebuilds and resaves SDXL (minutes of the GPU's 15 each time)",
    ),
    Mutant(
        "gpu14-build-section-builds-every-model",
        GPU,
        "for kind in dict.fromkeys(NEEDS[s] for s in self.args.sections if s in NEEDS):",
        "for kind in dict.fromkeys(NEEDS[s] for s in SECTIONS if s in NEEDS):",
        (T_BENCH, f"{T}::test_the_build_section_builds_only_the_folders_of_the_selected_sections"),
        "--sections build,sdxl builds FLUX's 12 B and SD3's 8 B networks too",
    ),
    Mutant(
        "gpu14-flux-inference-times-sdxl",
        GPU,
        "            self.inference(sec, NEEDS[name])",
        '            self.inference(sec, "sdxl")',
        (T_BENCH, f"{T}::test_the_flux_inference_section_times_flux_at_its_own_size_unless_tiny"),
        "the flux-inference rows are SDXL's timings again",
    ),
    Mutant(
        "gpu14-full-flux-inference-at-16-px",
        GPU,
        "        if self.args.tiny and kind in LARGE:",
        "        if kind in LARGE:",
        (T_BENCH, f"{T}::test_the_flux_inference_section_times_flux_at_its_own_size_unless_tiny"),
        "FLUX inference on the H200 timed at 16 px instead of 1024 px",
    ),
    Mutant(
        "gpu14-flux-student-not-exported",
        GPU,
        '        if kind in ("sdxl", "flux"):',
        '        if kind == "sdxl":',
        (T_BENCH, f"{T}::test_the_flux_section_exports_its_student_for_flux_inference"),
        "flux-inference always times an untrained LoRA",
    ),
    Mutant(
        "gpu14-whole-miniature-refused",
        GPU,
        "    if not 0 < args.mini_fraction <= 1:",
        "    if not 0 < args.mini_fraction < 1:",
        (T_BENCH, f"{T}::test_the_whole_miniature_is_a_fraction_of_1"),
        "--mini-fraction 1 (all of tlcm-full's steps) refused",
    ),
    # ---- gpu_runs.py ----------------------------------------------------------------------------
    Mutant(
        "gpu14-cuda0-never-synchronised",
        RUNS,
        'def sync(device: str) -> None:\n    if device.startswith("cuda"):',
        'def sync(device: str) -> None:\n    if device == "cuda":',
        (T_UNITS, T_BENCH, f"{T}::test_a_numbered_cuda_device_is_synchronised_and_the_cpu_is_not"),
        "--device cuda:0: every step's seconds are its launch only",
    ),
    Mutant(
        "gpu14-preference-downloads-pickscore",
        RUNS,
        '        if "preference" in losses:\n'
        '            losses["preference"] = replace(losses["preference"], clip_folder=str(clip))\n',
        "",
        (T_UNITS, T_BENCH, f"{T}::test_the_preference_phase_reads_the_pickscore_stand_in"),
        "the preference phase asks the (unreachable) hub for PickScore: the phase fails on the device",
    ),
    # ---- gpu_speed.py ---------------------------------------------------------------------------
    Mutant(
        "gpu14-speed-peak-carried-over",
        SPEED,
        '    row: dict = {"batch": built.phase.batch_size}\n'
        '    if device.startswith("cuda"):\n'
        "        torch.cuda.reset_peak_memory_stats()\n",
        '    row: dict = {"batch": built.phase.batch_size}\n',
        (T_UNITS, T_BENCH, f"{T}::test_each_speed_variant_reports_its_own_peak_memory"),
        "every speed row after the first reports the largest peak before it",
    ),
    Mutant(
        "gpu14-speed-kernel-forced-in-warm-up-only",
        SPEED,
        "        times, evals = [], trainer.denoiser_evals\n"
        "        for step in range(WARMUP_STEPS + 1, WARMUP_STEPS + 1 + timed_steps):\n"
        "            start = time.perf_counter()\n"
        "            terms, _ = trainer.train_step(built, step)\n"
        "            sync(device)\n"
        "            times.append(time.perf_counter() - start)\n"
        '            row.setdefault("terms", term_values(terms))\n',
        "    times, evals = [], trainer.denoiser_evals\n"
        "    for step in range(WARMUP_STEPS + 1, WARMUP_STEPS + 1 + timed_steps):\n"
        "        start = time.perf_counter()\n"
        "        terms, _ = trainer.train_step(built, step)\n"
        "        sync(device)\n"
        "        times.append(time.perf_counter() - start)\n"
        '        row.setdefault("terms", term_values(terms))\n',
        (T_UNITS, T_BENCH, f"{T}::test_a_forced_sdpa_kernel_holds_for_every_timed_step"),
        "the SDPA rows time PyTorch's own kernel choice, labelled flash / cuDNN / efficient",
    ),
    Mutant(
        "gpu14-speed-refused-group-still-loads",
        SPEED,
        '            emit({"variant": label, "status": "skipped (time limit)"})\n        return\n    try:\n',
        '            emit({"variant": label, "status": "skipped (time limit)"})\n    try:\n',
        (T_UNITS, T_BENCH, f"{T}::test_a_speed_group_the_time_limit_refuses_loads_nothing"),
        "past the time limit each group still loads SDXL and times its first row",
    ),
    Mutant(
        "gpu14-speed-compiled-rows-default-backend",
        SPEED,
        '    compiled = {"compile": True, "compile_backend": backend}',
        '    compiled = {"compile": True}',
        (T_UNITS, T_BENCH, f"{T}::test_the_compiled_rows_use_the_backend_asked_for"),
        "--compile-backend ignored: tiny mode generates inductor kernels on the CPU",
    ),
    Mutant(
        "gpu14-speed-dynamo-not-reset",
        SPEED,
        "    if recipe.runtime.compile:  # the miniature's blocks are SDXL's class: start from no graphs\n"
        "        torch._dynamo.reset()\n",
        "",
        (T_UNITS, T_BENCH, f"{T}::test_a_compiled_row_starts_dynamo_from_no_graphs"),
        "the miniature's compiled rows inherit SDXL's graphs (recompile limit: they may run eager)",
    ),
    # ---- gpu_options.py -------------------------------------------------------------------------
    Mutant(
        "gpu14-options-parts-ignore-the-time-limit",
        OPTIONS,
        'sec[key] = part(model, clip, work, device, tiny) if allow() else "skipped (time limit)"',
        "sec[key] = part(model, clip, work, device, tiny)",
        (T_BENCH, f"{T}::test_the_options_parts_the_time_limit_refuses_are_skipped"),
        "the checkpointing and memory-plan parts run past the time limit (the device is taken back)",
    ),
    # ---- gpu_report.py --------------------------------------------------------------------------
    Mutant(
        "gpu14-report-skipped-miniature-row-blank",
        REPORT,
        '        if "train_s" not in r:  # the fp32 run the time limit refused: say so, not blank cells\n'
        '            rows.append([r["precision"], r.get("status", "")] + [""] * (len(columns) - 2))\n'
        "            continue\n",
        "",
        (T_BENCH, f"{T}::test_a_miniature_run_the_time_limit_refused_says_so_in_its_row"),
        "undoes this round's fix: a refused fp32 run is a row of blanks in gpu.md",
    ),
    Mutant(
        "gpu14-report-inference-seconds-and-speed-up-swapped",
        REPORT,
        '[r["model"], r["steps"], r["cfg"], _f(r["s_per_image"], "{:.3f}"), _f(r["speedup_vs_teacher"])]',
        '[r["model"], r["steps"], r["cfg"], _f(r["speedup_vs_teacher"]), _f(r["s_per_image"], "{:.3f}")]',
        (T_BENCH, f"{T}::test_the_inference_table_puts_seconds_and_speed_up_in_their_columns"),
        "gpu.md's inference table: the speed-up under s / image",
    ),
    Mutant(
        "gpu14-report-projection-hours-and-uses-swapped",
        REPORT,
        'extra = ", ".join(f"{h:.3g} at {uses} uses" for uses, h in with_cache.items())',
        'extra = ", ".join(f"{h:.3g} at {uses} uses" for h, uses in with_cache.items())',
        (T_BENCH, f"{T}::test_the_projection_table_gives_hours_at_each_number_of_uses"),
        '"15 at 12.5 uses": the uses read as hours',
    ),
    Mutant(
        "gpu14-report-models-first-text-encoder-only",
        REPORT,
        'for k, v in sorted(m.items()) if k.startswith("text_encoder"))',
        'for k, v in sorted(m.items()) if k == "text_encoder")',
        (T_BENCH, f"{T}::test_the_models_table_lists_every_text_encoder"),
        "the models table drops bigG and T5-XXL (4.8 B parameters)",
    ),
    Mutant(
        "gpu14-report-fsdp-asked-and-sharded-swapped",
        REPORT,
        'row = [sec["fsdp_requested"], sec["sharded"],',
        'row = [sec["sharded"], sec["fsdp_requested"],',
        (T_UNITS, T_BENCH, f"{T}::test_the_fsdp_table_says_what_was_asked_and_what_happened"),
        "gpu.md says FLUX sharded and the preset did not ask for it",
    ),
    Mutant(
        "gpu14-report-checkpointing-on-and-off-swapped",
        REPORT,
        'rows.append([label, _f(on.get(key), "{:.3g}"), _f(off.get(key), "{:.3g}"), "", ""])',
        'rows.append([label, _f(off.get(key), "{:.3g}"), _f(on.get(key), "{:.3g}"), "", ""])',
        (T_BENCH, f"{T}::test_the_checkpointing_table_puts_each_runs_seconds_and_memory_under_it"),
        "checkpointing appears to cost memory instead of saving it",
    ),
    # ---- gpu_models.py: the released architectures ----------------------------------------------
    Mutant(
        "gpu14-sdxl-64-heads",
        MODELS,
        '    "attention_head_dim": (5, 10, 20),',
        '    "attention_head_dim": 64,',
        (T_MODELS, f"{T}::test_the_full_size_networks_have_the_released_attention_heads"),
        "diffusers' misnamed field read as the head dim: 64 heads of 10 / 20 (same parameter count)",
    ),
    Mutant(
        "gpu14-sd15-64-heads",
        MODELS,
        'SD15_UNET = {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8}',
        'SD15_UNET = {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 64}',
        (T_MODELS, f"{T}::test_the_full_size_networks_have_the_released_attention_heads"),
        "SD1.5 with 64 heads of 5 / 10 / 20 channels",
    ),
    Mutant(
        "gpu14-sd3-heads-and-head-dim-swapped",
        MODELS,
        '    "num_attention_heads": 38,\n    "attention_head_dim": 64,',
        '    "num_attention_heads": 64,\n    "attention_head_dim": 38,',
        (T_MODELS, f"{T}::test_the_full_size_networks_have_the_released_attention_heads"),
        "SD3.5-Large as 64 heads of 38 (no flash kernel at that width; same parameter count)",
    ),
    Mutant(
        "gpu14-flux-heads-and-head-dim-swapped",
        MODELS,
        '    "attention_head_dim": 128,\n    "num_attention_heads": 24,',
        '    "attention_head_dim": 24,\n    "num_attention_heads": 128,',
        (T_MODELS, f"{T}::test_the_full_size_networks_have_the_released_attention_heads"),
        "FLUX as 128 heads of 24 (same parameter count; its rope no longer covers a head)",
    ),
    Mutant(
        "gpu14-sdxl-conv-projections",
        MODELS,
        '    "use_linear_projection": True,\n',
        "",
        (
            T_MODELS,
            f"{T}::test_sdxl_projects_into_its_transformers_with_linear_layers_and_sd15_with_convolutions",
        ),
        "SDXL's transformer projections as 1x1 convolutions (same parameter count, other kernels)",
    ),
    Mutant(
        "gpu14-saved-in-fp32",
        MODELS,
        "        pipe.to(SAVE_DTYPE[kind]).save_pretrained(folder, safe_serialization=True)",
        "        pipe.save_pretrained(folder, safe_serialization=True)",
        (T_MODELS, f"{T}::test_a_built_folder_is_saved_in_its_dtype_from_a_clean_folder"),
        "SDXL saved fp32: twice the bytes and seconds to save, a saved GB column that is not SDXL's",
    ),
    Mutant(
        "gpu14-failed-build-left-in-the-folder",
        MODELS,
        "    shutil.rmtree(folder, ignore_errors=True)  # what a failed build left\n",
        "",
        (T_MODELS, f"{T}::test_a_built_folder_is_saved_in_its_dtype_from_a_clean_folder"),
        "a rebuild keeps a failed build's files: counted in saved GB, maybe loaded",
    ),
    # ---- tlcm/models/families/transformer.py ----------------------------------------------------
    Mutant(
        "gpu14-flux-single-blocks-not-sharded",
        TRANSFORMER,
        'return [*net.transformer_blocks, *getattr(net, "single_transformer_blocks", [])]',
        "return [*net.transformer_blocks]",
        (T_FAMILIES, f"{T}::test_flux_shards_and_compiles_its_single_stream_blocks_too"),
        "FLUX's 38 single-stream blocks neither sharded nor compiled (two thirds of the network)",
    ),
    Mutant(
        "gpu14-transformer-lora-misses-the-text-output",
        TRANSFORMER,
        '    "to_add_out",\n',
        "",
        (T_FAMILIES, f"{T}::test_the_lora_covers_both_streams_attention_and_mlps_of_a_joint_block"),
        "the text stream's attention output projection gets no LoRA",
    ),
    Mutant(
        "gpu14-transformer-features-text-width",
        TRANSFORMER,
        "return [net.config.num_attention_heads * net.config.attention_head_dim] * len(self._taps(net))",
        "return [net.config.joint_attention_dim] * len(self._taps(net))",
        (T_FAMILIES, f"{T}::test_flux_teacher_features_are_3072_wide"),
        "FLUX's teacher-feature heads built for 4096 channels: its tokens are 3072 wide",
    ),
    # ---- tlcm/models/graphs.py ------------------------------------------------------------------
    Mutant(
        "gpu14-graphs-key-without-dtype",
        GRAPHS,
        "shapes = tuple((tuple(v.shape), v.dtype) for v in leaves)",
        "shapes = tuple(tuple(v.shape) for v in leaves)",
        (T_GRAPHS, f"{T}::test_another_input_dtype_is_another_capture"),
        "a float64 call replayed through float32 buffers",
    ),
    Mutant(
        "gpu14-graphs-key-without-present-fields",
        GRAPHS,
        "            present,\n",
        "",
        (T_GRAPHS, f"{T}::test_which_conditioning_fields_are_present_is_part_of_the_key"),
        "time ids replayed as the pooled embeddings of an earlier capture",
    ),
    Mutant(
        "gpu14-graphs-clear-keeps-captures",
        GRAPHS,
        '(after weights were replaced rather than updated in place: a merge)."""\n'
        "        self._graphs = weakref.WeakKeyDictionary()\n",
        '(after weights were replaced rather than updated in place: a merge)."""\n',
        (T_GRAPHS, f"{T}::test_cleared_captures_are_made_again_with_the_weights_that_replaced_the_old"),
        "weights replaced by new tensors (not updated in place): replays read the old ones",
    ),
    Mutant(
        "gpu14-graphs-side-stream-does-not-wait",
        GRAPHS,
        "        side.wait_stream(torch.cuda.current_stream(self.device))\n",
        "",
        (T_GRAPHS, f"{T}::test_a_cuda_capture_waits_for_the_inputs_warms_up_then_captures"),
        "the warm-up may read static inputs the current stream has not finished copying",
    ),
    Mutant(
        "gpu14-graphs-no-warm-up-before-capture",
        GRAPHS,
        "WARMUP_CALLS = 1",
        "WARMUP_CALLS = 0",
        (T_GRAPHS, f"{T}::test_a_cuda_capture_waits_for_the_inputs_warms_up_then_captures"),
        "lazy cuBLAS / cuDNN set-ups happen inside the capture: it fails on the GPU",
    ),
    Mutant(
        "gpu14-speed-no-sync-after-the-counted-step",
        "benchmarks/gpu_speed.py",
        "        sync(device)  # its queued work (the optimizer step) is not the first timed step's\n",
        "",
        ("tests/test_gpu14_units.py::test_the_first_timed_speed_step_does_not_pay_for_the_sync_counted_one",),
        "the first timed step pays for the sync-counted step's queued optimizer step",
    ),
]
