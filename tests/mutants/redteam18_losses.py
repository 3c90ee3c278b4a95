"""Round 18, the seventh walkthrough's fixes to tlcm's losses in another project's loop
(StepContext.standalone; /tmp/walk7 problems 2, 3, 5's schedule row, 8, 9, 10): GAN refuses
disc_rank without a trunk adapter; reward feedback's thresholds default to the reward's own (the
digit reward's log-probabilities); VPSchedule.from_config refuses a flow-matching config; GAN's
aux_step may run before the student's backward; reward feedback without prompts says to pass them;
latent LPIPS checks the caller's shapes and warns once when the miniature's weights meet another
VAE's latent size."""

from run import Mutant

W = "tests/test_walkthrough7_losses_units.py::"
T_TRUNK = W + "test_gan_with_disc_rank_and_no_trunk_is_refused"
T_AUX_FIRST = W + "test_gan_aux_step_may_come_before_the_students_backward"
T_DEFAULTS = W + "test_reward_feedback_thresholds_default_to_the_rewards_own"
T_HINGE = W + "test_the_hinge_uses_the_rewards_thresholds_when_the_config_leaves_them_unset"
T_PRESETS = W + "test_every_shipped_recipe_keeps_its_reward_thresholds"
T_PROMPTS = W + "test_reward_feedback_without_prompts_says_to_pass_prompts"
T_FLOW = W + "test_vp_schedule_refuses_a_flow_matching_config"
T_FLOW_MINI = W + "test_the_flow_miniatures_schedule_is_still_flow"
T_SHAPES = W + "test_latent_lpips_reports_the_callers_shapes"
T_WARN = W + "test_the_default_weights_warn_once_on_another_vaes_latent_size"

MUTANTS = [
    Mutant(
        "gan-disc-rank-without-trunk-accepted",
        "tlcm/losses/gan.py",
        "if config.disc_rank and trunk is None:",
        "if False and config.disc_rank and trunk is None:",
        (T_TRUNK,),
        "GAN(GANConfig(disc_rank=8)) without a trunk silently trains the frozen trunk",
    ),
    Mutant(
        "gan-frozen-heads-share-storage",
        "tlcm/models/discriminator.py",
        "params = {n: p.detach().clone() for n, p in self.heads.named_parameters()}",
        "params = {n: p.detach() for n, p in self.heads.named_parameters()}",
        (T_AUX_FIRST,),
        "aux_step before the student's backward: an in-place autograd error",
    ),
    Mutant(
        "preference-s0-default-back-to-mps-scale",
        "tlcm/losses/preference.py",
        "s0 = self.reward.s0 if cfg.s0 is None else cfg.s0",
        "s0 = 16.0 if cfg.s0 is None else cfg.s0",
        (T_DEFAULTS, T_HINGE),
        "the default config's s0 is MPS's 16 on a log-probability reward: always saturated",
    ),
    Mutant(
        "preference-s-neg-default-back-to-zero",
        "tlcm/losses/preference.py",
        "return s0, self.reward.s_neg if cfg.s_neg is None else cfg.s_neg",
        "return s0, 0.0 if cfg.s_neg is None else cfg.s_neg",
        (T_DEFAULTS, T_HINGE),
        "the default s_neg 0 on a log-probability reward: the negative term is dead",
    ),
    Mutant(
        "digit-reward-without-its-thresholds",
        "tlcm/rewards/digit.py",
        "    s0 = DIGIT_S0\n    s_neg = DIGIT_S_NEG\n",
        "",
        (T_DEFAULTS,),
        "the digit reward inherits the base's 16 / 0 (MPS's scale)",
    ),
    Mutant(
        "recipe-drops-its-digit-thresholds",
        "recipes/tlcm.py",
        'defaults = {"mode": "reward", "reward": "digit", "s0": DIGIT_S0, "s_neg": DIGIT_S_NEG}',
        'defaults = {"mode": "reward", "reward": "digit", "s0": DIGIT_S0, "s_neg": 0.0}',
        (T_PRESETS,),
        "a shipped recipe's effective s_neg changes",
    ),
    Mutant(
        "preference-without-prompts-unchecked",
        "tlcm/losses/preference.py",
        "            if len(ctx.prompts) == ctx.batch_size:\n                raise\n",
        "            raise\n",
        (T_PROMPTS,),
        "prompts left out: 'stack expects a non-empty TensorList' from inside the reward",
    ),
    Mutant(
        "vp-schedule-reads-flow-configs",
        "tlcm/diffusion/schedule.py",
        "        if is_flow_config(config):\n            name =",
        "        if False:\n            name =",
        (T_FLOW, T_FLOW_MINI),
        "VPSchedule.from_config(FlowMatch config) silently returns a DDPM schedule",
    ),
    Mutant(
        "flow-config-ignores-dynamic-shifting",
        "tlcm/diffusion/schedule.py",
        '        or bool(config.get("use_dynamic_shifting"))\n',
        "",
        (T_FLOW,),
        "a config with use_dynamic_shifting (and betas) is read as DDPM",
    ),
    Mutant(
        "latent-lpips-shapes-unchecked",
        "tlcm/losses/latent_lpips.py",
        "        self.check(pred, target)\n",
        "",
        (T_SHAPES,),
        "shape errors report the concatenated 2B batch or come from torch",
    ),
    Mutant(
        "latent-lpips-same-shape-unchecked",
        "tlcm/losses/latent_lpips.py",
        "        if pred.shape != target.shape:",
        "        if False:",
        (T_SHAPES,),
        "batch 2 against 3: torch's size-mismatch error",
    ),
    Mutant(
        "latent-lpips-tiny-latents-unchecked",
        "tlcm/losses/latent_lpips.py",
        "        if min(pred.shape[-2:]) < 2:",
        "        if False:",
        (T_SHAPES,),
        "1x1 latents: torch's pooling error",
    ),
    Mutant(
        "latent-lpips-default-weights-never-warn",
        "tlcm/losses/latent_lpips.py",
        "if default and not warned and tuple(pred.shape[-2:]) != DEFAULT_LATENT_SIZE:",
        "if False:",
        (T_WARN,),
        "the miniature's weights silently measure another VAE's latents",
    ),
    Mutant(
        "latent-lpips-warns-every-call",
        "tlcm/losses/latent_lpips.py",
        "            warned = True\n",
        "",
        (T_WARN,),
        "the warning repeats on every training step",
    ),
    Mutant(
        "latent-lpips-warns-on-own-weights",
        "tlcm/losses/latent_lpips.py",
        "default = path.resolve() == DEFAULT_WEIGHTS.resolve()",
        "default = True",
        (T_WARN,),
        "a weights file trained for one's own VAE is warned about",
    ),
]
