"""A fifteenth red-team audit, adversarial area (2026-12-07; 42 mutants: 23 of the first 34 survived the
existing tests, the 8 on documented defaults and the VGG16 widths were written with their test; each now
caught; ~1500 s of one busy core): the lines of the distribution-matching, GAN, ADD, preference, reward,
discriminator and latent LPIPS code that no earlier catalogue edited. DMD: which adapters a full-copy fake
score asks for, the fake score's timestep floor and 0 updates, its denoising loss's x_t, its optimizer's
resume. GAN: the shared-work keys of the re-noising options (independent noise, tau_shift) and of the
re-noised pixel decodes (they must not overwrite the clean prediction's / samples' decodes that reward
feedback and DPO read), the time each side is re-noised to vs the one D is told, what aux_step logs over
several micro-batches (the mean, held-out accuracies too), the trunk's checkpoint, the config edges
(teacher_steps, R1 gamma, disc_lr, out_indices). The discriminator: frozen heads, head width and patch
heads per level from the config, a frozen timm backbone that gathers no gradients, a weight file of
another shape or nested under "model". Preference: DPO without a reference, the reference's calls in the
NFE count, the loss's batch reduction and metrics. The documented defaults (DMD2's 5 fake updates, DMD's
t' <= 0.98 T, D's lr 1e-4 and log loss, Diffusion-DPO's beta 2000, Eq. (11)'s lambda_neg 1, ADD's
alpha_bar weighting), latent LPIPS's VGG16 trunk and its max-pool, ADD's t_min floor.

Real bugs found: none (every survivor was a hole in the tests, not in the code).

Skipped as equivalent: the clean tau of noise_level 0 as 0 instead of the schedule's clean
timestep (timm D ignores t; the teacher-feature D clamps -1 to 0 anyway), dropping ``.detach()``
on z_real in ``_disc_loss`` (``inputs`` already returns it detached), ``>=`` for ``>`` in the timm
resize's ``shrink`` (equal sizes are not resized), ``make_heads``'s ``kind == "patch"`` as ``kind !=
"pooled"`` (validate allows only the two), pred / target swapped in ADD's distance (l2 and latent
LPIPS are symmetric)."""

from run import Mutant

DMD = "tlcm/losses/dmd.py"
GAN = "tlcm/losses/gan.py"
ADD = "tlcm/losses/add.py"
PREF = "tlcm/losses/preference.py"
LPIPS = "tlcm/losses/latent_lpips.py"
DISC = "tlcm/models/discriminator.py"
DIGIT = "tlcm/rewards/digit.py"

T_DMD = "tests/test_dmd.py"
T_GAN = "tests/test_gan.py"
T_PREF = "tests/test_preference.py"
T_ADD = "tests/test_add.py"
T_LL = "tests/test_latent_lpips.py"
U = "tests/test_adversarial15_units.py"

