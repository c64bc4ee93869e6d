"""The ``pinode`` backend (PI-NODE-SR) against ground truth from scipy's Radau solver: the paper's forecast
experiment, the ablations, parameters from the voltage alone, a missing current, and a real recording.

Ground truth is never made by the simulator the fits use: every true trajectory is
``neo_pinn.reference.reference_solution(model, theta, duration=..., dt_out=0.05, i_ext=..., y0=...,
method="Radau", rtol=1e-9, atol=1e-11)``, cached as ``.npz`` in ``--cache`` (keyed by a hash of the settings;
400 ms of Hodgkin–Huxley takes about 40 s to solve on the 2-core CPU). Spikes are 0 mV upward crossings
(interpolated, re-armed below −10 mV).

Cases (``--cases``, default all):

1. **seed** — the paper's experiment. Hodgkin–Huxley, preset ``tonic`` (I = 10), from the preset's initial state,
   Radau 0–400 ms. Training window: one oscillation on the limit cycle (from 2 ms before the first upward 0 mV
   crossing after 100 ms, one period + 1 ms long; period from the truth's ISIs), time re-based to 0. Fit:
   ``PINODE(observed_states={"m", "h", "n"}, mode="neural", forecast_ms=200 − window)`` (all four states observed,
   as the seed does). Scores of the window's reconstruction + forecast against the truth over 0–200 ms from the
   window start: spike counts, period error (mean ISI), amplitude error (peak-to-trough over t > 20 ms), spike-time
   drift at 100 ms (the truth's last spike ≤ 100 ms and the forecast's spike nearest to it: forecast − truth)
   and the fit's wall time. Marks: same spike count, period ≤ 1 %, amplitude ≤ 5 %, |drift| ≤ 1 ms, < 5 min.
2. **ablation** — the same window, ``--seeds`` fit seeds per variant: default neural; vanilla neural ODE
   (``physics=False``); plain residuals (``scale_aware=False``); Euler; RK4; adjoint; no curriculum; and the
   ``pinn`` backend (defaults, voltage only; its forecast is the fitted HH simulated by ``neo_pinn.simulate``, RK4
   at 0.01 ms, from the reconstructed state at the window's end). Median and worst of each score.
3. **voltage** — the same truth, the window 100–300 ms (``--voltage-window``), V only with 1 % white noise
   (sigma = 1 % of the window's V range, seeded per draw), gNa, gK, gL free, ``--draws`` initial guesses
   log-uniform over 0.25×–4× the truth (seeded), run side by side in ``--jobs`` processes; default options plus
   ``forecast_ms=100``, scored from the window start to 100 ms past the window (drift: the forecast's last spike).
   Per draw: errors, the reported std, hidden m/h/n relative L2 on the window, forecast scores. (With the first
   state free, the window's length sets how well gL is determined: compare the reported std of
   ``--voltage-window 100 200`` or ``100 250``.)
   Marks: median error ≤ 2 %, ≥ 9/10 draws all within 5 %, hidden L2 ≤ 5 %.
4. **mcurrent** — a missing current. ``HodgkinHuxleyM`` (HH + slow M-type K⁺ current, gM = 1, I = 20; defined and
   registered through the plugin hook in ``benchmarks/pinode_cases.py`` as a third party would) is the truth;
   the same current fires plain HH > 10 % faster (checked). V only, 1 % noise, window 300–400 ms (after the
   adaptation transient). Fits: plain ``hodgkin_huxley`` (gNa, gK free, ``--mc-free``; the leak
   held as a passive fit gives it, since a learned current and a leak cannot be told apart) in ``mode="hybrid"`` and
   ``mode="mechanistic"``, ``forecast_ms=500``. Scores: forecast firing rate against the truth's over the same
   500 ms; for hybrid the learned correction current against −I_M on the window (relative L2). Marks: hybrid rate
   within 2 % and mechanistic not; correction L2 ≤ 25 %.
5. **real** — the most regularly firing step sweep of a shared recording (``--real-file``, default
   ``17o05028_ic_steps.abf`` in ``../shared/data/recordings``; skipped with a printed reason when absent): fit from
   20 ms before the step to midway after ~40 % of its spikes with ``neo_pinn.estimate(..., backend="pinode",
   window=..., backend_options={"forecast_ms": <rest of the step>})`` (``--real-model``, default Morris–Lecar —
   a type I model, able to fire as slowly as a cortical cell, where Hodgkin–Huxley's squid axon cannot fire below
   its Hopf rate — with its default free set and the cell-scaled ranges ``estimate`` uses); the forecast metrics
   ``estimate`` adds, the HTML report and a PNG of forecast against recording in ``--out``.

Every case prints a markdown table with its marks, the end a PASS/FAIL line per acceptance point; all numbers go to
``OUT/bench_pinode.json`` (written after each case). ``--strict`` exits 1 when any point fails.

    python benchmarks/bench_pinode.py --out results/pinode --cache ~/.cache/neo_pinn_bench   # full: hours on 2 cores
    python benchmarks/bench_pinode.py --cases seed ablation --seeds 5 --threads 2 --out results/pinode
    python benchmarks/bench_pinode.py --quick --threads 1                 # plumbing only (~2 min; numbers mean nothing)

``--quick``: 50 steps (unless ``--steps``), 2 members, 1 seed, 2 draws, a short polish, shorter truths, windows
and forecasts (seed window after 30 ms, 60 ms horizon), the ``pinn`` backend at a few dozen steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pinode_cases beside this script
import pinode_cases as pc  # noqa: E402

CASES = ("seed", "ablation", "voltage", "mcurrent", "real")
HH = "hodgkin_huxley"
HH_TRUTH = {"gNa": 120.0, "gK": 36.0, "gL": 0.3}
#: ablation variants: label → pinode options (None: the pinn backend)
VARIANTS = (("neural (default)", {}), ("vanilla neural ODE (physics=False)", {"physics": False}),
            ("plain residuals (scale_aware=False)", {"scale_aware": False}), ("Euler", {"method": "euler"}),
            ("RK4", {"method": "rk4"}), ("adjoint", {"adjoint": True}), ("no curriculum", {"curriculum": False}),
            ("pinn backend (V only)", None))
#: the pinn backend's options in --quick (plumbing only)
PINN_QUICK = {"n_members": 2, "stage1_steps": 20, "stage2_steps": 30, "warmup_steps": 5, "param_delay": 5,
              "screen_candidates": 8, "screen_rounds": 1}
MC_I, MC_GM = 20.0, 1.0
#: optimiser steps of every pinode fit in --quick (unless --steps)
QUICK_STEPS = 30


@dataclass(frozen=True)
class Settings:
    """Spans of the truths, windows and forecasts (ms) and the fits' sizes; shorter in --quick."""

    quick: bool
    truth_ms: float = 400.0
    after_ms: float = 100.0          # the seed window starts at the first spike after this
    horizon_ms: float = 200.0        # scored span from the window start
    drift_at_ms: float = 100.0
    amplitude_after_ms: float = 20.0
    voltage_window: tuple = (100.0, 300.0)
    voltage_forecast_ms: float = 100.0  # forecast and scored past the voltage window
    mc_window: tuple = (300.0, 400.0)
    mc_forecast_ms: float = 500.0
    noise_pct: float = 1.0

    @classmethod
    def of(cls, quick: bool) -> "Settings":
        if not quick:
            return cls(quick=False)
        return cls(quick=True, truth_ms=110.0, after_ms=30.0, horizon_ms=60.0, drift_at_ms=30.0,
                   amplitude_after_ms=10.0, voltage_window=(30.0, 50.0), voltage_forecast_ms=20.0,
                   mc_window=(60.0, 90.0), mc_forecast_ms=40.0)


