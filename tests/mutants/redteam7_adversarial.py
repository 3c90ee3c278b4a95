"""A seventh red-team audit, area "adversarial" (2026-12-06; 31 mutants, 10 survived then, each now
caught): DMD, the GAN, preference learning, the discriminators and the rewards, on lines no earlier
catalogue edits. What survived was mostly what the by-hand tests of the losses do not look at: the
bookkeeping around them. Caught now by new tests:
- DMD: a resume that drops the fake score's AdamW state; t_max = T passing validation when the fake
  score's own range is valid.
- GAN: a pixel GAN's real side handed the fake's decoded image (shared-key mix-up); disc_steps + 1
  head updates; the logged D statistics averaged over every update instead of the last; the heads
  and a random backbone not seeded from ``seed``; D's re-noising eps drawn from the global RNG.
- Discriminators: the frozen timm backbone left in train mode (BatchNorm on batch statistics,
  running stats drifting) and the pixel input normalised with mean and std swapped.
- Preference: the logged rewards of the prompts and of the unrelated prompts swapped."""

from run import Mutant

DMD = "tlcm/losses/dmd.py"
GAN = "tlcm/losses/gan.py"
PREF = "tlcm/losses/preference.py"
DISC = "tlcm/models/discriminator.py"
DIGIT = "tlcm/rewards/digit.py"
CLIP = "tlcm/rewards/clip.py"

T_DMD_HAND = "tests/test_dmd.py::test_dmd_loss_and_gradient_by_hand_on_eps_outputs"
T_DMD_FRESH = "tests/test_objectives.py::test_dmd_fresh_fake_samples_are_new_student_draws"
T_DMD_LORA = "tests/test_dmd.py::test_lora_fake_score_holds_one_copy_of_the_base_unet"
T_GAN_RELU = "tests/test_gan.py::test_relu_generator_loss_and_accuracies_by_hand"
T_GAN_TAU = "tests/test_gan.py::test_tau_distribution_fractions_by_hand"
T_GAN_PCM = "tests/test_gan.py::test_consistency_real_side_is_pcms_adversarial_pair_by_hand"
T_GAN_LINEAR = "tests/test_gan.py::test_gan_component_by_hand_with_a_linear_discriminator"
T_GAN_INDEP = "tests/test_gan.py::test_independent_noise_draws_tau_and_eps_per_side"
T_GAN_R1 = "tests/test_gan.py::test_r1_adds_gamma_w_to_the_heads_gradient"
T_GAN_ACC = "tests/test_gan.py::test_accuracy_is_measured_before_the_update"
T_PREF_REWARD = "tests/test_preference.py::test_reward_feedback_component_pushes_reward_up"
T_PREF_LOGGED = (
    "tests/test_preference.py::test_reward_feedback_logs_the_prompts_and_the_unrelated_rewards_apart"
)
T_DMD_RESUME = "tests/test_dmd.py::test_resume_restores_the_fake_scores_optimizer"
T_GAN_PIXEL = "tests/test_gan.py::test_pixel_gan_decodes_each_side_from_its_own_latents"
T_GAN_STEPS = "tests/test_gan.py::test_disc_steps_updates_per_step_and_the_last_ones_logged"
T_GAN_SEED = "tests/test_gan.py::test_the_heads_and_a_random_backbone_come_from_the_configs_seed"
T_DISC_EVAL = "tests/test_gan.py::test_timm_backbone_stays_frozen_in_train_mode"
T_DISC_NORM = "tests/test_gan.py::test_pixel_discriminator_normalises_with_the_backbones_imagenet_statistics"
T_PREF_DPO = "tests/test_preference.py::test_dpo_component_by_hand"
T_DIGIT = "tests/test_preference.py::test_digit_reward_is_the_classifiers_log_probability"
T_CLIP = "tests/test_preference.py::test_clip_and_pickscore_rewards_by_hand"

