"""The amortized estimator on a real recording: trained for the protocol of one sweep, then applied to it.

For one sweep of a shared current-clamp step recording (default: sweep 10 of ``17o05028_ic_steps.abf``, +50 pA
from 147 to 647 ms), the script does what a user would do to read that cell with the ``amortized`` backend:

1. measures the cell from all its sweeps (:func:`neo_pinn.cell.measure_cell`: rest, input resistance,
   capacitance) and scales the model's search ranges to it (:func:`neo_pinn.cell.scaling.cell_scaled_ranges`):
   the priors of the free parameters are those ranges (log-uniform for log-scale parameters; 0.25×–4× the
   preset's value for a parameter no rule scales, e.g. ``phi``);
2. takes the sweep's protocol (:func:`neo_pinn_amortized.protocol_of_recording`: its step as a stimulus spec),
   at ``--sample-dt`` (every k-th sample of the recording: the backend's documented ``resample`` option), with
   ``--settle`` ms simulated before it so that training traces start at rest as the sweep does;
3. trains an estimator (white noise σ estimated too) and scores it on reference-solver traces of its own prior;
4. applies it to the sweep (``neo_pinn.estimate(..., backend="amortized")``): the estimate, the
   out-of-distribution flag and the verdict, and the report (``--out DIR/amortized_report.html``) with the
   simulated estimate against the recording;
5. refines it with ``lsq`` started from it (``init="amortized:DIR"``) against ``lsq`` from its default start,
   both on the same sweep and window within the priors' ranges: verdict, RMSE, wall time; and a figure of all
   three against the recording (``DIR/amortized_real.png``).

    python benchmarks/bench_amortized_real.py [--file 17o05028_ic_steps.abf] [--sweep 10] [--window 700]
        [--model morris_lecar] [--preset snlc] [--free C,gL,EL,gCa,gK,phi] [--sample-dt 0.4] [--settle 300]
        [--n 16000] [--epochs 40] [--arch rescnn] [--threads 2] [--n-test 128] --out DIR [--reuse]

The recording is read from the shared folder and never copied; the script stops with a message when it is
absent. ``--reuse`` reads ``DIR/estimator`` instead of training again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch

#: the shared recordings beside the repository (override with the environment variable NEO_PINN_RECORDINGS)
RECORDINGS = Path(os.environ.get("NEO_PINN_RECORDINGS",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"))


def _priors(model, ranges, free, preset):
    """The cell-scaled search range of each free parameter; 0.25×–4× the preset's value where no rule scales it."""
    from neo_pinn_amortized.priors import LogUniform, Uniform

    values = model.param_values(preset)
    out = {}
    for name in free:
        lo, hi = ranges.bounds.get(name) or (values[name] / 4.0, values[name] * 4.0)
        out[name] = LogUniform(lo, hi) if (model.param_spec(name).log_scale and lo > 0) else Uniform(lo, hi)
    return out