# ---------------------------------------------------------------------------------------------- fitting helpers
def pinode_options(args, **extra: Any) -> dict[str, Any]:
    """The pinode options of a fit: ``--steps``, ``--threads``, the --quick sizes and ``extra``; names the backend
    does not know (an older or newer backend) are left out with a note."""
    from neo_pinn.api import get_backend

    cfg = get_backend("pinode").config_class
    known = cfg.leaf_paths()
    opts: dict[str, Any] = {"num_threads": args.threads}
    if args.steps is not None or args.quick:
        opts["steps"] = args.steps or QUICK_STEPS
    if args.quick:
        opts["n_members"] = 2
        if "polish_steps" in known:
            opts["polish_steps"] = min(5, int(cfg()["polish_steps"]))
    opts |= extra
    unknown = sorted(set(opts) - set(known))
    if unknown:
        print(f"(note: the pinode backend has no option {', '.join(unknown)}; left out)")
    return {k: v for k, v in opts.items() if k in known}


def timed_fit(backend: str, options: dict, problem, seed: int, observed: dict | None = None):
    """(result, wall s) of one fit on the CPU; (None, wall, error text) when it raised."""
    from neo_pinn.api import get_backend

    start = time.perf_counter()
    try:
        kw = {} if observed is None else {"observed_states": observed}
        est = get_backend(backend)(**kw, **options)
        res = est.fit(problem, seed=seed, device="cpu", progress=sys.stderr.isatty())
        return res, time.perf_counter() - start, None
    except Exception as exc:  # a benchmark records a failed fit and goes on
        return None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"


def hh_truth(args, st: Settings):
    """Hodgkin–Huxley tonic truth (t, states, info) from the preset's initial state."""
    from neo_pinn.api import get_model

    m = get_model(HH)
    return m, *pc.reference(m, None, st.truth_ms, 10.0, m.initial_state("tonic"), args.cache)


def seed_window(m, t, y, st: Settings):
    """The seed's training window on the limit cycle: (trace, true states in it, window info)."""
    from neo_pinn import Trace

    start, length, period = pc.limit_cycle_window(t, y[:, 0], st.after_ms)
    tw, yw = pc.cut(t, y, start, length)
    trace = Trace(t=tw, v=yw[:, 0].copy(), i_ext=np.full(tw.size, 10.0), sweep=0)
    return trace, yw, {"start_ms": start, "length_ms": float(tw[-1]), "period_ms": period}


def scores_of(res, trace, t, y, start: float, st: Settings) -> dict[str, Any]:
    """Scores of a fit's reconstruction + forecast against the truth over the horizon from ``start``."""
    tt, yy = pc.cut(t, y, start, st.horizon_ms)
    v_pred = pc.predicted_voltage(res, trace.t, st.horizon_ms)
    s = pc.trajectory_scores(tt, v_pred, yy[:, 0], drift_at=st.drift_at_ms, amplitude_after=st.amplitude_after_ms)
    return s | {"passes": pc.forecast_passes(s)}


