"""Red-team round 15, the engine's modes: what a training run on several processes, with FSDP2,
gradient checkpointing, an embedding cache or a memory plan, and its checkpoints and resumes do that
the single-process bit-exact contracts (tests/test_loss_contract.py) cannot see. Direct calls on the
tiny SD pipeline (``_free_step_trainer``: micro-batches that cost nothing) or on tiny tensors, with a
one-process gloo group (``cpu_mesh``) where a DTensor is needed; the other process of a pair is
faked at the collective (what it would add to an all-reduce)."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from engine_helpers import OutputNormConfig, interrupt_after, small_recipe
from test_engine import _free_step_trainer
from test_memory_plan import FakeMemory

import tlcm.memory_plan as memory_plan
from tlcm import engine
from tlcm.checkpoint import TrainState, load_latest, nonfinite_paths, save_checkpoint, unsound
from tlcm.distributed import DistInfo, average_gradients, full_tensors, is_sharded, shard, shard_like
from tlcm.engine import STOP, Trainer

CPU = torch.device("cpu")


# --- the engine ----------------------------------------------------------------------------------


def test_a_resumed_phase_builds_its_losses_from_the_phases_first_step_seed(
    tiny_sd_dir, tmp_path, monkeypatch
):
    """build_phase seeds the losses' random initialisations with step_seed(seed, g0, -2), g0 the
    phase's FIRST global step: resumed at its step 2 (global step 7, so g0 = 5) the seed is the one
    of the phase started from scratch at global step 5, not that of global step 7."""
    trainer, phase = _free_step_trainer(tiny_sd_dir, tmp_path)
    seeds = []
    build = engine.build_loss
    monkeypatch.setattr(engine, "build_loss", lambda *a: seeds.append(torch.initial_seed()) or build(*a))
    fresh = trainer.build_phase("stage", phase, global_step=5)
    restored = SimpleNamespace(
        optimizer=fresh.optimizer.state_dict(),
        losses={n: loss.checkpoint_state() for n, loss in fresh.losses.items()},
    )
    trainer.build_phase("stage", phase, global_step=7, start=2, restored=restored)
    seed = trainer.recipe.runtime.seed
    assert seeds == [engine.step_seed(seed, 5, -2)] * 2
    assert engine.step_seed(seed, 7, -2) != seeds[0]


def _two_phase_trainer(model_dir, out_dir):
    """A Trainer of two phases "a", "b" of 2 steps each whose micro-batches cost nothing (as
    ``_free_step_trainer``): ``trainer.seen`` records the global step of each micro-batch."""
    recipe = small_recipe(model_dir, out_dir, steps=2)
    phase = replace(recipe.phases["stage"], losses={"norm": OutputNormConfig()})
    trainer = Trainer(replace(recipe, phases={"a": phase, "b": phase}))
    params = list(trainer.student.trainable_parameters().values())
    trainer.seen = []
    trainer.context = lambda order, generator, step: trainer.seen.append(step) or SimpleNamespace(device=CPU)
    trainer.objective = lambda phase, losses, ctx: (sum(p.sum() for p in params) * 0.0, {})
    return trainer


def test_a_run_stopped_in_its_first_phase_resumes_every_later_phase_from_its_start(tiny_sd_dir, tmp_path):
    """Stopped after global step 1 (phase a's step 1 of 2), the rerun trains global steps 1, 2, 3:
    the rest of a, then ALL of b (the checkpoint's position is a's only), ending at (phase 1, step 2,
    global step 4). A rerun of the finished run trains nothing (its last checkpoint sits after the
    last phase) and exports again."""
    first = _two_phase_trainer(tiny_sd_dir, tmp_path)
    interrupt_after(first, 1)
    assert first.run().state == TrainState(0, 1, 1) and first.seen == [0]
    resumed = _two_phase_trainer(tiny_sd_dir, tmp_path)
    assert resumed.run().state == TrainState(1, 2, 4)
    assert resumed.seen == [1, 2, 3]
    again = _two_phase_trainer(tiny_sd_dir, tmp_path)
    (tmp_path / "student").rename(tmp_path / "first-export")
    again.run()
    assert again.seen == []
    assert (tmp_path / "student").is_dir()


def test_a_stop_signal_on_one_process_of_two_stops_both_after_the_step(tiny_sd_dir, tmp_path, monkeypatch):
    """The stop flag is averaged with the loss terms: 1 signalled process of 2 averages to 1/2, and
    every process must stop after this step (which is still taken: finite, the weights updated).
    The other process's contribution is faked at the average (it received the signal)."""
    monkeypatch.setattr(engine, "average_gradients", lambda params, world: None)

    def average(terms, world):
        return {k: (v + 1.0) / 2 if k == STOP else v for k, v in terms.items()}  # the other: signalled

    monkeypatch.setattr(engine, "average_terms", average)
    trainer, phase = _free_step_trainer(tiny_sd_dir, tmp_path, DistInfo(0, 2, CPU), batch_size=4)
    params = list(trainer.student.trainable_parameters().values())
    for p in params:
        p.data.fill_(0.5)
    _, finite = trainer._step(phase, {}, torch.optim.SGD(params, lr=0.1, weight_decay=0.1), params, 0)
    assert finite and trainer._stop
    assert all(torch.equal(p, torch.full_like(p, 0.5 * (1 - 0.1 * 0.1))) for p in params)  # stepped


def test_only_rank_0_writes_a_checkpoint_even_when_every_process_gathers(tiny_sd_dir, tmp_path, monkeypatch):
    """Under FSDP2 every process gathers the shards for a save, and rank 0 alone writes: rank 1 of 2
    (its network treated as sharded) leaves no checkpoints folder; rank 0 writes step 1. (No process
    group: the save's collectives are faked, the other process adding nothing.)"""
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor, *args, **kwargs: None)
    for rank in (1, 0):
        trainer, _ = _free_step_trainer(tiny_sd_dir, tmp_path / str(rank), DistInfo(rank, 2, CPU))
        trainer.sharded = True
        params = list(trainer.student.trainable_parameters().values())
        trainer._save(TrainState(0, 1, 1), torch.optim.SGD(params, lr=0.0), {})
        written = (tmp_path / str(rank) / "checkpoints").exists()
        assert written == (rank == 0), rank