def _row(label, res, wall, free):
    v = res.verdict or {}
    failed = [c["name"] for c in v.get("checks", []) if not c.get("passed")]
    rmse = res.metrics.get("rmse_mV")
    return (f"| {label} | {res.status} | {', '.join(failed) or '—'} | "
            f"{'—' if rmse is None else f'{rmse:.2f}'} | "
            + " | ".join(f"{res[n].value:.4g}" for n in free) + f" | {wall:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", default="17o05028_ic_steps.abf", help="a step recording of the shared folder")
    ap.add_argument("--sweep", type=int, default=10, help="the sweep whose protocol the estimator is trained for")
    ap.add_argument("--window", type=float, default=700.0, help="ms from the sweep start read by the estimator")
    ap.add_argument("--model", default="morris_lecar")
    ap.add_argument("--preset", default="snlc")
    ap.add_argument("--free", default="C,gL,EL,gCa,gK,phi")
    ap.add_argument("--sample-dt", type=float, default=0.4, help="the estimator's sampling interval, ms")
    ap.add_argument("--settle", type=float, default=300.0, help="ms simulated before the protocol (start at rest)")
    ap.add_argument("--n", type=int, default=16000, help="training + validation traces")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--arch", default="rescnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-test", type=int, default=128, help="reference-solver test traces of the prior")
    ap.add_argument("--out", required=True, help="folder for the estimator, the report and the figure")
    ap.add_argument("--reuse", action="store_true", help="read DIR/estimator instead of training")
    args = ap.parse_args(argv)
    path = RECORDINGS / args.file
    if not path.exists():
        print(f"{path.name} is not in the shared recordings folder ({RECORDINGS.name}/ beside the repository, or "
              "NEO_PINN_RECORDINGS); nothing to do.")
        return 0
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import neo_pinn
    from neo_pinn.api import get_model, load_recording
    from neo_pinn.cell import check_sweeps, measure_cell
    from neo_pinn.cell.scaling import cell_scaled_ranges
    from neo_pinn.report import write_report
    from neo_pinn_amortized import AmortizedEstimator, TrainConfig, protocol_of_recording, train_estimator
    from neo_pinn_amortized.reference import reference_test_set

    model = get_model(args.model)
    free = tuple(args.free.split(","))
    rec = load_recording(path)
    traces = rec.traces()
    props = measure_cell(traces, check_sweeps(traces))
    ranges = cell_scaled_ranges(model, free, capacitance_pF=props.capacitance_pF,
                                input_resistance_MOhm=props.input_resistance_MOhm, rest_mV=props.rest_mV,
                                preset=args.preset)
    priors = _priors(model, ranges, free, args.preset)
    stimulus = protocol_of_recording(rec, args.sweep, (0.0, args.window)).stimulus
    print(f"## amortized on a real recording: {path.name}, sweep {args.sweep}, 0–{args.window:g} ms, "
          f"{args.model} ({args.preset})\n")
    print(f"cell: rest {props.rest_mV:.2f} mV, Rin {props.input_resistance_MOhm:.4g} MΩ, C "
          f"{props.capacitance_pF:.4g} pF; protocol {stimulus} at {args.sample_dt:g} ms (every "
          f"{args.sample_dt / traces[0].dt:.0f}th sample), settling {args.settle:g} ms")
    print("priors: " + "; ".join(f"{k} {p.describe()}" for k, p in priors.items()) + "; white σ log-uniform "
          "0.05–2 mV\n")

    folder = out / "estimator"
    if args.reuse and folder.is_dir():
        est = AmortizedEstimator.load(folder)
        train_wall = float(est.training["wall_s"])
    else:
        from neo_pinn_amortized.priors import LogUniform

        config = TrainConfig(model=args.model, preset=args.preset, priors=priors, noise="white",
                             noise_priors={"sigma": LogUniform(0.05, 2.0)}, duration_ms=args.window,
                             sample_dt_ms=args.sample_dt, stimulus=stimulus, settle_ms=args.settle, n=args.n,
                             arch=args.arch, epochs=args.epochs, patience=min(20, args.epochs), seed=0,
                             device="cpu", progress=sys.stderr.isatty(), num_threads=args.threads)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est = train_estimator(config)
        train_wall = time.perf_counter() - start
        est.save(folder, overwrite=True)
    tr = est.training
    t0 = time.perf_counter()
    x, truth, _ = reference_test_set(est.spec, args.n_test, seed=4321)
    t_ref = time.perf_counter() - t0
    scores = est.evaluate(x, est.protocol.sample_dt_ms, truth)["targets"]
    print(f"training: {tr['n_train']} + {tr['n_validation']} traces, {tr['epochs_run']} epochs (best "
          f"{tr['best_epoch']}), simulation {tr['simulate_s']:.0f} s, {train_wall:.0f} s in all, {args.threads} "
          f"thread(s)\n")
    print(f"Its own test: {args.n_test} reference-solver traces of the prior (solved in {t_ref:.0f} s)\n")
    print("| target | R² | 50 % coverage | 90 % coverage |")
    print("|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s['r2']:.3f} | {100 * s['coverage_50']:.1f} % | {100 * s['coverage_90']:.1f} % |")

    window = (0.0, args.window - args.sample_dt / 2)  # exactly the protocol's samples from the sweep start
    # every fit searches the priors' ranges (cell-scaled from all sweeps; one sweep alone has no passive
    # measurement to scale by), in one stage
    bounds = {k: (p.low, p.high) for k, p in priors.items()}
    common = dict(preset=args.preset, sweeps=[args.sweep], window=window, staged=False, seed=0, bounds=bounds)
    fits = {}
    start = time.perf_counter()
    fits["amortized"] = (neo_pinn.estimate(rec, model, "amortized", list(free), backend_options={
        "estimator": str(folder), "resample": True}, **common), time.perf_counter() - start)
    res = fits["amortized"][0]
    ood = res.diagnostics.get("ood") or {}
    print(f"\nOn the recording: out of distribution: {res.metrics.get('out_of_distribution')}"
          f" ({ood.get('message', '')})\n")
    print("| estimate | " + " | ".join(free) + " | σ (mV) |")
    print("|---|" + "---|" * (len(free) + 1))
    noise = res.noise or {}
    print("| amortized mean ± std | " + " | ".join(f"{res[n].value:.4g} ± {res[n].std or float('nan'):.2g}"
                                               for n in free)
          + f" | {noise.get('sigma', float('nan')):.3g} |")
    for label, init in (("lsq from the amortized estimate", f"amortized:{folder}"), ("lsq, default start", None)):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fits[label] = (neo_pinn.estimate(rec, model, "lsq", list(free), init=init, **common),
                           time.perf_counter() - start)
    print("\n| fit | status | failed checks | RMSE (mV) | " + " | ".join(free) + " | wall s |")
    print("|---|---|---|---|" + "---|" * (len(free) + 1))
    for label, (r, wall) in fits.items():
        print(_row(label, r, wall, free))
    write_report(res, out / "amortized_report.html", title=f"amortized on {path.name} sweep {args.sweep}")
    _figure(fits, out / "amortized_real.png", f"{path.name}, sweep {args.sweep}")
    print(f"\nwrote {out / 'amortized_report.html'} and {out / 'amortized_real.png'}")
    return 0


def _figure(fits, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(fits.values()))[0].fits[0]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(first.t, first.v_observed, color="0.6", lw=1.0, label="recording")
    for (label, (res, _)), color in zip(fits.items(), ("C3", "C0", "C2")):
        fit = res.fits[0]
        ax.plot(fit.t, fit.states[:, 0], color=color, lw=0.9, label=f"{label} ({res.status})")
    ax.set_xlabel("t (ms)")
    ax.set_ylabel("V (mV)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
