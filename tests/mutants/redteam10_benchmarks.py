"""A tenth red-team audit, area CPU benchmarks and the miniature's metric pieces (2026-12-06; 25
mutants, 24 survived at first, each now caught): what benchmarks/unet_calls.py counts (the expected
MDS rounds, LCD's student calls, sample-evaluations per sample not per step, a LoRA UNet hooked
twice, the step timer), whether benchmarks/engine_overhead.py's hand-written loop makes the engine's
calls (MDS rounds, the prompt draw, the teacher with the adapters off) and how the pairs are timed
(alternating order, warm-up left out, the loop body counted) and reported (engine / hand-written),
benchmarks/graphs.py's warm-up vs timed steps, alternating order and its eager Trainer,
benchmarks/memory.py's peak-RSS reset and base-UNet copies, benchmarks/common.py's call-log roles and
adapter flags, and in tlcm/toy the classifier's grey input and [-1, 1] range, the prompt templates,
the jitter's strength and the tokenizer's merges, two-letter words and 77 tokens. Only
classifier-reads-images-in-0-1 was caught at first (test_toy.py's FD of the real digits against the
reference statistics); the others name tests/test_cpu_benchmark_units.py, which drives
unet_calls.measure and the hand-written MLCD step on the tiny pipeline (2 steps, batch 3) and the
timing loops on a fake clock. Dropped as equivalent or not observable: the tokenizer's word regex
(`[0-9]+`, no `.lower()`: the prompts are lower case with one-digit numbers), the gradient bytes read
from the parameter instead of the gradient (same sizes), the memory inventory at step 0 instead of
the last (LoRA: the same tensors alive from step 0 on) and the hand-written loop without gradient
clipping (the tiny model's gradient norms stay far under max_grad_norm 1.0, so no CPU test sees it).
Two drafted mutants were cut to keep 25: E[calls] given the drawn segments with 2 calls outside MDS
(the same test catches it) and 'six'/'seven' swapped in DIGIT_WORDS (test_toy.py caught it)."""

from run import Mutant

UNET_CALLS = "benchmarks/unet_calls.py"
OVERHEAD = "benchmarks/engine_overhead.py"
MEMORY = "benchmarks/memory.py"
GRAPHS = "benchmarks/graphs.py"
COMMON = "benchmarks/common.py"
CLASSIFIER = "tlcm/toy/classifier.py"
TOY_DATA = "tlcm/toy/data.py"
TOKENIZER = "tlcm/toy/tokenizer.py"

CPU = "tests/test_cpu_benchmark_units.py::"
T_TOY_METRICS = "tests/test_toy.py::test_toy_metrics_on_real_and_wrong_labels"
T_MDS_MAX = CPU + "test_the_expected_mds_rounds_are_the_mean_maximum_of_the_draws"
T_LCD_EXPECTED = CPU + "test_the_expected_lcd_calls_are_p_teacher_and_q_plus_2_student"
T_LCD_MEASURED = CPU + "test_lcd_counts_on_real_engine_steps_equal_the_analytic_ones"
T_MLCD_MEASURED = CPU + "test_mlcd_single_jump_and_mds_counts_match_their_analytic_and_drawn_values"
T_HAND_WRITTEN = CPU + "test_the_hand_written_loop_makes_the_engines_calls_and_computes_its_loss"
T_INTERLEAVED = CPU + "test_interleaved_pairs_alternate_and_time_the_engines_step_with_its_loop_body"
T_RATIO = CPU + "test_the_headline_ratio_is_the_engines_median_over_the_hand_written_one"
T_GRAPHS_TIMED = CPU + "test_graphs_time_only_the_steps_after_the_warm_up_in_alternating_order"
T_GRAPHS_TRAINERS = CPU + "test_the_graphs_benchmarks_trainers_differ_only_in_replaying"
T_HWM_RESET = CPU + "test_the_peak_rss_reset_forgets_an_earlier_peak"
T_COPIES = CPU + "test_the_inventory_counts_a_deep_copied_unet_as_two_base_copies"
T_TAGGED = CPU + "test_a_tagged_call_gives_the_role_back_afterwards"
T_ADAPTERS = CPU + "test_the_call_log_records_whether_the_lora_adapters_were_on"
T_GREY = CPU + "test_the_classifier_reads_the_grey_value_whatever_the_channel_order"
T_TEMPLATES = CPU + "test_every_template_is_used_for_every_digit"
T_JITTER_ZERO = CPU + "test_jitter_of_strength_zero_leaves_the_images_alone"
T_BUILDER = CPU + "test_the_builder_reproduces_the_committed_miniature_tokenizer"

