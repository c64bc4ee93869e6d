"""Accuracy and speed of the ``lsq`` backend on a noisy synthetic Morris–Lecar SNLC recording.

Recovers gCa, gK and phi (every other parameter fixed at the preset) from a recording made with
``neo_pinn.api.synthetic_trace("morris_lecar", preset="snlc", noise="white:sigma=1mV")``:

* from a single start at 0.5× and at 2× the truth (two separate fits);
* from ``--starts`` starts drawn log-uniformly across the parameters' bounds, fitted as one batch; a start
  succeeds when all three of its estimates are within 2 % of the truth.

Prints a Markdown table (case, start, estimates, relative errors, success, wall time) and, per fit, the
standard deviation the backend reports next to the actual error.

    python benchmarks/bench_lsq.py [--seed 0] [--starts 20] [--duration 1000] [--device auto]
                                   [--rate 10000] [--dt 0.05] [--jacobian forward|reverse] [--per-start]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model, synthetic_trace

FREE = ("gCa", "gK", "phi")
TOL = 0.02


def _fmt(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise and of the random starts")
    ap.add_argument("--starts", type=int, default=20, help="number of random starts (one batch)")
    ap.add_argument("--duration", type=float, default=1000.0, help="recording length, ms")
    ap.add_argument("--rate", type=float, default=10000.0, help="sampling rate, Hz")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--dt", type=float, default=None, help="integration step, ms (default: automatic, ≤ 0.05)")
    ap.add_argument("--jacobian", choices=("forward", "reverse"), default="forward",
                    help="autograd mode of the segment Jacobians (to compare their speed)")
    ap.add_argument("--per-start", action="store_true", help="also list every random start")
    args = ap.parse_args(argv)

    model = get_model("morris_lecar")
    truth_all = model.param_values("snlc")
    truth = {k: truth_all[k] for k in FREE}
    t0 = time.perf_counter()
    trace, _ = synthetic_trace("morris_lecar", preset="snlc", duration=args.duration, rate_hz=args.rate,
                               noise="white:sigma=1mV", seed=args.seed)
    t_data = time.perf_counter() - t0
    options = {"jacobian": args.jacobian} | ({} if args.dt is None else {"dt": args.dt})
    tv = np.array([truth[k] for k in FREE])

    rows, stds = [], []

    def run(case: str, init, n_starts: int):
        problem = EstimationProblem.build(model, trace, FREE, preset="snlc", truth=truth, init=init)
        est = get_backend("lsq")(n_starts=n_starts, **options)
        start = time.perf_counter()
        res = est.fit(problem, seed=args.seed, device=args.device)
        wall = time.perf_counter() - start
        values = np.array([res[k].value for k in FREE])
        rel = np.abs(values / tv - 1)
        if n_starts == 1:
            start_txt = _fmt([res[k].init for k in FREE])
            ok = "yes" if rel.max() < TOL else "no"
        else:
            samples = np.array([res.samples[k] for k in FREE]).T
            per = np.abs(samples / tv - 1).max(1) < TOL
            start_txt = f"{n_starts} log-uniform in bounds"
            best_ok = "yes" if rel.max() < TOL else "no"
            ok = f"{int(per.sum())}/{n_starts} starts ({100 * per.mean():.0f} %); best {best_ok}"
            if args.per_start:
                inits = np.array(res.history.get("start_init", [[np.nan] * 3] * n_starts))
                for i in range(n_starts):
                    print(f"  start {i:2d}: init [{_fmt(inits[i])}] → [{_fmt(samples[i])}] "
                          f"cost {res.history['start_cost'][i]} {'ok' if per[i] else 'FAIL'}")
        rows.append((case, start_txt, _fmt(values), ", ".join(f"{100 * r:.3f}" for r in rel), ok,
                     f"{wall:.1f}", res.metrics["iterations"], f"{res.metrics['rmse_mV']:.3f}"))
        stds.append((case, [(k, res[k].value - truth[k], res[k].std) for k in FREE]))
        return res

    run("0.5× truth", {k: 0.5 * v for k, v in truth.items()}, 1)
    run("2× truth", {k: 2.0 * v for k, v in truth.items()}, 1)
    res = run(f"random ×{args.starts}", None, args.starts)

    dev = res.provenance.get("device", args.device)
    print(f"\n## lsq on Morris–Lecar SNLC: {args.duration:g} ms at {args.rate / 1000:g} kHz, white noise 1 mV, "
          f"seed {args.seed}")
    threads = res.config.get("num_threads") or torch.get_num_threads()
    print(f"device {dev}, torch {torch.__version__}, {threads} intra-op thread(s) on {os.cpu_count()} cores "
          f"({platform.machine()}); dt {res.metrics['dt_ms']:g} ms, {res.metrics['n_segments']} segments of "
          f"{res.config['segment_ms']} ms; truth gCa, gK, phi = {_fmt(tv)} (recording made in {t_data:.1f} s)\n")
    print("| case | start (gCa, gK, phi) | estimate (gCa, gK, phi) | rel. error % | success (all < 2 %) | wall s "
          "| iterations | rmse mV |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print("\n| case | parameter | estimate − truth | reported std | \\|error\\| / std |")
    print("|---|---|---|---|---|")
    for case, items in stds:
        for k, err, sd in items:
            ratio = abs(err) / sd if sd else float("nan")
            print(f"| {case} | {k} | {err:+.3g} | {sd:.3g} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