MUTANTS = [
    Mutant(
        "dmd-full-copy-gets-a-lora-adapter-too",
        DMD,
        'return {FAKE_ADAPTER: self.fake_rank} if self.fake_score == "lora" else {}',
        "return {FAKE_ADAPTER: self.fake_rank}",
        (f"{U}::test_only_a_lora_fake_score_asks_the_student_for_an_adapter",),
        "a full-copy fake score would still leave an unused dmd_fake LoRA on the student",
    ),
    Mutant(
        "dmd-negative-fake-t-min-accepted",
        DMD,
        "if not 0 <= lo < hi < num_train_timesteps:",
        "if not lo < hi < num_train_timesteps:",
        (f"{U}::test_the_fake_scores_timestep_range_starts_at_0_and_0_updates_are_allowed",),
        "fake_t_min -1 (the VP clean boundary) passes: the fake score trains on alpha = 1 inputs",
    ),
    Mutant(
        "dmd-zero-fake-updates-refused",
        DMD,
        "if self.fake_updates < 0:",
        "if self.fake_updates < 1:",
        (f"{U}::test_the_fake_scores_timestep_range_starts_at_0_and_0_updates_are_allowed",),
        "fake_updates 0 (a fixed fake score, documented >= 0) refused",
    ),
    Mutant(
        "dmd-denoising-loss-noises-eps-with-x0",
        DMD,
        "x_t = schedule.add_noise(x0, eps, t)\n    return",
        "x_t = schedule.add_noise(eps, x0, t)\n    return",
        (
            f"{T_DMD}::test_denoising_loss_by_hand",
            f"{T_DMD}::test_denoising_loss_targets_the_prediction_type",
        ),
        "the fake score's x_t = a_t eps + s_t x0: it learns the wrong marginal",
    ),
    Mutant(
        "dmd-fake-opt-state-not-restored",
        DMD,
        '        self.opt.load_state_dict(state["opt"])',
        "        pass",
        (f"{T_DMD}::test_resume_restores_the_fake_scores_optimizer",),
        "resume restarts the fake score's AdamW moments",
    ),
    Mutant(
        "gan-rank-0-trunk-still-gets-an-adapter",
        GAN,
        'return {DISC_ADAPTER: self.disc_rank} if self.backbone == "teacher" and self.disc_rank else {}',
        'return {DISC_ADAPTER: self.disc_rank} if self.backbone == "teacher" else {}',
        (f"{T_GAN}::test_disc_rank_needs_the_teacher_backbone",),
        "a frozen teacher trunk (disc_rank 0) still asks for a 'disc' LoRA",
    ),
    Mutant(
        "gan-independent-noise-not-in-the-shared-key",
        GAN,
        'tag = "/independent" if cfg.independent_noise else ""',
        'tag = ""',
        (f"{U}::test_gans_with_other_re_noising_options_share_no_inputs",),
        "a second GAN with independent noise is handed the first one's shared draw",
    ),
    Mutant(
        "gan-tau-shift-not-in-the-shared-key",
        GAN,
        'return f"{tag}/shifted{cfg.tau_shift:g}"',
        'return f"{tag}/shifted"',
        (f"{U}::test_gans_with_other_re_noising_options_share_no_inputs",),
        "a second shifted GAN with another tau_shift is handed the first one's draw",
    ),
    Mutant(
        "gan-renoised-sides-decoded-under-the-clean-keys",
        GAN,
        'real_key, fake_key = f"gan/real/{real_key}/{tag}", f"gan/fake/{fake_key}/{tag}"',
        "pass",
        (f"{U}::test_re_noised_pixel_sides_leave_the_clean_decodes_alone",),
        "a pixel GAN's re-noised decode is stored as the clean prediction's / samples' decode: "
        "reward feedback and DPO score noise",
    ),
    Mutant(
        "gan-inputs-return-the-times-swapped",
        GAN,
        "return real.detach(), fake, tau_real, tau_fake",
        "return real.detach(), fake, tau_fake, tau_real",
        (f"{U}::test_each_side_is_re_noised_at_the_time_inputs_reports_for_it",),
        "D is told the fake's tau for the real side and vice versa (independent noise)",
    ),
    Mutant(
        "gan-logged-sides-swapped",
        GAN,
        "real_d, fake_d = pooled(real_logits), pooled(fake_logits)",
        "real_d, fake_d = pooled(fake_logits), pooled(real_logits)",
        (
            f"{T_GAN}::test_gan_component_by_hand_with_a_linear_discriminator",
            f"{T_GAN}::test_accuracy_is_measured_before_the_update",
        ),
        "d_real / d_fake and the accuracies report the other side",
    ),
    Mutant(
        "gan-logs-the-first-micro-batch-only",
        GAN,
        "values = torch.stack(stats).mean(0)  # the last",
        "values = torch.stack(stats)[0]  # the last",
        (f"{U}::test_d_metrics_average_every_micro_batch",),
        "gan/d_loss, d_real, d_fake are the first micro-batch's, not the mean",
    ),
    Mutant(
        "gan-held-out-accuracy-of-the-first-micro-batch",
        GAN,
        "held_out = torch.stack(stats).mean(0)[4:]",
        "held_out = stats[0][4:]",
        (f"{U}::test_d_metrics_average_every_micro_batch",),
        "the held-out accuracies are the first micro-batch's, not the mean",
    ),
    Mutant(
        "gan-trunk-not-checkpointed",
        GAN,
        'return {**state, "trunk": self.trunk.state_dict()} if self.trunk is not None else state',
        "return state",
        (f"{T_GAN}::test_disc_rank_trunk_trains_on_the_discriminator_loss_only",),
        "the disc_rank trunk's LoRA is missing from the checkpoint",
    ),
    Mutant(
        "gan-trunk-not-restored",
        GAN,
        '            self.trunk.load_state_dict(state["trunk"])',
        "            pass",
        (f"{T_GAN}::test_disc_rank_trunk_trains_on_the_discriminator_loss_only",),
        "resume keeps the trunk's fresh LoRA instead of the saved one",
    ),
    Mutant(
        "gan-teacher-steps-range-unchecked",
        GAN,
        'if self.real == "teacher" and not 1 <= self.teacher_steps < num_train_timesteps:',
        'if self.real == "teacher" and not 1 <= self.teacher_steps <= num_train_timesteps:',
        (f"{U}::test_gan_config_edges_pass_and_one_past_them_is_refused",),
        "teacher_steps = T passes: the DDIM grid needs timestep T",
    ),
    Mutant(
        "gan-negative-r1-accepted",
        GAN,
        "if self.input_size < 0 or self.r1_weight < 0 or self.disc_lr <= 0:",
        "if self.input_size < 0 or self.disc_lr <= 0:",
        (f"{U}::test_gan_config_edges_pass_and_one_past_them_is_refused",),
        "a negative R1 gamma rewards a steep D",
    ),
    Mutant(
        "gan-zero-disc-lr-accepted",
        GAN,
        "if self.input_size < 0 or self.r1_weight < 0 or self.disc_lr <= 0:",
        "if self.input_size < 0 or self.r1_weight < 0 or self.disc_lr < 0:",
        (f"{U}::test_gan_config_edges_pass_and_one_past_them_is_refused",),
        "disc_lr 0 passes: D never trains",
    ),
    Mutant(
        "gan-negative-out-index-accepted",
        GAN,
        "if not self.out_indices or min(self.out_indices) < 0:",
        "if not self.out_indices:",
        (f"{U}::test_gan_config_edges_pass_and_one_past_them_is_refused",),
        "out_indices -1 passes (timm reads it as the last level)",
    ),
    Mutant(
        "gan-pixel-input-not-normalised",
        GAN,
        '                        cfg.input == "pixel",\n',
        "                        False,\n",
        (f"{T_GAN}::test_pixel_discriminator_normalises_with_the_backbones_imagenet_statistics",),
        "pixel D sees [-1, 1] images without the backbone's mean / std",
    ),
    Mutant(
        "disc-frozen-heads-flag-inverted",
        DISC,
        "        if not frozen:\n",
        "        if frozen:\n",
        (f"{T_GAN}::test_gan_component_by_hand_with_a_linear_discriminator",),
        "L_G trains D's heads and L_D does not",
    ),
    Mutant(
        "disc-head-channels-ignored",
        DISC,
        "else partial(Heads, hidden=hidden)",
        "else partial(Heads, hidden=64)",
        (f"{U}::test_head_width_and_patch_heads_per_level_follow_the_config",),
        "head_channels has no effect (always 64)",
    ),
    Mutant(
        "disc-heads-per-level-ignored",
        DISC,
        "partial(PatchHeads, per_level=per_level)",
        "partial(PatchHeads, per_level=4)",
        (f"{U}::test_head_width_and_patch_heads_per_level_follow_the_config",),
        "heads_per_level has no effect (always 4; PCM SDXL uses 1)",
    ),
    Mutant(
        "disc-patch-head-first-conv-skipped",
        DISC,
        "        h = self.a(feature)\n",
        "        h = feature\n",
        (f"{T_GAN}::test_patch_heads_by_hand",),
        "PCM's patch head without its first conv block",
    ),
    Mutant(
        "disc-backbone-not-frozen",
        DISC,
        "self.backbone = backbone.requires_grad_(False).eval()",
        "self.backbone = backbone.eval()",
        (f"{U}::test_the_generators_backward_leaves_the_timm_backbone_without_gradients",),
        "L_G's backward piles gradients onto the timm backbone's weights",
    ),
    Mutant(
        "disc-shape-mismatch-is-a-traceback",
        DISC,
        "wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)",
        "wrong = []",
        (f"{U}::test_a_backbone_file_of_another_shape_is_refused_by_name",),
        "a backbone file of another shape is a load_state_dict traceback, not a named TLCMError",
    ),
    Mutant(
        "disc-nested-model-dict-not-unwrapped",
        DISC,
        "        if isinstance(state.get(key), dict):\n            state = state[key]",
        '        if key == "state_dict" and isinstance(state.get(key), dict):\n            state = state[key]',
        (f"{U}::test_a_backbone_file_of_another_shape_is_refused_by_name",),
        "a checkpoint nested under 'model' is refused as missing every key",
    ),
    Mutant(
        "pref-dpo-without-reference-accepted",
        PREF,
        'if config.mode == "dpo" and reference is None:',
        "if False:",
        (f"{U}::test_dpo_without_a_reference_is_refused_and_reward_mode_needs_none",),
        "DPO without a reference fails at the first step with a TypeError",
    ),
    Mutant(
        "pref-loss-summed-over-the-batch",
        PREF,
        'return {"preference": loss.mean()}',
        'return {"preference": loss.sum()}',
        (
            f"{T_PREF}::test_dpo_component_by_hand",
            f"{T_PREF}::test_reward_feedback_component_pushes_reward_up",
        ),
        "the preference loss scales with the micro-batch size",
    ),
    Mutant(
        "pref-metrics-of-the-last-micro-batch",
        PREF,
        "return {k: torch.stack([s[k] for s in stats]).mean() for k in stats[0]} if stats else {}",
        "return {k: stats[-1][k] for k in stats[0]} if stats else {}",
        (f"{T_PREF}::test_dpo_component_with_toy_denoisers_only",),
        "the reward metrics are the last micro-batch's, not the mean",
    ),
    Mutant(
        "pref-reference-counted-nowhere",
        PREF,
        "self, reward, student.net, frozen, student.base.family, counter=student.base",
        "self, reward, student.net, frozen, student.base.family",
        (f"{U}::test_the_dpo_reference_of_a_student_counts_its_calls",),
        "the DPO reference's calls are missing from the run's NFE count",
    ),
    Mutant(
        "digit-reward-reads-the-first-prompts-digit",
        DIGIT,
        "return torch.stack([logp[i, prompt_digit(p)] for i, p in enumerate(prompts)])",
        "return torch.stack([logp[i, prompt_digit(prompts[0])] for i, p in enumerate(prompts)])",
        (f"{T_PREF}::test_digit_reward_is_the_classifiers_log_probability",),
        "every image is scored for the first prompt's digit",
    ),
    Mutant(
        "lpips-block5-average-pooled",
        LPIPS,
        "self.pool = nn.MaxPool2d(2)",
        "self.pool = nn.AvgPool2d(2)",
        (f"{U}::test_latent_lpips_block_5_reads_the_2x2_max_of_block_4",),
        "block 5 reads an average, not VGG's max-pool",
    ),
    Mutant(
        "add-negative-t-min-accepted",
        ADD,
        "if not 0 <= self.t_min < hi <= num_train_timesteps - 1:",
        "if not self.t_min < hi <= num_train_timesteps - 1:",
        (f"{U}::test_add_distill_refuses_a_timestep_below_0",),
        "t_min -1 passes: the teacher denoises clean inputs",
    ),
    # ---- documented defaults --------------------------------------------------------------------
    Mutant(
        "dmd-default-one-fake-update",
        DMD,
        "fake_updates: int = 5",
        "fake_updates: int = 1",
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "DMD2 Sec. 4.2's two time-scale rule (5 fake updates per student update) is the documented default",
    ),
    Mutant(
        "dmd-default-t-prime-up-to-t",
        DMD,
        "t_max: int = 980",
        "t_max: int = 999",
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "DMD Sec. 3.2 re-noises to t' <= 0.98 T",
    ),
    Mutant(
        "gan-default-disc-lr-10x",
        GAN,
        "disc_lr: float = 1e-4",
        "disc_lr: float = 1e-3",
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "the paper's D learning rate is 1e-4 (Sec. 5.1)",
    ),
    Mutant(
        "gan-default-hinge",
        GAN,
        'loss_type: Literal["nonsaturating", "hinge"] = "nonsaturating"',
        'loss_type: Literal["nonsaturating", "hinge"] = "hinge"',
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "Eq. (13) is a log loss: the default is the non-saturating one",
    ),
    Mutant(
        "pref-default-beta-sdxl",
        PREF,
        "beta: float = 2000.0",
        "beta: float = 5000.0",
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "Diffusion-DPO's SD1.5 beta (2000) is the documented default",
    ),
    Mutant(
        "pref-default-half-negative-weight",
        PREF,
        '    negative_weight: float = 1.0\n    """lambda_neg',
        '    negative_weight: float = 0.5\n    """lambda_neg',
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "Eq. (11) exactly needs lambda_neg = 1",
    ),
    Mutant(
        "add-default-uniform-weighting",
        ADD,
        'weighting: Literal["exponential", "uniform"] = "exponential"',
        'weighting: Literal["exponential", "uniform"] = "uniform"',
        (f"{U}::test_the_losses_defaults_are_the_papers_they_cite",),
        "ADD's c(t) = alpha_bar_t is the documented default",
    ),
    Mutant(
        "lpips-paper-widths-not-vgg16",
        LPIPS,
        "PAPER_CHANNELS = (64, 128, 256, 512, 512)",
        "PAPER_CHANNELS = (64, 128, 256, 256, 512)",
        (f"{U}::test_latent_lpips_default_trunk_is_vgg16_without_its_first_three_pools",),
        "the paper's latent LPIPS is VGG16-widths; the default network must be it",
    ),
]