MUTANTS = [
    # ---- benchmarks/unet_calls.py ------------------------------------------------------------------
    Mutant(
        "unet-calls-mds-max-expectation-off-by-one",
        UNET_CALLS,
        "return sum(1 - ((k - 1) / m) ** b for k in range(1, m + 1))",
        "return sum(1 - (k / m) ** b for k in range(1, m + 1))",
        (T_MDS_MAX,),
        "E[max of B uniform draws in 1..M] loses one: the analytic MDS rounds per step are 1 too low",
    ),
    Mutant(
        "unet-calls-lcd-student-evals-miss-the-target",
        UNET_CALLS,
        'return {"teacher_cfg": p, "student": q + 2, "calls": p + q + 2}',
        'return {"teacher_cfg": p, "student": q + 1, "calls": p + q + 1}',
        (T_LCD_EXPECTED, T_LCD_MEASURED),
        "LCD's expected student evaluations forget the no-grad target call: q + 1, not q + 2",
    ),
    Mutant(
        "unet-calls-teacher-evals-per-step-not-per-sample",
        UNET_CALLS,
        '"teacher_sample_evals_per_sample": sum(c[1] for c in teacher) / samples,',
        '"teacher_sample_evals_per_sample": sum(c[1] for c in teacher) / steps,',
        (T_LCD_MEASURED,),
        "the teacher's sample-evaluations are divided by the steps, not the samples: B times too many",
    ),
    Mutant(
        "unet-calls-shared-unet-hooked-twice",
        UNET_CALLS,
        "unets = list({id(u): u for u in (trainer.base.net, trainer.student.net)}.values())",
        "unets = [trainer.base.net, trainer.student.net]",
        (T_LCD_MEASURED, T_MLCD_MEASURED),
        "a LoRA student shares the base UNet: two hooks on one module log every call twice",
    ),
    Mutant(
        "unet-calls-step-timer-starts-after-the-step",
        UNET_CALLS,
        """        start = time.perf_counter()
        out = real_step(*args)""",
        """        out = real_step(*args)
        start = time.perf_counter()""",
        (T_LCD_MEASURED,),
        "the timed region holds nothing: the median step time is ~0 ms",
    ),
    # ---- benchmarks/engine_overhead.py ----------------------------------------------------------
    Mutant(
        "overhead-hand-written-mds-one-round-short",
        OVERHEAD,
        "x_tm = mds_trajectory(teacher, self.schedule, noise, t_m, self.num_milestones - seg, cond)",
        "x_tm = mds_trajectory(teacher, self.schedule, noise, t_m, self.num_milestones - seg - 1, cond)",
        (T_HAND_WRITTEN,),
        "the hand-written loop runs one MDS round fewer than the engine: fewer UNet calls, other states",
    ),
    Mutant(
        "overhead-hand-written-prompts-from-the-noise-stream",
        OVERHEAD,
        "prompt_gen = torch.Generator().manual_seed(step_seed(seed, global_step, -1))",
        "prompt_gen = torch.Generator().manual_seed(step_seed(seed, global_step, 0))",
        (T_HAND_WRITTEN,),
        "the hand-written loop draws its prompt order from another seed than the engine: other prompts",
    ),
    Mutant(
        "overhead-hand-written-teacher-with-adapters-on",
        OVERHEAD,
        "teacher = Guided(self.teacher, tr.recipe.model.guidance_scale, tr.embeddings.uncond)",
        "teacher = Guided(self.student, tr.recipe.model.guidance_scale, tr.embeddings.uncond)",
        (T_HAND_WRITTEN,),
        "the hand-written teacher is the student (LoRA on): no adapter toggles timed, another target",
    ),
    Mutant(
        "overhead-engine-always-first",
        OVERHEAD,
        "engine_first = global_step % 2 == 0",
        "engine_first = True",
        (T_INTERLEAVED,),
        "the pair order no longer alternates: an order effect (warm caches) biases the ratio",
    ),
    Mutant(
        "overhead-warm-up-pairs-measured",
        OVERHEAD,
        "for i in range(warmup, n)",
        "for i in range(n)",
        (T_INTERLEAVED,),
        "the warm-up pairs (first calls, allocations) are among the measured ones",
    ),
    Mutant(
        "overhead-engine-time-without-its-loop-body",
        OVERHEAD,
        '(rec["engine_step"][i] + rec["engine_tail"][i], rec["manual"][i], rec["engine_tail"][i])',
        '(rec["engine_step"][i], rec["manual"][i], rec["engine_tail"][i])',
        (T_INTERLEAVED,),
        "the engine's step time leaves out run()'s loop body (logging, metrics line, checkpoint "
        "check): the engine's overhead is under-reported",
    ),
    Mutant(
        "overhead-ratio-inverted",
        OVERHEAD,
        "ratio = med_e / med_m",
        "ratio = med_m / med_e",
        (T_RATIO,),
        "the headline ratio is hand-written / engine: a slower engine reads as under the 1.05 target",
    ),
    # ---- benchmarks/memory.py -------------------------------------------------------------------
    Mutant(
        "memory-peak-reset-clears-soft-dirty-bits",
        MEMORY,
        'Path("/proc/self/clear_refs").write_text("5")',
        'Path("/proc/self/clear_refs").write_text("4")',
        (T_HWM_RESET,),
        "4 clears the soft-dirty bits, not the peak RSS: the 'peak during the steps' is the process's "
        "peak (loading included)",
    ),
    Mutant(
        "memory-base-copies-inverted",
        MEMORY,
        '"base_unet_copies": len(base_ptrs) / per_unet[0] if per_unet else 0,',
        '"base_unet_copies": per_unet[0] / len(base_ptrs) if per_unet else 0,',
        (T_COPIES,),
        "tensors per UNet / unique pointers: a full fine-tune's two copies read as 0.5",
    ),
    # ---- benchmarks/graphs.py -------------------------------------------------------------------
    Mutant(
        "graphs-first-timed-step-counted-as-warm-up",
        GRAPHS,
        "if step < warmup:",
        "if step <= warmup:",
        (T_GRAPHS_TIMED,),
        "the first timed step is added to the warm-up seconds and left out of the medians",
    ),
    Mutant(
        "graphs-both-trainers-graphed",
        GRAPHS,
        "runtime=replace(recipe.runtime, out_dir=out, device=device, graphs=graphs)",
        "runtime=replace(recipe.runtime, out_dir=out, device=device, graphs=True)",
        (T_GRAPHS_TRAINERS,),
        "the 'eager' Trainer replays too: the benchmark compares graphs with graphs",
    ),
    # ---- benchmarks/common.py -------------------------------------------------------------------
    Mutant(
        "common-tagged-role-not-restored",
        COMMON,
        """            finally:
                log.role = previous""",
        """            finally:
                log.role = role""",
        (T_TAGGED,),
        "after a teacher call every later untagged UNet call is logged as the teacher's",
    ),
    Mutant(
        "common-adapters-flag-inverted",
        COMMON,
        "adapters = None if lora is None else not lora.disable_adapters",
        "adapters = None if lora is None else lora.disable_adapters",
        (T_ADAPTERS,),
        "a teacher call (LoRA off) is logged with the adapters on and a student call with them off",
    ),
    # ---- tlcm/toy/classifier.py -----------------------------------------------------------------
    Mutant(
        "classifier-reads-the-red-channel",
        CLASSIFIER,
        "return self.body(images.float().mean(dim=1, keepdim=True))",
        "return self.body(images.float()[:, :1])",
        (T_GREY,),
        "the classifier sees the red channel, not the grey value: a coloured image scores by one channel",
    ),
    Mutant(
        "classifier-reads-images-in-0-1",
        CLASSIFIER,
        "return self.body(images.float().mean(dim=1, keepdim=True))",
        "return self.body(images.float().mean(dim=1, keepdim=True) * 0.5 + 0.5)",
        (T_TOY_METRICS,),
        "the images are renormalised to [0, 1] before a classifier trained on [-1, 1]",
    ),
    # ---- tlcm/toy/data.py -----------------------------------------------------------------------
    Mutant(
        "toy-prompt-template-modulo-three",
        TOY_DATA,
        "return TEMPLATES[template % len(TEMPLATES)].format(word=DIGIT_WORDS[digit], digit=digit)",
        "return TEMPLATES[template % (len(TEMPLATES) - 1)].format(word=DIGIT_WORDS[digit], digit=digit)",
        (T_TEMPLATES,),
        "the last template is never used: evaluation prompts and captions cover 3 of the 4 templates",
    ),
    Mutant(
        "toy-augment-shift-ignores-strength",
        TOY_DATA,
        "shift = u[:, 2:] * (2 * 2 / x.shape[-1]) * strength",
        "shift = u[:, 2:] * (2 * 2 / x.shape[-1])",
        (T_JITTER_ZERO,),
        "strength 0 (no jitter) still shifts by up to 2 px",
    ),
    # ---- tlcm/toy/tokenizer.py ------------------------------------------------------------------
    Mutant(
        "tokenizer-two-letter-words-not-merged",
        TOKENIZER,
        "if len(word) < 2:",
        "if len(word) <= 2:",
        (T_BUILDER,),
        "'of' (a drawing of the digit) stays two byte tokens: the vocabulary differs from the "
        "committed one that the miniature's text encoder was trained with",
    ),
    Mutant(
        "tokenizer-max-length-76",
        TOKENIZER,
        "tok = CLIPTokenizer(vocab=seen, merges=merges, model_max_length=77)",
        "tok = CLIPTokenizer(vocab=seen, merges=merges, model_max_length=76)",
        (T_BUILDER,),
        "the built tokenizer pads and truncates to 76 tokens, CLIP's position table (and the "
        "committed tokenizer) 77",
    ),
    Mutant(
        "tokenizer-merges-without-the-version-header",
        TOKENIZER,
        """write_text("#version: 0.2\\n" + "\\n".join(f"{a} {b}" for a, b in merges) + "\\n")""",
        """write_text("\\n".join(f"{a} {b}" for a, b in merges) + "\\n")""",
        (T_BUILDER,),
        "merges.txt loses its '#version' line: a reader that skips the first line (the slow CLIP "
        "tokenizer) drops the first merge, and 'digit' is no longer one token",
    ),
]