def pinn_scores(res, trace, t, y, start: float, st: Settings, m) -> dict[str, Any]:
    """The pinn fit's scores: its reconstruction, then the fitted HH simulated on (RK4, 0.01 ms) from its state
    at the window's end under I = 10."""
    import neo_pinn

    fit = res.fits[0]
    theta = res.values
    rest = st.horizon_ms - float(trace.t[-1])
    sim = neo_pinn.simulate(m, theta, duration=rest, dt=0.01, i_ext=10.0, y0=fit.states[-1], method="rk4",
                            device="cpu", preset="tonic", record_every=5)
    ts, ys = sim.numpy()
    tt, yy = pc.cut(t, y, start, st.horizon_ms)
    v_pred = np.full(tt.size, np.nan)
    v_pred[:fit.t.size] = fit.states[:, 0]
    tail = ys[0, 1:, 0]
    n = min(tail.size, tt.size - fit.t.size)
    v_pred[fit.t.size:fit.t.size + n] = tail[:n]
    s = pc.trajectory_scores(tt, v_pred, yy[:, 0], drift_at=st.drift_at_ms, amplitude_after=st.amplitude_after_ms)
    return s | {"passes": pc.forecast_passes(s)}


def fmt(x: Any, digits: int = 3, pct: bool = False) -> str:
    """A number for a table ('—' when missing or not finite)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{100 * x:.{digits}g} %" if pct else f"{x:.{digits}g}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------- 1. seed
def case_seed(args, st: Settings) -> dict[str, Any]:
    """The paper's experiment: one oscillation, all states observed, neural field, forecast to 200 ms."""
    from neo_pinn import EstimationProblem

    m, t, y, info = hh_truth(args, st)
    trace, yw, win = seed_window(m, t, y, st)
    problem = EstimationProblem.build(m, [trace], list(HH_TRUTH), preset="tonic", truth=HH_TRUTH)
    observed = {name: [yw[:, k + 1].copy()] for k, name in enumerate(("m", "h", "n"))}
    opts = pinode_options(args, mode="neural", forecast_ms=st.horizon_ms - win["length_ms"])
    res, wall, err = timed_fit("pinode", opts, problem, 0, observed)
    print(f"## 1. seed: one oscillation of HH (I = 10), all states observed, neural field\n\n"
          f"Truth: Radau 0–{st.truth_ms:g} ms ({'from the cache; ' if info['cached'] else ''}solved in "
          f"{info['solve_s']:.1f} s). Window {win['start_ms']:.2f}–{win['start_ms'] + win['length_ms']:.2f} ms "
          f"(period {win['period_ms']:.3f} ms + 1 ms), re-based to 0; forecast {opts.get('forecast_ms', 0):.2f} ms; "
          f"options {opts}.\n")
    row = {"window": win, "truth": {k: v for k, v in info.items() if k != "theta"}, "options": opts, "wall_s": wall,
           "error": err}
    if res is None:
        print(f"The fit failed: {err}\n")
        return row | {"passes": False, "scores": None}
    s = scores_of(res, trace, t, y, win["start_ms"], st)
    row |= {"scores": s, "passes": bool(s["passes"]), "fast": wall < 300.0, "status": res.status,
            "estimates": {n: res[n].value for n in HH_TRUTH}}
    print("| metric | forecast | truth | mark | pass |\n|---|---|---|---|---|")
    print(f"| spikes in 0–{st.horizon_ms:g} ms | {s['spikes_pred']} | {s['spikes_true']} | equal | "
          f"{mark(s['spikes_pred'] == s['spikes_true'])} |")
    print(f"| period (mean ISI), ms | {fmt(s['period_pred_ms'], 5)} | {fmt(s['period_true_ms'], 5)} | ≤ 1 % "
          f"({fmt(s['period_error'], 3, True)}) | {mark(_le(s['period_error'], 0.01))} |")
    print(f"| amplitude (t > {st.amplitude_after_ms:g} ms), mV | {fmt(s['amplitude_pred_mV'], 4)} | "
          f"{fmt(s['amplitude_true_mV'], 4)} | ≤ 5 % ({fmt(s['amplitude_error'], 3, True)}) | "
          f"{mark(_le(s['amplitude_error'], 0.05))} |")
    print(f"| spike-time drift at {st.drift_at_ms:g} ms | {fmt(s['drift_ms'], 3)} ms | 0 | ≤ 1 ms | "
          f"{mark(_le(abs(s['drift_ms']), 1.0))} |")
    print(f"| wall time of the fit | {wall:.1f} s | | < 300 s ({args.threads} thread(s)) | {mark(wall < 300.0)} |\n")
    print("Estimates (neural mode: tied to the field by the physics residual only): "
          + ", ".join(f"{n} {res[n].value:.4g} (truth {v:g})" for n, v in HH_TRUTH.items()) + "\n")
    seed_figure(args.out / "pinode_seed.png", t, y, win, res, trace, st)
    return row


