#!/usr/bin/env bash
# The one GPU check of benchmarks/gpu.py, as a GPU session passes it to the device tool's `run`:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)
#
# Installs the carried wheels (.whl/: diffusers, tyro, ... from benchmarks/gpu_wheels.sh; the device
# reaches no package registry), records the GPU and package versions, then runs the benchmark with
# its results written under $OUT as they come (gpu.json, gpu.md, gpu.log): a stopped run keeps what
# was done. No section or phase starts after GPU_BENCH_TIME_LIMIT seconds (default 330) and the
# benchmark is stopped at GPU_BENCH_TIMEOUT (default 470; SIGTERM, which a training step takes as a
# stop request, then SIGKILL 15 s later), so the whole check ends within 8.5 minutes.
# The work dir (model folders: FLUX + its T5 ~34 GB, SD3 ~18 GB more, SDXL ~7 GB) is on /dev/shm when
# that has over 80 GB free (RAM-backed: the machine has 128 GB; disk 64 GB), else in the default temp
# dir; it is removed at the end. Extra arguments go to the benchmark (e.g. --sections build,flux; the
# README's GPU section gives the plan of calls); none: the plan's first call,
# --sections build,sdxl,inference,speed --steps 1; arguments without --sections get those sections
# (e.g. --steps 2: --sections build,sdxl,inference,speed --steps 2). CPU dry run of the same script:
#   OUT=/tmp/gpu-check PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --device cpu
set -uo pipefail
OUT=${OUT:-benchmarks/results}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
started=$(date +%s)
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
"$PYTHON" - <<'EOF' 2>&1 | tee "$OUT/versions.txt"
import importlib

for name in ("torch", "diffusers", "transformers", "peft", "timm", "accelerate", "tyro"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # report, let the benchmark fail on what it needs
        print(name, "MISSING:", err)
EOF
if [ "$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1)" -gt 80000000000 ] 2>/dev/null; then
  WORK=$(mktemp -d /dev/shm/tlcm-gpu-bench-XXXXXX)
else
  WORK=$(mktemp -d -t tlcm-gpu-bench-XXXXXX)
fi
trap 'rm -rf "$WORK"' EXIT
df -h "$WORK" | tee -a "$OUT/versions.txt"
echo "setup took $(($(date +%s) - started)) s" | tee -a "$OUT/versions.txt"
if [ $# -eq 0 ]; then  # the first call of the README's plan
  set -- --steps 1
fi
case " $* " in  # no --sections: the plan's first call's (all sections would build every model, ~59 GB)
  *" --sections "* | *" --sections="*) ;;
  *) set -- --sections build,sdxl,inference,speed "$@" ;;
esac
timeout -k 15 "${GPU_BENCH_TIMEOUT:-470}" "$PYTHON" -m benchmarks.gpu --out "$OUT" --work-dir "$WORK" \
  --time-limit "${GPU_BENCH_TIME_LIMIT:-330}" "$@" >"$OUT/gpu.log" 2>&1
rc=$?
tail -c 6000 "$OUT/gpu.log"
echo "benchmark exit $rc after $(($(date +%s) - started)) s"
exit $rc
