#!/usr/bin/env bash
# The loss contract's CUDA selection: tests that the CPU suite runs in its CPU form, run with their
# training on the GPU (TLCM_TEST_DEVICE=cuda: tests/engine_helpers.py's shrink), as a GPU session
# passes it to the device tool's `run` (a guess: 2-4 minutes; a later call than benchmarks/gpu_check.sh):
#
#   run(command="bash benchmarks/gpu_tests.sh", carry=[".whl"], timeout_s=300)
#
# What it checks on CUDA that the CPU cannot: every registered loss's first gradients with frozen
# bf16 weights under bf16 autocast (CUDA's bf16 kernels, fp32 adapters) against fp32, within the
# contract's BF16_TOLERANCE; replayed no-grad calls as real CUDA graphs and gradient checkpointing,
# each against eager (bit for bit, as on the CPU: a failure there may be a nondeterministic CUDA
# kernel rather than a wrong capture: compare the size of the difference with the bf16 test's);
# a masked family (Conditioning.attention_mask) in those modes; the trajectory cache built by the
# bf16 teacher under autocast, then trained from. Results under $OUT: gpu-tests.log (pytest's
# output, a line per test as it ends: a run stopped at GPU_TESTS_TIMEOUT keeps them), gpu-tests.xml
# (JUnit, per-test times; written at the end), versions.txt. The most wanted run first: the bf16
# cases (15 runs of a few seconds on the GPU), the masked family, the cache; the replayed calls
# last. On 2 CPU cores (TLCM_TEST_DEVICE=cpu, sharing them with the CI suite) the 54 tests took
# 20 min, the replays and the masked family's modes most of it. The CPU dry run of the same script:
#   OUT=/tmp/gpu-tests PYTHON=.venv/bin/python TLCM_TEST_DEVICE=cpu bash benchmarks/gpu_tests.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-tests}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
started=$(date +%s)
source "$(dirname "$0")/gpu_env.sh"
"$PYTHON" -c "import torch, diffusers, pytest; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'diffusers', diffusers.__version__, 'pytest', pytest.__version__)" 2>&1 | tee "$OUT/versions.txt"
export TLCM_TEST_DEVICE=${TLCM_TEST_DEVICE:-cuda}
C=tests/test_loss_contract.py
timeout -k 15 "${GPU_TESTS_TIMEOUT:-240}" "$PYTHON" -m pytest -v -o addopts="-ra" -p no:cacheprovider \
  --junitxml "$OUT/gpu-tests.xml" --durations 15 -m "not slow" \
  "$C::test_bf16_frozen_weights_and_autocast_match_fp32" \
  tests/test_attention_mask.py \
  tests/test_trajectories.py::test_cli_builds_a_float16_cache_and_training_uses_it \
  "$C::test_gradient_checkpointing_gives_bit_identical_gradients" \
  "$C::test_replayed_no_grad_calls_give_bit_identical_gradients" \
  >"$OUT/gpu-tests.log" 2>&1
rc=$?
tail -c 8000 "$OUT/gpu-tests.log"
echo "pytest exit $rc after $(($(date +%s) - started)) s (TLCM_TEST_DEVICE=$TLCM_TEST_DEVICE)"
exit $rc
