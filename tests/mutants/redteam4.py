"""A fourth red-team audit (2026-12-06; 50 mutants, 36 survived then, each now caught): breakages
that no other catalogue makes, on lines none of their mutants edits, in what users rely on and the
earlier rounds barely touched: the exported TLCMScheduler / TLCMFlowScheduler (gamma bounds, custom
timesteps, the begin index across set_timesteps, flow milestone sigmas, scale_noise), the model card
(ComfyUI sigmas, sgm_uniform timesteps, the flow table, the diffusers snippet, Hub metadata, LoRA
scale), the input checks at the edges of their ranges (valid edges refused, one past them accepted),
recipe defaults and recipe_dict, the resume fingerprint, the end-of-run summary's teacher table,
metrics.jsonl truncation and the trackers' purge step on resume, tensorboard hparam names, the skip
guards, the results table, the metric weights' checks, toy scores and real pairs, prompt-file line
numbers and real images (brace ranges, caption column, member extensions, fingerprint); see run.py."""

from run import Mutant

SCHED = "tlcm/diffusion/scheduler.py"
CARD = "tlcm/card.py"
CHECKS = "tlcm/checks.py"
CONFIG = "tlcm/config.py"
RESUME = "tlcm/resume.py"
SUMMARY = "tlcm/summary.py"
REPORT = "tlcm/report.py"
TRACKERS = "tlcm/trackers.py"
GUARDS = "tlcm/guards.py"
TABLE = "tlcm/eval/table.py"
WEIGHTS = "tlcm/eval/weights.py"
TOY_DATA = "tlcm/toy/data.py"
TOY_SCORES = "tlcm/toy/scores.py"
PROMPTS = "tlcm/data/prompts.py"
IMAGES = "tlcm/data/images.py"

T_SCHED = "tests/test_diffusion_scheduler.py"
T_PIPE = "tests/test_diffusion_pipelines.py"
T_EXPORT = "tests/test_export.py"
T_BAD = "tests/test_bad_inputs.py"
T_FAULTS = "tests/test_faults.py"
T_SUMMARY = "tests/test_summary.py"
T_TRACKERS = "tests/test_trackers.py"
T_ENGINE = "tests/test_engine.py"
T_QUARTER = "tests/test_engine.py::test_a_phase_fails_beyond_the_documented_quarter_of_its_own_steps_skipped"
T_TEN = "tests/test_engine.py::test_skip_allows_the_documented_ten_steps_in_a_row"
T_CKPT = "tests/test_checkpoint.py"
T_EVAL = "tests/test_eval.py"
T_TOY = "tests/test_toy.py"
T_REAL = "tests/test_real_images.py"
T_PRESETS = "tests/test_presets.py"
T_SAMPLE = "tests/test_sample.py"

