"""Accuracy, calibration and speed of the ``amortized`` estimator, and the warm start it gives ``lsq``.

The test traces are never made by the simulator the estimator was trained on: they come from the independent
reference solver (scipy LSODA, rtol 1e-8, atol 1e-10; :mod:`neo_pinn_amortized.reference`) with the noise added
as in training.

* ``fhn`` — the set-up of Rudi, Bessac & Lenzi (2022) (:func:`neo_pinn_amortized.train.rudi2022_config`):
  FitzHugh–Nagumo, T = 200, Δt = 0.2 (1,000 samples), AR(1) noise; θ0, θ1, ρ and s estimated. Trained on
  ``--n`` noisy traces (plus a quarter as many for validation and early stopping) with ``--arch``; scored on
  ``--n-test`` reference traces: R², RMSE, 50 % and 90 % interval coverage per target; simulation, training and
  reference-solver times; batched inference rate; the share of test traces the out-of-distribution checks flag
  (features on every test trace; the whole backend, reconstruction included, on ``--ood-fits`` of them).
* ``ml`` — Morris–Lecar (SNLC preset) on a step protocol (60 pA from 20 to 180 ms, 200 ms at 5 kHz), gCa, gK
  and phi free with log-uniform priors over 0.25×–4× the preset's values and white noise σ log-uniform in
  0.5–2 mV, estimated too. Trained on ``--ml-n`` traces; its own R² and coverage on ``--ml-test`` reference
  traces; then, on ``--lsq-cases`` of them, ``lsq`` (one start) from the amortized estimate vs from a random
  start drawn log-uniformly over 0.25×–4× the truth (the range of ``bench_lsq.py``'s random starts): success
  (all three within 2 % of the truth) and wall time side by side.

    python benchmarks/bench_amortized.py [--cases fhn ml] [--n 1024] [--n-test 2048] [--arch paper_cnn]
        [--renoise] [--epochs 200] [--patience 50] [--seed 0] [--device cpu] [--threads 1] [--ood-fits 32]
        [--ml-n 4096] [--ml-epochs 60] [--ml-test 256] [--lsq-cases 6] [--cache DIR] [--save DIR [--reuse]]

Prints Markdown tables. ``--cache DIR`` keeps the reference test sets (``.npz``) between runs; ``--save DIR``
writes the trained estimators there (``DIR/fhn_<arch>_<n>[_renoise]``, ``DIR/ml_<arch>_<n>[_renoise]``), and
``--reuse`` reads them back instead of training again (the tables then give the training times of the manifest).
The warm-start table starts with the preset's own parameter set (the truth of ``bench_lsq.py``'s ``ml`` case) on
this protocol with 1 mV noise, then the first ``--lsq-cases`` test traces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from neo_pinn import EstimationProblem
from neo_pinn.api import get_backend, get_model
from neo_pinn.errors import NeoPinnError
from neo_pinn.trace import Trace

from neo_pinn_amortized.backend import Amortized, amortized_init
from neo_pinn_amortized.networks import NETWORKS
from neo_pinn_amortized.estimator import AmortizedEstimator
from neo_pinn_amortized.ood import DEFAULT_Z_LIMIT, FEATURE_NAMES, feature_check, trace_features
from neo_pinn_amortized.priors import LogUniform
from neo_pinn_amortized.reference import reference_test_set, reference_traces
from neo_pinn_amortized.train import TrainConfig, rudi2022_config, train_estimator
from neo_pinn_amortized.training_set import add_noise

#: Morris–Lecar case: preset, free parameters, stimulus, duration (ms), sampling interval (ms)
ML = ("snlc", ("gCa", "gK", "phi"), "step:amp=60pA,start=20ms,stop=180ms", 200.0, 0.2)
#: a start succeeds when every free parameter is within this relative error of the truth (as bench_lsq.py)
TOL = 0.02


def _fmt(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def _machine(args) -> str:
    return (f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) on {os.cpu_count()} cores "
            f"({platform.machine()}), device {args.device}")


def cached_test_set(spec, n: int, seed: int, cache: Path | None):
    """Reference-solver test traces (traces, truth, seconds to solve); kept in ``cache`` when given."""
    key = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    path = None if cache is None else cache / f"amortized_test_{spec.model}_{key}_n{n}_seed{seed}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as f:
            return f["traces"], f["truth"], float(f["seconds"])
    start = time.perf_counter()
    traces, truth, _ = reference_test_set(spec, n, seed=seed)
    seconds = time.perf_counter() - start
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, traces=traces, truth=truth, seconds=seconds)
    return traces, truth, seconds


def inference_rate(est, traces: np.ndarray, dt: float, repeats: int = 3) -> float:
    """Traces per second of the batched prediction (best of ``repeats``)."""
    est.predict(traces[:64], dt)  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        est.predict(traces, dt)
        best = min(best, time.perf_counter() - start)
    return traces.shape[0] / best


def score_table(title: str, est, traces: np.ndarray, truth: np.ndarray) -> dict:
    """Print R², RMSE and coverage per target; return the scores."""
    scores = est.evaluate(traces, est.protocol.sample_dt_ms, truth)["targets"]
    print(f"\n{title}\n")
    print("| target | R² | RMSE | 50 % coverage | 90 % coverage | validation R² | validation 90 % coverage |")
    print("|---|---|---|---|---|---|---|")
    val = est.metrics["validation"]["targets"]
    for name, s in scores.items():
        print(f"| {name} | {s['r2']:.4f} | {s['rmse']:.4g} | {100 * s['coverage_50']:.1f} % | "
              f"{100 * s['coverage_90']:.1f} % | {val[name]['r2']:.4f} | {100 * val[name]['coverage_90']:.1f} % |")
    return scores


def trained(config: TrainConfig, args, name: str):
    """(estimator, wall seconds of its training): trained now, or read from ``--save DIR/name`` with ``--reuse``."""
    folder = Path(args.save) / name if args.save else None
    if args.reuse and folder is not None and folder.is_dir():
        est = AmortizedEstimator.load(folder)
        if est.spec != config.spec():
            raise SystemExit(f"{folder} holds an estimator of other settings; drop --reuse or choose another --save.")
        print(f"\n(estimator read from {folder} with --reuse; the training times are those of its manifest)")
        return est, float(est.training["wall_s"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a few draws may diverge and are redrawn (the manifest says)
        est = train_estimator(config)
    return est, time.perf_counter() - start


def _save(est, args, name: str) -> None:
    if args.save and not args.reuse:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        path = est.save(Path(args.save) / name, overwrite=True)
        print(f"\nsaved the estimator to {path}")


# ---------------------------------------------------------------------------------------------- FitzHugh–Nagumo
def run_fhn(args, cache: Path | None) -> None:
    n_val = max(2, min(args.n // 4, 5000))  # early stopping and calibration need no more
    config = rudi2022_config(n=args.n + n_val, validation_fraction=n_val / (args.n + n_val), arch=args.arch,
                             renoise=args.renoise, epochs=args.epochs, patience=args.patience, seed=args.seed,
                             device=args.device, batch_size=args.batch_size, lr=args.lr,
                             progress=args.progress, num_threads=args.threads)
    est, wall = trained(config, args, f"fhn_{args.arch}_{args.n}{'_renoise' if args.renoise else ''}")
    tr = est.training
    traces, truth, t_ref = cached_test_set(est.spec, args.n_test, 12345 + args.seed, cache)
    print(f"\n## amortized, FitzHugh–Nagumo (Rudi et al. 2022 set-up): {args.arch}"
          f"{' + renoise' if args.renoise else ''}, {tr['n_train']} training + {tr['n_validation']} validation "
          f"traces, seed {args.seed}")
    print(f"{_machine(args)}; epochs run {tr['epochs_run']} (best {tr['best_epoch']}), "
          f"{est.metrics['validation']['n']} validation traces")
    score_table(f"Test: {traces.shape[0]} noisy traces from the reference solver (solved in {t_ref:.1f} s).",
                est, traces, truth)
    rate = inference_rate(est, traces, est.protocol.sample_dt_ms)
    feats = feature_check(est.feature_stats, traces, DEFAULT_Z_LIMIT)
    print("\n| simulate s | train s (incl. simulation) | inference traces/s (batched, CPU) | OOD features: test "
          "traces flagged |")
    print("|---|---|---|---|")
    print(f"| {tr['simulate_s']:.1f} | {wall:.1f} | {rate:,.0f} | {int(feats.flagged.sum())}/{traces.shape[0]} "
          f"({100 * feats.flagged.mean():.2f} %) |")
    if args.ood_fits:
        ood_fits(est, traces[:args.ood_fits], args)
    _save(est, args, f"fhn_{args.arch}_{args.n}{'_renoise' if args.renoise else ''}")


def ood_fits(est, traces: np.ndarray, args) -> None:
    """The whole backend (reconstruction check included) on in-distribution traces: how many it flags."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = est.save(Path(tmp) / "est")
        backend = Amortized(estimator=str(folder))
        model = get_model(est.spec.model)
        t = est.protocol.times()
        flagged, ratios, walls = 0, [], []
        for k, v in enumerate(traces):
            trace = Trace(t=t, v=v.astype(float), i_ext=np.zeros_like(t), stimulus_source="user", sweep=k)
            problem = EstimationProblem.build(model, trace, list(est.spec.free), preset=est.spec.preset)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = backend.fit(problem, seed=k, device=args.device, check=False)
            walls.append(time.perf_counter() - start)
            flagged += bool(res.metrics["out_of_distribution"])
            ratios.append(res.metrics["reconstruction_ratio"])
    print(f"\nWhole backend on {len(traces)} test traces (one sweep each, {backend.config.ood_draws} "
          "posterior-predictive draws, no verdict):\n")
    print("| flagged out of distribution | reconstruction ratio median / max | wall s per fit (median) |")
    print("|---|---|---|")
    print(f"| {flagged}/{len(traces)} | {np.median(ratios):.2f} / {np.max(ratios):.2f} | {np.median(walls):.2f} |")


