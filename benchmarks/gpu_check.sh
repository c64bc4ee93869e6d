#!/usr/bin/env bash
# One short GPU session for the GA issue: the fused kernel's CUDA tests, the fused GA engine against the
# torch engine, and the population throughput table (target: fused >= 3e10 neuron-steps/s at B = 1e6).
#
# The GPU image has torch, triton and scipy but not quantities, pluggy, tqdm, pymoo (and pymoo's import
# dependencies). Prepare them once on the development machine, into an ignored folder that travels:
#   echo /.whl/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       quantities pluggy tqdm pytest iniconfig packaging pymoo moocore cffi platformdirs \
#       alive-progress about-time graphemeu
# (pymoo's import-time dependencies; scipy, numpy and matplotlib are not needed for these checks if absent
# there, but pymoo imports scipy, which the image has). Run this script there with `.whl` and
# `neo_pinn.egg-info` carried (the egg-info holds the entry points that register the built-in backends);
# logs go to $OUT (or ./gpu_out).
set -uo pipefail
out=${OUT:-gpu_out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 NEO_PINN_CACHE_DIR=/tmp/neo_pinn_fused
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD:$PWD/plugins
fi
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader | tee "$out/env.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/env.txt"
timeout 240 python3 -m pytest -q -rs -s -p no:cacheprovider -m gpu tests/test_fused.py tests/test_ga_fused.py \
  2>&1 | tee "$out/tests.log"
timeout 240 python3 benchmarks/bench_simulate.py --tables population --device cuda --pop-torch-cuda-steps 1000 \
  --pop-repeat 3 --fused-blocks auto 64 256 2>&1 | tee "$out/population.log"