MUTANTS = [
    # ---- DMD
    Mutant(
        "dmd-renoise-from-global-rng",
        DMD,
        "x_t = schedule.add_noise(x0.detach(), ctx.randn(*x0.shape), t)",
        "x_t = schedule.add_noise(x0.detach(), torch.randn_like(x0), t)",
        (T_DMD_HAND,),
        "t' re-noising draws from torch's global RNG, not the step's generator: a resumed run or "
        "another rank draws different noise, and the step is no longer reproducible.",
    ),
    Mutant(
        "dmd-fake-samples-branch-inverted",
        DMD,
        'if self.config.fake_samples == "fresh":',
        'if self.config.fake_samples != "fresh":',
        (T_DMD_FRESH,),
        'The default "shared" fake update draws a fresh student sample per update (1 extra student '
        'call each) and "fresh" reuses the step\'s: the two DMD2 switches swapped.',
    ),
    Mutant(
        "dmd-fake-loss-logs-the-last-update",
        DMD,
        'return {"dmd/fake_loss": torch.stack(losses).mean()} if losses else {}',
        'return {"dmd/fake_loss": losses[-1]} if losses else {}',
        (T_DMD_FRESH,),
        "dmd/fake_loss reports only the last of the fake_updates updates instead of their mean.",
    ),
    Mutant(
        "dmd-lora-fake-score-is-a-full-copy",
        DMD,
        'full_copy=self.fake_score == "full"',
        'full_copy=self.fake_score != "full"',
        (T_DMD_LORA,),
        'The default fake score (fake_score="lora") becomes a second full UNet: double the memory on '
        "SDXL, the product's memory claim broken.",
    ),
    Mutant(
        "dmd-resume-drops-the-fake-optimizer",
        DMD,
        '        self.fake.load_state_dict(state["fake"])\n        self.opt.load_state_dict(state["opt"])\n',
        '        self.fake.load_state_dict(state["fake"])\n',
        (T_DMD_RESUME,),
        "A resumed DMD run restarts the fake score's AdamW moments from zero: resume is not exact.",
    ),
    Mutant(
        "dmd-t-max-of-T-accepted",
        DMD,
        "if not 0 <= self.t_min < self.t_max < num_train_timesteps:",
        "if not 0 <= self.t_min < self.t_max <= num_train_timesteps:",
        ("tests/test_dmd.py::test_dmd_t_prime_range_must_stay_below_t",),
        "t_max = T passes validation and the run fails later indexing alphas_cumprod[T] (or, on "
        "a flow schedule, re-noises to pure noise) instead of a clear config error.",
    ),
    # ---- GAN
    Mutant(
        "gan-relu-generator-without-margin",
        GAN,
        "return per_sample(lambda d: F.relu(1 - d), fake_logits)",
        "return per_sample(lambda d: F.relu(-d), fake_logits)",
        (T_GAN_RELU,),
        "PCM's generator loss relu(1 - D) loses its margin: the student stops being pushed as soon "
        "as D's logit is positive.",
    ),
    Mutant(
        "gan-logit-normal-of-a-uniform",
        GAN,
        "return torch.sigmoid(ctx.randn(b))",
        "return torch.sigmoid(ctx.rand(b))",
        (T_GAN_TAU,),
        "tau_distribution logit_normal puts every tau in [0.5, 0.73] of the range (sigmoid of a "
        "uniform) instead of sigmoid(N(0, 1)).",
    ),
    Mutant(
        "gan-consistency-online-target-swapped",
        GAN,
        'return pair.target.detach(), "consistency/target", pair.online, "consistency/online"',
        'return pair.online.detach(), "consistency/online", pair.target, "consistency/target"',
        (T_GAN_PCM,),
        "PCM's adversarial consistency loss with real and fake swapped: D learns to call the "
        "student's online output real and the generator loss reaches no parameter.",
    ),
    Mutant(
        "gan-real-student-is-the-one-step-prediction",
        GAN,
        "return student_samples(ctx), samples_key(ctx), fake, fake_key",
        "return fake.detach(), fake_key, fake, fake_key",
        (T_GAN_LINEAR,),
        'real="student" hands D the student\'s one-step prediction as real: real == fake, nothing to learn.',
    ),
    Mutant(
        "gan-real-decoded-under-the-fakes-key",
        GAN,
        "real = decoded(ctx, real_key, real)",
        "real = decoded(ctx, fake_key, real)",
        (T_GAN_PIXEL,),
        "Pixel input: the real side's decode is looked up under the fake's shared key, so D sees the "
        "fake's image on both sides: the pixel GAN learns nothing.",
    ),
    Mutant(
        "gan-generator-sees-the-real-tau",
        GAN,
        "_, fake, _, tau_fake = self.inputs(ctx)",
        "_, fake, tau_fake, _ = self.inputs(ctx)",
        (T_GAN_INDEP,),
        "independent_noise: G's pass tells D the real side's tau for the fake input.",
    ),
    Mutant(
        "gan-d-loss-called-with-real-and-fake-swapped",
        GAN,
        "loss = discriminator_loss(real_logits, fake_logits, cfg.loss_type).mean()",
        "loss = discriminator_loss(fake_logits, real_logits, cfg.loss_type).mean()",
        (T_GAN_LINEAR,),
        "D is trained to call the student's prediction real and the real side fake: the student is "
        "pushed away from the real side.",
    ),
    Mutant(
        "gan-r1-summed-over-the-batch",
        GAN,
        "r1 = r1_penalty(real_d, z_real).mean() if cfg.r1_weight > 0",
        "r1 = r1_penalty(real_d, z_real).sum() if cfg.r1_weight > 0",
        (T_GAN_R1,),
        "R1 scales with the micro-batch size: gamma no longer means the same at batch 4 and 32.",
    ),
    Mutant(
        "gan-one-disc-update-more-than-asked",
        GAN,
        "for _ in range(self.config.disc_steps):",
        "for _ in range(self.config.disc_steps + 1):",
        (T_GAN_STEPS,),
        "D makes disc_steps + 1 updates per student step: the default 1 becomes 2, the dmd2 recipe's "
        "5 becomes 6.",
    ),
    Mutant(
        "gan-logged-stats-averaged-over-all-updates",
        GAN,
        "            stats.clear()\n",
        "",
        (T_GAN_STEPS,),
        "gan/d_loss, gan/d_real, gan/d_fake average every update of the step, not the last one's "
        "as documented (docs/gan.md).",
    ),
    Mutant(
        "gan-logged-accuracies-swapped",
        GAN,
        '"gan/d_acc_real": held_out[0], "gan/d_acc_fake": held_out[1]',
        '"gan/d_acc_real": held_out[1], "gan/d_acc_fake": held_out[0]',
        (T_GAN_LINEAR,),
        "gan/d_acc_real reports D's accuracy on the fakes and vice versa: an off-centre D is read "
        "the wrong way round.",
    ),
    Mutant(
        "gan-heads-not-seeded",
        GAN,
        "                torch.manual_seed(cfg.seed)\n                heads = make_heads(",
        "                heads = make_heads(",
        (T_GAN_SEED,),
        "The heads and a random timm backbone come from the global RNG, not seed: a resumed run "
        "rebuilds a different frozen backbone (the checkpoint holds only the heads).",
    ),
    Mutant(
        "gan-consistency-tau-window-skips-t_s",
        GAN,
        "tau = schedule.uniform_timesteps(ctx.rand(ctx.batch_size), pair.t_s, hi)",
        "tau = schedule.uniform_timesteps(ctx.rand(ctx.batch_size), pair.t_s + 1, hi)",
        ("tests/test_gan.py::test_consistency_tau_window_ends_by_hand",),
        "PCM's re-noising window starts one step above t_s: D never sees the pair at the segment's "
        "edge itself (randint(edge, edge + T / M) includes it).",
    ),
    Mutant(
        "gan-consistency-real-renoised-as-if-clean",
        GAN,
        "real = schedule.add_noise_from(real, ctx.randn(*real.shape), pair.t_s, tau)",
        "real = schedule.add_noise(real, ctx.randn(*real.shape), tau)",
        (T_GAN_PCM,),
        "The real side (the MLCD target at t_s) is forward-diffused to tau as if it were clean: it "
        "gets more noise than the fake, and D tells them apart by their noise level.",
    ),
    Mutant(
        "gan-renoise-noise-from-global-rng",
        GAN,
        "return renoise_timesteps(schedule, f, cfg.noise_level), ctx.randn(*real.shape)",
        "return renoise_timesteps(schedule, f, cfg.noise_level), torch.randn_like(real)",
        ("tests/test_gan.py::test_re_noised_inputs_depend_only_on_the_steps_generator",),
        "noise_level > 0: D's re-noising eps comes from torch's global RNG, not the step's "
        "generator: a resumed run or another rank re-noises differently (not reproducible).",
    ),
    # ---- discriminators
    Mutant(
        "disc-timm-backbone-left-in-train-mode",
        DISC,
        "        super().train(mode)\n        self.backbone.eval()\n",
        "        super().train(mode)\n",
        (T_DISC_EVAL,),
        "After the engine's .train() the 'frozen' timm backbone's BatchNorm uses batch statistics "
        "and updates its running stats on every D call: D drifts, and resume (which rebuilds the "
        "backbone) is not exact.",
    ),
    Mutant(
        "disc-pixel-mean-std-swapped",
        DISC,
        'for k in ("mean", "std"))',
        'for k in ("std", "mean"))',
        (T_DISC_NORM,),
        "Pixel D normalises images with (x - std) / mean: pretrained ImageNet features see the wrong "
        "input range.",
    ),
    Mutant(
        "disc-patch-head-groupnorm-one-group",
        DISC,
        "nn.GroupNorm(math.gcd(32, c), c)",
        "nn.GroupNorm(1, c)",
        ("tests/test_gan.py::test_patch_heads_by_hand",),
        "PCM's patch heads normalise over all channels at once (LayerNorm-like) instead of in "
        "gcd(32, C) groups.",
    ),
    # ---- preference and rewards
    Mutant(
        "pref-reward-on-unit-range-images",
        PREF,
        "features = self.reward.embed(decoded_prediction(ctx))",
        "features = self.reward.embed((decoded_prediction(ctx) + 1) / 2)",
        (T_PREF_REWARD,),
        "Reward feedback scores images in [0, 1] where the rewards expect [-1, 1]: washed-out "
        "inputs, a wrong reward and gradient.",
    ),
    Mutant(
        "pref-logged-rewards-swapped",
        PREF,
        'metrics["preference/reward_neg"] = r_neg.detach().mean()',
        'metrics["preference/reward_neg"], metrics["preference/reward"] = metrics["preference/reward"], r_neg',
        (T_PREF_LOGGED,),
        "preference/reward logs the unrelated prompts' reward and reward_neg the prompts' own.",
    ),
    Mutant(
        "pref-dpo-candidates-one-draw",
        PREF,
        "x_a, x_b = student_samples(ctx, draw=0), student_samples(ctx, draw=1)",
        "x_a, x_b = student_samples(ctx, draw=0), student_samples(ctx, draw=0)",
        (T_PREF_DPO,),
        "Both DPO candidates are the same sample: winner == loser, the loss is log 2 with no gradient.",
    ),
    Mutant(
        "pref-dpo-second-candidate-decoded-under-the-firsts-key",
        PREF,
        "r_b = self.reward(decoded(ctx, samples_key(ctx, 1), x_b), ctx.prompts)",
        "r_b = self.reward(decoded(ctx, samples_key(ctx, 0), x_b), ctx.prompts)",
        (T_PREF_DPO,),
        "The second DPO candidate is scored on the first one's decoded image: r_a == r_b, the first "
        "candidate always wins, the ranking is noise.",
    ),
    Mutant(
        "unrelated-prompt-search-stops-early",
        "tlcm/rewards/base.py",
        "j = next((k for k in range(n) if prompts[(i + shift + k) % n] != p), 0)",
        "j = next((k for k in range(n - 2) if prompts[(i + shift + k) % n] != p), 0)",
        ("tests/test_preference.py::test_shifted_prompts_avoid_the_same_text",),
        "A prompt repeated n - 1 times in a batch of n can get itself as its unrelated prompt: the "
        "hinge's negative term then punishes the image for matching its own prompt.",
    ),
    Mutant(
        "digit-unrelated-is-the-shift-not-the-offset",
        DIGIT,
        "return [prompt_for((prompt_digit(p) + s) % 10) for p, s",
        "return [prompt_for(s % 10) for p, s",
        (T_DIGIT,),
        "The unrelated prompt is a random digit 1-9, which can be the prompt's own digit (and is "
        "never 0): the hinge's negative term then punishes the right digit.",
    ),
    Mutant(
        "clip-reward-remaps-to-unit-range-twice",
        CLIP,
        "return self.clip.image(images)",
        "return self.clip.image((images + 1) / 2)",
        (T_CLIP,),
        "The CLIP rewards map [-1, 1] to [0, 1] before the embedder does it again: CLIP sees "
        "images in [0.5, 1].",
    ),
]
