# Sourced by benchmarks/gpu_check.sh and gpu_tests.sh on the GPU machine: installs the carried
# wheels (.whl/, from benchmarks/gpu_wheels.sh; the device reaches no package registry) into
# /tmp/site and puts it and the repository on PYTHONPATH (without wheels: the repository only).
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tail -5
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
