#!/usr/bin/env bash
# Download, on this machine, the wheels benchmarks/gpu_check.sh installs on the GPU machine (which
# reaches no package registry; its image has Python 3.12, torch 2.11, transformers 5.17, accelerate,
# safetensors, einops, rich, and lacks diffusers and tyro): into .whl/, ignored by git through
# .git/info/exclude. Run once per checkout, then pass carry=[".whl"] to the device tool's run.
# pytest (with pluggy, iniconfig) runs benchmarks/gpu_tests.sh. Transformers is not carried: its
# version checks may reject the image's other packages.
#   bash benchmarks/gpu_wheels.sh      (PYTHON=... to use another interpreter's pip)
set -euo pipefail
PYTHON=${PYTHON:-python3}
grep -qxF /.whl/ .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl diffusers==0.42.1 tyro==1.0.17 docstring-parser typeguard importlib_metadata \
  peft==0.21.2 timm==1.0.31 pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1
ls .whl