def test_a_stopping_process_of_two_waits_for_the_save_before_it_exits(tiny_sd_dir, tmp_path, monkeypatch):
    """After a stop signal rank 0 writes the checkpoint and every process waits at a barrier for it,
    so that torchrun never sees a process exit (and kills the others) mid-save: rank 1 of 2 stops
    through exactly one barrier, after its part of the save, and returns pre-empted."""
    events = []
    monkeypatch.setattr(torch.distributed, "barrier", lambda: events.append("barrier"))
    trainer, _ = _free_step_trainer(tiny_sd_dir, tmp_path, DistInfo(1, 2, CPU))
    monkeypatch.setattr(trainer, "_save", lambda *a: events.append("save"))
    params = list(trainer.student.trainable_parameters().values())
    run = trainer._preempted(TrainState(0, 1, 1), torch.optim.SGD(params, lr=0.0), {})
    assert run.preempted and events == ["save", "barrier"]


def test_fsdp_on_one_process_trains_unsharded(tiny_sd_dir, tmp_path):
    """--recipes.runtime.fsdp without torchrun: one process has nothing to shard over; the network
    stays a plain module (no process group needed) and the engine treats it as unsharded."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, runtime=replace(recipe.runtime, fsdp=True)))
    assert not trainer.sharded and not is_sharded(trainer.student.net)


@pytest.mark.parametrize("on", [True, False])
def test_the_runtime_switches_gradient_checkpointing_on_the_students_network(tiny_sd_dir, tmp_path, on):
    """gradient_checkpointing gives the same gradients (test_loss_contract.py), so only the network's
    own flag shows it is on: set from RuntimeConfig.gradient_checkpointing."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, runtime=replace(recipe.runtime, gradient_checkpointing=on)))
    assert trainer.student.net.is_gradient_checkpointing is on


def test_only_rank_0_writes_the_embedding_cache(tiny_sd_dir, tmp_path):
    """Every process encodes what the cache lacks, rank 0 alone writes it (two writers of one chunk
    file would race): rank 1 of 2 reading an empty cache writes no file there."""
    recipe = small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)
    cache = tmp_path / "cache"
    recipe = replace(recipe, data=replace(recipe.data, embedding_cache=cache))
    trainer = Trainer(recipe, DistInfo(1, 2, CPU))
    trainer.embeddings.get(torch.tensor([0, 1]))
    assert not cache.exists() or not any(cache.iterdir())


def test_only_rank_0_moves_a_damaged_checkpoint_aside(tiny_sd_dir, tmp_path):
    """On resume every process falls back past a damaged latest checkpoint, but only rank 0 renames
    it damaged-step-...: rank 1 of 2 resumes from step 1 and leaves step 2's folder where it is."""
    trainer, _ = _free_step_trainer(tiny_sd_dir, tmp_path, DistInfo(1, 2, CPU))
    weights = trainer.student.state_dict()
    for step in (1, 2):
        save_checkpoint(
            tmp_path,
            TrainState(0, step, step),
            weights,
            {},
            {},
            metadata=trainer.student.metadata(),
            phases=trainer.phases,
            run=trainer.record,
        )
    (tmp_path / "checkpoints" / "step-0000002" / "student.safetensors").write_bytes(b"truncated")
    restored = trainer._restore()
    assert restored.state.global_step == 1
    assert (tmp_path / "checkpoints" / "step-0000002").is_dir()
    assert not (tmp_path / "checkpoints" / "damaged-step-0000002").exists()


