#!/usr/bin/env python
"""Throughput of the batched simulator vs a one-model-at-a-time scipy loop.

Morris–Lecar, SNLC preset (I = 60 pA), RK4 at dt = 0.05 ms, B neurons with randomly perturbed
parameters, integrated by :func:`neo_pinn.simulate.simulate` with ``compile=True`` and only the voltage
recorded every ``--record-every`` steps (memory stays bounded). The compile warm-up (one short run of
the same shape) is excluded from the timing and reported separately; the throughput is the best of
``--repeat`` timed runs, in neuron-steps per second (B × steps / wall seconds).

In the same run, ``--scipy-n`` models with perturbed parameters are integrated one at a time with
``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-6, atol 1e-8) over the same simulated time; their
equivalent throughput is n_models × (simulated ms / dt) / wall seconds, with dt the batched step.

Usage::

    python benchmarks/bench_simulate.py                       # B = 1e3, 1e4, 1e5 on CPU (+ CUDA, 1e6 there)
    python benchmarks/bench_simulate.py --sizes 1e4 --dtype float32 --device cpu
    neo-pinn bench simulate --sizes 1e3 1e4 --steps 2000

Acceptance (issue): on the 2-core CPU, B = 1e4 float32 must reach ≥ 5e7 neuron-steps/s and ≥ 30× the
scipy loop; the last lines say whether it does.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from neo_pinn.models import MorrisLecar
from neo_pinn.reference import reference_solution
from neo_pinn.simulate import simulate

DT = 0.05  # ms
PRESET = "snlc"
#: Parameters perturbed (relative, uniform ± this fraction) — keeps every model in the tonic regime.
PERTURB = {"gCa": 0.05, "gK": 0.05, "gL": 0.05, "phi": 0.1, "V3": 0.05, "V4": 0.05}
ACCEPT_RATE = 5e7
ACCEPT_SPEEDUP = 30.0


def perturbed_thetas(model, n: int, rng: np.random.Generator) -> np.ndarray:
    theta = np.tile(model.theta(preset=PRESET), (n, 1))
    for name, frac in PERTURB.items():
        k = model.param_index(name)
        theta[:, k] *= 1.0 + frac * rng.uniform(-1.0, 1.0, n)
    return theta


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_batched(model, B: int, steps: int, record_every: int, device: str, dtype: torch.dtype,
                  chunk_steps: int, repeat: int, rng) -> dict:
    torch._dynamo.reset()  # fresh, static-shape compilation for this (B, dtype, device)
    theta = torch.as_tensor(perturbed_thetas(model, B, rng), dtype=dtype, device=device)
    y0 = model.initial_state(PRESET)
    kw = dict(dt=DT, i_ext=model.preset(PRESET).i_ext, y0=y0, method="rk4", dtype=dtype, device=device,
              compile=True, record_every=record_every, states=["V"], chunk_steps=chunk_steps)
    t = time.perf_counter()
    simulate(model, theta, duration=record_every * DT, **kw)  # compiles the chunk for this shape
    _sync(device)
    warmup = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        sim = simulate(model, theta, duration=steps * DT, **kw)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    v_end = sim.y[:, -1, 0].float().cpu()
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "B": B, "steps": steps, "warmup_s": warmup,
            "wall_s": best, "rate": B * steps / best, "finite": bool(torch.isfinite(v_end).all())}


def bench_scipy(model, n: int, steps: int, rng) -> dict:
    thetas = perturbed_thetas(model, n, rng)
    duration = steps * DT
    t = time.perf_counter()
    for theta in thetas:
        reference_solution(model, theta, duration=duration, t_eval=np.array([0.0, duration]),
                           y0=model.initial_state(PRESET), i_ext=model.preset(PRESET).i_ext,
                           method="LSODA", rtol=1e-6, atol=1e-8)
    wall = time.perf_counter() - t
    return {"n": n, "sim_ms": duration, "wall_s": wall, "rate": n * (duration / DT) / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4, 1e5],
                    help="batch sizes B (default 1e3 1e4 1e5; on CUDA 1e6 is added)")
    ap.add_argument("--steps", type=int, default=4000, help="RK4 steps per timed run (default 4000 = 200 ms)")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                    help="cpu, cuda, or all (= cpu and, where present, cuda; default)")
    ap.add_argument("--dtype", choices=("float32", "float64"), nargs="+", default=["float32", "float64"])
    ap.add_argument("--scipy-n", type=int, default=20, help="models in the scipy loop (default 20)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration; the best counts")
    ap.add_argument("--record-every", type=int, default=None,
                    help="record V every k steps (default: --steps, i.e. only the first and last state)")
    ap.add_argument("--chunk-steps", type=int, default=8, help="steps fused per compiled call (default 8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    model = MorrisLecar()
    record_every = args.record_every or args.steps
    steps = args.steps - args.steps % record_every
    if steps < record_every:
        ap.error("--steps must be at least --record-every")

    devices = []
    if args.device in ("cpu", "all"):
        devices.append("cpu")
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append("cuda")
        elif args.device == "cuda":
            ap.error("--device cuda: CUDA is not available")
    gpu_name = torch.cuda.get_device_name(0) if "cuda" in devices else None

    print(f"# neo_pinn simulate benchmark: Morris–Lecar {PRESET!r} (I = {model.preset(PRESET).i_ext:g} pA), RK4, "
          f"dt = {DT} ms, {steps} steps = {steps * DT:g} ms simulated, V recorded every {record_every} steps, "
          f"compile=True, chunk_steps={args.chunk_steps}")
    print(f"# torch {torch.__version__}, {args.threads} CPU threads ({os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()})" + (f", GPU {gpu_name}" if gpu_name else ""))

    sc = bench_scipy(model, args.scipy_n, steps, rng)
    print(f"# scipy loop: {sc['n']} models × {sc['sim_ms']:g} ms, solve_ivp LSODA rtol 1e-6 atol 1e-8, one at a "
          f"time: {sc['wall_s']:.2f} s → {sc['rate']:.3g} equivalent neuron-steps/s (at dt = {DT} ms)")
    print()
    header = f"| {'device':<6} | {'dtype':<7} | {'B':>9} | {'steps':>6} | {'warm-up s':>9} | {'wall s':>8} | " \
             f"{'neuron-steps/s':>14} | {'× scipy':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    rows = []
    for device in devices:
        sizes = [int(b) for b in args.sizes]
        if device == "cuda" and 1_000_000 not in sizes:
            sizes.append(1_000_000)
        for dtype_name in args.dtype:
            for B in sizes:
                r = bench_batched(model, B, steps, record_every, device, getattr(torch, dtype_name), args.chunk_steps,
                                  args.repeat, rng)
                r["speedup"] = r["rate"] / sc["rate"]
                rows.append(r)
                print(f"| {r['device']:<6} | {r['dtype']:<7} | {B:>9.0e} | {steps:>6} | {r['warmup_s']:>9.1f} | "
                      f"{r['wall_s']:>8.3f} | {r['rate']:>14.3g} | {r['speedup']:>8.0f}× |"
                      + ("" if r["finite"] else "  (NaN!)"), flush=True)
    print()
    target = [r for r in rows if r["device"] == "cpu" and r["B"] == 10_000 and r["dtype"] == "float32"]
    if target:
        r = target[0]
        ok = r["rate"] >= ACCEPT_RATE and r["speedup"] >= ACCEPT_SPEEDUP and r["finite"]
        print(f"# acceptance (CPU, B = 1e4, float32): {r['rate']:.3g} neuron-steps/s (≥ {ACCEPT_RATE:.0e}), "
              f"{r['speedup']:.0f}× scipy (≥ {ACCEPT_SPEEDUP:.0f}×): {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
