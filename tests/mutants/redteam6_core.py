"""A sixth red-team audit, area "core" (2026-12-06; 30 mutants, 13 survived then, each now caught):
breakages on lines of the diffusion core, the losses' shared work, the auxiliary optimizer and the
prompt / embedding data that no earlier catalogue edits. The survivors were: a VP schedule that
forgets its prediction type when moved to a device (every v-prediction TLCMScheduler after
set_timesteps), ``use_flow_sigmas`` ignored by the config dispatch, an LCM lattice point on a
milestone drawn in the segment above it, the M-step count missing from the shown steps, frozen
parameters decayed by the AuxOptimizer, max_grad_norm 0 (no clipping) refused, embedding cache keys
that collide for prompt lists concatenating alike, unstripped .jsonl prompts, a 1-step grid drawing a
q-step sample it throws away, flow timesteps truncated to integers (the sampler's and the training
grid's), float32 coefficients promoting bf16 latents, and a scheduler step computed in fp16."""

from run import Mutant

SCHEDULE = "tlcm/diffusion/schedule.py"
MILESTONES = "tlcm/diffusion/milestones.py"
SCHEDULER = "tlcm/diffusion/scheduler.py"
SAMPLING = "tlcm/diffusion/sampling.py"
BASE = "tlcm/losses/base.py"
SHARED = "tlcm/losses/shared.py"
AUX = "tlcm/losses/auxiliary.py"
EMBEDDINGS = "tlcm/data/embeddings.py"
PROMPTS = "tlcm/data/prompts.py"

T_SCHEDULE = "tests/test_diffusion_schedule.py"
T_MILES = "tests/test_diffusion_milestones.py"
T_SOLVERS = "tests/test_diffusion_solvers.py"
T_SCHEDULER = "tests/test_diffusion_scheduler.py"
T_SHARED = "tests/test_shared_work.py"
T_EMB = "tests/test_embeddings.py"
T_CORE = "tests/test_core_maths.py"
T_AUX = "tests/test_dmd.py::test_aux_optimizer_step_averages_over_micro_batches"

