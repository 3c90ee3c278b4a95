"""torchrun worker of tests/test_preemption.py: trains ``small_recipe`` (MLCD + the test loss, batch
2: one micro-batch per process) through tlcm.train's own path (its process-wide stop-signal
handlers, ``run_cli``, ``main`` and its exit codes) and records the exit code in
OUT/exit-TAG-rankRANK.

    torchrun --standalone --nproc_per_node 2 tests/preempt_worker.py MODEL OUT STEPS TAG RANK1_STEP \
        LAUNCHER_STEP [ERROR_STEP]

RANK1_STEP: rank 1 alone sends itself SIGTERM at this global step (-1: never); LAUNCHER_STEP: rank 0
sends SIGTERM to torchrun's launcher at this global step, which forwards it to every rank (-1:
never); ERROR_STEP: rank 0 alone raises OSError (a full disk) at this global step (default -1:
never). The recipe is the same for every attempt of one run folder, as a rerun's would be.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from engine_helpers import small_recipe  # tests/ is this script's folder: first on sys.path

from tlcm.errors import run_cli
from tlcm.preemption import install_for_process
from tlcm.train import TrainArgs, main

if __name__ == "__main__":
    torch.set_num_threads(1)
    model, out, steps, tag = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rank1_step, launcher_step = int(sys.argv[5]), int(sys.argv[6])
    error_step = int(sys.argv[7]) if len(sys.argv) > 7 else -1
    recipe = small_recipe(
        model,
        out / "run",
        steps=steps,
        sigterm_step=rank1_step,
        signal_rank=1,
        launcher_sigterm_step=launcher_step,
        error_step=error_step,
    )
    install_for_process()  # as python -m tlcm.train does
    code = 1  # another exception than SystemExit: recorded as 1, then its traceback as Python prints it
    try:
        run_cli(lambda: main(TrainArgs(recipes=recipe)))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        (out / f"exit-{tag}-rank{os.environ['RANK']}").write_text(str(code))
    sys.exit(code)
