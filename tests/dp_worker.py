"""torchrun worker of tests/test_loss_contract.py: trains every loss case with the global batch
split over the processes (no accumulation) and leaves each case's checkpoints in OUT/<case>.

    torchrun --standalone --nproc_per_node 2 tests/dp_worker.py MODEL_DIR OUT_DIR STEPS BATCH [fsdp|masked]

With "fsdp": the FSDP2 cases (FSDP_CASES) with --recipes.runtime.fsdp and gradient checkpointing
(the mode users shard in), and each also interrupted after its first step and resumed, into
OUT/<case>-resumed; one step of "dmd" in bf16 (frozen weights, autocast, FSDP2's
mixed-precision policy) into OUT/dmd-bf16; and "dmd" with compiled blocks (aot_eager) into
OUT/dmd-compiled. With "masked": MODEL_DIR is a masked family's folder (tests/masked_family.py,
registered here); its MASKED_CASES into OUT/<case>, and "dmd" under FSDP2 with gradient
checkpointing into OUT/dmd-fsdp.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from counted_backend import COUNTED, graphs_called  # tests/ is this script's folder: on sys.path
from engine_helpers import interrupt_after
from loss_cases import CASES, FSDP_CASES, case_recipe, in_bf16
from masked_family import MASKED_CASES, MaskedSD
from torch.distributed.tensor import DTensor

from tlcm.distributed import close_distributed
from tlcm.engine import Trainer, train
from tlcm.models.families import register_family


def _sharded(recipe):
    """``recipe`` under FSDP2 with gradient checkpointing (the mode users shard in)."""
    return replace(recipe, runtime=replace(recipe.runtime, fsdp=True, gradient_checkpointing=True))


def _train_cases(model: Path, out: Path, steps: int, batch: int, fsdp: bool) -> None:
    """Every case (CASES), or with ``fsdp`` the FSDP_CASES sharded, each resumed too, and DMD in bf16
    and compiled under FSDP2 (the module docstring)."""
    for name in FSDP_CASES if fsdp else CASES:
        recipe = case_recipe(name, model, out / name, steps=steps, batch_size=batch, fsdp=fsdp)
        if not fsdp:
            train(recipe)
            continue
        recipe = _sharded(recipe)
        student = train(recipe).student
        for phase in recipe.phases.values():  # every loss's adapter was there when FSDP2 sharded
            for adapter in (a for config in phase.losses.values() for a in config.adapters()):
                params = student.adapter_parameters(adapter)
                assert params and all(isinstance(p, DTensor) for p in params), (name, adapter)
        resumed = replace(recipe, runtime=replace(recipe.runtime, out_dir=out / f"{name}-resumed"))
        trainer = Trainer(resumed)
        interrupt_after(trainer, 1)
        assert trainer.run().preempted
        train(resumed)
    if fsdp:  # FSDP2's mixed-precision policy: bf16 base and fp32 LoRA in one unit
        recipe = in_bf16(case_recipe("dmd", model, out / "dmd-bf16", steps=1, batch_size=batch, fsdp=True))
        train(_sharded(recipe))
        # compiled blocks inside FSDP2's units (their hooks stay eager around the compiled forward)
        recipe = case_recipe("dmd", model, out / "dmd-compiled", steps=steps, batch_size=batch, fsdp=True)
        runtime = replace(_sharded(recipe).runtime, compile=True, compile_backend=COUNTED["aot_eager"])
        _, graphs = graphs_called(lambda: train(replace(recipe, runtime=runtime)))
        assert graphs >= 2, graphs  # compiled graphs ran: the student's and the teacher's


def _train_masked(model: Path, out: Path, steps: int, batch: int) -> None:
    """The "masked" mode: MASKED_CASES with DDP, then "dmd" under FSDP2 with gradient checkpointing,
    all through one embedding cache (rank 0 writes it, rank 1 reads the masks it finds there)."""
    register_family(MaskedSD())
    for name in (*MASKED_CASES, "dmd-fsdp"):
        recipe = case_recipe(name.removesuffix("-fsdp"), model, out / name, steps=steps, batch_size=batch)
        recipe = replace(recipe, data=replace(recipe.data, embedding_cache=out / "emb"))
        if name.endswith("-fsdp"):
            recipe = _sharded(recipe)
        train(recipe)


if __name__ == "__main__":
    torch.set_num_threads(1)
    model, out, steps, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    fsdp, masked = sys.argv[5:] == ["fsdp"], sys.argv[5:] == ["masked"]
    try:
        if masked:
            _train_masked(model, out, steps, batch)
        else:
            _train_cases(model, out, steps, batch, fsdp)
    finally:
        close_distributed()
    # FSDP2 on gloo: about 8% of runs abort at interpreter exit AFTER the process group was
    # destroyed and every file written ("terminate called without an active exception"); a hard
    # exit skips that teardown (0 of 32 runs failed with it)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
