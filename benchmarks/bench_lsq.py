"""Accuracy and speed of the ``lsq`` backend on recordings solved by an independent reference solver.

The recordings are never made by the simulator the fit uses (the "inverse crime"): scipy's stiff solver at
tight tolerance with the stimulus as a continuous-time step (:mod:`neo_pinn.testing.reference_recordings`),
written to NWB and read back through :func:`neo_pinn.load_recording`, as a user's file would be.

* ``ml``: Morris–Lecar SNLC (I = 60 pA), ``--duration`` ms at ``--rate``, white noise 1 mV; gCa, gK and phi
  free — from a single start at 0.5× and at 2× the truth, and from ``--starts`` starts drawn log-uniformly
  across the bounds (one batch; a start succeeds when all three estimates are within 2 % of the truth).
* ``hh``: Hodgkin–Huxley from rest, 200 ms at 20 kHz, a 10 pA step from 20 to 180 ms, white noise 1 mV;
  gNa, gK and gL free, from 0.5× and 2× the truth (the backend's default options otherwise).

Prints Markdown tables (case, start, estimates, relative errors, success, wall time) and, per fit, the
standard deviation the backend reports next to the actual error.

    python benchmarks/bench_lsq.py [--cases ml hh] [--seed 0] [--starts 20] [--duration 1000] [--device auto]
                                   [--rate 10000] [--dt 0.05] [--jacobian forward|reverse] [--per-start]
                                   [--recordings DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from neo_pinn import EstimationProblem
from neo_pinn.errors import NeoPinnError
from neo_pinn.api import get_backend, get_model, load_recording

TOL = 0.02
#: case → (model, preset, free parameters, stimulus, duration ms or None for --duration, rate Hz or None for --rate)
CASES = {
    "ml": ("morris_lecar", "snlc", ("gCa", "gK", "phi"), "const:amp=60pA", None, None),
    "hh": ("hodgkin_huxley", "rest", ("gNa", "gK", "gL"), "step:amp=10pA,start=20ms,stop=180ms", 200.0, 20000.0),
}


def _fmt(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def reference_recording(folder: Path, case: str, duration: float, rate: float, seed: int) -> Path:
    """The case's recording from the reference solver, written once to ``folder`` and reused."""
    model, preset, _, stimulus, _, _ = CASES[case]
    path = folder / f"{case}_{duration:g}ms_{rate:g}Hz_seed{seed}.nwb"
    if not path.exists():
        from neo_pinn.testing.reference_recordings import write_reference_recording

        # ml starts from the preset's initial state, as the recording of the earlier benchmark did; hh from rest
        write_reference_recording(path, model, [stimulus], duration=duration, rate_hz=rate, preset=preset,
                                  noise="white:sigma=1mV", seed=seed, settle_ms=0.0 if case == "ml" else 500.0)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="which recordings")
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise and of the random starts")
    ap.add_argument("--starts", type=int, default=20, help="number of random starts (one batch; ml only)")
    ap.add_argument("--duration", type=float, default=1000.0, help="ml recording length, ms")
    ap.add_argument("--rate", type=float, default=10000.0, help="ml sampling rate, Hz")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--dt", type=float, default=None, help="integration step, ms (default: automatic, ≤ 0.05)")
    ap.add_argument("--jacobian", choices=("forward", "reverse"), default="forward",
                    help="autograd mode of the segment Jacobians (to compare their speed)")
    ap.add_argument("--per-start", action="store_true", help="also list every random start")
    ap.add_argument("--recordings", default=None,
                    help="folder holding (or receiving) the reference recordings (default: a temporary folder)")
    args = ap.parse_args(argv)

    import tempfile

    folder = Path(args.recordings) if args.recordings else Path(tempfile.mkdtemp(prefix="bench_lsq_"))
    folder.mkdir(parents=True, exist_ok=True)
    options = {"jacobian": args.jacobian} | ({} if args.dt is None else {"dt": args.dt})
    for case in args.cases:
        run_case(case, folder, args, options)


