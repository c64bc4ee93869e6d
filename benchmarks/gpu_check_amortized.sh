#!/usr/bin/env bash
# One short GPU session for the amortized backend (issue 18): training time of the 100,000-trace FitzHugh–Nagumo
# estimator (Rudi et al. 2022 set-up, rescnn with fresh noise every epoch) on CUDA, its test R²/coverage on the
# 2,048 reference traces, and the batched inference rate (aim: >= 2e6 traces/s on an H100).
#
# Carry the same wheels folder as gpu_check.sh (`.whl`: quantities pluggy tqdm ...) and `neo_pinn.egg-info`; the
# reference test set is solved on the GPU machine's CPU (scipy; about a minute) unless `refsets/` is carried.
# Logs go to $OUT (or ./gpu_out).
set -uo pipefail
out=${OUT:-gpu_out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD:$PWD/plugins
fi
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/env.txt"
timeout 420 python3 benchmarks/bench_amortized.py --n 100000 --arch rescnn --renoise --epochs 8 --batch-size 512 \
  --lr 4e-3 --device cuda --ood-fits 0 --cache refsets --save "$out/estimators" 2>&1 | tee "$out/fhn100k.log"
OUTDIR="$out" python3 - <<'PY' 2>&1 | tee "$out/inference.log"
import glob, os, time
import torch
from neo_pinn_amortized.estimator import AmortizedEstimator
est = AmortizedEstimator.load(sorted(glob.glob(os.path.join(os.environ["OUTDIR"], "estimators", "fhn_*")))[0],
                              device="cuda")
x = torch.randn(1 << 20, 1000, device="cuda")
net = est.network.eval()
with torch.no_grad():
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            for b in (16384, 65536):
                net(x[:b]); torch.cuda.synchronize(); t = time.perf_counter()
                for i in range(0, x.shape[0], b):
                    net(x[i:i + b])
                torch.cuda.synchronize()
                print(f"{dtype} batch {b}: {x.shape[0] / (time.perf_counter() - t):.3g} traces/s")
PY
