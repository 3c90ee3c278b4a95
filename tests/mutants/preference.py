"""Breakages of preference learning (Diffusion-DPO, the reward hinge, the rewards), the distances
(l2, pseudo-Huber, latent LPIPS and its training loss), the LoRA adapter switch (teacher calls,
auxiliary adapters, fuse) and the calls with swapped-in weights (DPO references, EMA targets);
see run.py."""

from run import Mutant

PREF = "tlcm/losses/preference.py"
LPIPS = "tlcm/losses/latent_lpips.py"
DIST = "tlcm/losses/distances.py"
TRAIN = "tlcm/latent_lpips/train.py"
SWITCH = "tlcm/models/adapters.py"
STUDENT = "tlcm/models/student.py"
FUNCTIONAL = "tlcm/models/functional.py"
DIGIT = "tlcm/rewards/digit.py"
CLIP = "tlcm/rewards/clip.py"

T_PREF = "tests/test_preference.py"
T_LPIPS = "tests/test_latent_lpips.py"
T_ADAPTERS = "tests/test_adapters.py"
T_FUSE = "tests/test_sample_fuse.py"
T_DIST = "tests/test_losses.py::test_distances_by_hand"
T_EHUBER = "tests/test_losses.py::test_elementwise_huber_by_hand"
T_CHECKPOINTING = (
    "tests/test_loss_contract.py::test_gradient_checkpointing_gives_bit_identical_gradients[dmd]"
)
T_FULL_FAKE = "tests/test_dmd.py::test_lora_fake_score_holds_one_copy_of_the_base_unet"