def run_case(case: str, folder: Path, args, options: dict) -> None:
    """Fit one case's recording from its starts and print its tables."""
    name, preset, free, stimulus, duration, rate = CASES[case]
    duration, rate = duration or args.duration, rate or args.rate
    model = get_model(name)
    truth_all = model.param_values(preset)
    truth = {k: truth_all[k] for k in free}
    t0 = time.perf_counter()
    path = reference_recording(folder, case, duration, rate, args.seed)
    t_data = time.perf_counter() - t0
    trace = load_recording(path).traces()[0]
    tv = np.array([truth[k] for k in free])
    rows, stds = [], []

    def run(label: str, init, n_starts: int):
        problem = EstimationProblem.build(model, trace, free, preset=preset, truth=truth, init=init)
        est = get_backend("lsq")(n_starts=n_starts, **options)
        start = time.perf_counter()
        try:
            res = est.fit(problem, seed=args.seed, device=args.device)
        except NeoPinnError as exc:  # a fit that fails is a row of the table, not the end of the benchmark
            start_txt = _fmt([init[k] for k in free]) if init else f"{n_starts} log-uniform in bounds"
            rows.append((label, start_txt, "—", "—", f"no: {type(exc).__name__}: {str(exc)[:60]}",
                         f"{time.perf_counter() - start:.1f}", "—", "—"))
            return None
        wall = time.perf_counter() - start
        values = np.array([res[k].value for k in free])
        rel = np.abs(values / tv - 1)
        if n_starts == 1:
            start_txt = _fmt([res[k].init for k in free])
            ok = "yes" if rel.max() < TOL else "no"
        else:
            samples = np.array([res.samples[k] for k in free]).T
            per = np.abs(samples / tv - 1).max(1) < TOL
            start_txt = f"{n_starts} log-uniform in bounds"
            best_ok = "yes" if rel.max() < TOL else "no"
            ok = f"{int(per.sum())}/{n_starts} starts ({100 * per.mean():.0f} %); best {best_ok}"
            if args.per_start:
                inits = np.array(res.history.get("start_init", [[np.nan] * len(free)] * n_starts))
                for i in range(n_starts):
                    print(f"  start {i:2d}: init [{_fmt(inits[i])}] → [{_fmt(samples[i])}] "
                          f"cost {res.history['start_cost'][i]} {'ok' if per[i] else 'FAIL'}")
        rows.append((label, start_txt, _fmt(values), ", ".join(f"{100 * r:.3f}" for r in rel), ok,
                     f"{wall:.1f}", res.metrics["iterations"], f"{res.metrics['rmse_mV']:.3f}"))
        stds.append((label, [(k, res[k].value - truth[k], res[k].std) for k in free]))
        return res

    results = [run("0.5× truth", {k: 0.5 * v for k, v in truth.items()}, 1),
               run("2× truth", {k: 2.0 * v for k, v in truth.items()}, 1)]
    if case == "ml":
        results.append(run(f"random ×{args.starts}", None, args.starts))
    res = next((r for r in reversed(results) if r is not None), None)
    if res is None:
        print(f"\n## lsq on {name}: every fit failed")
        for r in rows:
            print("| " + " | ".join(str(x) for x in r) + " |")
        return

    dev = res.provenance.get("device", args.device)
    names = ", ".join(free)
    print(f"\n## lsq on {name} ({preset}, {stimulus}): {duration:g} ms at {rate / 1000:g} kHz, white noise 1 mV, "
          f"seed {args.seed}; recording from the reference solver (scipy Radau), read from NWB")
    threads = res.config.get("num_threads") or torch.get_num_threads()
    print(f"device {dev}, torch {torch.__version__}, {threads} intra-op thread(s) on {os.cpu_count()} cores "
          f"({platform.machine()}); dt {res.metrics['dt_ms']:g} ms, {res.metrics['n_segments']} segments of "
          f"{res.config['segment_ms']} ms; truth {names} = {_fmt(tv)} (recording solved in {t_data:.1f} s)\n")
    print(f"| case | start ({names}) | estimate ({names}) | rel. error % | success (all < 2 %) | wall s "
          "| iterations | rmse mV |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print("\n| case | parameter | estimate − truth | reported std | \\|error\\| / std |")
    print("|---|---|---|---|---|")
    for label, items in stds:
        for k, err, sd in items:
            ratio = abs(err) / sd if sd else float("nan")
            print(f"| {label} | {k} | {err:+.3g} | {sd if sd is not None else float('nan'):.3g} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