def test_auto_precision_on_the_cpu_is_fp32(tiny_sd_dir, tmp_path):
    """mixed_precision "auto" means bf16 on CUDA only: on the CPU the step's autocast is off and the
    frozen weights stay fp32."""
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, runtime=replace(recipe.runtime, mixed_precision="auto")))
    with trainer.autocast:
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert {p.dtype for p in trainer.base.net.parameters()} == {torch.float32}


# --- distributed ---------------------------------------------------------------------------------


def test_average_gradients_leaves_fsdp2_gradients_alone(cpu_mesh, monkeypatch):
    """FSDP2 already averaged a DTensor parameter's gradient in backward (reduce-scatter): averaging
    it again would divide it by the process count twice. Two processes faked at the all-reduce (the
    other adds 4 to every entry): the plain (3,) gradient 2 -> (2 + 4) / 2 = 3, the sharded (4, 2)
    gradient stays 2."""
    from torch.distributed.tensor import Shard, distribute_tensor

    from tlcm import distributed

    sharded = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 2), cpu_mesh, [Shard(0)]))
    sharded.grad = distribute_tensor(torch.full((4, 2), 2.0), cpu_mesh, [Shard(0)])
    plain = torch.nn.Parameter(torch.zeros(3))
    plain.grad = torch.full((3,), 2.0)
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda flat: flat.add_(4.0))
    average_gradients([sharded, plain], 2)
    torch.testing.assert_close(plain.grad, torch.full((3,), 3.0))
    torch.testing.assert_close(sharded.grad.full_tensor(), torch.full((4, 2), 2.0))


def test_full_tensors_gathers_inside_lists_and_tuples(cpu_mesh):
    """A checkpoint's tree (an optimizer's state, a loss's list of EMA tensors) holds DTensors at
    any depth: every one comes out a plain full tensor, lists stay lists and tuples tuples."""
    from torch.distributed.tensor import Shard, distribute_tensor

    value = torch.arange(6.0).view(3, 2)
    dt = distribute_tensor(value, cpu_mesh, [Shard(0)])
    out = full_tensors({"ema": [dt, {"x": dt}], "pair": (dt, 3), "n": 1})
    assert type(out["ema"]) is list and type(out["pair"]) is tuple and out["n"] == 1
    for tensor in (out["ema"][0], out["ema"][1]["x"], out["pair"][0]):
        assert type(tensor) is torch.Tensor
        torch.testing.assert_close(tensor, value)


def test_shard_like_lays_a_checkpoint_tensor_out_in_the_live_dtype(cpu_mesh):
    """A resumed fp32 tensor loaded into a bf16 sharded parameter's state is cast to bf16 and sharded
    with the parameter's placements; a plain ``like`` leaves the value as it is."""
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    like = distribute_tensor(torch.zeros(4, 2, dtype=torch.bfloat16), cpu_mesh, [Shard(0)])
    value = torch.full((4, 2), 1.0 + 2**-12)  # rounds to 1.0 in bf16
    out = shard_like(value, like)
    assert isinstance(out, DTensor) and out.dtype == torch.bfloat16 and out.placements == like.placements
    assert torch.equal(out.full_tensor(), torch.ones(4, 2, dtype=torch.bfloat16))
    assert shard_like(value, torch.zeros(4, 2)) is value


