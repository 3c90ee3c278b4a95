"""examples/slurm/train.sbatch, the requeue wrapper of README "On a cluster" (walkthrough 8: it
could not be written correctly from the README alone), run by bash with a stand-in torchrun on
PATH that behaves as the real one does: on SIGTERM its ranks save, print "saved a checkpoint at
step N" and exit 75, and torchrun exits 1. SLURM's ``--signal=B:TERM`` signals the batch shell
only: the wrapper must pass it on and requeue; a finished or failed run is not requeued."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "train.sbatch"

FAKE_TORCHRUN = """#!/bin/bash
echo "args: $*"
case "$FAKE" in
  done) echo "every phase done"; exit 0 ;;
  fail) echo "error: a bad input"; exit 2 ;;
esac
trap 'echo "SIGTERM: saved a checkpoint at step 4; exit 75; rerun the same command to resume"; exit 1' TERM
echo started
while true; do sleep 0.05; done
"""


def _run(tmp_path: Path, fake: str, signal_after_start: bool = False) -> tuple[int, str, str]:
    """(exit status, stdout of the wrapper, this attempt's log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("torchrun", FAKE_TORCHRUN), ("scontrol", '#!/bin/bash\necho "scontrol $*"\n')):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE": fake,
        "LOGDIR": str(tmp_path / "logs"),
        "SLURM_JOB_ID": "77",
        "SLURM_RESTART_COUNT": "2",
        "NPROC": "2",
    }
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--recipes.model.path", "/models/sdxl"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "logs" / "train.77.2.log"
    if signal_after_start:
        deadline = time.time() + 30
        while "started" not in (log.read_text() if log.is_file() else ""):
            assert time.time() < deadline and proc.poll() is None, "the stand-in torchrun did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # SLURM's --signal=B:TERM: the batch shell only
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, log.read_text()


def test_a_stop_signal_to_the_batch_shell_saves_and_requeues(tmp_path):
    code, out, log = _run(tmp_path, "train", signal_after_start=True)
    args = "--standalone --nproc_per_node 2 -m tlcm.train recipes:tlcm-full-sdxl --recipes.model.path"
    assert f"args: {args} /models/sdxl" in log
    assert "SIGTERM: saved a checkpoint at step 4" in log
    assert "saved a checkpoint at step 4: requeue" in out
    assert "scontrol requeue 77" in out
    assert code == 0


@pytest.mark.parametrize(("fake", "code"), [("done", 0), ("fail", 2)])
def test_a_finished_or_failed_run_is_not_requeued(tmp_path, fake, code):
    (tmp_path / "logs").mkdir()
    old_attempt = tmp_path / "logs" / "train.77.1.log"
    old_attempt.write_text("SIGTERM: saved a checkpoint at step 2\n")
    got, out, _ = _run(tmp_path, fake)
    assert got == code
    assert "requeue" not in out and f"torchrun exit {code}" in out
