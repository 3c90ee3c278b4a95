"""A fifteenth red-team audit, area models (2026-12-07; 34 mutants, 18 of the 33 ordinary ones
survived the existing tests at first, each now caught; one more re-introduces a real bug; ~1380 s
of one busy core): which LoRA adapter an auxiliary network (DMD's fake score, the discriminator's trunk) loads into, saves
from and trains on the one shared base network (peft's state-dict keys carry no adapter name: a
fake score loaded into the student's adapter was refused by nothing), a full-copy auxiliary of a
LoRA student starting at the teacher (not the student), the adapters' ranks (rank 0 / no rank: the
student's) and targets, reloading a run (a checkpoint without metadata: alpha = rank and the
default grid; a LoRA of more modules or another rank refused in one line, another alpha on a
resume), gradient checkpointing on / off, compile's recompile limit and the full fine-tune's
teacher blocks, TF32 on CUDA only (matmuls and cuDNN), the swapped-weight call refused on FSDP2,
the T5 length given at load, FLUX's shift exp(mu) by hand (its default time_shift_type) and its
T5 text width, the student's model-card guidance scale per family, a scheduler of one timestep.

Real bug found and fixed (tlcm/models/student.py, ``Student.add_adapters``): peft's set_adapter
freezes every adapter but the live one, and only the adapters just added were made trainable
again. An auxiliary adapter built before another was added or rebuilt (a later phase's other
fake_rank rebuilds the fake score; the discriminator's trunk built first) lost requires_grad:
no gradients, its optimizer silently never moved it. Every adapter is now kept trainable
(tests/test_models15_units.py::test_adding_an_adapter_keeps_the_earlier_auxiliaries_trainable;
the mutant add-adapters-freezes-the-earlier-ones-bug undoes it).

Skipped as equivalent: the switch's ``default`` for a full fine-tune (``live`` reads the LoRA
layers; a full fine-tune has none and never switches); ``_add_adapter`` without
``adapters.refresh()`` (auxiliary adapters target the student's modules: the same layers);
``trainable_parameters`` without ``p.requires_grad`` (every student-adapter or full-copy parameter
requires grad); ``adapter_parameters``' tag without its dots (no adapter name here is inside
another); ``fresh_lora_state`` in state-dict order instead of sorted (the same order on every
process); SD3 / FLUX ``max_sequence_length or DEFAULT`` without the default (the pipelines'
own defaults are the same 256 / 512); ``net_on_cpu`` in ``BaseModel.load`` (CPU runs: every module
is on the CPU either way); ``scheduler_timesteps``' ``type(value) is not int`` -> ``isinstance``
(True is 1, refused by ``< 2`` anyway); ``with_guidance`` without the guidance's dtype
(``denoiser`` casts the conditioning to the net's dtype)."""

from run import Mutant

STUDENT = "tlcm/models/student.py"
SWITCH = "tlcm/models/adapters.py"
BASE = "tlcm/models/base.py"
FUNC = "tlcm/models/functional.py"
FOLDERS = "tlcm/models/folders.py"
FAM = "tlcm/models/families/base.py"
FLUX = "tlcm/models/families/flux.py"
SD = "tlcm/models/families/sd.py"

U = "tests/test_models15_units.py"
T_ADAPT = "tests/test_adapters.py"
T_USE = f"{T_ADAPT}::test_use_selects_nests_and_restores"
T_CKPT_GRADS = f"{T_ADAPT}::test_checkpointed_blocks_recompute_under_the_adapter_of_their_forward"
T_SNAP = f"{T_ADAPT}::test_state_dicts_are_snapshots_not_views_of_the_live_weights"
T_RANK = f"{T_ADAPT}::test_an_auxiliary_adapter_asked_again_with_another_rank_is_rebuilt"
T_TRAINER_ADDS = f"{T_ADAPT}::test_the_trainer_adds_every_phase_adapter_before_its_phase"
T_RESUME_GRID = f"{T_ADAPT}::test_a_resume_keeps_the_grid_and_a_next_stage_may_change_it"
T_FULL = f"{T_ADAPT}::test_a_full_finetune_student_and_a_full_copy_auxiliary_run_their_own_weights"
T_BF16 = "tests/test_frozen_dtype.py::test_bf16_frozen_fp32_adapters_and_upcast_vae"
T_DMD_ONE = "tests/test_dmd.py::test_lora_fake_score_holds_one_copy_of_the_base_unet"
T_DMD_START = "tests/test_dmd.py::test_fake_score_starts_at_the_teacher"
T_INIT_FROM = "tests/test_checkpoint.py::test_init_from_refuses_an_unfinished_phase_and_another_lora"
T_FROM_RUN = "tests/test_engine.py::test_from_run_restores_lora_alpha_and_targets"
T_FAM = "tests/test_families.py"
T_GRID = f"{T_FAM}::test_training_grid_is_the_exported_schedulers"
T_FLUX_CALL = f"{T_FAM}::test_flux_call_is_the_pipelines"
T_SDXL_FEATS = f"{T_FAM}::test_sdxl_features_are_the_unets_own_block_outputs"
T_SWAPPED = f"{T_FAM}::test_swapped_weight_calls_speak_the_networks_family"
T_FAMILY_LOADS = f"{T_FAM}::test_family_loads_encodes_denoises_taps_and_decodes"
T_CARD = "tests/test_export.py::test_card_states_the_lora_relation_scale_and_the_four_step_call"
T_TIMESTEPS = "tests/test_reliability_units.py::test_the_timestep_count_of_a_scheduler_with_trained_betas_is_diffusers_own"
T_BAD = "tests/test_bad_inputs.py::test_bad_input"
T_GRAPHS = "tests/test_graphs.py::test_replayed_calls_equal_eager_calls"

