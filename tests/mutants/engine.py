"""Breakages of the training step (tlcm/engine.py, tlcm/distributed.py): micro-batches, gradient
averaging, clipping, the finite guard; see run.py. The loss contract's multi-process test is
slow (~2-3 min): these mutants take longest."""

from run import Mutant

ENGINE = "tlcm/engine.py"
DIST = "tlcm/distributed.py"
TWO_PROCESSES = "tests/test_loss_contract.py::test_two_processes_equal_one_process_with_two_micro_batches"
ACCUMULATED = "tests/test_engine.py::test_accumulated_micro_batches_are_averaged"
CLIPPED = "tests/test_engine.py::test_gradients_are_clipped_to_max_grad_norm_and_the_unclipped_norm_is_logged"
OWN_GENERATORS = "tests/test_engine.py::test_micro_batches_and_steps_draw_from_their_own_generators"

MUTANTS = [
    Mutant(
        "accumulated-loss-not-divided",
        ENGINE,
        "(total / accum).backward()",
        "total.backward()",
        (ACCUMULATED,),
        "grad_accum sums the micro-batches' gradients instead of averaging them",
    ),
    Mutant(
        "logged-term-not-divided",
        ENGINE,
        "terms[name] = terms.get(name, 0.0) + value.detach().float() / accum",
        "terms[name] = terms.get(name, 0.0) + value.detach().float()",
        (ACCUMULATED,),
        "the logged terms sum the micro-batches",
    ),
    Mutant(
        "gradients-summed-over-processes",
        DIST,
        "    flat /= world_size\n",
        "",
        (TWO_PROCESSES,),
        "DDP all-reduce without the average",
    ),
    Mutant(
        "clip-ignored",
        ENGINE,
        "max_norm = phase.max_grad_norm if phase.max_grad_norm > 0 else math.inf",
        "max_norm = math.inf",
        (CLIPPED,),
        "max_grad_norm has no effect",
    ),
    Mutant(
        "nonfinite-steps-anyway",
        ENGINE,
        "if not bool(finite & (peak <= self.recipe.runtime.max_weight_abs) & (stop == 0)):",
        "if not bool((peak <= self.recipe.runtime.max_weight_abs) & (stop == 0)):",
        ("tests/test_engine.py::test_nonfinite_loss_is_named_and_stops_or_skips",),
        "a non-finite loss or gradient still updates the student",
    ),
    Mutant(
        "grads-not-zeroed",
        ENGINE,
        "        opt.zero_grad(set_to_none=True)\n",
        "",
        ("tests/test_engine.py::test_resume_after_sigterm_equals_uninterrupted_run",),
        "gradients of earlier steps leak into every later one",
    ),
    Mutant(
        "micro-batches-share-noise",
        ENGINE,
        "gen = torch.Generator(self.dist.device).manual_seed(step_seed(seed, global_step, j))",
        "gen = torch.Generator(self.dist.device).manual_seed(step_seed(seed, global_step, 0))",
        (OWN_GENERATORS,),
        "every micro-batch and process draws the same noise and timesteps",
    ),
    Mutant(
        "no-aux-step",
        ENGINE,
        "metrics.update(loss.aux_step(contexts))",
        "metrics.update({})",
        ("tests/test_engine.py::test_aux_step_sees_every_micro_batch_under_the_steps_autocast",),
        "the fake score / discriminator never trains",
    ),
    Mutant(
        "no-after-student-step",
        ENGINE,
        "            loss.after_student_step()\n",
        "",
        ("tests/test_engine.py::test_an_ema_target_follows_every_student_update",),
        "the EMA target never follows the student",
    ),
    Mutant(
        "weights-ignored",
        ENGINE,
        "total = total + phase.losses[comp].weight * value.float()",
        "total = total + value.float()",
        ("tests/test_engine.py::test_loss_weights_scale_each_terms_gradient",),
        "a loss's weight has no effect",
    ),
    Mutant(
        "ema-lerp-by-decay",
        "tlcm/losses/mlcd.py",
        ".lerp_(live[name].detach(), 1 - self.config.ema_decay)",
        ".lerp_(live[name].detach(), self.config.ema_decay)",
        ("tests/test_engine.py::test_an_ema_target_follows_every_student_update",),
        "the EMA keeps 1 - decay of itself (Consistency Models eq. 8: theta- <- mu theta- + (1 - mu) theta)",
    ),
]
