"""torchrun worker of tests/test_loss_contract.py: trains every loss case with the global batch
split over the processes (no accumulation) and leaves each case's checkpoints in OUT/<case>.

    torchrun --standalone --nproc_per_node 2 tests/dp_worker.py MODEL_DIR OUT_DIR STEPS BATCH
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from loss_cases import CASES, case_recipe  # noqa: E402

from tlcm.distributed import close_distributed  # noqa: E402
from tlcm.engine import train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    model, out, steps, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    try:
        for name in CASES:
            train(case_recipe(name, model, out / name, steps=steps, batch_size=batch))
    finally:
        close_distributed()