MUTANTS = [
    # ---- TLCMScheduler / TLCMFlowScheduler -----------------------------------------------------
    Mutant(
        "sched-gamma-lower-bound-dropped",
        SCHED,
        "if value is not None and not 0.0 <= value <= 1.0:",
        "if value is not None and not value <= 1.0:",
        (T_SCHED,),
        "a negative gamma or first_gamma is accepted: tlcm_step's noise weight sqrt(gamma) is NaN",
    ),
    Mutant(
        "sched-last-step-off-by-one",
        SCHED,
        "if self._step_index + 1 >= len(self.timesteps):",
        "if self._step_index + 2 >= len(self.timesteps):",
        (T_SCHED,),
        "the second-to-last step already returns x0_hat: n steps sample like n - 1",
    ),
    Mutant(
        "sched-custom-timesteps-accept-T",
        SCHED,
        "top = self.config.num_train_timesteps - 1",
        "top = self.config.num_train_timesteps",
        (T_SCHED,),
        "custom timesteps may hold T = 1000, one past alphas_cumprod's last index",
    ),
    Mutant(
        "sched-custom-timesteps-accept-repeats",
        SCHED,
        "(grid[1:] >= grid[:-1]).any()",
        "(grid[1:] > grid[:-1]).any()",
        (T_SCHED,),
        "custom timesteps with a repeated entry pass as 'strictly descending': a zero-length move",
    ),
    Mutant(
        "sched-steps-and-timesteps-both-accepted",
        SCHED,
        "if (num_inference_steps is None) == (timesteps is None):",
        "if num_inference_steps is None and timesteps is None:",
        (T_SCHED,),
        "num_inference_steps and timesteps together: the step count silently ignored",
    ),
    Mutant(
        "sched-vp-begin-index-not-reset",
        SCHED,
        "        self.num_inference_steps = len(grid)\n        self._step_index = self._begin_index = None",
        "        self.num_inference_steps = len(grid)\n        self._step_index = None",
        (T_SCHED, T_PIPE),
        "set_timesteps keeps a previous img2img begin index: the next text-to-image call starts mid-grid",
    ),
    Mutant(
        "sched-flow-begin-index-not-reset",
        SCHED,
        "        self.num_inference_steps = len(self.timesteps)\n        self._step_index = self._begin_index = None",
        "        self.num_inference_steps = len(self.timesteps)\n        self._step_index = None",
        (T_SCHED, T_PIPE),
        "the flow scheduler keeps a previous begin index across set_timesteps",
    ),
    Mutant(
        "sched-flow-milestone-fraction-off-by-one",
        SCHED,
        "base = torch.tensor(ks, dtype=torch.float64) / m",
        "base = torch.tensor(ks, dtype=torch.float64) / (m + 1)",
        (T_SCHED,),
        "flow sigmas k / (M + 1): the first step starts below pure noise",
    ),
    Mutant(
        "sched-flow-scale-noise-swapped",
        SCHED,
        "return self.add_noise(sample, noise, timestep)",
        "return self.add_noise(noise, sample, timestep)",
        (T_SCHED,),
        "img2img noising swaps image and noise: sigma x0 + (1 - sigma) noise",
    ),
    # ---- model card --------------------------------------------------------------------------
    Mutant(
        "card-comfy-sigmas-variance",
        CARD,
        "return [math.sqrt((1 - abar[t].item()) / abar[t].item()) for t in timesteps] + [0.0]",
        "return [(1 - abar[t].item()) / abar[t].item() for t in timesteps] + [0.0]",
        (T_EXPORT,),
        "the card's ComfyUI sigmas are sigma^2 (variance), not k-diffusion's sigma",
    ),
    Mutant(
        "card-comfy-sigmas-no-final-zero",
        CARD,
        "for t in timesteps] + [0.0]",
        "for t in timesteps]",
        (T_EXPORT,),
        "the ComfyUI sigmas lack the final 0: ManualSigmas then stops one step short of x0",
    ),
    Mutant(
        "card-sgm-uniform-one-point-short",
        CARD,
        'ts = torch.linspace(num_train_timesteps - 1, 0, steps + 1, device="cpu")[:-1]',
        'ts = torch.linspace(num_train_timesteps - 1, 0, steps, device="cpu")[:-1]',
        (T_EXPORT,),
        "sgm_uniform's column lists n - 1 timesteps, spaced for n - 1 steps",
    ),
    Mutant(
        "card-flow-table-drops-M",
        CARD,
        "for n in [s for s in CARD_STEPS if s <= num_milestones]:\n        scheduler.set_timesteps(n, mu=mu)",
        "for n in [s for s in CARD_STEPS if s < num_milestones]:\n        scheduler.set_timesteps(n, mu=mu)",
        (T_EXPORT, "tests/test_families.py"),
        "an SD3 / FLUX card's table lacks the M-step row",
    ),
    Mutant(
        "card-snippet-steps-max",
        CARD,
        "{_diffusers_use(student, base_path, str(out_dir), min(4, m))}",
        "{_diffusers_use(student, base_path, str(out_dir), max(4, m))}",
        (T_EXPORT,),
        "the card's diffusers snippet samples with M steps (8), not the 4 the card advertises",
    ),
    Mutant(
        "card-front-matter-relation-swapped",
        CARD,
        "f\"base_model_relation: {'adapter' if lora else 'finetune'}\",",
        "f\"base_model_relation: {'finetune' if lora else 'adapter'}\",",
        (T_EXPORT,),
        "the Hub metadata calls a LoRA a fine-tune (and a fine-tune an adapter)",
    ),
    Mutant(
        "card-lora-scale-inverted",
        CARD,
        "scale = config.lora_alpha / config.lora_rank",
        "scale = config.lora_rank / config.lora_alpha",
        (T_EXPORT,),
        "the card states the LoRA scale as rank / alpha",
    ),
    Mutant(
        "card-full-finetune-loads-base-net",
        CARD,
        "load = f'pipe.{net} = {net_class}.from_pretrained(\"{out}/{net}\")'",
        "load = f'pipe.{net} = {net_class}.from_pretrained(\"{base_path}/{net}\")'",
        (T_EXPORT,),
        "a full fine-tune's snippet loads the base UNet again, not the student's",
    ),
    # ---- input checks ------------------------------------------------------------------------
    Mutant(
        "checks-guidance-zero-refused",
        CHECKS,
        "if not 0 <= scale <= MAX_GUIDANCE_SCALE:",
        "if not 0 < scale <= MAX_GUIDANCE_SCALE:",
        (T_BAD, T_SAMPLE),
        "guidance scale 0 (no guidance: the student's own setting) is refused",
    ),
    Mutant(
        "checks-negative-seed-refused",
        CHECKS,
        "if not -limit < seed < limit:",
        "if not 0 <= seed < limit:",
        (T_BAD,),
        "a negative seed, which torch accepts, is refused",
    ),
    Mutant(
        "checks-cuda-index-off-by-one",
        CHECKS,
        "if dev.index is not None and dev.index >= count:",
        "if dev.index is not None and dev.index > count:",
        (T_BAD,),
        "cuda:N on a machine with N GPUs (0..N-1) is accepted, failing later inside torch",
    ),
    Mutant(
        "checks-batch-equal-to-chunks-refused",
        CHECKS,
        "if batch < chunks:",
        "if batch <= chunks:",
        (T_BAD,),
        "batch == processes x grad-accum (one sample per micro-batch) is refused",
    ),
    Mutant(
        "checks-max-batch-refused",
        CHECKS,
        "if not 1 <= phase.batch_size <= MAX_BATCH_SIZE:",
        "if not 1 <= phase.batch_size < MAX_BATCH_SIZE:",
        (T_BAD,),
        "the documented largest batch 65536 is refused",
    ),
    Mutant(
        "checks-inference-steps-M-refused",
        CHECKS,
        "if not 1 <= n <= grid.num_milestones:",
        "if not 1 <= n < grid.num_milestones:",
        (T_BAD, T_PRESETS),
        "--recipes.inference-steps M (the full grid) is refused",
    ),
    Mutant(
        "checks-world-size-zero-accepted",
        CHECKS,
        "if not raw.strip().isdigit() or int(raw) < 1:",
        "if not raw.strip().isdigit():",
        (T_BAD,),
        "WORLD_SIZE=0 is accepted: every batch check divides by zero processes",
    ),
    Mutant(
        "checks-empty-export-formats-accepted",
        CHECKS,
        "if unknown or not formats:",
        "if unknown:",
        (T_BAD, T_EXPORT),
        "an empty export-formats list passes: the run exports nothing",
    ),
    Mutant(
        "checks-counts-minimum-exclusive",
        CHECKS,
        "if value is not None and not (math.isfinite(value) and value >= minimum):",
        "if value is not None and not (math.isfinite(value) and value > minimum):",
        (T_BAD, T_REAL),
        "a count equal to its minimum (--n 1, --limit 1, --steps 0 where 0 is allowed) is refused",
    ),
    # ---- config ------------------------------------------------------------------------------
    Mutant(
        "config-recipe-dict-none-as-string",
        CONFIG,
        "return value if value is None or isinstance(value, bool | int | float | str) else str(value)",
        "return value if isinstance(value, bool | int | float | str) else str(value)",
        (T_EXPORT, T_CKPT, T_TRACKERS),
        'recipe_dict writes unset fields (resolution, prompts, ...) as the string "None", not null',
    ),
    Mutant(
        "config-max-skipped-fraction-default",
        CONFIG,
        "max_skipped_fraction: float = 0.25",
        "max_skipped_fraction: float = 0.5",
        (T_QUARTER, T_ENGINE, T_FAULTS),
        "a phase may skip half its steps before it fails, not the documented quarter",
    ),
    # ---- resume ------------------------------------------------------------------------------
    Mutant(
        "resume-fingerprint-reads-model-card",
        RESUME,
        'if any(part.startswith(".") for part in relative.parts) or path.suffix == ".md":',
        'if any(part.startswith(".") for part in relative.parts):',
        (T_CKPT,),
        "editing the base model's README refuses a resume (the card is no model weight)",
    ),
    # ---- summary / report / trackers / guards ------------------------------------------------
    Mutant(
        "summary-teacher-table-any-prompt-count",
        SUMMARY,
        'if rows and all(r.get("prompts") == prompts for r in rows):',
        'if rows and any(r.get("prompts") == prompts for r in rows):',
        (T_SUMMARY, T_EXPORT),
        "a teacher table with mixed prompt counts is set beside the student as if comparable",
    ),
    Mutant(
        "summary-samples-per-digit-not-divided",
        SUMMARY,
        "teacher, spd = None, (prompts or DOCS_PROMPTS) // 10",
        "teacher, spd = None, prompts or DOCS_PROMPTS",
        (T_SUMMARY,),
        "the suggested teacher-table command scores 10x the student's prompt count",
    ),
    Mutant(
        "report-truncate-drops-checkpoint-step",
        REPORT,
        "keep = [line for line in lines if _global_step(line) <= global_step]",
        "keep = [line for line in lines if _global_step(line) < global_step]",
        (T_CKPT, T_ENGINE, T_TRACKERS),
        "a resume deletes the checkpoint step's own metrics line",
    ),
    Mutant(
        "report-torn-line-kept",
        REPORT,
        "    except json.JSONDecodeError:\n        return math.inf",
        "    except json.JSONDecodeError:\n        return 0",
        (T_TRACKERS, T_CKPT, T_ENGINE),
        "a torn last metrics line (killed mid-write) survives the resume's truncation",
    ),
    Mutant(
        "report-purge-step-off-by-one",
        REPORT,
        "self._purge_step = global_step + 1",
        "self._purge_step = global_step",
        (T_TRACKERS, T_CKPT),
        "tensorboard purges the checkpoint step's own values on resume",
    ),
    Mutant(
        "trackers-flatten-trailing-dot",
        TRACKERS,
        "        yield prefix[:-1], tree",
        "        yield prefix, tree",
        (T_TRACKERS,),
        "tensorboard hparams named 'phases.mlcd.lr.' (trailing dot)",
    ),
    Mutant(
        "guards-skipped-counts-previous-phase",
        GUARDS,
        "count = sum(global_step - steps < s <= global_step for s in skipped)",
        "count = sum(global_step - steps <= s <= global_step for s in skipped)",
        (T_QUARTER, T_ENGINE, T_FAULTS),
        "a phase's skip count includes the previous phase's last step",
    ),
    Mutant(
        "guards-skipped-fraction-inclusive",
        GUARDS,
        "if count > rt.max_skipped_fraction * steps:",
        "if count >= rt.max_skipped_fraction * steps:",
        (T_QUARTER, T_ENGINE, T_FAULTS),
        "a phase with exactly max-skipped-fraction of its steps skipped fails (documented: more than)",
    ),
    Mutant(
        "guards-consecutive-skips-off-by-one",
        GUARDS,
        "if streak > rt.max_consecutive_skips:",
        "if streak >= rt.max_consecutive_skips:",
        (T_TEN, T_ENGINE, T_FAULTS),
        "the run stops at max-consecutive-skips skipped steps in a row, one short of the limit",
    ),
    # ---- evaluation tables, weights, toy scores -----------------------------------------------
    Mutant(
        "table-zero-metric-shown-missing",
        TABLE,
        'cells += ["-" if r.get(m) is None else',
        'cells += ["-" if not r.get(m) else',
        (T_EVAL,),
        "a score of exactly 0 (an ImageReward of 0.0) shows as missing",
    ),
    Mutant(
        "table-rows-sorted-by-steps-first",
        TABLE,
        'return sorted(rows, key=lambda r: (first[r["model"]], r["steps"]))',
        'return sorted(rows, key=lambda r: (r["steps"], first[r["model"]]))',
        (T_EVAL,),
        "the results table interleaves models by step count instead of grouping them",
    ),
    Mutant(
        "weights-clip-folder-needs-both-tokenizers",
        WEIGHTS,
        "if not any((path / f).is_file() for f in CLIP_TOKENIZER_FILES):",
        "if not all((path / f).is_file() for f in CLIP_TOKENIZER_FILES):",
        (T_EVAL,),
        "a CLIP folder with only tokenizer.json (the fast tokenizer) is refused",
    ),
    Mutant(
        "weights-flag-underscore",
        WEIGHTS,
        "(or pass --weights.{field.replace('_', '-')} PATH)",
        "(or pass --weights.{field} PATH)",
        (T_EVAL,),
        "the error advises --weights.image_reward, a flag the CLI does not have",
    ),
    Mutant(
        "toy-scores-prompt-count",
        TOY_SCORES,
        '"prompts": 10 * samples_per_digit,\n                "alignment": scores.alignment,',
        '"prompts": samples_per_digit,\n                "alignment": scores.alignment,',
        (T_EXPORT, T_SUMMARY, "tests/test_precision.py"),
        "eval.json records a tenth of the prompt count: the summary then finds no teacher table",
    ),
    Mutant(
        "toy-real-pairs-ink-boundary",
        TOY_DATA,
        'rows = [{"digit": int(y[i]), "ink": "white" if i < half else "black"} for i in keep.tolist()]',
        'rows = [{"digit": int(y[i]), "ink": "white" if i <= half else "black"} for i in keep.tolist()]',
        (T_TOY, T_REAL),
        "the first black-on-white digit is labelled white",
    ),
    # ---- prompts and real images -------------------------------------------------------------
    Mutant(
        "prompts-line-numbers-from-zero",
        PROMPTS,
        "lines = [(i + 1, p) for i, line in enumerate(split(text)) if (p := clean_prompt(line))]",
        "lines = [(i, p) for i, line in enumerate(split(text)) if (p := clean_prompt(line))]",
        (T_BAD,),
        "a .jsonl prompt file's errors name the line before the bad one",
    ),
    Mutant(
        "images-brace-range-excludes-last",
        IMAGES,
        "for i in range(int(lo), int(hi) + 1)",
        "for i in range(int(lo), int(hi))",
        (T_REAL,),
        "shards/part-{0000..0003}.tar reads 3 shards, not 4",
    ),
    Mutant(
        "images-brace-no-zero-padding",
        IMAGES,
        'width = len(lo) if lo.startswith("0") else 0',
        "width = 0",
        (T_REAL,),
        "{0000..0003} expands to part-0.tar..part-3.tar: no such files",
    ),
    Mutant(
        "images-caption-column-ignored",
        IMAGES,
        "texts.append(clean_prompt(record[col]))",
        'texts.append(clean_prompt(record["text"]))',
        (T_REAL, T_BAD),
        "--recipes.data.caption-column is checked but the captions are always read from 'text'",
    ),
    Mutant(
        "images-extension-case-sensitive",
        IMAGES,
        "groups.setdefault(match[1], {}).setdefault(match[2].lower(), info)",
        "groups.setdefault(match[1], {}).setdefault(match[2], info)",
        (T_REAL, T_BAD),
        "shard members KEY.JPG / KEY.TXT are not recognised",
    ),
    Mutant(
        "images-fingerprint-ignores-caption-column",
        IMAGES,
        'digest = hashlib.sha256(f"{self.layout}/{self.caption_column}/{len(self)}".encode())',
        'digest = hashlib.sha256(f"{self.layout}/{len(self)}".encode())',
        (T_REAL, T_CKPT),
        "a resume with another caption column (other captions, other prompts) is not noticed",
    ),
]