def test_shard_wraps_every_block_then_the_root_and_reduces_in_fp32(cpu_mesh):
    """FSDP2 as torchtitan does it: each block of ``blocks`` a unit of its own (so that one block at a
    time is gathered), then the root; compute in the given param_dtype, gradients reduced in fp32."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    shard(net, [net[0], net[1]], CPU, torch.bfloat16)
    assert is_sharded(net[0]) and is_sharded(net[1]) and is_sharded(net)
    for module in (net[0], net[1], net):
        policy = module._get_fsdp_state()._mp_policy  # FSDP2's record of the unit's policy
        assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32


# --- checkpoints ---------------------------------------------------------------------------------


RAN = []


class _Payload:
    """A pickle that runs code when loaded (what weights_only refuses)."""

    def __reduce__(self):
        return RAN.append, ("ran",)


def test_a_checkpoint_pickle_that_would_run_code_is_refused_unrun(tmp_path, capsys):
    """optimizer.pt and losses.pt load with weights_only: a pickle holding anything but tensors and
    plain containers is damage (the run falls back to the previous checkpoint), never executed."""
    for step in (1, 2):
        save_checkpoint(tmp_path, TrainState(0, step, step), {"w": torch.ones(2)}, {}, {})
    torch.save({"state": _Payload()}, tmp_path / "checkpoints" / "step-0000002" / "optimizer.pt")
    RAN.clear()
    checkpoint = load_latest(tmp_path, "cpu", say=lambda line: None)
    assert checkpoint.state.global_step == 1 and RAN == []


def test_the_weight_limit_reads_the_students_weights_only():
    """max_weight_abs bounds the student's weights: AdamW's step count (a float tensor: 20000 after
    20000 steps) and second moments may be far larger and are sound; an empty weight (0 entries) has
    no magnitude and passes; a student weight of 2e4 is over a 1e4 limit."""
    optimizer = {"state": {0: {"step": torch.tensor(2e4), "exp_avg_sq": torch.full((2,), 5e4)}}}
    student = {"lora": torch.ones(2), "empty": torch.empty(0, 4)}
    assert unsound({"student": student, "optimizer": optimizer, "losses": {}}, 1e4) is None
    student["lora"] = torch.tensor([1.0, -2e4])
    assert "student/lora holds |w| = 2e+04 > 10000" in unsound({"student": student}, 1e4)


def test_nan_inside_a_tuple_of_loss_state_is_found():
    """nonfinite_paths walks dicts, lists AND tuples: the NaN in the second entry of a loss's tuple
    is named by its key path."""
    tree = {"losses": {"ema": (torch.ones(2), torch.tensor([1.0, math.nan]))}, "n": torch.tensor([3])}
    assert nonfinite_paths(tree) == ["losses/ema/1"]


# --- the memory plan -------------------------------------------------------------------------------


class _CountingLoss(torch.nn.Module):
    """A loss whose aux_step bumps a buffer (running statistics, an EMA kept as a buffer)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(2))

    def aux_step(self, contexts):
        self.count += 1.0
        return {}

    def checkpoint_state(self):
        return {}

    def load_checkpoint_state(self, state):
        pass


def _tiny_trainer(world_size=1):
    """measure_step's view of a Trainer: a (2,)-weight student whose objective is sum(w * b)."""
    weight = torch.nn.Parameter(torch.ones(2))
    net = torch.nn.Module()
    net.weight = weight
    student = SimpleNamespace(
        net=net, trainable_parameters=lambda: {"w": weight}, set_gradient_checkpointing=lambda on: None
    )
    return SimpleNamespace(
        dist=DistInfo(0, world_size, CPU),
        student=student,
        context=lambda order, gen, step: SimpleNamespace(batch_size=len(order)),
        objective=lambda phase, losses, ctx: ((weight * ctx.batch_size).sum(), {}),
        autocast=nullcontext(),
    )


def test_measuring_restores_the_losses_buffers():
    """measure_step runs every aux_step on the measured micro-batch and puts back what it changed,
    buffers included: the counter an aux_step bumped is zero again after two measurements."""
    loss = _CountingLoss()
    measure = memory_plan.measure_step(_tiny_trainer(), None, {"c": loss}, memory=FakeMemory())
    measure(1, False)
    measure(2, True)
    assert torch.equal(loss.count, torch.zeros(2))


def test_every_process_plans_on_the_largest_peak_of_any(monkeypatch):
    """Under torchrun the measured peaks are all-reduced with MAX (every process must choose the same
    micro-batch, one that fits on each): this process measures (500, 500) bytes, the other (faked at
    the all-reduce) (900, 400): the plan sees (900, 500), not the sum (1400, 900)."""
    other = torch.tensor([900.0, 400.0], dtype=torch.float64)
    reductions = {memory_plan.dist.ReduceOp.MAX: torch.maximum, memory_plan.dist.ReduceOp.SUM: torch.add}

    def all_reduce(tensor, op=None):  # op None: the gradients' sum (doubled), else the peaks'
        tensor.copy_(tensor * 2 if op is None else reductions[op](tensor, other))

    monkeypatch.setattr(memory_plan.dist, "all_reduce", all_reduce)
    memory = FakeMemory()
    memory.bump(memory_plan.Peak(500.0, 500.0), "measured")
    memory.reset = lambda: None
    measure = memory_plan.measure_step(_tiny_trainer(world_size=2), None, {}, memory=memory)
    assert measure(1, False) == memory_plan.Peak(900.0, 500.0)