# ---------------------------------------------------------------------------------------------- Morris–Lecar
def run_ml(args, cache: Path | None) -> None:
    preset, free, stimulus, duration, sample_dt = ML
    model = get_model("morris_lecar")
    truth_all = model.param_values(preset)
    priors = {k: LogUniform(0.25 * truth_all[k], 4.0 * truth_all[k]) for k in free}
    config = TrainConfig(model="morris_lecar", preset=preset, priors=priors, noise="white",
                         noise_priors={"sigma": LogUniform(0.5, 2.0)}, duration_ms=duration, sample_dt_ms=sample_dt,
                         stimulus=stimulus, n=args.ml_n, validation_fraction=0.2, arch=args.arch,
                         epochs=args.ml_epochs, patience=min(args.patience, args.ml_epochs), renoise=args.renoise,
                         seed=args.seed, device=args.device)
    name = f"ml_{args.arch}_{args.ml_n}{'_renoise' if args.renoise else ''}"
    est, wall = trained(config, args, name)
    tr = est.training
    traces, truth, t_ref = cached_test_set(est.spec, args.ml_test, 777 + args.seed, cache)
    print(f"\n## amortized, Morris–Lecar {preset}, {stimulus}, {duration:g} ms at {1 / sample_dt:g} kHz: "
          f"{', '.join(free)} log-uniform over 0.25×–4× ({_fmt(truth_all[k] for k in free)}), white σ 0.5–2 mV; "
          f"{args.arch}, {tr['n_train']} training + {tr['n_validation']} validation traces")
    print(f"{_machine(args)}; simulation {tr['simulate_s']:.1f} s, training {wall:.1f} s in all "
          f"({tr['epochs_run']} epochs), {tr['n_dropped_diverged']} diverged draws redrawn")
    score_table(f"Test: {traces.shape[0]} noisy traces from the reference solver (solved in {t_ref:.1f} s).",
                est, traces, truth)
    if args.lsq_cases:
        x0, y0 = preset_trace(est, 1.0, args.seed)
        labels = [f"preset {preset}, σ 1 mV"] + [f"test {k}" for k in range(args.lsq_cases)]
        warm_start(est, np.concatenate([x0, traces[:args.lsq_cases]]), np.concatenate([y0, truth[:args.lsq_cases]]),
                   labels, args)
    _save(est, args, name)


