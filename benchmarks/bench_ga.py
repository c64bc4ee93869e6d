"""Accuracy and speed of the ``ga`` backend, and the batched population against a scipy per-individual loop.

Accuracy: for every case, ``--seeds`` recordings (1 mV white noise, a different noise seed each) are fitted
with bounds 0.25×–4× the truth on every free parameter and no initial guess (the first population is a
Latin hypercube over the bounds). The recordings are never made by the simulator the fit uses (the
"inverse crime"): they are solved by an independent reference solver (scipy Radau, rtol 1e-10, atol 1e-12;
:mod:`neo_pinn.testing.reference_recordings`) under the preset's constant current, written to NWB once
per case, length, rate and seed in ``--recordings DIR`` (reused when present, so an older checkout can fit
the very same files) and read back through :func:`neo_pinn.api.load_recording`, as a user's file would be.
They start from the preset's initial state, which the problem is given (``initial_state="preset"``); the
truth is the preset's. Per case: the median over seeds of each parameter's relative error, the success
count (every parameter within ``--tol``, 5 %) and the median wall time.

Speed: the same NSGA-II (:func:`neo_pinn_ga.search.run_nsga2`, same seed, population and number of
generations) scores its population either with the batched simulator (one call per generation) or with
one ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-6, atol 1e-8) per individual; both feed the same
objectives (:meth:`~neo_pinn_ga.evaluate.PopulationEvaluator.objectives_from_voltage`). The scipy loop is
slow, so the comparison runs ``--speed-gens`` generations; the table gives the seconds per evaluation of
both and their ratio.

    python benchmarks/bench_ga.py [--cases ml_snlc hh ...] [--seeds 5] [--pop 64] [--gens 60] [--screen 1024]
                                  [--rate 20000] [--device auto] [--speed-gens 2] [--no-speed] [--out DIR]
                                  [--recordings DIR]

Prints Markdown tables; with ``--out DIR`` writes ``DIR/bench_ga_rows.json`` (one row per fit, and the
speed rows) as the runs finish.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model, load_recording

#: case → model, preset, free parameters, recording length (ms)
CASES = {
    "ml_snlc": ("morris_lecar", "snlc", ("gCa", "gK", "phi"), 1000.0),
    "ml_hopf": ("morris_lecar", "hopf", ("gCa", "gK", "phi"), 1000.0),
    "ml_homoclinic": ("morris_lecar", "homoclinic", ("gCa", "gK", "phi"), 1000.0),
    "ml_burster": ("morris_lecar_burster", "bursting_fast", ("gKCa", "mu", "epsilon", "gCa", "gK"), 3000.0),
    "hh": ("hodgkin_huxley", "tonic", ("gNa", "gK", "gL"), 200.0),
    "butera": ("butera_pbc", "bursting_fast", ("gNaP", "gK", "gL"), 6000.0),
}
NOISE, NOISE_TAG = "white:sigma=1mV", "white1mV"  # the recordings' noise, and its tag in their file names
#: the line printed with every table
SOURCE_LINE = ("Recordings: solved by the independent reference solver (scipy Radau, rtol 1e-10, atol 1e-12; "
               "neo_pinn.testing.reference_recordings), not by the fit's simulator; read back from NWB.")


def reference_recording(folder: Path, case: str, seed: int, rate_hz: float, duration: float | None = None) -> Path:
    """The case's recording from the reference solver, written once to ``folder`` and reused.

    The file name encodes case, length, rate, noise and seed; an existing file is read as it is (only
    :func:`load_recording` is needed then, so a checkout without the reference solver can fit it).
    """
    model_name, preset, _free, length = CASES[case]
    duration = duration or length
    path = Path(folder) / f"{case}_{duration:g}ms_{rate_hz:g}Hz_{NOISE_TAG}_seed{seed}.nwb"
    if not path.exists():
        from neo_pinn.testing.reference_recordings import write_reference_recording

        model = get_model(model_name)
        # the preset's constant current from the preset's initial state (settle_ms=0), as the problem assumes
        stimulus = f"const:amp={model.preset(preset).i_ext!r}pA"
        write_reference_recording(path, model, [stimulus], duration=duration, rate_hz=rate_hz, preset=preset,
                                  noise=NOISE, seed=seed, settle_ms=0.0)
    return path


def make_problem(case: str, seed: int, rate_hz: float, folder: Path, duration: float | None = None
                 ) -> EstimationProblem:
    """The estimation problem of ``case`` on its reference recording with noise seed ``seed``."""
    model_name, preset, free, _length = CASES[case]
    model = get_model(model_name)
    truth_all = model.param_values(preset)
    truth = {k: truth_all[k] for k in free}
    trace = load_recording(reference_recording(folder, case, seed, rate_hz, duration)).traces()[0]
    bounds = {k: (0.25 * v, 4.0 * v) for k, v in truth.items()}
    return EstimationProblem.build(model, trace, list(free), preset=preset, bounds=bounds, truth=truth,
                                   initial_state="preset")


def scipy_evaluator(evaluator, space):
    """``evaluate(X)`` that integrates every individual and sweep with its own ``solve_ivp`` call."""
    from neo_pinn.reference import reference_solution

    problem = evaluator.problem
    model = problem.model

    def evaluate(x: np.ndarray) -> np.ndarray:
        free = space.to_theta(x)
        theta = evaluator.theta(free).double()
        x0 = evaluator.initial_states(theta.to(evaluator.dtype)).double().cpu().numpy()
        Q = len(problem.traces)
        v = np.full((len(free), Q, evaluator.n_max), np.nan)
        for b in range(len(free)):
            for q, tr in enumerate(problem.traces):
                def stim(t, tr=tr):
                    return float(np.interp(t, tr.t, tr.i_ext))

                try:
                    _, y = reference_solution(model, theta[b].cpu().numpy(), duration=tr.duration, t_eval=tr.t,
                                              i_ext=stim, y0=x0[b * Q + q], method="LSODA", rtol=1e-6, atol=1e-8,
                                              max_step=1.0, t0=float(tr.t[0]))
                    v[b, q, :tr.t.size] = y[:, 0]
                except Exception:  # noqa: BLE001 - a failed integration scores like a diverged simulation
                    pass
                v[b, q, tr.t.size:] = v[b, q, tr.t.size - 1]
        obj, _ = evaluator.objectives_from_voltage(torch.as_tensor(v, dtype=evaluator.dtype))
        return obj

    return evaluate


def speed_row(case: str, args) -> dict:
    """Seconds per evaluation: batched population vs a solve_ivp loop, same NSGA-II, same budget."""
    from neo_pinn.simulation import resolve_device
    from neo_pinn.transforms import UnitCube
    from neo_pinn_ga.evaluate import PopulationEvaluator
    from neo_pinn_ga.search import run_nsga2

    problem = make_problem(case, 0, args.rate, args.recordings)
    config = get_backend("ga")(pop_size=args.pop).config
    dev = resolve_device(args.device)
    out = {"case": case, "kind": "speed", "recordings": "reference", "pop": args.pop, "generations": args.speed_gens,
           "device": str(dev)}
    space = UnitCube(problem)
    F = len(problem.free)
    for name in ("batched", "scipy"):
        ev = PopulationEvaluator(problem, config, dev, torch.float32)
        ev.batch_size = args.pop
        ev.compile = True
        if name == "batched":
            ev.evaluate_population(problem.sample_starts(args.pop, np.random.default_rng(0)))  # compile warm-up
            fn = lambda x, ev=ev: ev.evaluate_population(space.to_theta(x))  # noqa: E731
            if dev.type == "cuda":
                torch.cuda.synchronize()
        else:
            fn = scipy_evaluator(ev, space)
        start = time.perf_counter()
        res = run_nsga2(fn, F, len(ev.objective_names), pop_size=args.pop, n_gen=args.speed_gens, max_evals=None,
                        patience=10**6, ftol=1e-3, seed=0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        out[f"{name}_s"] = wall
        out[f"{name}_s_per_eval"] = wall / max(1, res["n_evals"])
        out["evaluations"] = res["n_evals"]
    out["ratio"] = out["scipy_s_per_eval"] / out["batched_s_per_eval"]
    return out


def _source_line(rows: list[dict]) -> str:
    """Where the recordings of ``rows`` came from (rows saved before the reference solver carry no mark)."""
    if all(r.get("recordings") == "reference" for r in rows):
        return SOURCE_LINE
    return ("Recordings: (some of) these rows were saved before the benchmark used the reference solver; their "
            "recordings came from synthetic_trace, the fit's own simulator.")


def print_summary(rows: list[dict], tol: float) -> None:
    """Per case: median relative error per parameter over its seeds, success count, median wall time.

    With ``--refine`` (lsq or cmaes) a second row per case gives the GA's own estimates (before the refinement)
    from the same fits.
    """
    acc = [r for r in rows if r.get("kind") == "accuracy"]
    if acc:
        print("\n" + _source_line(acc))
    print("\n| case | free | median relative error per parameter | success | median wall (s) |")
    print("|---|---|---|---|---|")
    for case in dict.fromkeys(r["case"] for r in rows if r.get("kind") == "accuracy"):
        rs = [r for r in rows if r.get("case") == case and r["kind"] == "accuracy"]
        names = list(rs[0]["relative_error"])
        med = ", ".join(f"{k} {100 * np.median([r['relative_error'][k] for r in rs]):.3g} %" for k in names)
        succ = sum(max(r["relative_error"].values()) < tol for r in rs)
        print(f"| {case} | {', '.join(names)} | {med} | {succ}/{len(rs)} | "
              f"{np.median([r['wall_s'] for r in rs]):.1f} |")
        staged = [r["ga_relative_error"] for r in rs if r.get("ga_relative_error")]
        if staged:  # with --refine: the GA's own estimates, before the refinement, from the same fits
            med = ", ".join(f"{k} {100 * np.median([g[k] for g in staged]):.2f} %" for k in names)
            succ = sum(max(g.values()) < tol for g in staged)
            print(f"| {case} (GA stage, before refine) | {', '.join(names)} | {med} | {succ}/{len(staged)} | |")
    for row in (r for r in rows if r.get("kind") == "speed"):
        print("\n" + _source_line([row]))
        print("\n| case | device | pop × generations | batched s/eval | scipy solve_ivp s/eval | ratio |")
        print("|---|---|---|---|---|---|")
        print(f"| {row['case']} | {row['device']} | {row['pop']} × {row['generations']} | "
              f"{row['batched_s_per_eval']:.4g} | {row['scipy_s_per_eval']:.4g} | {row['ratio']:.0f}× |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seeds", type=int, default=5, help="recordings (noise seeds) per case")
    ap.add_argument("--seed-start", type=int, default=0,
                    help="first noise seed (split a case's seeds over processes; merge rows with --tables)")
    ap.add_argument("--pop", type=int, default=64, help="population size")
    ap.add_argument("--gens", type=int, default=60, help="most generations")
    ap.add_argument("--rate", type=float, default=20000.0, help="sampling rate of the recordings, Hz")
    ap.add_argument("--tol", type=float, default=0.05, help="success: every parameter within this relative error")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--trace", default="rmse", choices=("rmse", "phase_plane", "none"), help="the trace objective")
    ap.add_argument("--refine", default=None, choices=("none", "lsq", "cmaes", "cmaes+lsq"),
                    help="the ga backend's refinement (default: the backend's default)")
    ap.add_argument("--screen", type=int, default=None,
                    help="individuals screened before the search (default: the backend's)")
    ap.add_argument("--speed-gens", type=int, default=2, help="generations of the batched-vs-scipy comparison")
    ap.add_argument("--speed-cases", nargs="+", default=["ml_snlc"], choices=list(CASES))
    ap.add_argument("--no-speed", action="store_true", help="skip the scipy comparison")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the accuracy runs")
    ap.add_argument("--out", default=None, help="folder for bench_ga_rows.json")
    ap.add_argument("--recordings", default=None, metavar="DIR",
                    help="folder holding (or receiving) the reference recordings, reused when present "
                         "(default: a fresh temporary folder)")
    ap.add_argument("--tables", nargs="+", default=None, metavar="ROWS.json",
                    help="print the summary tables of earlier runs' bench_ga_rows.json files (merged) and exit")
    args = ap.parse_args(argv)
    if args.tables:
        print_summary([r for f in args.tables for r in json.loads(Path(f).read_text())], args.tol)
        return 0
    import tempfile

    args.recordings = Path(args.recordings) if args.recordings else Path(tempfile.mkdtemp(prefix="bench_ga_"))
    args.recordings.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    out_path = None
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        out_path = Path(args.out) / "bench_ga_rows.json"

    def save():
        if out_path is not None:
            tmp = out_path.with_suffix(".json.part")
            tmp.write_text(json.dumps(rows, indent=1))
            os.replace(tmp, out_path)

    print(f"# ga benchmark — {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), torch "
          f"{torch.__version__}, device {args.device}, pop {args.pop}, ≤ {args.gens} generations, "
          f"{args.rate:g} Hz, trace={args.trace}, refine={args.refine or 'default'}, screen={args.screen or 'default'}\n")
    if not args.no_accuracy:
        print(SOURCE_LINE + "\n")
        print("| case | seed | " + "relative errors | success | generations | evals/s | wall (s) |")
        print("|---|---|---|---|---|---|---|")
        for case in args.cases:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                problem = make_problem(case, seed, args.rate, args.recordings)
                extra = ({} if args.screen is None else {"screen": args.screen}) | \
                    ({} if args.refine is None else {"refine": args.refine})
                est = get_backend("ga")(pop_size=args.pop, n_gen=args.gens, trace=args.trace, **extra)
                start = time.perf_counter()
                res = est.fit(problem, seed=seed, device=args.device)
                wall = time.perf_counter() - start
                rel = {k: res[k].relative_error for k in problem.free_names}
                ok = max(rel.values()) < args.tol
                ga_stage = res.history.get("refine", {}).get("ga")  # the GA's own estimate before refinement
                ga_rel = ({k: abs(ga_stage[k] / problem.truth[k] - 1.0) for k in problem.free_names}
                          if ga_stage else None)
                rows.append({"case": case, "kind": "accuracy", "recordings": "reference", "seed": seed,
                             "relative_error": rel,
                             "values": {k: res[k].value for k in problem.free_names},
                             "std": {k: res[k].std for k in problem.free_names}, "success": ok, "wall_s": wall,
                             "generations": res.metrics["generations"], "evaluations": res.metrics["evaluations"],
                             "evals_per_s": res.metrics["evals_per_s"], "stopped": res.diagnostics["stopped"],
                             "rmse_mV": res.metrics["rmse_mV"], "device": res.provenance["device"],
                             "screened": res.metrics.get("screened"), "ga_relative_error": ga_rel,
                             "refine_taken": res.metrics.get("refine_taken"),
                             "cmaes_taken": res.metrics.get("cmaes_taken"), "cmaes_s": res.metrics.get("cmaes_s"),
                             "lsq_taken": res.metrics.get("lsq_taken"), "lsq_s": res.metrics.get("lsq_s")})
                save()
                errs = ", ".join(f"{k} {100 * v:.3g} %" for k, v in rel.items())
                if ga_rel is not None:
                    errs += " (GA before refine: " + ", ".join(f"{100 * v:.2f}" for v in ga_rel.values()) + " %)"
                print(f"| {case} | {seed} | {errs} | {'yes' if ok else 'no'} | {res.metrics['generations']} | "
                      f"{res.metrics['evals_per_s']:.0f} | {wall:.1f} |", flush=True)
        print_summary(rows, args.tol)
    if not args.no_speed:
        print("\n" + SOURCE_LINE)
        print("\n| case | device | pop × generations | batched s/eval | scipy solve_ivp s/eval | ratio |")
        print("|---|---|---|---|---|---|")
        for case in args.speed_cases:
            row = speed_row(case, args)
            rows.append(row)
            save()
            print(f"| {case} | {row['device']} | {args.pop} × {args.speed_gens} | {row['batched_s_per_eval']:.4g} | "
                  f"{row['scipy_s_per_eval']:.4g} | {row['ratio']:.0f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
