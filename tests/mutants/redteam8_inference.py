"""An eighth red-team audit, area inference (2026-12-06; 20 mutants, 9 survived at first, each now
caught): what a user runs after training, on lines no other catalogue edits: tlcm.sample's
teacher and student grids, seed and image grid; the kohya conversion's module names and the
diffusers LoRA's config prefix; the exported scheduler's M; the model card's ComfyUI sigmas and
grid line; evaluation generation's default steps, image file names, prompts.jsonl indices, noise
seeds and students' samplers (--gamma over an export's first-move gamma, a checkpoint-only run's
grid); the toy teacher table's sampler and compare's best-w rows; the end-of-run summary's columns;
the miniature's captions of a subset. The survivors were the teacher's step count, --seed and the
grid's columns in tlcm.sample, generate's default steps, both student samplers, the teacher table's
gamma, compare's rows (new tests in test_sample.py, test_eval_generate.py, test_summary.py) and
the subset's captions (caught by test_real_images.py's pairing test, which it now names)."""

from run import Mutant

SAMPLE = "tlcm/sample.py"
EXPORT = "tlcm/export.py"
CARD = "tlcm/card.py"
GENERATE = "tlcm/eval/generate.py"
PIPELINE = "tlcm/eval/pipeline.py"
EVALUATE = "tlcm/evaluate.py"
SUMMARY = "tlcm/summary.py"
TOY_DATA = "tlcm/toy/data.py"

T_SAMPLE = "tests/test_sample.py"
T_SAMPLE_TEACHER = "tests/test_sample.py::test_teacher_samples_with_deterministic_ddim"
T_SAMPLE_FLAGS = "tests/test_sample.py::test_student_first_gamma_flag_overrides_the_runs"
T_SAMPLE_ROWS = "tests/test_sample.py::test_the_grid_has_one_row_per_prompt"
T_SAMPLE_TEACHER_GRID = (
    "tests/test_sample.py::test_the_teacher_samples_the_steps_asked_for_on_the_trailing_ddim_grid"
)
T_SAMPLE_SEED = "tests/test_sample.py::test_the_seed_picks_the_starting_noise"
T_KOHYA_KEYS = "tests/test_export.py::test_kohya_key_mapping"
T_EXPORT_LOADS = "tests/test_export.py::test_kohya_and_diffusers_files_load_as_the_student"
T_EXPORT_SCHED = "tests/test_export.py::test_the_exported_scheduler_keeps_the_grids_first_move_gamma"
T_CARD = "tests/test_export.py::test_model_card"
T_CARD_SIGMAS = "tests/test_export.py::test_card_comfyui_sigmas_and_sgm_uniform_timesteps_by_hand"
T_GEN = "tests/test_eval_generate.py"
T_GEN_RESUME = "tests/test_eval_generate.py::test_generation_resumes_and_regenerates_only_missing_images"
T_GEN_NOISE = "tests/test_eval_generate.py::test_each_seed_and_image_starts_from_its_own_noise"
T_GEN_STUDENTS = (
    "tests/test_eval_generate.py::test_students_from_an_export_a_lora_file_a_checkpoint_and_a_unet"
)
T_GEN_DEFAULT_STEPS = (
    "tests/test_eval_generate.py::test_default_steps_are_four_for_a_student_and_25_for_a_teacher"
)
T_GEN_GAMMA = (
    "tests/test_eval_generate.py::test_gamma_sets_every_move_of_an_exports_sampler_the_first_included"
)
T_GEN_RUN_GRID = (
    "tests/test_eval_generate.py::test_a_run_without_an_export_samples_on_the_grid_it_was_trained_on"
)
T_SUMMARY = "tests/test_summary.py"
T_COMPARE = "tests/test_summary.py::test_compare_sets_the_teachers_best_w_per_step_count_beside_the_student"
T_TEACHER_TABLE = "tests/test_summary.py::test_the_teacher_table_scores_deterministic_ddim_with_cfg"
T_CAPTIONS = "tests/test_real_images.py::test_captions_name_the_digit_of_their_image"