def _lsq(problem, args):
    """One lsq fit (one start): (estimate, seconds, error text or None)."""
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = get_backend("lsq")(n_starts=1).fit(problem, seed=args.seed, device=args.device, check=False)
    except NeoPinnError as exc:
        return None, time.perf_counter() - start, f"{type(exc).__name__}"
    return res, time.perf_counter() - start, None


def preset_trace(est, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The preset's own parameter set (bench_lsq.py's truth) on the protocol: reference solution + white noise."""
    model = get_model(est.spec.model)
    values = model.param_values(est.spec.preset)
    truth = np.array([[values[k] for k in est.spec.free] + [sigma]])
    clean = reference_traces(est.spec, truth[:, :len(est.spec.free)])
    noisy = add_noise(clean, "white", truth[:, -1:], np.random.default_rng(seed))
    return noisy.astype(np.float32), truth


def _lsq_cell(res, wall: float, err: str | None, tv: np.ndarray, free) -> tuple[bool, str]:
    if res is None:
        return False, f"no ({err}), {wall:.1f} s"
    rel = max(abs(res[n].value / tv[j] - 1) for j, n in enumerate(free))
    return rel < TOL, f"{'yes' if rel < TOL else 'no'} ({100 * rel:.2g} %), {wall:.1f} s"


def warm_start(est, traces: np.ndarray, truth: np.ndarray, labels, args) -> None:
    """lsq from the amortized estimate vs from a random log-uniform start over 0.25×–4× the truth."""
    preset, free, _, _, _ = ML
    model = get_model("morris_lecar")
    t = est.protocol.times()
    i_ext = np.asarray(est.protocol.current()(t), float)
    spikes = trace_features(traces, model.spike_threshold, model.spike_rearm)[:, FEATURE_NAMES.index("spikes")]
    rng = np.random.default_rng(args.seed)
    rows, counts = [], {"amortized": [0, []], "random": [0, []]}
    for k in range(traces.shape[0]):
        trace = Trace(t=t, v=traces[k].astype(float), i_ext=i_ext, stimulus_source="user", sweep=0)
        tv = truth[k, :len(free)]
        start = time.perf_counter()
        init_a = amortized_init(est, trace)
        t_amortized = time.perf_counter() - start
        init_r = {name: float(tv[j] * np.exp(rng.uniform(np.log(0.25), np.log(4.0)))) for j, name in enumerate(free)}
        amort_err = max(abs(init_a[n] / tv[j] - 1) for j, n in enumerate(free))
        cells = [labels[k], _fmt(tv), f"{spikes[k]:.0f}", f"{100 * amort_err:.1f} %"]
        for label, init in (("amortized", init_a), ("random", init_r)):
            problem = EstimationProblem.build(model, trace, list(free), preset=preset, init=init,
                                              truth=dict(zip(free, tv)), initial_state="preset")
            res, wall, err = _lsq(problem, args)
            wall += t_amortized if label == "amortized" else 0.0
            ok, text = _lsq_cell(res, wall, err, tv, free)
            counts[label][0] += ok
            counts[label][1].append(wall)
            cells.append(text)
        rows.append(cells)
    n = traces.shape[0]
    print(f"\nWarm start: lsq (one start, default options, initial state the preset's) from the amortized estimate "
          f"vs from a random start log-uniform over 0.25×–4× the truth; success = all of {', '.join(free)} within "
          f"{100 * TOL:g} % (the largest relative error after lsq in brackets); the amortized column's time includes "
          "its inference.\n")
    print(f"| trace | truth ({', '.join(free)}) | spikes | amortized max rel. error | lsq from amortized "
          "| lsq from random |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    a, r = counts["amortized"], counts["random"]
    print(f"| **all** | | | | **{a[0]}/{n}**, median {np.median(a[1]):.1f} s | **{r[0]}/{n}**, median "
          f"{np.median(r[1]):.1f} s |")


# ---------------------------------------------------------------------------------------------- bench_lsq.py's ml case
def run_lsq_case(args, cache: Path | None) -> None:
    """An estimator for the protocol of ``bench_lsq.py``'s (and ``bench_ga.py``'s) Morris–Lecar case, used on its
    reference recordings: its own error, then lsq from it vs from random log-uniform starts over 0.25×–4×."""
    from bench_lsq import CASES as LSQ_CASES, reference_recording
    from neo_pinn.api import load_recording

    model_name, preset, free, stimulus, _, _ = LSQ_CASES["ml"]
    model = get_model(model_name)
    truth = {k: model.param_values(preset)[k] for k in free}
    duration, rate, sample_dt = 1000.0, 10000.0, 0.5  # bench_lsq.py's defaults; the estimator reads every 5th sample
    priors = {k: LogUniform(0.25 * v, 4.0 * v) for k, v in truth.items()}
    config = TrainConfig(model=model_name, preset=preset, priors=priors, noise="white",
                         noise_priors={"sigma": LogUniform(0.5, 2.0)}, duration_ms=duration, sample_dt_ms=sample_dt,
                         stimulus=stimulus, n=args.lsq_n, validation_fraction=0.2, arch=args.arch,
                         epochs=args.lsq_epochs, patience=min(args.patience, args.lsq_epochs), seed=args.seed,
                         renoise=args.renoise or None,  # None: fresh noise (the default), as measured
                         device=args.device, num_threads=args.threads, batch_size=args.batch_size, lr=args.lr,
                         progress=args.progress)
    est, wall = trained(config, args, f"lsqml_{args.arch}_{args.lsq_n}")
    tr = est.training
    print(f"\n## amortized on bench_lsq.py's Morris–Lecar case ({preset}, {stimulus}, {duration:g} ms at "
          f"{rate / 1000:g} kHz, white noise 1 mV, from the preset's initial state): {args.arch}, "
          f"{tr['n_train']} + {tr['n_validation']} traces at {sample_dt:g} ms (every {int(sample_dt * rate / 1000)}th "
          f"sample of the recording: option resample), priors log-uniform 0.25×–4× ({_fmt(truth.values())}), "
          f"σ log-uniform 0.5–2 mV")
    print(f"{_machine(args)}; simulation {tr['simulate_s']:.1f} s, training {wall:.1f} s in all "
          f"({tr['epochs_run']} epochs, best {tr['best_epoch']})")
    folder = Path(tempfile.mkdtemp(prefix="lsqml_"))
    est.save(folder / "est")
    rng = np.random.default_rng(args.seed)
    rows, ok = [], {"amortized": [], "random": []}
    recordings = Path(cache or tempfile.mkdtemp(prefix="lsq_recordings_"))
    for seed in range(args.lsq_seeds):
        rec = load_recording(reference_recording(recordings, "ml", duration, rate, seed))
        common = dict(preset=preset, truth=truth, seed=seed, device=args.device, qc=False, scale_to_cell=False,
                      staged=False)
        start = time.perf_counter()
        options = {"estimator": str(folder / "est"), "resample": True, "num_threads": args.threads}
        amort = neo_pinn_estimate(rec, model, "amortized", free, window=(0.0, duration - sample_dt / 2),
                                  backend_options=options, **common)
        t_amort = time.perf_counter() - start
        err_a = max(abs(amort[k].value / truth[k] - 1) for k in free)
        fits = [("amortized", f"amortized:{folder / 'est'}")]
        fits += [("random", {k: v * float(np.exp(rng.uniform(np.log(0.25), np.log(4.0)))) for k, v in truth.items()})
                 for _ in range(args.lsq_random)]
        for label, init in fits:
            start = time.perf_counter()
            try:
                res = neo_pinn_estimate(rec, model, "lsq", free, init=init,
                                        backend_options={"n_starts": 1}, **common)
                rel = max(abs(res[k].value / truth[k] - 1) for k in free)
            except NeoPinnError as exc:
                res, rel = None, float("inf")
                print(f"  seed {seed} {label}: {type(exc).__name__}")
            wall = time.perf_counter() - start
            ok[label].append((rel < TOL, wall))
            rows.append(f"| {seed} | {label} | {'—' if label != 'amortized' else f'{100 * err_a:.2g} % ({t_amort:.1f} s)'}"
                        f" | {'yes' if rel < TOL else 'no'} ({100 * rel:.2g} %) | {wall:.1f} |")
    print(f"\nlsq (one start, default options) from the amortized estimate (init='amortized:DIR') vs from "
          f"{args.lsq_random} random starts log-uniform over 0.25×–4× the truth, on {args.lsq_seeds} reference "
          f"recordings of bench_lsq.py (seeds 0–{args.lsq_seeds - 1}); success = {', '.join(free)} all within "
          f"{100 * TOL:g} %; the amortized column: the amortized estimate's own largest error (its fit time)\n")
    print("| recording seed | start | amortized max rel. error | lsq success (max rel. error) | lsq wall s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)
    for label, items in ok.items():
        print(f"| **{label}** | | | **{sum(x for x, _ in items)}/{len(items)}** | median "
              f"{np.median([w for _, w in items]):.1f} |")


def neo_pinn_estimate(*a, **k):
    import neo_pinn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return neo_pinn.estimate(*a, **k)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=("fhn", "ml", "lsq"), default=["fhn"], help="which cases")
    ap.add_argument("--n", type=int, default=1024, help="FHN training traces (validation: a quarter more, at most 5,000)")
    ap.add_argument("--n-test", type=int, default=2048, help="FHN reference test traces")
    ap.add_argument("--arch", choices=sorted(NETWORKS), default="paper_cnn", help="network architecture")
    ap.add_argument("--renoise", action="store_true", help="fresh noise on the clean simulations every epoch")
    ap.add_argument("--epochs", type=int, default=200, help="most epochs")
    ap.add_argument("--batch-size", type=int, default=32, help="mini-batch size (the paper's: 32)")
    ap.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (the paper's: 2e-3)")
    ap.add_argument("--progress", action="store_true", help="progress bars for simulation and epochs")
    ap.add_argument("--patience", type=int, default=50, help="early-stopping patience, epochs")
    ap.add_argument("--seed", type=int, default=0, help="seed of simulation, training and the random starts")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--ood-fits", type=int, default=32, help="FHN test traces fitted by the whole backend")
    ap.add_argument("--ml-n", type=int, default=4096, help="Morris–Lecar training + validation traces")
    ap.add_argument("--ml-epochs", type=int, default=60, help="Morris–Lecar most epochs")
    ap.add_argument("--ml-test", type=int, default=256, help="Morris–Lecar reference test traces")
    ap.add_argument("--lsq-cases", type=int, default=6, help="Morris–Lecar test traces fitted by lsq twice")
    ap.add_argument("--lsq-seeds", type=int, default=3, help="lsq case: bench_lsq.py ml recordings (seeds 0…)")
    ap.add_argument("--lsq-random", type=int, default=5, help="lsq case: random single starts per recording")
    ap.add_argument("--lsq-n", type=int, default=6000, help="lsq case: training + validation traces")
    ap.add_argument("--lsq-epochs", type=int, default=25, help="lsq case: most epochs")
    ap.add_argument("--cache", default=None, help="folder keeping the reference test sets between runs")
    ap.add_argument("--save", default=None, help="folder receiving the trained estimators")
    ap.add_argument("--reuse", action="store_true", help="read the estimators from --save instead of training "
                    "them again (same settings)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(args.cache) if args.cache else None
    if "fhn" in args.cases:
        run_fhn(args, cache)
    if "ml" in args.cases:
        run_ml(args, cache)
    if "lsq" in args.cases:
        run_lsq_case(args, cache)


if __name__ == "__main__":
    main()