MUTANTS = [
    # --- Diffusion-DPO (eq. 14) ---
    Mutant(
        "dpo-sign-flipped",
        PREF,
        "-F.logsigmoid(-0.5 * beta",
        "-F.logsigmoid(0.5 * beta",
        (T_PREF,),
        "the DPO logit's sign flipped: the model is pushed towards the loser",
    ),
    Mutant(
        "dpo-beta-without-half",
        PREF,
        "-0.5 * beta *",
        "-beta *",
        (T_PREF,),
        "beta applied without the 1/2",
    ),
    Mutant(
        "dpo-beta-not-passed",
        PREF,
        "ref[:b], ref[b:], cfg.beta)",
        "ref[:b], ref[b:], 1.0)",
        (T_PREF,),
        "the component ignores the configured beta",
    ),
    Mutant(
        "dpo-reference-difference-dropped",
        PREF,
        "((err_w - err_l) - (ref_err_w - ref_err_l))",
        "(err_w - err_l)",
        (T_PREF,),
        "the reference model's error difference left out",
    ),
    Mutant(
        "dpo-reference-difference-sign",
        PREF,
        "((err_w - err_l) - (ref_err_w - ref_err_l))",
        "((err_w - err_l) + (ref_err_w - ref_err_l))",
        (T_PREF,),
        "the reference model's error difference added instead of subtracted",
    ),
    Mutant(
        "dpo-sigmoid-not-log-sigmoid",
        PREF,
        "return -F.logsigmoid(",
        "return -torch.sigmoid(",
        (T_PREF,),
        "log-sigmoid replaced by sigmoid",
    ),
    Mutant(
        "dpo-winner-loser-swapped",
        PREF,
        "dpo_loss(err[:b], err[b:], ref[:b], ref[b:], cfg.beta)",
        "dpo_loss(err[b:], err[:b], ref[b:], ref[:b], cfg.beta)",
        (T_PREF,),
        "winner and loser swapped in the loss call",
    ),
    Mutant(
        "dpo-reference-pair-swapped",
        PREF,
        "dpo_loss(err[:b], err[b:], ref[:b], ref[b:], cfg.beta)",
        "dpo_loss(err[:b], err[b:], ref[b:], ref[:b], cfg.beta)",
        (T_PREF,),
        "the reference's winner and loser swapped (only the model's are right)",
    ),
    Mutant(
        "dpo-ranking-flipped",
        PREF,
        "a_wins = (r_a >= r_b)",
        "a_wins = (r_a <= r_b)",
        (T_PREF,),
        "the lower-reward candidate is taken as the winner",
    ),
    Mutant(
        "dpo-noise-not-shared",
        PREF,
        "ctx.randn(*x_a.shape).repeat(2, 1, 1, 1)",
        "ctx.randn(2 * b, *x_a.shape[1:])",
        (T_PREF,),
        "winner and loser noised with different eps (eq. 14 uses one eps)",
    ),
    Mutant(
        "dpo-timestep-not-shared",
        PREF,
        "schedule.uniform_timesteps(ctx.rand(b), 0, schedule.max_timestep).repeat(2)",
        "schedule.uniform_timesteps(ctx.rand(2 * b), 0, schedule.max_timestep)",
        (T_PREF,),
        "winner and loser at different t (eq. 14 uses one t)",
    ),
    Mutant(
        "dpo-reference-is-live-student",
        PREF,
        "ref = (self.reference(x_t, t, cond)",
        "ref = (ctx.student(x_t, t, cond)",
        (T_PREF,),
        "the reference computed with the live student instead of the frozen reference",
    ),
    Mutant(
        "dpo-reference-aliases-live-weights",
        PREF,
        "frozen = {n: p.detach().clone() for n, p",
        "frozen = {n: p.detach() for n, p",
        (T_PREF, T_ADAPTERS),
        "the reference weights share storage with the trained adapter: the reference moves with it",
    ),
    # --- reward feedback (Eq. (11)) ---
    Mutant(
        "hinge-sign-flipped",
        PREF,
        "F.relu(s0 - r_pos)",
        "F.relu(r_pos - s0)",
        (T_PREF,),
        "the reward minimised instead of maximised",
    ),
    Mutant(
        "hinge-negative-weight-dropped",
        PREF,
        "negative_weight * F.relu(r_neg - s_neg)",
        "F.relu(r_neg - s_neg)",
        (T_PREF,),
        "lambda_neg ignored",
    ),
    Mutant(
        "hinge-negative-on-own-prompts",
        PREF,
        "        r_neg = self.reward.score(features, unrelated)",
        "        r_neg = self.reward.score(features, ctx.prompts)",
        (T_PREF,),
        "the negative term scores the prompt itself, not an unrelated one",
    ),
    Mutant(
        "hinge-thresholds-swapped",
        PREF,
        "reward_hinge(r_pos, r_neg, s0, s_neg, cfg.negative_weight)",
        "reward_hinge(r_pos, r_neg, s_neg, s0, cfg.negative_weight)",
        (T_PREF,),
        "s0 and s_neg swapped in the component",
    ),
    # --- rewards ---
    Mutant(
        "digit-reward-probability-not-log",
        DIGIT,
        "logp = self.classifier(features.clamp(-1, 1)).log_softmax(1)",
        "logp = self.classifier(features.clamp(-1, 1)).softmax(1)",
        (T_PREF,),
        "the digit reward is a probability, not its log",
    ),
    Mutant(
        "digit-reward-unclamped",
        DIGIT,
        "self.classifier(features.clamp(-1, 1))",
        "self.classifier(features)",
        (T_PREF,),
        "images outside [-1, 1] reach the classifier",
    ),
    Mutant(
        "digit-unrelated-may-repeat",
        DIGIT,
        "torch.randint(1, 10, (n,)",
        "torch.randint(0, 10, (n,)",
        (T_PREF,),
        "the unrelated prompt may ask for the same digit",
    ),
    Mutant(
        "pickscore-is-clip-score",
        CLIP,
        'return ClipReward("pickscore", _need(spec, "clip_folder", "pickscore"), device)',
        'return ClipReward("clip", _need(spec, "clip_folder", "pickscore"), device)',
        (T_PREF,),
        "the pickscore reward registered as the CLIP score",
    ),
    # --- distances ---
    Mutant(
        "l2-sum-not-mean",
        DIST,
        "return (pred - target).square().flatten(1).mean(1)",
        "return (pred - target).square().flatten(1).sum(1)",
        (T_DIST,),
        "l2 sums over the elements instead of averaging",
    ),
    Mutant(
        "pseudo-huber-c-dropped",
        DIST,
        "+ c**2).sqrt() - c",
        ").sqrt() - c",
        (T_DIST,),
        "pseudo-Huber without c^2 under the root",
    ),
    Mutant(
        "huber-name-is-elementwise",
        DIST,
        '"huber": pseudo_huber,',
        '"huber": elementwise_huber,',
        (T_LPIPS, T_EHUBER),
        'distance="huber" picks the per-element form',
    ),
    # --- latent LPIPS ---
    Mutant(
        "lpips-features-not-normalised",
        LPIPS,
        "taps.append(F.normalize(x, dim=1, eps=1e-10))",
        "taps.append(x)",
        (T_LPIPS,),
        "the unit normalisation over channels dropped",
    ),
    Mutant(
        "lpips-learned-weights-not-applied",
        LPIPS,
        "F.conv2d((a - b).square(), lin.weight.clamp(min=0))",
        "(a - b).square().sum(1, keepdim=True)",
        (T_LPIPS,),
        "the learned per-channel weights w_l ignored",
    ),
    Mutant(
        "lpips-weights-not-clamped",
        LPIPS,
        "lin.weight.clamp(min=0)",
        "lin.weight",
        (T_LPIPS,),
        "negative head weights used as they are (the distance can go negative)",
    ),
    Mutant(
        "lpips-spatial-sum-not-mean",
        LPIPS,
        ".mean(dim=(1, 2, 3))",
        ".sum(dim=(1, 2, 3))",
        (T_LPIPS,),
        "the spatial mean replaced by a sum",
    ),
    Mutant(
        "lpips-pool-before-block-4",
        LPIPS,
        "self.pool(x) if index == 4 else x",
        "self.pool(x) if index == 3 else x",
        (T_LPIPS,),
        "the one max-pool placed before block 4 instead of block 5",
    ),
    Mutant(
        "lpips-train-pairs-misordered",
        TRAIN,
        "PAIRS = ((0, 1), (0, 2), (1, 2))",
        "PAIRS = ((0, 1), (1, 2), (0, 2))",
        (T_LPIPS,),
        "the pairs' distances regressed on another pair's proxy distance",
    ),
    Mutant(
        "lpips-train-loss-not-in-log-space",
        TRAIN,
        "(torch.log(d + LOG_EPS) - torch.log(p + LOG_EPS)).square().mean()",
        "(d - p).square().mean()",
        (T_LPIPS,),
        "regression of raw distances instead of log distances",
    ),
    Mutant(
        "lpips-train-heads-not-clamped",
        TRAIN,
        "lin.weight.clamp_(min=0)",
        "lin.weight.clamp_(min=-1e9)",
        (T_LPIPS,),
        "the heads' weights are not projected back to >= 0 after a step",
    ),
    # --- adapter switch ---
    Mutant(
        "switch-restores-default-not-previous",
        SWITCH,
        "            self._set(before)",
        "            self._set(self.default)",
        (T_ADAPTERS,),
        "a nested use restores the student's adapter instead of what was live",
    ),
    Mutant(
        "switch-teacher-keeps-adapter-on",
        SWITCH,
        'fields["_disable_adapters"] = off',
        'fields["_disable_adapters"] = False',
        (T_ADAPTERS,),
        "use(TEACHER) leaves the adapter on",
    ),
    Mutant(
        "switch-skips-a-change-back-to-the-default",
        SWITCH,
        "        if before == name:",
        "        if name == self.default:",
        (T_ADAPTERS,),
        "use(student) inside use(TEACHER) (a student call nested in a teacher block) keeps the adapters off",
    ),
    Mutant(
        "switch-recompute-without-selection",
        SWITCH,
        "return nullcontext(), self.use(self.live)",
        "return nullcontext(), nullcontext()",
        (T_ADAPTERS, T_CHECKPOINTING),
        "checkpointed blocks recompute under the selection live at backward",
    ),
    # --- student: teacher calls, auxiliary adapters, fuse ---
    Mutant(
        "teacher-call-with-student-adapter",
        STUDENT,
        "with self.adapters.use(TEACHER):",
        "with self.adapters.use(STUDENT_ADAPTER):",
        (T_ADAPTERS,),
        "the teacher call leaves the student's adapter on",
    ),
    Mutant(
        "auxiliary-call-with-student-adapter",
        STUDENT,
        "with self.student.adapters.use(self.name):",
        "with self.student.adapters.use(STUDENT_ADAPTER):",
        (T_ADAPTERS,),
        "the fake score runs the student's adapter",
    ),
    Mutant(
        "trainable-includes-auxiliary-adapters",
        STUDENT,
        'own = (lambda n: True) if self.config.full_finetune else (lambda n: f".{STUDENT_ADAPTER}." in n)',
        'own = (lambda n: True) if self.config.full_finetune else (lambda n: ".lora_" in n)',
        (T_ADAPTERS,),
        "the student's optimizer also gets the auxiliary adapters",
    ),
    Mutant(
        "lora-alpha-ignored",
        STUDENT,
        "lora_alpha=config.lora_alpha,",
        "lora_alpha=config.lora_rank,",
        (T_ADAPTERS, T_FUSE),
        "the LoRA scale alpha / r is 1 whatever alpha",
    ),
    Mutant(
        "fuse-merges-every-adapter",
        STUDENT,
        "layer.merge(adapter_names=[STUDENT_ADAPTER])",
        "layer.merge(adapter_names=list(layer.lora_A))",
        (T_FUSE,),
        "fuse merges the auxiliary adapters too",
    ),
    Mutant(
        "full-copy-auxiliary-keeps-student-adapter",
        STUDENT,
        "net.delete_adapters(list(net.peft_config))",
        "pass",
        (T_ADAPTERS, T_FULL_FAKE),
        "a full-copy fake score starts as the student, not the teacher",
    ),
    # --- swapped-in weights ---
    Mutant(
        "functional-weights-not-swapped",
        FUNCTIONAL,
        'named = {f"net.{name}": value',
        "named = {name: value",
        (T_PREF, T_ADAPTERS),
        "the names miss the wrapper's prefix: functional_call (strict=False) runs the live weights",
    ),
    Mutant(
        "functional-weights-leak-into-the-network",
        FUNCTIONAL,
        "return functional_call(wrapper, named, (x, t, cond), strict=False)",
        "wrapper.load_state_dict(named, strict=False)\n        return wrapper(x, t, cond)",
        (T_PREF, T_ADAPTERS),
        "the swapped weights are copied into the network and stay there",
    ),
]
