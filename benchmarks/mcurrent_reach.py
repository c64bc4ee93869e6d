"""Which firing rates plain Hodgkin–Huxley can reach, against those of Hodgkin–Huxley + an M current (scipy only).

The missing-current case of ``bench_pinode.py`` asks that plain HH fitted by ``mechanistic`` misses the truth's
firing rate where ``hybrid`` keeps it. This script measures whether a truth lets that happen at all, with scipy's
LSODA (no neo_pinn integrator), from rest under a constant current:

1. **truths** — ``HodgkinHuxleyM`` (``benchmarks/pinode_cases.py``) for each ``--cases GM,I``: the inter-spike
   intervals after ``--settle`` ms, tonic (coefficient of variation < 0.05) or patterned (bursts), and the rate;
2. **plain HH's range** — for each gNa of ``--gna``, gK scanned over its bounds (log-spaced) and the edge
   between firing and silence refined by bisection: the lowest and highest tonic rate at each current.

A tonic truth whose rate lies inside plain HH's range can be matched by a refit of gNa and gK alone (the
mechanistic fit then keeps the rate for the wrong reasons); only a truth outside it (a patterned one) separates
a learned current from a refit.

    python benchmarks/mcurrent_reach.py            # about 10 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pinode_cases as pc  # noqa: E402

SOLVER = {"method": "LSODA", "rtol": 1e-8, "atol": 1e-9, "max_step": 0.05}


def intervals(args: tuple) -> tuple:
    """(args, inter-spike intervals (ms) after ``settle``) of one run; ``args`` = (model, gM | None, gNa, gK, I,
    settle, span)."""
    from neo_pinn.api import get_model
    from neo_pinn.reference import reference_solution

    name, g_m, g_na, g_k, current, settle, span = args
    model = pc.HodgkinHuxleyM() if name == "hhm" else get_model("hodgkin_huxley")
    theta = {"gNa": g_na, "gK": g_k} | ({"gM": g_m} if g_m is not None else {})
    t, y = reference_solution(model, model.theta(theta), duration=span, dt_out=0.02, i_ext=current,
                              y0=np.asarray(model.initial_state()), **SOLVER)
    times = pc.spikes(y[:, 0], t)
    return args, np.diff(times[times >= settle])


def pattern(isi: np.ndarray) -> tuple[str, float]:
    """("silent" | "tonic" | "patterned", rate in Hz) of the intervals (ms)."""
    if isi.size < 2:
        return "silent", 0.0
    cv = float(np.std(isi) / np.mean(isi))
    return ("tonic" if cv < 0.05 else "patterned"), 1000.0 / float(np.mean(isi))


def hh_range(pool, g_nas, current: float, settle: float, span: float, refine: int) -> list[tuple]:
    """Per gNa: (gNa, lowest tonic rate, its gK, highest tonic rate) of plain HH at ``current``."""
    from neo_pinn.api import get_model

    grid = np.geomspace(*get_model("hodgkin_huxley").param_spec("gK").bounds, 15)
    runs = {g: list(pool.map(intervals, [("hh", None, g, k, current, settle, span) for k in grid])) for g in g_nas}
    rows = []
    for g, res in runs.items():
        rates = [(a[3], *pattern(isi)) for a, isi in res]
        tonic = [(k, r) for k, kind, r in rates if kind == "tonic"]
        if not tonic:
            rows.append((g, np.nan, np.nan, np.nan))
            continue
        # bisect every edge where the scan goes from tonic to not: the slowest tonic rates sit there
        edges = [(grid[i], grid[i + 1]) if rates[i][1] == "tonic" else (grid[i + 1], grid[i])
                 for i in range(grid.size - 1) if (rates[i][1] == "tonic") != (rates[i + 1][1] == "tonic")]
        for _ in range(refine):  # edges: (gK where tonic, gK where not)
            mids = [np.sqrt(k_t * k_n) for k_t, k_n in edges]
            out = list(pool.map(intervals, [("hh", None, g, k, current, settle, span) for k in mids]))
            kinds = [pattern(isi) for _, isi in out]
            tonic += [(m, r) for m, (kind, r) in zip(mids, kinds) if kind == "tonic"]
            edges = [(m, k_n) if kind == "tonic" else (k_t, m) for (k_t, k_n), m, (kind, _) in zip(edges, mids, kinds)]
        k_min, r_min = min(tonic, key=lambda x: x[1])
        rows.append((g, r_min, k_min, max(r for _, r in tonic)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["0.8,15", "1,15", "1,20", "1.2,20", "1.3,20", "1.4,20"],
                    help="HH + M truths as GM,I (mS/cm², µA/cm²)")
    ap.add_argument("--gna", type=float, nargs="+", default=[120.0, 300.0, 700.0, 1000.0],
                    help="gNa values of plain HH's scan (its bound is 1000)")
    ap.add_argument("--settle", type=float, default=400.0, help="ms left out before the intervals are counted")
    ap.add_argument("--span", type=float, default=900.0, help="ms simulated")
    ap.add_argument("--refine", type=int, default=4, help="bisection steps at each firing edge of the gK scan")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    cases = [tuple(float(x) for x in c.split(",")) for c in args.cases]
    with ProcessPoolExecutor(args.jobs) as pool:
        truths = list(pool.map(intervals, [("hhm", g, 120.0, 36.0, i, args.settle, args.span) for g, i in cases]))
        currents = sorted({i for _, i in cases})
        ranges = {i: hh_range(pool, args.gna, i, args.settle, args.span, args.refine) for i in currents}
    print(f"# HH + M truths against plain HH's reach (scipy LSODA, rtol {SOLVER['rtol']:g}; from rest, intervals "
          f"after {args.settle:g} ms of {args.span:g})\n")
    print("| gM | I | pattern | rate (Hz) | intervals (ms) | plain HH's tonic range at I (Hz) | inside |\n"
          "|---|---|---|---|---|---|---|")
    for (a, isi) in truths:
        kind, rate = pattern(isi)
        lows = [r for _, r, _, _ in ranges[a[4]] if np.isfinite(r)]
        highs = [r for _, _, _, r in ranges[a[4]] if np.isfinite(r)]
        lo, hi = (min(lows), max(highs)) if lows else (np.nan, np.nan)
        inside = "yes" if kind == "tonic" and lo <= rate <= hi else "no"
        print(f"| {a[1]:g} | {a[4]:g} | {kind} | {rate:.2f} | {', '.join(f'{x:.1f}' for x in isi[:6])} | "
              f"{lo:.2f} – {hi:.2f} | {inside} |")
    print("\n| I | gNa | slowest tonic rate (Hz) | at gK | fastest (Hz) |\n|---|---|---|---|---|")
    for i, rows in ranges.items():
        for g, r_min, k_min, r_max in rows:
            print(f"| {i:g} | {g:g} | {r_min:.2f} | {k_min:.4g} | {r_max:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