MUTANTS = [
    Mutant(
        "vp-to-device-drops-prediction-type",
        SCHEDULE,
        "return VPSchedule(self.alphas_cumprod.to(device), self.prediction_type)",
        "return VPSchedule(self.alphas_cumprod.to(device))",
        (f"{T_SCHEDULER}::test_gamma_zero_matches_ddim_for_v_and_x0_students",),
        "a v-prediction (or x0) schedule moved to a device becomes an epsilon one: TLCMScheduler's "
        "set_timesteps makes every v-prediction student's step read its output as noise",
    ),
    Mutant(
        "vp-from-config-alphas-not-cumprod",
        SCHEDULE,
        "return cls(ddpm.alphas_cumprod, config.get",
        "return cls(ddpm.alphas, config.get",
        (T_SCHEDULE,),
        "the per-step alphas instead of their cumulative product: every timestep is almost clean",
    ),
    Mutant(
        "vp-alpha-is-alpha-bar",
        SCHEDULE,
        "self._alpha = with_clean.sqrt().float()",
        "self._alpha = with_clean.float()",
        (T_SCHEDULE,),
        "alpha = alphas_cumprod instead of its square root: x_t no longer has unit variance",
    ),
    Mutant(
        "vp-clean-timestep-zero",
        SCHEDULE,
        "    def clean_timestep(self) -> int:\n        return -1",
        "    def clean_timestep(self) -> int:\n        return 0",
        (T_SOLVERS, T_SCHEDULER),
        "the clean boundary is timestep 0 (sigma 0.03), not -1: LCM / TCD moves re-noise a "
        "slightly noisy x0 instead of x0_hat",
    ),
    Mutant(
        "schedule-dispatch-ignores-flow-sigmas",
        SCHEDULE,
        '        or bool(config.get("use_flow_sigmas"))\n',
        "",
        (f"{T_SCHEDULE}::test_use_flow_sigmas_alone_makes_a_flow_schedule",),
        "a UniPC / DPM config in flow mode (use_flow_sigmas) builds a VP schedule: a flow student "
        "trained and sampled with DDPM betas",
    ),
    Mutant(
        "milestones-int-truncates",
        MILESTONES,
        "return (fraction * num_train_timesteps).round().long()",
        "return (fraction * num_train_timesteps).long()",
        (T_MILES,),
        "an int T (TLCMScheduler's timesteps) truncates k T / M while a VPSchedule rounds it: for M "
        "= 3 the exported scheduler samples at 665 where training put the milestone at 667 - 1",
    ),
    Mutant(
        "segments-never-top",
        MILESTONES,
        "torch.randint(0, num_segments, (batch_size,)",
        "torch.randint(0, num_segments - 1, (batch_size,)",
        (T_MILES,),
        "MLCD never trains the top segment (pure noise -> t_{M-1}), the first step of every sampler",
    ),
    Mutant(
        "lattice-first-includes-lower-edge",
        MILESTONES,
        "first = torch.searchsorted(points, lo, right=True)",
        "first = torch.searchsorted(points, lo, right=False)",
        (f"{T_MILES}::test_lattice_points_on_a_milestone_belong_to_the_segment_below",),
        "a lattice point on the lower milestone t_s is drawn as t_m of segment s (it belongs to "
        "segment s - 1): a zero-length consistency pair t_m = t_n = t_s",
    ),
    Mutant(
        "lattice-last-excludes-upper-edge",
        MILESTONES,
        "last = torch.searchsorted(points, hi, right=True) - 1",
        "last = torch.searchsorted(points, hi, right=False) - 1",
        (T_MILES, "tests/test_zoo_components.py"),
        "the lattice point on the upper milestone (999 of the top segment) is never drawn",
    ),
    Mutant(
        "authors-table-any-m",
        MILESTONES,
        'if policy == "authors" and num_segments == 8 and num_inference_steps',
        'if policy == "authors" and num_inference_steps',
        (T_MILES,),
        "the authors' M = 8 table used for another M: indices past M (or a wrong grid)",
    ),
    Mutant(
        "shown-steps-exclude-m",
        MILESTONES,
        "return tuple(n for n in SHOWN_STEPS if n <= self.num_milestones)",
        "return tuple(n for n in SHOWN_STEPS if n < self.num_milestones)",
        (f"{T_MILES}::test_shown_steps_are_the_default_counts_up_to_m_inclusive",),
        "the M-step grid (8 of 8) is never shown or evaluated",
    ),
    Mutant(
        "segment-index-no-lower-clamp",
        MILESTONES,
        "return index.clamp(0, milestones.shape[0] - 2)",
        "return index.clamp(max=milestones.shape[0] - 2)",
        (T_MILES,),
        "t = t_0 (or TCD's s at the clean end) gets segment -1, which indexes the top milestone",
    ),
    Mutant(
        "sched-set-timesteps-ignores-policy",
        SCHEDULER,
        "                self.config.num_train_timesteps,\n                self.config.timestep_policy,\n",
        "                self.config.num_train_timesteps,\n",
        (T_SCHEDULER,),
        "TLCMScheduler(timestep_policy='trailing') still samples the authors' table",
    ),
    Mutant(
        "flow-sched-static-shift-dropped",
        SCHEDULER,
        "shifted = self.schedule.shift_sigmas(base)",
        "shifted = base",
        (T_SCHEDULER,),
        "an SD3 scheduler with shift 3 samples at unshifted sigmas, off the grid it was trained on",
    ),
    Mutant(
        "sampler-keeps-the-graph",
        SAMPLING,
        "@torch.no_grad()\ndef sample_latents(",
        "def sample_latents(",
        (T_SHARED,),
        "the student's q-step samples (LCD's states, the GAN's real side) carry the sampler's graph: "
        "gradients flow through q student calls and memory grows with q",
    ),
    Mutant(
        "chain-state-keeps-the-graph",
        SHARED,
        "@torch.no_grad()\ndef _chain_state(",
        "def _chain_state(",
        (T_SHARED, "tests/test_objectives.py", "-k", "chain"),
        "DMD2's backward-simulation state carries a graph through k student calls: the one-step "
        "prediction's gradient also trains the moves that led there",
    ),
    Mutant(
        "step-randn-ignores-generator",
        BASE,
        "return torch.randn(shape, generator=self.generator, device=self.device)",
        "return torch.randn(shape, device=self.device)",
        (T_SHARED,),
        "the step's noise comes from the global RNG: resume and process count change the draws",
    ),
    Mutant(
        "aux-frozen-params-optimised",
        AUX,
        "self.params = [p for p in params if p.requires_grad]",
        "self.params = list(params)",
        (f"{T_CORE}::test_aux_optimizer_leaves_frozen_parameters_alone_under_weight_decay",),
        "frozen parameters join AdamW: with weight decay they shrink every update",
    ),
    Mutant(
        "aux-returns-last-micro-batch",
        AUX,
        "total = total + loss.detach().float()",
        "total = loss.detach().float()",
        (T_AUX,),
        "the reported fake-score / discriminator loss is the last micro-batch's share, not the mean",
    ),
    Mutant(
        "embeddings-key-joins-prompts",
        EMBEDDINGS,
        "hashlib.sha256(json.dumps(chunk).encode())",
        'hashlib.sha256("".join(chunk).encode())',
        (f"{T_EMB}::test_prompt_lists_that_concatenate_alike_are_different_chunks",),
        "two prompt lists that concatenate alike (['ab', 'c'] vs ['a', 'bc']) share a cache file: "
        "a prompt gets another prompt's embedding",
    ),
    Mutant(
        "embeddings-reader-writes",
        EMBEDDINGS,
        "if self.folder is not None and self.writable:",
        "if self.folder is not None:",
        (T_EMB,),
        "every torchrun process writes the cache files and manifest: races on one folder",
    ),
    Mutant(
        "prompts-jsonl-not-stripped",
        PROMPTS,
        "prompts.append(clean_prompt(prompt))",
        "prompts.append(prompt)",
        (f"{T_CORE}::test_jsonl_prompts_are_cleaned_like_txt_lines",),
        "a .jsonl prompt keeps its surrounding whitespace / zero-width characters (a .txt one does "
        "not): another embedding for the same prompt",
    ),
    Mutant(
        "decoded-key-ignores-key",
        SHARED,
        'return ctx.shared(f"decoded/{key}", lambda: ctx.decode(latents))',
        'return ctx.shared("decoded", lambda: ctx.decode(latents))',
        (T_SHARED,),
        "every decode of a step is the first one's images: DPO's two candidates score alike, a "
        "pixel GAN's real side is its fake side",
    ),
    Mutant(
        "prediction-one-step-samples-anyway",
        SHARED,
        "        elif num_steps > 1:\n",
        "        elif num_steps >= 1:\n",
        (f"{T_SHARED}::test_a_one_step_grid_predicts_from_pure_noise_in_one_call",),
        "a 1-step grid still draws the q-step sample it then throws away (k = 0 everywhere): one "
        "wasted student call per step and another draw of the generator",
    ),
    Mutant(
        "aux-beta-one-accepted",
        AUX,
        "not all(0 <= b < 1 for b in betas)",
        "not all(0 <= b <= 1 for b in betas)",
        ("tests/test_dmd.py::test_dmd_config_refuses_bad_values",),
        "beta2 = 1 passes the check: Adam's second moment never leaves 0 and the first update divides by eps",
    ),
    Mutant(
        "aux-clip-zero-refused",
        AUX,
        "if weight_decay < 0 or max_grad_norm < 0:",
        "if weight_decay < 0 or max_grad_norm <= 0:",
        (f"{T_CORE}::test_aux_settings_accept_their_edges_and_refuse_past_them",),
        "max_grad_norm 0 (documented: no clipping) is refused as out of range",
    ),
    Mutant(
        "sampler-timesteps-long",
        SAMPLING,
        "t = torch.full((batch,), t_value, device=x.device, dtype=schedule.timestep_dtype)",
        "t = torch.full((batch,), t_value, device=x.device, dtype=torch.long)",
        (f"{T_SCHEDULER}::test_sample_latents_on_a_shifted_flow_grid_is_the_flow_schedulers_loop",),
        "flow timesteps truncated to integers in the training / evaluation sampler: a shifted grid "
        "(954.5) is sampled at 954, off the exported scheduler's grid",
    ),
    Mutant(
        "expand-like-keeps-float32",
        SCHEDULE,
        "return coef.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)",
        "return coef.reshape(-1, *([1] * (like.dim() - 1)))",
        (f"{T_SCHEDULE}::test_bf16_latents_stay_bf16_through_the_schedule_and_a_solver_step",),
        "float32 coefficients promote bf16 / fp16 latents to float32 in every add_noise, conversion "
        "and solver step: twice the memory, and a bf16 network gets float32 inputs",
    ),
    Mutant(
        "scheduler-step-in-half",
        SCHEDULER,
        "x_t, output = sample.float(), model_output.float()",
        "x_t, output = sample, model_output",
        (f"{T_SCHEDULER}::test_an_fp16_step_is_the_float32_step_rounded_once",),
        "an fp16 pipeline's step is computed in fp16 (x0 = (x - s eps) / a at a = 0.07 loses "
        "digits) instead of float32 as documented",
    ),
    Mutant(
        "inference-timesteps-long",
        MILESTONES,
        "return _on_device(tuple(values), table.dtype, torch.device(device))",
        "return _on_device(tuple(values), torch.long, torch.device(device))",
        (f"{T_MILES}::test_a_flow_students_training_grid_is_the_exported_schedulers_grid",),
        "flow inference timesteps truncated to integers: a shifted grid (954.5) trains and samples "
        "at 954, off the exported TLCMFlowScheduler's grid",
    ),
]