MUTANTS = [
    # ---- student.py: which adapter an auxiliary reads, writes and trains -------------------------
    Mutant(
        "aux-load-into-the-students-adapter",
        STUDENT,
        "            load_weights(self.student.net, state, self.name)",
        "            load_weights(self.student.net, state, STUDENT_ADAPTER)",
        (U, T_SNAP, T_DMD_START),
        "a resumed fake score's weights overwrite the student's LoRA (peft's state dict keys carry no "
        "adapter name, so nothing refuses it); the fake score restarts at the teacher",
    ),
    Mutant(
        "aux-state-dict-of-the-students-adapter",
        STUDENT,
        "        return weights_of(self.student.net, self.name)",
        "        return weights_of(self.student.net, STUDENT_ADAPTER)",
        (U, T_SNAP, T_DMD_START),
        "the checkpoint's fake score holds the student's LoRA: a resume restarts the fake score wrong",
    ),
    Mutant(
        "aux-parameters-are-the-students",
        STUDENT,
        "        return self.student.adapter_parameters(self.name)",
        "        return self.student.adapter_parameters(STUDENT_ADAPTER)",
        (U, T_DMD_ONE, T_TRAINER_ADDS),
        "the fake score's optimizer steps the student's LoRA, the fake adapter never moves",
    ),
    Mutant(
        "full-copy-aux-keeps-the-students-lora",
        STUDENT,
        '    if getattr(net, "peft_config", None):  # the base\'s copy',
        "    if False:  # the base's copy",
        (U, T_FULL, T_DMD_START),
        "a full-copy fake score of a LoRA student copies the student's adapters too: it starts as "
        "the student (not the teacher) and its optimizer trains LoRA weights in the copy",
    ),
    Mutant(
        "fp32-copy-reloaded-in-the-frozen-dtype",
        STUDENT,
        "net = type(base.net).from_pretrained(folder, dtype=torch.float32, local_files_only=True)",
        "net = type(base.net).from_pretrained(folder, dtype=base.net.dtype, local_files_only=True)",
        (U, T_BF16),
        "a full fine-tune on bf16 frozen weights trains bf16 master weights",
    ),
    Mutant(
        "student-ignores-the-users-lora-targets",
        STUDENT,
        "targets = tuple(config.target_modules) or present_targets(base.net, base.family.lora_targets)",
        "targets = present_targets(base.net, base.family.lora_targets)",
        (U, T_FROM_RUN),
        "--recipes.student.target-modules is silently replaced by the family's defaults",
    ),
    Mutant(
        "add-adapters-rank-0-is-rank-1",
        STUDENT,
        "self._add_adapter(name, rank or self.config.lora_rank)",
        "self._add_adapter(name, rank or 1)",
        (U, T_TRAINER_ADDS),
        "a loss's adapter of rank 0 ('the student's') is added at rank 1",
    ),
    Mutant(
        "aux-default-rank-is-1",
        STUDENT,
        "        rank = rank or self.config.lora_rank\n",
        "        rank = rank or 1\n",
        (U, T_RANK, T_DMD_ONE),
        "auxiliary() without a rank gives a rank-1 fake score, not the student's rank",
    ),
    Mutant(
        "add-adapters-leaves-them-frozen",
        STUDENT,
        "            for p in self.adapter_parameters(name):\n                p.requires_grad_(True)",
        "            for p in self.adapter_parameters(name):\n                p.requires_grad_(False)",
        (U, T_TRAINER_ADDS),
        "FSDP2 reads requires_grad once: declared adapters frozen at sharding never train",
    ),
    Mutant(
        "add-adapters-freezes-the-earlier-ones-bug",
        STUDENT,
        "for name in self.net.peft_config:  # the adapters added before these too: kept trainable",
        "for name in ranks:",
        (U,),
        "the real bug: peft's set_adapter froze every adapter but the student's, and only the ones just "
        "added were made trainable again: a trunk built before a fake score was added / rebuilt (a later "
        "phase's fake_rank) got no gradients, its optimizer silently never moved it",
    ),
    Mutant(
        "aux-adapter-not-cast-to-fp32",
        STUDENT,
        "        self.net.add_adapter(config, adapter_name=name)\n        cast_adapter_dtype(self.net, name)",
        "        self.net.add_adapter(config, adapter_name=name)",
        (U, T_BF16),
        "the fake score's LoRA on bf16 frozen weights trains in bf16",
    ),
    Mutant(
        "from-run-skips-the-weights",
        STUDENT,
        "        student.load_state_dict(latest.student)\n        return student",
        "        return student",
        (U, T_FROM_RUN),
        "tlcm.sample --student / export / evaluate run a freshly initialised LoRA: the teacher",
    ),
    Mutant(
        "from-run-old-checkpoint-alpha-not-rank",
        STUDENT,
        'lora_alpha=float(meta.get("lora_alpha", ranks[0])),',
        'lora_alpha=float(meta.get("lora_alpha", 1.0)),',
        (U, T_FROM_RUN),
        "a checkpoint from before 0.2 (alpha = rank) reloads at LoRA scale 1 / rank",
    ),
    Mutant(
        "from-run-old-checkpoint-gamma-0",
        STUDENT,
        'float(meta.get("gamma", 1.0)),',
        'float(meta.get("gamma", 0.0)),',
        (U, T_FROM_RUN),
        "a checkpoint without gamma samples with gamma 0 (deterministic) instead of the default 1",
    ),
    Mutant(
        "resume-ignores-another-lora-alpha",
        STUDENT,
        'keys = ["full_finetune", "lora_rank", "lora_alpha", "target_modules"]',
        'keys = ["full_finetune", "lora_rank", "target_modules"]',
        (U, T_RESUME_GRID, T_INIT_FROM),
        "a resume / init_from with another alpha loads the weights at another LoRA scale",
    ),
    Mutant(
        "load-state-dict-accepts-extra-keys",
        STUDENT,
        "bad = sorted(set(own) ^ set(state))",
        "bad = sorted(set(own) - set(state))",
        (U, T_RESUME_GRID),
        "a saved LoRA over more modules than this student's targets loads partly, silently",
    ),
    Mutant(
        "load-state-dict-skips-the-shape-check",
        STUDENT,
        "or [k for k in own if own[k].shape != state[k].shape]",
        "or []",
        (U, T_RESUME_GRID),
        "a LoRA of another rank is a peft size-mismatch traceback, not the one-line refusal",
    ),
    Mutant(
        "compile-lowers-the-recompile-limit",
        STUDENT,
        "setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))",
        "setattr(config, limit, min(getattr(config, limit), RECOMPILE_LIMIT))",
        (U,),
        "SDXL's 2 widths x 3 selections x grad modes exceed torch's default 8: blocks run eager",
    ),
    Mutant(
        "compile-skips-the-full-finetunes-teacher",
        STUDENT,
        "for net in dict.fromkeys([self.net, self.base.net]):",
        "for net in dict.fromkeys([self.net]):",
        (U,),
        "a full fine-tune's teacher (the base network) stays uncompiled",
    ),
    # ---- adapters.py: the switch --------------------------------------------------------------
    Mutant(
        "switch-live-keeps-peft-list",
        SWITCH,
        "return active[0] if isinstance(active, list) and len(active) == 1 else active",
        "return active",
        (U, T_USE),
        "after peft's set_adapter the live selection is ['student'], never equal to a name",
    ),
    Mutant(
        "checkpointing-switch-inverted",
        SWITCH,
        "        if not enabled:\n            self.net.disable_gradient_checkpointing()",
        "        if enabled:\n            self.net.disable_gradient_checkpointing()",
        (U, T_CKPT_GRADS),
        "--recipes.runtime.gradient-checkpointing turns it off (and off turns it on)",
    ),
    Mutant(
        "switch-writes-the-name-when-off",
        SWITCH,
        '            if not off:\n                fields["_active_adapter"] = name',
        '            fields["_active_adapter"] = name',
        (U, T_USE, T_GRAPHS),
        "use(TEACHER) wipes the active adapter name (None) from every layer",
    ),
    # ---- functional.py / base.py ----------------------------------------------------------------
    Mutant(
        "functional-call-on-fsdp2-not-refused",
        FUNC,
        "    if is_sharded(module):  # functional_call",
        "    if False:  # functional_call",
        (U, T_SWAPPED),
        "an EMA target on an FSDP2 network silently runs the live weights",
    ),
    Mutant(
        "tf32-on-every-device-but-cuda",
        BASE,
        '    if torch.device(device).type == "cuda":\n        torch.backends.cuda.matmul.allow_tf32 = True',
        '    if torch.device(device).type != "cuda":\n        torch.backends.cuda.matmul.allow_tf32 = True',
        (U, T_FAMILY_LOADS),
        "a CUDA run keeps full-fp32 matmuls (~7x slower), a CPU run flips process-wide flags",
    ),
    Mutant(
        "tf32-not-for-convolutions",
        BASE,
        "        torch.backends.cudnn.allow_tf32 = True\n",
        "",
        (U,),
        "the UNet's and VAE's cuDNN convolutions stay full fp32 on CUDA",
    ),
    Mutant(
        "load-drops-max-sequence-length",
        BASE,
        "return cls(pipe, schedule, path, family, shape, max_sequence_length)",
        "return cls(pipe, schedule, path, family, shape)",
        (U, T_FLUX_CALL),
        "--recipes.model.max-sequence-length is ignored: T5 encodes 256 / 512 tokens",
    ),
    # ---- families ---------------------------------------------------------------------------------
    Mutant(
        "flux-shift-seq-lens-swapped",
        FLUX,
        '            config.get("base_image_seq_len", 256),\n            config.get("max_image_seq_len", 4096),',
        '            config.get("max_image_seq_len", 4096),\n            config.get("base_image_seq_len", 256),',
        (U, T_GRID),
        "FLUX's resolution-dependent shift exp(mu) interpolates backwards",
    ),
    Mutant(
        "flux-time-shift-default-linear",
        FLUX,
        'if config.get("time_shift_type", "exponential") != "exponential":',
        'if config.get("time_shift_type", "linear") != "exponential":',
        (U, T_GRID),
        "a FLUX scheduler config saved before time_shift_type existed is refused",
    ),
    Mutant(
        "flux-text-width-of-clip",
        FLUX,
        "return pipe.text_encoder_2.config.hidden_size, pipe.transformer.config.joint_attention_dim",
        "return pipe.text_encoder.config.hidden_size, pipe.transformer.config.joint_attention_dim",
        (U, T_FAMILY_LOADS),
        "FLUX.1 (CLIP 768, T5 4096, joint 4096) refused as mismatched text encoders",
    ),
    Mutant(
        "student-card-samples-with-cfg",
        FAM,
        '        return {"guidance_scale": 0.0}',
        '        return {"guidance_scale": 7.5}',
        (U, T_CARD),
        "the model card tells users to sample the student with CFG 7.5 (twice the calls, burnt images)",
    ),
    Mutant(
        "family-load-absent-components-dropped",
        FAM,
        "        absent = dict.fromkeys(absent_components(path))",
        "        absent = {}",
        (U, T_FAMILY_LOADS),
        "an SD3 folder saved without T5 cannot load",
    ),
    Mutant(
        "sd-features-down-blocks-without-text",
        SD,
        "h, _ = block(hidden_states=h, temb=emb, **text)",
        "h, _ = block(hidden_states=h, temb=emb)",
        (U, T_SDXL_FEATS),
        "the discriminator's UNet features ignore the prompt in the down blocks",
    ),
    # ---- folders.py ----------------------------------------------------------------------------
    Mutant(
        "scheduler-timesteps-of-1-accepted",
        FOLDERS,
        "if type(value) is not int or value < 2:",
        "if type(value) is not int or value < 1:",
        (U, T_TIMESTEPS),
        "a scheduler of one training timestep passes the check (T - 1 = 0 divides later)",
    ),
    Mutant(
        "folder-empty-component-accepted",
        FOLDERS,
        "        if not any((path / c).iterdir()):\n",
        "        if False:\n",
        (U, f"{T_BAD}[model component folder empty]"),
        "an empty vae/ folder is a diffusers traceback at load, not a one-line refusal",
    ),
]
