"""What the loss contract tests compare (tests/test_loss_contract.py, and the masked family's in
tests/test_attention_mask.py): the gradients of every update of a run, two runs' final weights,
loss states and logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from tlcm.engine import train

TWO_PROCESS_STEPS, TWO_PROCESS_BATCH = 2, 4
"""Steps and global batch of the two-process comparisons: torchrun 2 x 1 micro-batch
(tests/dp_worker.py) against one process x 2 accumulated micro-batches."""


BF16_TOLERANCE = 0.5
"""Relative L2 error allowed between a trainable set's first gradient in bf16 (frozen weights bf16,
bf16 autocast, fp32 adapters) and in fp32, on the miniature pipeline. bf16 keeps 8 bits of
mantissa (rounding 4e-3) and these gradients are differences of near-equal predictions (student
vs target, fake vs real score), so rounding is amplified: measured per case (student; then the
loss's own model): mlcd 0.22, lcd 0.05, dmd 0.03 / 0.04, gan-unet 0.15 / 0.12, gan-timm-r1
0.40 / 0.17, gan-data 0.18 / 0.11, preference-reward 0.14, preference-dpo 0.04, mlcd-then-dmd
0.22 / 0.25 / 0.14, dmd2 0.12 / 0.28 / 0.38 (its fake score trains down to t = 0, where bf16's
rounding of x_t is large against s_t: eps is ill-determined), add 0.04 / 0.10 (on torch 2.11 too:
its real latents' posterior noise is drawn in fp32; drawn in bf16, 2.11's CPU gave the bf16 run
other noise, 1.9). It catches a mode that breaks (a dtype error) or turns a gradient (a sign, an
adapter, a loss computed in bf16); it cannot see a bug common to both modes (the other contract
tests do)."""


def final_state(run_dir: Path) -> tuple[dict, dict, list]:
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()
    losses = torch.load(folder / "losses.pt", weights_only=True)
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return load_file(folder / "student.safetensors"), losses, log


def flat(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    return {k: v for key, value in items for k, v in flat(value, f"{prefix}/{key}").items()}


def assert_identical_runs(a: Path, b: Path, case: str) -> None:
    """Two runs' final student weights and loss states (owned models, their optimizers) are equal
    bit for bit, and so is everything they logged at every step (loss terms, gradient norms,
    discriminator statistics, denoiser evaluations) but the speed."""
    (wa, la, log_a), (wb, lb, log_b) = final_state(a), final_state(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), case
    fa, fb = flat(la), flat(lb)
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa), case
    logged = [[{k: v for k, v in r.items() if k != "it_per_s"} for r in log] for log in (log_a, log_b)]
    assert logged[0] == logged[1], case


def gradients_of_every_update(recipe) -> list[list[torch.Tensor]]:
    """Train ``recipe``; the gradients every optimizer step of the run saw (the student's, each fake
    score / discriminator update of every loss), in order, each step's as a list over its params."""
    grads = []

    def record(optimizer, args, kwargs):
        grads.append(
            [p.grad.clone() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        )

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(recipe)
    finally:
        handle.remove()
    return grads


def assert_same_updates(a: list, b: list, case: str) -> None:
    assert len(a) == len(b) > 0 and [len(g) for g in a] == [len(g) for g in b], case
    for update, (x, y) in enumerate(zip(a, b, strict=True)):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True)), (case, update)


def assert_close_updates(eager: list, compiled: list, case: str, tolerance: float) -> None:
    assert len(eager) == len(compiled) > 0 and [len(g) for g in eager] == [len(g) for g in compiled], case
    for update, (a, b) in enumerate(zip(eager, compiled, strict=True)):
        diff = sum(float((x.double() - y.double()).square().sum()) for x, y in zip(a, b, strict=True))
        norm = sum(float(x.double().square().sum()) for x in a)
        assert (diff / norm) ** 0.5 < tolerance, (case, update, (diff / norm) ** 0.5)


def assert_same_run(
    one: Path, two: Path, case: str, rel_l2: float | None = None, log_rel: float = 1e-4, sharded: bool = False
) -> None:
    """Two runs' logged terms (losses, gradient norms) agree to ``log_rel`` and their final student
    weights and loss states elementwise to 1e-5 (or, with ``rel_l2``, as a whole:
    ||a - b|| / ||a|| < rel_l2 over all floating tensors); unless ``two`` is ``sharded`` (FSDP2:
    MLCD's MDS then runs uniform rounds of the whole batch, more calls by design), so are their
    denoiser evaluations, every process's summed."""
    (w1, l1, log1), (w2, l2, log2) = final_state(one), final_state(two)
    f1, f2 = flat(l1), flat(l2)
    assert w1.keys() == w2.keys() and f1.keys() == f2.keys(), case
    pairs = [(w1[k], w2[k], k) for k in w1] + [(f1[k], f2[k], k) for k in f1 if f1[k].is_floating_point()]
    if rel_l2 is None:
        for a, b, key in pairs:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"{case}: {key}")
    else:
        diff = sum(float((a.double() - b.double()).square().sum()) for a, b, _ in pairs) ** 0.5
        norm = sum(float(a.double().square().sum()) for a, _, _ in pairs) ** 0.5
        assert diff / norm < rel_l2, (case, diff / norm)
    for r1, r2 in zip(log1, log2, strict=True):
        for key, value in r1.items():
            if isinstance(value, float) and key != "it_per_s":
                assert value == pytest.approx(r2[key], rel=log_rel, abs=1e-6), (case, key)
        # the run's denoiser evaluations: every process's summed (not one process's share)
        assert sharded or r1["denoiser_evals"] == r2["denoiser_evals"] > 0, case
