"""The contract every registered loss keeps with the engine (Composer's resumption test is the model):

1. resuming mid-phase gives bit-for-bit the weights, loss-owned state (fake scores, discriminator
   heads, DPO references, EMA targets, their optimizers) and logged losses of the uninterrupted run;
2. 2 torchrun processes x 1 micro-batch equal 1 process x 2 accumulated micro-batches (aux_step
   sees every micro-batch, under the step's autocast).
Each case trains at lr 1e-2 so that a contract break moves the weights far beyond the tolerances.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from contract_helpers import (
    BF16_TOLERANCE,
    TWO_PROCESS_BATCH,
    TWO_PROCESS_STEPS,
    assert_close_updates,
    assert_identical_runs,
    assert_same_run,
    assert_same_updates,
    final_state,
    gradients_of_every_update,
)
from counted_backend import COUNTED, graphs_called
from engine_helpers import interrupt_after
from loss_cases import CASES, FSDP_CASES, case_recipe, fsdp_form, in_bf16

import tlcm.models.functional
from tlcm.config import StudentConfig
from tlcm.engine import Trainer, train
from tlcm.errors import TLCMError
from tlcm.losses import LOSSES
from tlcm.losses.mlcd import MLCDConfig
from tlcm.losses.preference import PreferenceConfig
from tlcm.models.base import BaseModel
from tlcm.models.graphs import CallGraphs
from tlcm.models.student import Student
from tlcm.toy import MINIATURE_SD


def test_every_registered_loss_has_a_case():
    covered = {loss for phases in CASES.values() for losses in phases.values() for loss in losses}
    assert set(LOSSES) - {"test_output_norm"} <= covered


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_mid_phase_equals_the_uninterrupted_run(case, tiny_sd_dir, tmp_path, tmp_path_factory):
    _, straight = reference_run(case, tiny_sd_dir, tmp_path_factory)
    stop_at = 2 if len(CASES[case]) == 1 else 3  # one-phase cases: mid-phase; two phases: inside the second
    first = Trainer(case_recipe(case, tiny_sd_dir, tmp_path / "b"))
    interrupt_after(first, stop_at)
    assert first.run().preempted
    resumed = train(case_recipe(case, tiny_sd_dir, tmp_path / "b"))
    assert_identical_runs(straight, tmp_path / "b", case)
    weights, _, log = final_state(straight)
    assert resumed.state.global_step == log[-1]["global_step"]
    assert max(v.abs().max().item() for k, v in weights.items() if "lora_B" in k) > 1e-3  # training moved


def reference_run(case: str, tiny_sd_dir: Path, tmp_path_factory) -> tuple[list[list[torch.Tensor]], Path]:
    """(gradients of every update, run folder) of ``case_recipe(case)`` as it is (no checkpointing,
    no replays): the uninterrupted run of the resume test and the "off" run of the checkpointing,
    replay and compiled tests, trained once per session (``_once_per_session``)."""

    def make(folder: Path) -> None:
        gradients = gradients_of_every_update(case_recipe(case, tiny_sd_dir, folder))
        torch.save(gradients, folder / "gradients.pt")

    folder = _once_per_session(f"reference-{case}", tmp_path_factory, make)
    return torch.load(folder / "gradients.pt", weights_only=True), folder


def one_process_run(case: str, tiny_sd_dir: Path, tmp_path_factory, fsdp: bool = False) -> Path:
    """The run folder of ``case`` trained in one process with 2 accumulated micro-batches
    (``TWO_PROCESS_STEPS``, ``TWO_PROCESS_BATCH``): what the two-process tests compare with, in
    the FSDP2 comparison's form with ``fsdp``; trained once per session (``_once_per_session``),
    so a case whose FSDP form is its plain one (every case without MLCD's MDS states) is trained
    once for both tests."""

    def make(folder: Path) -> None:
        steps, batch = TWO_PROCESS_STEPS, TWO_PROCESS_BATCH
        train(case_recipe(case, tiny_sd_dir, folder, steps=steps, batch_size=batch, grad_accum=2, fsdp=fsdp))

    plain = all(fsdp_form(loss) == loss for losses in CASES[case].values() for loss in losses.values())
    name = f"one-process-{case}{'-fsdp' if fsdp and not plain else ''}"
    return _once_per_session(name, tmp_path_factory, make)


def _once_per_session(name: str, tmp_path_factory, make) -> Path:
    """The folder ``name`` of the session's shared runs, filled by ``make(folder)`` once per session
    and shared by the pytest-xdist workers (the session's folder above theirs; a file lock per
    name: the first to ask makes it, the others wait and read; a folder without its "done" marker
    was left by a worker that died half-way and is made again)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"
    root.mkdir(exist_ok=True)
    folder = root / name
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / "done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            (folder / "done").touch()
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_checkpointing_gives_bit_identical_gradients(case, tiny_sd_dir, tmp_path, tmp_path_factory):
    """Gradient checkpointing on vs off: every gradient of every trainable set (student, fake score,
    discriminator heads) at every update, and the final weights and loss states (DPO reference, EMA
    target, owned models, their optimizers), bit for bit (CPU recomputes the same ops in the same
    order). Each checkpointed block recomputes under the adapter selection of its forward
    (tlcm.models.adapters); undone before backward, the fake score's gradients came out of the
    student's adapter (measured: relative error 8e27 after 3 steps) and the teacher-feature GAN
    raised CheckpointError."""
    on = {"gradient_checkpointing": True}
    _assert_bit_identical_training(case, on, tiny_sd_dir, tmp_path, tmp_path_factory)


@pytest.mark.parametrize("case", sorted(CASES))
def test_replayed_no_grad_calls_give_bit_identical_gradients(
    case, tiny_sd_dir, tmp_path, tmp_path_factory, monkeypatch
):
    """--recipes.runtime.graphs on vs off (tlcm/models/graphs.py; on the CPU an aten trace with a
    CUDA graph's semantics): every gradient of every update and the final weights and loss states,
    bit for bit, and calls were replayed. A capture keyed without the adapter selection replays the
    student for the teacher (or the fake score for the real score); one that copied the weights
    replays stale LoRA weights after the first update."""
    replays = []
    replay = CallGraphs.__call__
    monkeypatch.setattr(CallGraphs, "__call__", lambda self, *a: replays.append(1) or replay(self, *a))
    _assert_bit_identical_training(case, {"graphs": True}, tiny_sd_dir, tmp_path, tmp_path_factory)
    assert replays, case


def _assert_bit_identical_training(case: str, runtime: dict, tiny_sd_dir: Path, out: Path, factory) -> None:
    """Train ``case`` with the RuntimeConfig fields ``runtime``: every gradient of every update
    (student, fake scores, discriminators), the final weights and loss states and the logged loss
    equal the run without them (``reference_run``)."""
    off, reference = reference_run(case, tiny_sd_dir, factory)
    recipe = case_recipe(case, tiny_sd_dir, out)
    assert all(getattr(recipe.runtime, k) != v for k, v in runtime.items()), case  # the reference's differ
    on = gradients_of_every_update(replace(recipe, runtime=replace(recipe.runtime, **runtime)))
    assert_same_updates(off, on, case)
    assert_identical_runs(reference, out, case)


COMPILE_TOLERANCE = {"dmd": (2, 3e-2)}
"""Relative L2 error allowed between a gradient with inductor-compiled blocks and the eager one
(inductor fuses and reorders float ops): (steps, tolerance) of the cases
test_inductor_compiled_blocks_give_the_eager_gradients runs. Measured per case (every case ran on
inductor until 2026-12-06), worst update: dmd 2.4e-3 (1.08e-2 at its sixth update, the second
step's last fake-score update, on an AVX-512 Xeon with 1 thread, 2026-12-05: 1.5e-3 at the first
step's, 2.0e-3 with 2 threads; inductor's CPU code follows the vector ISA; a stale adapter
selection: 2.06), mlcd-ema 4.2e-4, mlcd 3.4e-4, lcd 2.2e-5, the GAN cases <= 9e-6, add 2.1e-2 at
its fourth update on torch 2.9, pcm-adv 1.5e-2 at its first updates and 0.2 at its second step
(ill-conditioned on the tiny random pipeline: eager with 1 vs 2 CPU threads differs by the same
1.46e-2). A compiled region that kept a stale adapter selection (the teacher's call running the
student's LoRA, or the fake score's) is an error of order 1."""


def _compiled_and_eager(recipe, out: Path, backend: str = "inductor") -> tuple[list, list, int]:
    """(eager gradients, compiled gradients, compiled graphs called) of ``recipe`` with gradient
    checkpointing (compiled blocks recompute in backward under their forward's adapter), compiled
    with ``backend`` (counted: tests/counted_backend.py)."""

    def run(compiled: bool) -> list:
        runtime = replace(
            recipe.runtime,
            out_dir=out / str(compiled),
            gradient_checkpointing=True,
            compile=compiled,
            compile_backend=COUNTED[backend],
        )
        return gradients_of_every_update(replace(recipe, runtime=runtime))

    compiled, graphs = graphs_called(lambda: run(True))
    return run(False), compiled, graphs


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_blocks_give_the_eager_gradients(case, tiny_sd_dir, tmp_path, tmp_path_factory):
    """--recipes.runtime.compile (torch.compile of each UNet transformer block's forward) with
    gradient checkpointing, on the aot_eager backend: every gradient of every trainable set
    (student, fake score, discriminator) at every update, and the final weights and loss states,
    equal the eager run's (``reference_run``) bit for bit, and at least two compiled graphs ran
    (grad mode: the student's and the teacher's calls; a compile that silently ran eager would pass).

    Why aot_eager and bits: what tlcm adds to torch.compile (one compiled forward per block class
    bound to each block, the adapter selection and grad mode as guards, recomputation under
    checkpointing, a deep copy running its own weights) is traced by dynamo and AOTAutograd whatever
    the backend; aot_eager runs the traced aten ops eagerly, so a correct compile gives the eager
    bits (measured: every case, every update, torch 2.14 and 2.9) and a stale adapter selection or
    a block bound to another network's weights is an error of order 1. inductor's kernels (C++ on
    the CPU, Triton on CUDA, which the CPU cannot check) change only rounding: checked on DMD in
    fp32 (``COMPILE_TOLERANCE``) and under FSDP2. A cold inductor cache (a fresh CI machine)
    costs ~45 s of C++ compilation per case on the CPU (in bf16 94-200 s), aot_eager none.

    dynamo's caches are kept between the cases: the graphs an earlier case traced serve a later
    case's blocks wherever their guards (block class, adapter selection, grad mode, shapes) hold,
    as they serve a new run in a user's process; a graph that served the wrong case would give
    other bits. Measured in one process: the 15 cases in 96 s, against ~195 s retracing each."""
    on = {"compile": True, "compile_backend": COUNTED["aot_eager"], "gradient_checkpointing": True}
    _, graphs = graphs_called(
        lambda: _assert_bit_identical_training(case, on, tiny_sd_dir, tmp_path, tmp_path_factory)
    )
    assert graphs >= 2, (case, graphs)


@pytest.mark.parametrize("case", ["dmd"])
def test_inductor_compiled_blocks_give_the_eager_gradients(case, tiny_sd_dir, tmp_path):
    """Compiled blocks on the default backend, inductor, against eager (both checkpointed): every
    gradient of every update within ``COMPILE_TOLERANCE``."""
    steps, tolerance = COMPILE_TOLERANCE.get(case, (2, 1e-2))
    eager, compiled, graphs = _compiled_and_eager(case_recipe(case, tiny_sd_dir, tmp_path, steps), tmp_path)
    assert graphs >= 2, (case, graphs)
    assert_close_updates(eager, compiled, case, tolerance)


def test_compiled_blocks_of_a_deep_copy_run_the_copy(tiny_sd_dir, tmp_path):
    """A full fine-tune's DMD fake score is a deep copy of the compiled network: its blocks must run
    the copy's weights. Bound to the original blocks they ran the teacher's (inductor: fake-score
    gradients 2.6e-2 off at their first update, measured); bound to the copy, on aot_eager: the
    eager gradients to rounding (measured: relative 1.3e-9, 6.8e-10, 2.3e-7; a full fine-tune's
    weight gradients are reduced in another order than eager's, unlike the LoRA cases' bits)."""
    recipe = case_recipe("dmd", tiny_sd_dir, tmp_path, steps=1)
    recipe = replace(recipe, student=replace(recipe.student, full_finetune=True))
    eager, compiled, graphs = _compiled_and_eager(recipe, tmp_path, "aot_eager")
    assert graphs >= 2 and len(eager) == 3  # the student, then two fake-score updates
    assert_close_updates(eager, compiled, "dmd, full fine-tune", 1e-5)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_compiled_transformer_blocks_give_the_eager_gradients(family, tiny_sd3_dir, tiny_flux_dir, tmp_path):
    """The same for the transformer families' blocks (SD3's joint blocks; FLUX's double and
    single blocks): MLCD then DMD (the teacher, the student and the fake score's adapter), on
    aot_eager: the eager bits."""
    model = {"sd3": tiny_sd3_dir, "flux": tiny_flux_dir}[family]
    recipe = case_recipe("mlcd-then-dmd", model, tmp_path, steps=2)
    eager, compiled, graphs = _compiled_and_eager(recipe, tmp_path, "aot_eager")
    assert graphs >= 2, (family, graphs)
    assert_same_updates(eager, compiled, family)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_frozen_weights_and_autocast_match_fp32(case, tmp_path):
    """The first update of every trainable set (student, fake score, discriminator) in bf16 (the
    CUDA default: frozen weights bf16, bf16 autocast, adapters and optimizer state fp32) against
    fp32, on the miniature pipeline (the tiny random one's text barely moves its output, so DMD's
    fake - real there is all rounding), within ``BF16_TOLERANCE``."""
    firsts = {}
    for bf16 in (False, True):
        recipe = case_recipe(case, MINIATURE_SD, tmp_path / str(bf16), steps=1)
        firsts[bf16] = gradients_of_every_update(in_bf16(recipe) if bf16 else recipe)
    assert all(y.dtype == torch.float32 for b in firsts[True] for y in b), case  # fp32 adapters and heads
    assert_close_updates(firsts[False], firsts[True], case, BF16_TOLERANCE)


@pytest.mark.parametrize("case", ["dmd", "gan-unet"])
def test_compiled_bf16_with_checkpointing_gives_the_eager_bf16_bits(case, tmp_path):
    """The mode users train large models in: bf16 (frozen weights bf16, autocast, fp32 adapters),
    compiled blocks (aot_eager), gradient checkpointing: every update's gradients equal bf16 eager's
    (checkpointed) bit for bit, so the compiled graphs keep every dtype (bf16 eager against fp32:
    test_bf16_frozen_weights_and_autocast_match_fp32). DMD runs the blocks under all three adapter
    selections (student, teacher, fake score) with and without gradients, the teacher-feature GAN
    with its taps around them (MLCD and the reward loss: 32 s and 21 s more, adding no call the two
    do not make; compiled bf16 tracing is slow on the CPU). Not inductor: its bf16 kernels differ from
    eager's as bf16 and fp32 do (measured 0.04-0.3 relative: it keeps some fused intermediates in
    fp32), so only a loose bound against fp32 could be checked, and a cold cache cost 94-200 s per
    case on the CPU for C++ kernels that CUDA users never run (theirs are Triton's: the GPU
    benchmark's compiled rows compare them with eager, benchmarks/gpu_speed.py)."""
    recipe = in_bf16(case_recipe(case, MINIATURE_SD, tmp_path, steps=1))
    eager, compiled, graphs = _compiled_and_eager(recipe, tmp_path, "aot_eager")
    assert_same_updates(eager, compiled, case)
    assert graphs >= 2, (case, graphs)


def test_resume_with_an_embedding_cache_equals_the_run_without(tiny_sd_dir, tmp_path):
    """128 prompts = 2 canonical chunks: the interrupted run writes the text-embedding cache, the
    resumed one reads it; both equal the uninterrupted run that encodes in memory only."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a digit {i} in colour {i % 7}\n" for i in range(128)))

    def recipe(out: str, cache: Path | None):
        r = case_recipe("mlcd", tiny_sd_dir, tmp_path / out)
        return replace(r, data=replace(r.data, prompts=prompts, embedding_cache=cache))

    train(recipe("a", None))
    first = Trainer(recipe("b", tmp_path / "emb"))
    interrupt_after(first, 2)
    assert first.run().preempted
    resumed = Trainer(recipe("b", tmp_path / "emb"))
    resumed.run()
    assert len(list((tmp_path / "emb").glob("chunk-*.safetensors"))) == 2
    (wa, _, log_a), (wb, _, log_b) = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["mlcd"] for r in log_a] == [r["mlcd"] for r in log_b]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_two_micro_batches(tiny_sd_dir, tmp_path, tmp_path_factory):
    """Every case twice: torchrun 2 x 1 micro-batch (tests/dp_worker.py) and 1 x 2 in-process
    (``one_process_run``)."""
    steps, batch = TWO_PROCESS_STEPS, TWO_PROCESS_BATCH
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    worker = Path(__file__).parent / "dp_worker.py"
    args = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
        str(tiny_sd_dir),
        str(tmp_path / "two"),
    ]
    done = subprocess.run(
        [*args, str(steps), str(batch)], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for case in CASES:
        assert_same_run(one_process_run(case, tiny_sd_dir, tmp_path_factory), tmp_path / "two" / case, case)


@pytest.mark.slow
def test_fsdp2_two_processes_equal_one_process_and_resume_exactly(tiny_sd_dir, tmp_path, tmp_path_factory):
    """FSDP2 (--recipes.runtime.fsdp with gradient checkpointing; torchrun 2 x 1 micro-batch on CPU /
    gloo, the UNet sharded per block, checkpoints gathered to rank 0): every FSDP case equals 1
    process x 2 micro-batches without checkpointing
    (logged losses and gradient norms to rel 1e-4, weights as a whole to 1e-3: see below; MLCD
    with single_jump states, see FSDP_CASES), and each case interrupted after its first step and
    resumed from the gathered checkpoint equals its uninterrupted FSDP run bit for bit; and DMD with
    compiled blocks under FSDP2 (--recipes.runtime.compile, on aot_eager) equals its eager FSDP run
    bit for bit too (inductor's kernels: test_inductor_compiled_blocks_give_the_eager_gradients)."""
    steps, batch = TWO_PROCESS_STEPS, TWO_PROCESS_BATCH
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    worker = Path(__file__).parent / "dp_worker.py"
    args = [torchrun, "--standalone", "--nproc_per_node", "2", str(worker), str(tiny_sd_dir)]
    args.append(str(tmp_path / "two"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*args, str(steps), str(batch), "fsdp"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for case in FSDP_CASES:
        one = one_process_run(case, tiny_sd_dir, tmp_path_factory, fsdp=True)
        # FSDP2 reduces in another order: losses and gradient norms agree to 1e-7 relative, but AdamW
        # at lr 1e-2 turns rounding on near-zero gradients into elementwise weight differences of
        # up to ~5e-4 (measured), so the weights are compared as a whole
        tolerance = FSDP_TOLERANCE.get(case, (1e-3, 1e-4))
        assert_same_run(one, tmp_path / "two" / case, case, *tolerance, sharded=True)
        assert_identical_runs(tmp_path / "two" / case, tmp_path / "two" / f"{case}-resumed", case)
    assert set(FSDP_CASES) | {"mlcd-ema", "preference-dpo"} == set(CASES)
    # bf16 through FSDP2's mixed-precision policy (parameters gathered in bf16, gradients reduced in
    # fp32) = bf16 autocast in one process, to bf16 rounding: the logged terms of the step (measured:
    # DMD loss equal, gradient norm 1e-4, fake loss 1.3e-3); not the weights: AdamW's first update is
    # lr * sign(gradient), and rounding flips the sign of near-zero elements (5 % relative L2)
    one = tmp_path / "one" / "dmd-bf16"
    recipe = case_recipe("dmd", tiny_sd_dir, one, steps=1, batch_size=batch, grad_accum=2, fsdp=True)
    train(in_bf16(recipe))
    (_, _, (single,)), (_, _, (sharded,)) = final_state(one), final_state(tmp_path / "two" / "dmd-bf16")
    for key in ("dmd", "grad_norm", "dmd/fake_loss"):
        assert sharded[key] == pytest.approx(single[key], rel=1e-2), key
    # compiled blocks inside the FSDP2 units, on aot_eager (dynamo and AOTAutograd trace each block
    # between FSDP2's eager hooks; the kernels stay eager's) = the eager FSDP2 run, bit for bit
    assert_identical_runs(tmp_path / "two" / "dmd", tmp_path / "two" / "dmd-compiled", "dmd-compiled")


FSDP_TOLERANCE = {"mlcd-then-dmd": (5e-3, 2e-3)}
"""(weights rel L2, logged terms rel) where the defaults (1e-3, 1e-4) are too tight. DMD after MLCD
on the tiny random pipeline is ill-conditioned: its gradient (fake - real) / |x0 - real| is a
difference of near-equal predictions (the random text encoder barely moves the output, so CFG
changes little), so the 1e-7 differences MLCD leaves become 1e-4 in the first DMD gradient norm
and 2.6e-3 in the weights two lr-1e-2 steps later (measured; DMD alone from a fresh LoRA: 9e-6).
That the fake score's adapter is FSDP-managed is checked exactly, in tests/dp_worker.py."""


@pytest.mark.parametrize("config", [MLCDConfig(target="ema"), PreferenceConfig(mode="dpo")])
def test_swapped_weight_calls_are_refused_on_a_sharded_network(config, tiny_sd_dir, monkeypatch):
    """An EMA target and a DPO reference call the network through functional_call, which FSDP2
    silently ignores: on a sharded network building them fails in one line instead."""
    monkeypatch.setattr(tlcm.models.functional, "is_sharded", lambda module: True)
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=2.0))
    with pytest.raises(TLCMError, match="FSDP2 does not support"):
        loss = config.build(student)  # DPO: its reference is made here
        loss._target(None)  # MLCD: the EMA target's call is made per step
