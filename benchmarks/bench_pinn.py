"""Accuracy, robustness and speed of the ``pinn`` backend (issue: PINN backend), with ``lsq`` side by side.

For every case the recording is never made by the simulator the fits use (the "inverse crime"): it is
solved by an independent reference solver (scipy Radau, rtol 1e-10, atol 1e-12;
:mod:`neo_pinn.testing.reference_recordings`) under the preset's constant current from the preset's initial
state, long enough before the window for the transient to die out, written to NWB and read back through
``load_recording`` as a user's file would be. The noise-free states at the samples (for the hidden-state
errors) and the noise sigma are saved beside it (``.states.npz``). Recordings are written once per case,
length, rate, noise level and seed in ``--recordings DIR`` and reused when present (only ``load_recording``
is needed then, so an older checkout can fit the very same files). The fitted window is about two
oscillation periods (two bursts for bursters). Noise is white with sigma = the given percentage of the
window's noise-free peak-to-peak voltage (from a noise-free reference solve made first). Initial guesses
are drawn log-uniformly over 0.25×–4× the truth (``--draws`` per case, the same draws for every method);
bounds are the model's.

* **pinn**: one fit per draw with the backend's ensemble (``--members`` members started around the draw,
  see ``random_starts="jitter"``); all draws of a case are trained as one batch (members never interact,
  so this is exactly ``--draws`` separate fits — ``tests/test_pinn.py`` checks it).
* **lsq**: one start per draw (``n_starts=1``), every draw a separate fit.

A draw succeeds when every free parameter is within ``--tol`` (5 %) of the truth. Tables: per case the
median relative error per parameter, the success count, the median hidden-state relative L2 error and the
wall time; the lsq success side by side; with ``--ablation`` the five techniques switched off in turn;
with ``--real`` one sweep of ``17o05028_ic_steps.abf`` (needs ``../shared/data/recordings``).

    python benchmarks/bench_pinn.py [--cases ml_snlc,ml_hopf,...] [--noise 1,5] [--draws 10] [--members 6]
                                    [--steps2 8000] [--ablation] [--no-lsq] [--real] [--out DIR]
                                    [--draw-slice A:B] [--recordings DIR]
                                    [--device auto] [--float64]
    python benchmarks/bench_pinn.py --tables DIR/bench_pinn_rows.json [...]   # reprint saved results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neo_pinn.api import get_backend, get_model, simulate
from neo_pinn.estimator import FitContext
from neo_pinn.io import load_recording
from neo_pinn.problem import EstimationProblem
from neo_pinn.residuals import rms
from neo_pinn.simulation import resolve_device
from neo_pinn_pinn import ABLATIONS, PINN
from neo_pinn_pinn.backend import relative_l2
from neo_pinn_pinn.training import train_members

#: name → (model, preset, free parameters, window start (ms, after the transient), hidden states scored)
CASES = {
    "ml_hopf": ("morris_lecar", "hopf", ("gCa", "gK", "phi", "gL"), 1000.0, ("n",)),
    "ml_snlc": ("morris_lecar", "snlc", ("gCa", "gK", "phi", "gL"), 1000.0, ("n",)),
    "ml_homoclinic": ("morris_lecar", "homoclinic", ("gCa", "gK", "phi", "gL"), 1000.0, ("n",)),
    "ml_bursting": ("morris_lecar_burster", "bursting_fast", ("gCa", "gK", "gKCa", "epsilon"), 6000.0, ("n", "Ca")),
    "butera_bursting": ("butera_pbc", "bursting_fast", ("gNaP", "gK", "gL"), 30000.0, ("n", "h")),
}
REAL_FILE = "17o05028_ic_steps.abf"
#: the line printed with every table of rows made on reference recordings
SOURCE_LINE = ("Recordings: solved by the independent reference solver (scipy Radau, rtol 1e-10, atol 1e-12; "
               "neo_pinn.testing.reference_recordings), not by the fit's simulator; read back from NWB.")


def period_ms(model, preset: str) -> float:
    """Oscillation (or burst) period of a preset from its documented behaviour, ms."""
    exp = model.preset(preset).expected
    if "period_ms" in exp:
        return float(exp["period_ms"])
    return 1000.0 / float(exp["rate_hz"])


def make_recording(case: str, noise_pct: float, seed: int, folder: Path, rate: float):
    """The case's recording from the reference solver, written once to ``folder`` and reused.

    Returns (model, trace in the window, true states in the window, noise sigma in mV, what made it).
    """
    name, preset, _free, t_start, _hidden = CASES[case]
    model = get_model(name)
    window = 2.0 * period_ms(model, preset) * 1.02
    duration = t_start + window
    stimulus = f"const:amp={model.preset(preset).i_ext!r}pA"
    stem = f"{case}_{duration:g}ms_{rate:g}Hz_{noise_pct:g}pct_seed{seed}"
    out, states_path = folder / f"{stem}.nwb", folder / f"{stem}.states.npz"
    # A recording written earlier is reused: the Butera solve takes long, and the processes that share one
    # row's draws (--draw-slice) must fit the very same recording. Reading one needs only load_recording.
    if not (out.exists() and states_path.exists()):
        from neo_pinn.testing.reference_recordings import reference_sweeps, write_reference_recording

        # from the preset's initial state (settle_ms=0); the window starts after the transient
        common = {"duration": duration, "rate_hz": rate, "preset": preset, "seed": seed, "settle_ms": 0.0}
        clean, (states_all,) = reference_sweeps(model, [stimulus], noise=None, **common)
        t_all = clean[0].t
        sigma = float(f"{noise_pct / 100.0 * float(np.ptp(states_all[t_all >= t_start, 0])):.6g}")
        noise = f"white:sigma={sigma:.6g}mV" if sigma > 0 else None
        write_reference_recording(out, model, [stimulus], overwrite=True, noise=noise, **common)
        tmp = states_path.with_name(states_path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, t_ms=t_all, states=states_all, state_names=np.array(model.state_names),
                                sigma_mV=sigma, noise=str(noise), stimulus=stimulus)
        os.replace(tmp, states_path)
    with np.load(states_path) as z:
        t_all, states_all, sigma = z["t_ms"], z["states"], float(z["sigma_mV"])
        noise = str(z["noise"])
    rec = load_recording(out)
    trace = rec.traces(sweeps=[0], window=(t_start, t_start + window))[0]
    idx = np.rint(trace.t * rate / 1000.0).astype(int)
    if idx.max() >= t_all.size or np.abs(t_all[idx] - trace.t).max() > 1e-6:
        raise RuntimeError(f"states of {states_path.name} do not match the samples of {out.name}")
    states = states_all[idx]
    made = (f"write_reference_recording({name}, preset {preset}, {stimulus}, {duration:g} ms at {rate:g} Hz, "
            f"noise {noise}, seed {seed}, settle_ms=0) -> {out.name}")
    return model, trace, states, sigma, made


def draws_for(truth: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return truth * np.exp(rng.uniform(np.log(0.25), np.log(4.0), (n, truth.size)))


def run_pinn(problem, draws, options, members: int, seed: int, device, dtype):
    """One PINN fit per draw (members jittered around it), all trained as one batch."""
    est = PINN(**(options | {"n_members": members}))
    rng = np.random.default_rng(seed)
    inits = []
    for d in draws:
        p = replace(problem, free=tuple(replace(f, init=float(np.clip(v, *f.bounds)))
                                        for f, v in zip(problem.free, d)))
        inits.append(est.starts(p, rng))
    inits = np.concatenate(inits)
    ctx = FitContext(seed=seed, device=device, dtype=dtype, progress=False, rng=rng)
    t0 = time.perf_counter()
    tr = train_members(problem, inits, est.config, ctx)
    wall = time.perf_counter() - t0
    results = [est.assemble(problem, tr.subset(np.arange(k * members, (k + 1) * members)),
                            inits[k * members:(k + 1) * members]) for k in range(len(draws))]
    return results, wall


def run_lsq(problem, draws, seed: int, device):
    out, t0 = [], time.perf_counter()
    for d in draws:
        p = replace(problem, free=tuple(replace(f, init=float(np.clip(v, *f.bounds)))
                                        for f, v in zip(problem.free, d)))
        try:
            out.append(get_backend("lsq")(n_starts=1).fit(p, seed=seed, device=device))
        except Exception as exc:  # a diverged start counts as a failure, with its reason in the table
            out.append(exc)
    return out, time.perf_counter() - t0


def score(results, problem, truth, states, hidden, tol):
    model = problem.model
    errs, l2s, ok = [], [], []
    for r in results:
        if isinstance(r, Exception):
            errs.append(np.full(len(truth), np.nan))
            l2s.append(np.full(len(hidden), np.nan))
            ok.append(False)
            continue
        e = np.array([r[n].value / truth[j] - 1.0 for j, n in enumerate(problem.free_names)])
        errs.append(e)
        l2s.append(np.array([relative_l2(r.fits[0].states[:, model.state_index(h)], states[:, model.state_index(h)])
                             for h in hidden]))
        ok.append(bool(np.all(np.abs(e) <= tol)))
    return np.array(errs), np.array(l2s), np.array(ok)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="ml_hopf,ml_snlc,ml_homoclinic,ml_bursting,butera_bursting")
    ap.add_argument("--noise", default="1,5", help="noise levels in %% of peak-to-peak (ML spiking cases)")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--members", type=int, default=PINN.default_config["n_members"])
    ap.add_argument("--steps1", type=int, default=PINN.default_config["stage1_steps"])
    ap.add_argument("--steps2", type=int, default=PINN.default_config["stage2_steps"])
    ap.add_argument("--option", action="append", default=[], metavar="K=V", help="pinn option (JSON value)")
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--rate", type=float, default=10000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation", action="store_true", help="ablation table (see --ablation-cases)")
    ap.add_argument("--ablation-cases", default="ml_snlc,ml_bursting")
    ap.add_argument("--draw-slice", default=None, metavar="A:B",
                    help="run only draws A..B-1 of the --draws sequence (split one row over processes; "
                         "--tables merges the parts)")
    ap.add_argument("--no-lsq", action="store_true")
    ap.add_argument("--real", action="store_true", help=f"fit one sweep of {REAL_FILE}")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--out", default=None, help="folder for the JSON rows and the real-data report")
    ap.add_argument("--recordings", default=None, metavar="DIR",
                    help="folder holding (or receiving) the reference recordings, reused when present "
                         "(default: the --out folder, itself a fresh temporary folder without --out)")
    ap.add_argument("--tables", nargs="+", default=None, metavar="ROWS.json",
                    help="only print the tables of earlier runs' bench_pinn_rows.json files")
    args = ap.parse_args(argv)
    if args.tables:
        print_tables([r for f in args.tables for r in json.loads(Path(f).read_text())])
        return

    device = resolve_device(args.device)
    dtype = torch.float64 if args.float64 else torch.float32
    options = {"stage1_steps": args.steps1, "stage2_steps": args.steps2}
    for kv in args.option:
        k, v = kv.split("=", 1)
        options[k] = json.loads(v)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_pinn_"))
    out.mkdir(parents=True, exist_ok=True)
    recordings = Path(args.recordings) if args.recordings else out
    recordings.mkdir(parents=True, exist_ok=True)
    print(f"# bench_pinn — {platform.node() and 'host'} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, device {device}, {str(dtype)[6:]}")
    print(f"draws {args.draws} (0.25×–4× truth, log-uniform), pinn members {args.members}, "
          f"steps {args.steps1}+{args.steps2}, options {options}, success = all within {args.tol:.0%}\n")
    rows = []
    noise_levels = [float(x) for x in args.noise.split(",") if x]
    todo = []
    for case in [c for c in args.cases.split(",") if c]:
        levels = noise_levels if case.startswith("ml_") and case != "ml_bursting" else [noise_levels[0]]
        todo += [(case, lvl, None) for lvl in levels]
    if args.ablation:
        for case in [c for c in args.ablation_cases.split(",") if c]:
            todo += [(case, noise_levels[0], name) for name in ABLATIONS]
    real_done = False
    for case, lvl, ablation in todo:
        if ablation and args.real and not real_done:  # the real recording before the (long) ablations
            real_recording(out, options, args, device, dtype)
            real_done = True
        model, trace, states, sigma, cmd = make_recording(case, lvl, args.seed, recordings, args.rate)
        _, preset, free, _, hidden = CASES[case]
        truth_all = model.param_values(preset)
        truth = np.array([truth_all[k] for k in free])
        problem = EstimationProblem.build(model, [trace], list(free), preset=preset,
                                          truth={k: truth_all[k] for k in free})
        draws = draws_for(truth, args.draws, args.seed)
        first = 0
        if args.draw_slice:
            a, b = (int(x) for x in args.draw_slice.split(":"))
            draws, first = draws[a:b], a
        opts = options | (ABLATIONS[ablation] if ablation else {})
        res, wall = run_pinn(problem, draws, opts, args.members, args.seed, device, dtype)
        errs, l2, ok = score(res, problem, truth, states, hidden, args.tol)
        row = {"case": case, "noise_pct": lvl, "sigma_mV": sigma, "ablation": ablation or "-", "free": list(free),
               "window_ms": float(trace.t[-1] - trace.t[0]), "median_abs_err": np.nanmedian(np.abs(errs), 0).tolist(),
               "success": int(ok.sum()), "draws": len(draws), "median_l2": np.nanmedian(l2, 0).tolist(),
               "hidden": list(hidden), "pinn_wall_s": wall, "errors": errs.tolist(), "l2": l2.tolist(),
               "first_draw": first, "command": cmd, "recordings": "reference"}
        if not args.no_lsq and ablation is None:
            lres, lwall = run_lsq(problem, draws, args.seed, device)
            lerr, ll2, lok = score(lres, problem, truth, states, hidden, args.tol)
            row |= {"lsq_success": int(lok.sum()), "lsq_median_abs_err": np.nanmedian(np.abs(lerr), 0).tolist(),
                    "lsq_wall_s": lwall, "lsq_errors": lerr.tolist()}
        rows.append(row)
        (out / "bench_pinn_rows.json").write_text(json.dumps(rows, indent=1))
        print(f"done {case} {lvl:g}% {ablation or ''}: pinn {row['success']}/{len(draws)} in {wall:.0f} s"
              + (f", lsq {row['lsq_success']}/{len(draws)}" if "lsq_success" in row else ""), flush=True)

    print_tables(rows)
    if args.real and not real_done:
        real_recording(out, options, args, device, dtype)
    print(f"\nrows: {out / 'bench_pinn_rows.json'}")


def merge_parts(rows) -> list:
    """Rows of the same case, noise and ablation run as draw slices (``--draw-slice``) in several
    processes, merged into one: per-draw errors concatenated in draw order, medians and successes
    recomputed, wall times summed (the time one process would have taken)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["noise_pct"], r["ablation"]), []).append(r)
    out = []
    for part in groups.values():
        if len(part) == 1 or not all("errors" in r for r in part):
            out.extend(part)
            continue
        part = sorted(part, key=lambda r: r.get("first_draw", 0))
        m = dict(part[0])
        errs = np.concatenate([np.asarray(r["errors"], float) for r in part])
        l2 = np.concatenate([np.asarray(r["l2"], float) for r in part])
        m |= {"errors": errs.tolist(), "l2": l2.tolist(), "draws": int(errs.shape[0]),
              "median_abs_err": np.nanmedian(np.abs(errs), 0).tolist(), "median_l2": np.nanmedian(l2, 0).tolist(),
              "success": sum(r["success"] for r in part), "pinn_wall_s": sum(r["pinn_wall_s"] for r in part),
              "parts": len(part)}
        if all("lsq_errors" in r for r in part):
            lerr = np.concatenate([np.asarray(r["lsq_errors"], float) for r in part])
            m |= {"lsq_errors": lerr.tolist(), "lsq_median_abs_err": np.nanmedian(np.abs(lerr), 0).tolist(),
                  "lsq_success": sum(r["lsq_success"] for r in part), "lsq_wall_s": sum(r["lsq_wall_s"] for r in part)}
        else:
            m.pop("lsq_success", None)
        out.append(m)
    return out