def seed_figure(png: Path, t, y, win, res, trace, st: Settings) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tt, yy = pc.cut(t, y, win["start_ms"], st.horizon_ms)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(tt, yy[:, 0], color="0.5", lw=1.2, label="truth (Radau)")
    ax.plot(tt, pc.predicted_voltage(res, trace.t, st.horizon_ms), color="C0", lw=1, label="pinode")
    ax.axvline(float(trace.t[-1]), color="k", ls="--", lw=1, label="end of the window")
    ax.set(xlabel="ms from the window start", ylabel="V (mV)", title="seed: one oscillation, forecast")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- 2. ablation
def case_ablation(args, st: Settings) -> dict[str, Any]:
    """Every technique switched off in turn, and the pinn backend, over --seeds fit seeds."""
    from tqdm.auto import tqdm

    from neo_pinn import EstimationProblem

    m, t, y, _ = hh_truth(args, st)
    trace, yw, win = seed_window(m, t, y, st)
    problem = EstimationProblem.build(m, [trace], list(HH_TRUTH), preset="tonic", truth=HH_TRUTH)
    observed = {name: [yw[:, k + 1].copy()] for k, name in enumerate(("m", "h", "n"))}
    forecast = st.horizon_ms - win["length_ms"]
    seeds = 1 if args.quick else args.seeds
    rows = []
    chosen = [(label, change) for k, (label, change) in enumerate(VARIANTS) if args.variants is None or k in args.variants]
    jobs = [(label, change, seed) for label, change in chosen for seed in range(seeds)]
    for label, change, seed in tqdm(jobs, desc="ablation", disable=None):
        if change is None:
            opts = dict(PINN_QUICK) if args.quick else {}
            res, wall, err = timed_fit("pinn", opts, problem, seed)
            s = pinn_scores(res, trace, t, y, win["start_ms"], st, m) if res is not None else None
        else:
            short = {"steps": max(5, QUICK_STEPS // 3)} if args.quick and args.steps is None else {}
            opts = pinode_options(args, mode="neural", forecast_ms=forecast, **change, **short)
            res, wall, err = timed_fit("pinode", opts, problem, seed, observed)
            s = scores_of(res, trace, t, y, win["start_ms"], st) if res is not None else None
        rows.append({"variant": label, "seed": seed, "options": opts, "wall_s": wall, "error": err,
                     "scores": s})
    print(f"## 2. ablation: the seed's window, {seeds} fit seed(s) per variant\n")
    print("Median (worst) over the seeds; the marks are the seed's: period ≤ 1 %, amplitude ≤ 5 %, "
          "|drift| ≤ 1 ms, same spike count.\n")
    print("| variant | period error | amplitude error | \\|drift\\| (ms) | spike count match | all marks | wall (s) "
          "| errors |\n|---|---|---|---|---|---|---|---|")
    summary = {}
    for label, _ in chosen:
        mine = [r for r in rows if r["variant"] == label]
        ok = [r["scores"] for r in mine if r["scores"] is not None]
        cols = []
        for key, pct in (("period_error", True), ("amplitude_error", True), ("drift_ms", False)):
            x = np.array([abs(s[key]) if math.isfinite(s[key]) else np.inf for s in ok]) if ok else np.array([np.inf])
            cols.append(f"{fmt(float(np.median(x)), 3, pct)} ({fmt(float(np.max(x)), 3, pct)})")
        match = sum(s["spikes_pred"] == s["spikes_true"] for s in ok)
        passed = sum(bool(s["passes"]) for s in ok)
        wall = float(np.median([r["wall_s"] for r in mine]))
        errors = sorted({r["error"].split(":")[0] for r in mine if r["error"]})
        summary[label] = {"passes": passed, "n": len(mine), "spike_match": match}
        print(f"| {label} | {' | '.join(cols)} | {match}/{len(mine)} | {passed}/{len(mine)} | {wall:.1f} | "
              f"{', '.join(errors) or '—'} |")
    print()
    return {"rows": rows, "summary": summary, "seeds": seeds}


# ---------------------------------------------------------------------------------------------- 3. voltage
def voltage_draw(job: tuple) -> dict[str, Any]:
    """One voltage draw (a worker of ``--jobs``): (args, settings, draw, start, window, options, truth t and
    states) → its table row."""
    import torch

    from neo_pinn import EstimationProblem, Trace
    from neo_pinn.api import get_model

    args, st, d, init, (a, b), opts, (t, y) = job
    torch.set_num_threads(args.threads)
    m = get_model(HH)
    tw, yw = pc.cut(t, y, a, b - a)
    v, sigma = pc.noisy(yw[:, 0], st.noise_pct, seed=d)
    trace = Trace(t=tw, v=v, i_ext=np.full(tw.size, 10.0), sweep=0)
    problem = EstimationProblem.build(m, [trace], list(HH_TRUTH), preset="tonic", truth=HH_TRUTH, init=init)
    res, wall, err = timed_fit("pinode", opts, problem, d)
    row = {"draw": d, "init": init, "sigma_mV": sigma, "wall_s": wall, "error": err}
    if res is not None:
        errs = {n: abs(res[n].value - x) / x for n, x in HH_TRUTH.items()}
        hidden = {s: pc.rel_l2(res.fits[0].states[:, k], yw[:, k]) for k, s in ((1, "m"), (2, "h"), (3, "n"))}
        row |= {"estimates": {n: res[n].value for n in HH_TRUTH}, "errors": errs, "hidden_l2": hidden,
                "rel_std": {n: (res[n].std / res[n].value if res[n].std is not None else math.nan) for n in HH_TRUTH},
                "scores": scores_of(res, trace, t, y, a, st), "status": res.status}
    return row


def case_voltage(args, st: Settings) -> dict[str, Any]:
    """gNa, gK, gL and the hidden gates from 1 % noisy voltage, from log-uniform starts; forecast past the window.
    The draws run in ``--jobs`` processes (each with ``--threads`` torch threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    from tqdm.auto import tqdm

    a, b = args.voltage_window or st.voltage_window
    st = replace(st, horizon_ms=b - a + st.voltage_forecast_ms, drift_at_ms=b - a + st.voltage_forecast_ms)
    draws = 2 if args.quick else args.draws
    inits = pc.log_uniform_inits(HH_TRUTH, draws, seed=1234)
    opts = pinode_options(args, forecast_ms=st.voltage_forecast_ms)
    _, t, y, _ = hh_truth(args, st)  # read once, handed to every draw
    jobs = [(args, st, d, init, (a, b), opts, (t, y)) for d, init in enumerate(inits)]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(tqdm(pool.map(voltage_draw, jobs), total=draws, desc="voltage draws", disable=None))
    else:
        rows = [voltage_draw(job) for job in tqdm(jobs, desc="voltage draws", disable=None)]
    print(f"## 3. voltage: HH window {a:g}–{b:g} ms, V only, {st.noise_pct:g} % noise, gNa/gK/gL from 0.25×–4×; "
          f"forecast {st.voltage_forecast_ms:g} ms past the window\n")
    print(f"Options {opts} (mode: the backend default).\n")
    print("| draw | init (gNa, gK, gL) | gNa err | gK err | gL err | reported std (gNa, gK, gL) | m L2 | h L2 | n L2 | "
          "spikes (fc/true) | period err | amp err | drift (ms) | forecast marks | wall (s) |\n|" + "---|" * 15)
    for r in rows:
        init = ", ".join(f"{r['init'][n]:.3g}" for n in HH_TRUTH)
        if "errors" not in r:
            print(f"| {r['draw']} | {init} | failed: {r['error']} |" + " |" * 12)
            continue
        e, h, s = r["errors"], r["hidden_l2"], r["scores"]
        print(f"| {r['draw']} | {init} | " + " | ".join(fmt(e[n], 3, True) for n in HH_TRUTH) + " | "
              + ", ".join(fmt(r["rel_std"][n], 2, True) for n in HH_TRUTH) + " | "
              + " | ".join(fmt(h[k], 3, True) for k in "mhn")
              + f" | {s['spikes_pred']}/{s['spikes_true']} | {fmt(s['period_error'], 3, True)} | "
              f"{fmt(s['amplitude_error'], 3, True)} | {fmt(s['drift_ms'])} | {mark(s['passes'])} | "
              f"{r['wall_s']:.1f} |")
    done = [r for r in rows if "errors" in r]
    all_err = [x for r in done for x in r["errors"].values()]
    median = float(np.median(all_err)) if all_err else math.inf
    within = sum(max(r["errors"].values()) <= 0.05 for r in done)
    hidden = max((x if math.isfinite(x) else math.inf for r in done for x in r["hidden_l2"].values()),
                 default=math.inf)
    forecasts = sum(bool(r["scores"]["passes"]) for r in done)
    need = math.ceil(0.9 * draws)
    summary = {"median_error": median, "within_5pct": within, "draws": draws, "max_hidden_l2": hidden,
               "forecast_passes": forecasts, "passes": median <= 0.02 and within >= need and hidden <= 0.05}
    print(f"\n| summary | value | mark | pass |\n|---|---|---|---|\n"
          f"| median error (3 parameters × {draws} draws) | {fmt(median, 3, True)} | ≤ 2 % | "
          f"{mark(median <= 0.02)} |\n"
          f"| draws with all three within 5 % | {within}/{draws} | ≥ {need}/{draws} | {mark(within >= need)} |\n"
          f"| max hidden-state L2 (m, h, n) | {fmt(hidden, 3, True)} | ≤ 5 % | {mark(hidden <= 0.05)} |\n"
          f"| forecasts meeting the seed's marks | {forecasts}/{draws} | — | info |\n")
    return {"rows": rows, "summary": summary, "options": opts}


# ---------------------------------------------------------------------------------------------- 4. mcurrent
def case_mcurrent(args, st: Settings) -> dict[str, Any]:
    """A model that lacks the M current: hybrid (learned correction) against mechanistic, forecast 500 ms."""
    from neo_pinn import EstimationProblem, Trace
    from neo_pinn.api import get_model

    mm = pc.register_mcurrent_model()
    hh = get_model(HH)
    a, b = st.mc_window
    span = b + st.mc_forecast_ms
    g_m, i_mc = args.mc_case
    t, y, info = pc.reference(mm, {"gM": g_m}, span, i_mc, mm.initial_state(), args.cache)
    th, yh, _ = pc.reference(hh, None, b, i_mc, hh.initial_state("tonic"), args.cache)
    late = (a, b)
    rate_m = pc.rate_hz(_spikes_in(t, y[:, 0], *late))
    rate_h = pc.rate_hz(_spikes_in(th, yh[:, 0], *late))
    rate_diff = abs(rate_h - rate_m) / rate_m if rate_m > 0 else math.inf
    rate_true = pc.rate_hz(_spikes_in(t, y[:, 0], b, span))
    tw, yw = pc.cut(t, y, a, b - a)
    v, sigma = pc.noisy(yw[:, 0], st.noise_pct, seed=0)
    trace = Trace(t=tw, v=v, i_ext=np.full(tw.size, i_mc), sweep=0)
    free = list(args.mc_free)
    problem = EstimationProblem.build(hh, [trace], free, preset="tonic")
    i_missing = -pc.m_current(yw, g_m, float(mm.param_values()["EK"]))
    rows = {}
    for mode in ("hybrid", "mechanistic"):
        inputs = {"correction_inputs": args.mc_inputs} if mode == "hybrid" and args.mc_inputs else {}
        opts = pinode_options(args, mode=mode, forecast_ms=st.mc_forecast_ms, **inputs)
        res, wall, err = timed_fit("pinode", opts, problem, 0)
        row = {"options": opts, "wall_s": wall, "error": err}
        if res is not None:
            f = res.signals_of("forecast")[0]
            rate = pc.rate_hz(pc.spikes(f.values[:, 0], f.t))
            row |= {"rate_hz": rate, "rate_error": abs(rate - rate_true) / rate_true if rate_true else math.nan,
                    "estimates": {n: res[n].value for n in free}, "status": res.status,
                    "rmse_mV": res.metrics.get("rmse_mV")}
            corr = res.signals_of("correction")
            if corr:
                row["correction_l2"] = pc.rel_l2(corr[0].values[:, 0], i_missing)
                row["correction_rms_pA"] = float(np.sqrt(np.mean(corr[0].values[:, 0] ** 2)))
        rows[mode] = row
    hyb, mech = rows["hybrid"], rows["mechanistic"]
    rate_ok = _le(hyb.get("rate_error"), 0.02) and not _le(mech.get("rate_error"), 0.02)
    corr_ok = _le(hyb.get("correction_l2"), 0.25)
    print(f"## 4. mcurrent: HH + M current (gM = {g_m:g}, I = {i_mc:g}) fitted by plain HH, window "
          f"{a:g}–{b:g} ms\n")
    print(f"Truth: {mm.name} (registered by the plugin {pc.MCURRENT_PLUGIN!r}), Radau 0–{span:g} ms "
          f"({'from the cache; ' if info['cached'] else ''}solved in {info['solve_s']:.1f} s). Over {a:g}–{b:g} ms "
          f"it fires at {rate_m:.2f} Hz, plain HH at the same current at {rate_h:.2f} Hz "
          f"({fmt(rate_diff, 3, True)} apart; > 10 %: {mark(rate_diff > 0.10)}). V noise sigma {sigma:.3g} mV. "
          f"Truth over the forecast's {st.mc_forecast_ms:g} ms: {rate_true:.3f} Hz; missing current −I_M on the "
          f"window: {i_missing.min():.3g} … {i_missing.max():.3g} pA.\n")
    print(f"Free: {', '.join(free)} (the rest at Hodgkin–Huxley's values, as a passive fit would give the leak).\n")
    print("| mode | forecast rate (Hz) | rate error | mark | correction L2 vs −I_M | mark | " + " | ".join(free)
          + " | RMSE (mV) | status | wall (s) |\n|" + "---|" * (9 + len(free)))
    for mode, r in rows.items():
        if "rate_hz" not in r:
            print(f"| {mode} | failed: {r['error']} |" + " |" * (7 + len(free)))
            continue
        want = "≤ 2 %" if mode == "hybrid" else "> 2 %"
        cl2 = r.get("correction_l2")
        print(f"| {mode} | {r['rate_hz']:.3f} | {fmt(r['rate_error'], 3, True)} | {want} | "
              f"{fmt(cl2, 3, True) if cl2 is not None else '—'} | {'≤ 25 %' if mode == 'hybrid' else '—'} | "
              + " | ".join(f"{r['estimates'][n]:.4g}" for n in free)
              + f" | {fmt(r['rmse_mV'])} | {r['status']} | {r['wall_s']:.1f} |")
    print()
    return {"rows": rows, "free": free, "case": {"gM": g_m, "I": i_mc}, "rate_true_hz": rate_true,
            "rate_window_hz": rate_m, "rate_plain_hh_hz": rate_h, "model_check": rate_diff > 0.10,
            "rate_passes": rate_ok, "correction_passes": corr_ok, "truth": {k: v for k, v in info.items() if k != "theta"}}


def _spikes_in(t, v, a: float, b: float) -> np.ndarray:
    keep = (t >= a) & (t <= b)
    return pc.spikes(v[keep], t[keep])


def _le(x: Any, bar: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x <= bar


# ---------------------------------------------------------------------------------------------- 5. real
def case_real(args, st: Settings) -> dict[str, Any]:
    """Fit the start of the most regular step sweep of a real recording and forecast the rest of the step."""
    import neo_pinn
    from neo_pinn.report import write_report

    path = pc.RECORDINGS / args.real_file
    print(f"## 5. real: {args.real_file}\n")
    if not path.exists():
        reason = f"{path} is absent (the shared recordings folder, or NEO_PINN_RECORDINGS); case skipped."
        print(reason + "\n")
        return {"skipped": reason}
    rec = neo_pinn.load_recording(path)
    trace, why = pc.pick_sweep(rec.traces())
    if trace is None:
        print(f"No sweep to fit: {why}; case skipped.\n")
        return {"skipped": why}
    t0, t1, rest = pc.real_window(why)
    if st.quick:
        t1, rest = min(t1, t0 + 40.0), min(rest, 30.0)
    base = float(trace.t[0])
    print(f"Sweep {why['sweep']}, of the {why['candidates']} sweeps with ≥ 5 spikes in the {why['protocol']}, fires "
          f"the most regularly (ISI CV {why['isi_cv']:.3f} without the first interval, {why['spikes']} spikes in "
          f"{why['step_ms'][0]:.1f}–{why['step_ms'][1]:.1f} ms, step {fmt(why['step_pA'])} pA). Fitted "
          f"{t0:.1f}–{t1:.1f} ms; forecast {rest:.1f} ms (to the step's end).\n")
    opts = pinode_options(args, forecast_ms=rest, **({"mode": args.real_mode} if args.real_mode else {}))
    start = time.perf_counter()
    try:
        res = neo_pinn.estimate(rec, args.real_model, "pinode", None, sweeps=[why["sweep"]],
                                window=(t0 - base, t1 - base), backend_options=opts, seed=0, device="cpu",
                                progress=sys.stderr.isatty())
    except Exception as exc:  # reported, the other cases stand
        print(f"The fit failed: {type(exc).__name__}: {exc}\n")
        return {"why": why, "error": f"{type(exc).__name__}: {exc}"}
    wall = time.perf_counter() - start
    m = res.metrics
    keys = ("forecast_spike_time_error_ms", "forecast_rate_error", "forecast_rmse_mV", "forecast_spikes_recorded",
            "forecast_spikes_predicted")
    print("| model | status | window RMSE (mV) | spikes recorded / forecast | spike-time error (ms) | rate error | "
          "forecast RMSE (mV) | wall (s) |\n|---|---|---|---|---|---|---|---|")
    print(f"| {args.real_model} ({', '.join(res.free_parameters)} free; mode {args.real_mode or 'default'}) | "
          f"{res.status} | {fmt(m.get('rmse_mV'))} | {m.get('forecast_spikes_recorded', '—')} / "
          f"{m.get('forecast_spikes_predicted', '—')} | {fmt(m.get('forecast_spike_time_error_ms'))} | "
          f"{fmt(m.get('forecast_rate_error'), 3, True)} | {fmt(m.get('forecast_rmse_mV'))} | {wall:.1f} |\n")
    html = args.out / "pinode_real_report.html"
    png = args.out / "pinode_real_forecast.png"
    write_report(res, html, title=f"pinode on {path.name} sweep {why['sweep']}")
    real_figure(png, trace, res, (t0, why["step_ms"][1]), f"{path.name}, sweep {why['sweep']}")
    print(f"Wrote {html} and {png}.\n")
    return {"why": why, "window_ms": (t0, t1), "forecast_ms": rest, "options": opts, "wall_s": wall,
            "status": res.status, "metrics": {k: m.get(k) for k in keys + ("rmse_mV",)},
            "estimates": res.values,
            "report": str(html), "figure": str(png)}


def real_figure(png: Path, trace, res, span, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.8))
    keep = (trace.t >= span[0] - 10.0) & (trace.t <= span[1] + 10.0)
    ax.plot(trace.t[keep], trace.v[keep], color="0.55", lw=0.9, label="recording")
    fit = res.fits[0]
    ax.plot(fit.t, fit.states[:, 0], color="C3", lw=1, label="fitted window (reconstruction)")
    for f in res.signals_of("forecast"):
        ax.plot(f.t, f.values[:, 0], color="C0", lw=1, label="forecast")
    ax.axvline(float(fit.t[-1]), color="k", ls="--", lw=1)
    ax.set(xlabel="t (ms)", ylabel="V (mV)", title=f"{title}: pinode forecast against the recording")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- summary and main
def summary_lines(results: dict[str, Any], quick: bool) -> list[str]:
    """One PASS/FAIL (or info) line per acceptance point."""
    out = []
    if "seed" in results:
        r = results["seed"]
        s = r.get("scores")
        if s is None:
            out.append(f"FAIL seed forecast: the fit failed ({r.get('error')})")
        else:
            out.append(f"{mark(r['passes'])} seed forecast: spikes {s['spikes_pred']}/{s['spikes_true']}, period "
                       f"{fmt(s['period_error'], 3, True)} (≤ 1 %), amplitude {fmt(s['amplitude_error'], 3, True)} "
                       f"(≤ 5 %), drift {fmt(s['drift_ms'])} ms (≤ 1)")
        out.append(f"{mark(r['wall_s'] < 300.0)} seed speed: {r['wall_s']:.1f} s (< 300 s)")
    if "ablation" in results:
        sm = results["ablation"]["summary"]
        out.append("INFO ablation (seeds meeting every seed mark): "
                   + "; ".join(f"{k} {v['passes']}/{v['n']}" for k, v in sm.items()))
    if "voltage" in results:
        s = results["voltage"]["summary"]
        out.append(f"{mark(s['passes'])} voltage: median error {fmt(s['median_error'], 3, True)} (≤ 2 %), "
                   f"{s['within_5pct']}/{s['draws']} draws within 5 % (≥ 90 %), max hidden L2 "
                   f"{fmt(s['max_hidden_l2'], 3, True)} (≤ 5 %); forecasts {s['forecast_passes']}/{s['draws']}")
    if "mcurrent" in results:
        r = results["mcurrent"]
        h, m = r["rows"]["hybrid"], r["rows"]["mechanistic"]
        out.append(f"{mark(r['rate_passes'])} mcurrent rate: hybrid {fmt(h.get('rate_error'), 3, True)} (≤ 2 %), "
                   f"mechanistic {fmt(m.get('rate_error'), 3, True)} (> 2 %)")
        out.append(f"{mark(r['correction_passes'])} mcurrent correction: L2 vs −I_M "
                   f"{fmt(h.get('correction_l2'), 3, True)} (≤ 25 %)")
        out.append(f"{mark(r['model_check'])} mcurrent model: HH+M fires {r['rate_window_hz']:.2f} Hz, plain HH "
                   f"{r['rate_plain_hh_hz']:.2f} Hz (> 10 % apart)")
    if "real" in results:
        r = results["real"]
        if "skipped" in r or "error" in r:
            out.append(f"SKIP real: {r.get('skipped') or r.get('error')}")
        else:
            m = r["metrics"]
            out.append(f"INFO real: sweep {r['why']['sweep']}, status {r['status']}, spike-time error "
                       f"{fmt(m['forecast_spike_time_error_ms'])} ms, rate error "
                       f"{fmt(m['forecast_rate_error'], 3, True)}, forecast RMSE {fmt(m['forecast_rmse_mV'])} mV")
    if quick:
        out = [line + "  [--quick: plumbing only]" for line in out]
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--seeds", type=int, default=5, help="fit seeds per ablation variant")
    ap.add_argument("--variants", type=int, nargs="+", default=None,
                    help="ablation variants to run, by position in VARIANTS (default: all)")
    ap.add_argument("--draws", type=int, default=10, help="initial guesses in the voltage case")
    ap.add_argument("--voltage-window", type=float, nargs=2, metavar=("A", "B"), default=None,
                    help="the voltage case's window, ms of the truth (default 100 200)")
    ap.add_argument("--jobs", type=int, default=1, help="processes running the voltage draws side by side")
    ap.add_argument("--mc-free", nargs="+", default=["gNa", "gK"], choices=list(HH_TRUTH),
                    help="free parameters of the mcurrent fits (default gNa gK; with gL free a learned current "
                    "and the leak cannot be told apart)")
    ap.add_argument("--mc-case", type=float, nargs=2, metavar=("GM", "I"), default=(MC_GM, MC_I),
                    help=f"the mcurrent truth's gM (mS/cm²) and current (µA/cm²) (default {MC_GM:g} {MC_I:g})")
    ap.add_argument("--mc-inputs", choices=("voltage", "states", "gated"), default=None,
                    help="correction_inputs of the hybrid mcurrent fit (default: the backend's)")
    ap.add_argument("--steps", type=int, default=None, help="pinode optimiser steps (default: the backend's)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "neo_pinn_bench_pinode_cache"),
                    help="folder of the cached reference solutions (.npz)")
    ap.add_argument("--out", default=None, help="folder for the JSON, figures and report (default: a new temp dir)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the plumbing, numbers mean nothing")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads")
    ap.add_argument("--real-file", default="17o05028_ic_steps.abf", help="a recording in the shared folder")
    ap.add_argument("--real-model", default="morris_lecar", help="the model fitted to the real sweep")
    ap.add_argument("--real-mode", default=None, choices=("mechanistic", "hybrid", "neural"),
                    help="the pinode mode on the real sweep (default: the backend's)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when an acceptance point fails")
    args = ap.parse_args(argv)
    args.cache = Path(args.cache).expanduser()
    args.out = Path(args.out or tempfile.mkdtemp(prefix="bench_pinode_")).expanduser()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    st = Settings.of(args.quick)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    runners = {"seed": case_seed, "ablation": case_ablation, "voltage": case_voltage, "mcurrent": case_mcurrent,
               "real": case_real}
    results: dict[str, Any] = {}
    meta = {"argv": sys.argv[1:] if argv is None else list(argv), "settings": asdict(st), "threads": args.threads,
            "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count()}
    print(f"# pinode benchmark{' (--quick: plumbing only, the numbers mean nothing)' if args.quick else ''}\n\n"
          f"Ground truth: scipy Radau (rtol 1e-9, atol 1e-11), cache {args.cache}; {args.threads} torch thread(s); "
          f"output {args.out}\n")
    try:
        for name in [c for c in CASES if c in args.cases]:
            start = time.perf_counter()
            results[name] = runners[name](args, st) | {"case_wall_s": time.perf_counter() - start}
            _write_json(args.out / "bench_pinode.json", meta, results)
    finally:
        torch.set_num_threads(threads)
    lines = summary_lines(results, args.quick)
    print("## Summary\n")
    for line in lines:
        print(line)
    print(f"\nAll numbers: {args.out / 'bench_pinode.json'}")
    return 1 if args.strict and any(line.startswith("FAIL") for line in lines) else 0


def _write_json(path: Path, meta: dict, results: dict) -> None:
    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (np.floating, float)):
            return float(x) if math.isfinite(x) else None
        if isinstance(x, (np.integer, np.bool_)):
            return x.item()
        if isinstance(x, Path):
            return str(x)
        return x

    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(clean({"meta": meta, "results": results}), indent=1))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