MUTANTS = [
    # ---- python -m tlcm.sample -----------------------------------------------------------------
    Mutant(
        "sample-teacher-one-step-more",
        SAMPLE,
        "timesteps = teacher_timesteps(args.steps, base.schedule)",
        "timesteps = teacher_timesteps(args.steps + 1, base.schedule)",
        (T_SAMPLE_TEACHER_GRID,),
        "--steps 4 for the teacher samples 5 DDIM steps: every teacher grid costs a step more than asked",
    ),
    Mutant(
        "sample-student-always-every-milestone",
        SAMPLE,
        "timesteps = grid.timesteps(args.steps, base.schedule).tolist()",
        "timesteps = grid.timesteps(grid.num_milestones, base.schedule).tolist()",
        (T_SAMPLE,),
        "a student sampled with --steps 2 runs all M milestones: the few-step sample is never shown",
    ),
    Mutant(
        "sample-seed-ignored",
        SAMPLE,
        "generator = torch.Generator().manual_seed(args.seed)",
        "generator = torch.Generator().manual_seed(0)",
        (T_SAMPLE_SEED,),
        "--seed has no effect: every seed draws the same images",
    ),
    Mutant(
        "sample-grid-columns-are-prompts",
        SAMPLE,
        "path = save_grid(images, args.out, nrow=args.num_per_prompt)",
        "path = save_grid(images, args.out, nrow=len(args.prompt))",
        (T_SAMPLE_ROWS,),
        "the grid's rows mix prompts: a row is no longer one prompt's num_per_prompt images",
    ),
    Mutant(
        "sample-gamma-flags-swapped",
        SAMPLE,
        "grid = trained.config.grid.with_sampler(args.gamma, args.first_gamma)",
        "grid = trained.config.grid.with_sampler(args.first_gamma, args.gamma)",
        (T_SAMPLE_FLAGS,),
        "--gamma sets the first move and --first-gamma every other one",
    ),
    # ---- export ----------------------------------------------------------------------------------
    Mutant(
        "kohya-module-dots-kept",
        EXPORT,
        'name = "lora_unet_" + module.replace(".", "_")',
        'name = "lora_unet_" + module',
        (T_KOHYA_KEYS,),
        "kohya keys keep the module's dots: ComfyUI / A1111 match no layer and load nothing",
    ),
    Mutant(
        "diffusers-lora-config-unprefixed",
        EXPORT,
        'config = {f"{prefix}.{k}": v for k, v in _sorted_json(student.lora_config.to_dict()).items()}',
        "config = _sorted_json(student.lora_config.to_dict())",
        (T_EXPORT_LOADS,),
        "the LoRA config in the header lacks the unet. prefix: diffusers may not find alpha and scale by 1",
    ),
    Mutant(
        "export-scheduler-M-is-q",
        EXPORT,
        "num_milestones=grid.num_milestones,",
        "num_milestones=grid.steps,",
        (T_EXPORT_SCHED, T_CARD),
        "the exported TLCMScheduler steps on a grid of q milestones, not the student's M",
    ),
    # ---- model card ------------------------------------------------------------------------------
    Mutant(
        "card-comfy-sigmas-reversed",
        CARD,
        '"ComfyUI sigmas": ", ".join(f"{s:.6g}" for s in comfy_sigmas(scheduler, ts)),',
        '"ComfyUI sigmas": ", ".join(f"{s:.6g}" for s in comfy_sigmas(scheduler, ts[::-1])),',
        (T_CARD_SIGMAS,),
        "the card's ComfyUI sigmas rise: ManualSigmas with them samples backwards from a clean start",
    ),
    Mutant(
        "card-grid-M-and-q-swapped",
        CARD,
        "m, q = config.grid.num_milestones, config.grid.steps",
        "q, m = config.grid.num_milestones, config.grid.steps",
        (T_CARD,),
        "the card says the student samples 1..q steps and lists the wrong timestep table",
    ),
    # ---- evaluation generation -------------------------------------------------------------------
    Mutant(
        "generate-default-steps-swapped",
        GENERATE,
        "steps = args.steps or (4 if args.student is not None else 25)",
        "steps = args.steps or (25 if args.student is not None else 4)",
        (T_GEN_DEFAULT_STEPS,),
        "without --steps a student samples 25 steps (refused: M = 8) and a teacher 4",
    ),
    Mutant(
        "generate-image-file-off-by-one",
        GENERATE,
        'os.replace(tmp, out / "images" / f"{i:05d}.png")',
        'os.replace(tmp, out / "images" / f"{i + 1:05d}.png")',
        (T_GEN_RESUME,),
        "image i is saved as i + 1: scored against the next prompt, and a resume regenerates all",
    ),
    Mutant(
        "generate-prompts-jsonl-from-one",
        GENERATE,
        "for i, r in enumerate(records)]",
        "for i, r in enumerate(records, 1)]",
        (T_GEN,),
        "prompts.jsonl's index is one ahead of the image names: each image is scored with the next prompt",
    ),
    Mutant(
        "generate-noise-seeds-not-spread",
        GENERATE,
        "manual_seed((seed * 1_000_003 + index) % 2**32)",
        "manual_seed((seed + index) % 2**32)",
        (T_GEN_NOISE,),
        "--seed 1's image 0 has --seed 0's image 1 noise: two seeds are not independent evaluations",
    ),
    Mutant(
        "pipeline-gamma-flag-keeps-first-gamma",
        PIPELINE,
        "sampler = type(sampler).from_config(sampler.config, gamma=gamma, first_gamma=None)",
        "sampler = type(sampler).from_config(sampler.config, gamma=gamma)",
        (T_GEN_GAMMA,),
        "--gamma g leaves the export's first-move gamma: the first move is not at g as documented",
    ),
    Mutant(
        "pipeline-run-checkpoint-grid-ignored",
        PIPELINE,
        "return tlcm_scheduler(base, grid)",
        "return scheduler",
        (T_GEN_RUN_GRID, T_GEN_STUDENTS),
        "a run without export samples on --num-milestones' grid, not the grid it was trained on",
    ),
    # ---- toy evaluation --------------------------------------------------------------------------
    Mutant(
        "teacher-table-lcm-noise",
        EVALUATE,
        "return sample_latents(teacher, base.schedule, cond, noise, grid, 0.0, gen)",
        "return sample_latents(teacher, base.schedule, cond, noise, grid, 1.0, gen)",
        (T_TEACHER_TABLE,),
        "the teacher table scores the teacher with LCM's fresh noise, not deterministic DDIM",
    ),
    Mutant(
        "compare-every-teacher-w",
        EVALUATE,
        "for r in best_teacher(table).values()",
        "for r in table",
        (T_COMPARE,),
        "compare lists every w of the teacher, not its best per step count beside the student",
    ),
    # ---- end-of-run summary ----------------------------------------------------------------------
    Mutant(
        "summary-student-teacher-alignment-swapped",
        SUMMARY,
        'cells = (str(r["steps"]), f"{r[\'alignment\']:.3f}", them[0], f"{r[\'fd\']:.2f}", *them[1:])',
        'cells = (str(r["steps"]), them[0], f"{r[\'alignment\']:.3f}", f"{r[\'fd\']:.2f}", *them[1:])',
        (T_SUMMARY,),
        "the student's alignment shows in the teacher's column and the teacher's in the student's",
    ),
    # ---- the miniature's data --------------------------------------------------------------------
    Mutant(
        "real-pairs-captions-by-position",
        TOY_DATA,
        "texts = [prompt_for(int(y[i]), i % len(TEMPLATES)) for i in keep.tolist()]",
        "texts = [prompt_for(int(y[i]), i % len(TEMPLATES)) for i in range(len(keep))]",
        (T_CAPTIONS,),
        "a subset's captions name the first n digits, not the kept images': wrong-label pairs",
    ),
]