def _source_line(rows) -> str:
    """Where the recordings of ``rows`` came from (rows saved before the reference solver carry no mark)."""
    if all(r.get("recordings") == "reference" for r in rows):
        return SOURCE_LINE
    return ("Recordings: (some of) these rows were saved before the benchmark used the reference solver; their "
            "recordings came from `neo-pinn simulate`, the fit's own simulator.")


def print_tables(rows) -> None:
    """Markdown tables of benchmark rows (from a run, or read back with ``--tables``; draw slices of one
    row are merged)."""
    rows = merge_parts(rows)

    def pct(x):
        return "/".join(f"{100 * v:.2f}" for v in x)

    print("\n## Accuracy (median |relative error| per free parameter, %; success = draws with all within tol)\n")
    print(_source_line([r for r in rows if r["ablation"] == "-"]) + "\n")
    print("| case | noise | free | median error % | pinn success | hidden L2 % (median) | lsq success | pinn wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["ablation"] != "-":
            continue
        print(f"| {r['case']} | {r['noise_pct']:g} % ({r['sigma_mV']:.2f} mV) | {','.join(r['free'])} | "
              f"{pct(r['median_abs_err'])} | {r['success']}/{r['draws']} | "
              f"{', '.join(f'{h} {100 * v:.2f}' for h, v in zip(r['hidden'], r['median_l2']))} | "
              f"{r.get('lsq_success', '-')}/{r['draws']} | {r['pinn_wall_s']:.0f} |")
    abl = [r for r in rows if r["ablation"] != "-"]
    if abl:
        cases = {r["case"] for r in abl}
        print("\n## Ablation (one technique off at a time)\n")
        print(_source_line([r for r in rows if r["case"] in cases]) + "\n")
        print("| case | switched off | median error % | success |")
        print("|---|---|---|---|")
        for r in rows:
            if r["case"] in cases and (r["ablation"] != "-" or r["noise_pct"] == min(x["noise_pct"] for x in abl)):
                print(f"| {r['case']} | {r['ablation'] if r['ablation'] != '-' else 'nothing (full method)'} | "
                      f"{pct(r['median_abs_err'])} | {r['success']}/{r['draws']} |")


def real_recording(out: Path, options: dict, args, device, dtype) -> None:
    """Fit Morris–Lecar (C free) to one spiking sweep of the shared steps recording; attach and report."""
    here = Path(__file__).resolve().parents[1]
    path = here.parent / "shared" / "data" / "recordings" / REAL_FILE
    if not path.exists():
        print(f"\n(real recording skipped: {REAL_FILE} not found beside the checkout)")
        return
    from neo_pinn.io.attach import attach
    from neo_pinn.io.neo_writers import write_block
    from neo_pinn.report import write_report

    rec = load_recording(path)
    sweep = int(os.environ.get("BENCH_PINN_SWEEP", "12"))
    window = (float(os.environ.get("BENCH_PINN_T0", "120")), float(os.environ.get("BENCH_PINN_T1", "520")))
    tr = rec.traces(sweeps=[sweep], window=window)[0]
    model = get_model("morris_lecar")
    free = ["C", "gL", "gCa", "gK", "phi", "EL"]
    problem = EstimationProblem.build(model, [tr], free, preset="snlc")
    t0 = time.perf_counter()
    res = PINN(**(options | {"n_members": args.members})).fit(problem, seed=args.seed, device=device, dtype=dtype)
    wall = time.perf_counter() - t0
    v_fit = res.fits[0].states[:, 0]
    rmse = rms(v_fit - tr.v)
    # the network's voltage follows the data by construction; what the fitted model itself does is the
    # forward simulation from the reconstructed initial state under the recorded stimulus
    from neo_pinn.features import spike_count

    dt = float(np.median(np.diff(tr.t)))
    theta = problem.theta_full({n: res[n].value for n in free})
    _, y_sim = simulate(model, theta, duration=dt * (tr.t.size - 1), dt=dt, i_ext=tr.i_ext,
                        y0=res.fits[0].states[0], device="cpu").numpy()
    v_sim = y_sim[0, :, 0]
    rmse_sim = rms(v_sim - tr.v)
    spikes = (spike_count(tr.v, tr.t), spike_count(v_sim, tr.t), spike_count(v_fit, tr.t))
    attach(res, rec.block)
    write_block(rec.block, out / "real_fit.nwb", overwrite=True)
    write_report(res, out / "real_report.html")
    print(f"\n## Real recording {REAL_FILE}, sweep {sweep}, window {window[0]:g}–{window[1]:g} ms, "
          f"I = {np.median(tr.i_ext):.0f} pA\n")
    print("| parameter | estimate | std |")
    print("|---|---|---|")
    for n in free:
        p = res[n]
        print(f"| {n} | {p.value:.4g} {p.unit} | {p.std if p.std is None else f'{p.std:.3g}'} |")
    print(f"\nvoltage RMSE in the window: PINN reconstruction {rmse:.2f} mV; forward simulation of the fitted "
          f"model from the reconstructed initial state {rmse_sim:.2f} mV. Spikes (0 mV): recorded {spikes[0]}, "
          f"simulated {spikes[1]}, reconstructed {spikes[2]}. Wall {wall:.0f} s. States attached and written to "
          f"{out / 'real_fit.nwb'}; report {out / 'real_report.html'}")


if __name__ == "__main__":
    main()
