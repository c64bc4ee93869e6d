"""The measurements behind the lsq and ga defaults of issue 16, on recordings from the reference solver.

* Hodgkin–Huxley from rest, 200 ms at 20 kHz, a 10 pA step 20–180 ms, 1 mV white noise (seed 1), solved by
  scipy (:mod:`neo_pinn.testing.reference_recordings`): ``neo_pinn.estimate`` with lsq (default options, 8 starts)
  from 0.5× and 2× the truth, and with ga (default options, and ``refine="none"``), gNa/gK/gL free;
* Morris–Lecar SNLC, 1 s at 10 kHz, 1 mV noise (seed 0), from the preset's initial state: ga with its default
  options (the 3-minute budget of a 1 s fit on the 2-core CPU), gCa/gK/phi free.

Prints one Markdown row per fit: relative errors, reported std (both % of the truth), RMSE, wall time.

    python benchmarks/bench_defaults.py [--recordings DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from neo_pinn.api import estimate

HH = ("hodgkin_huxley", "rest", {"gNa": 120.0, "gK": 36.0, "gL": 0.3}, "step:amp=10pA,start=20ms,stop=180ms",
      200.0, 20000.0, 1, 500.0)
ML = ("morris_lecar", "snlc", {"gCa": 4.0, "gK": 8.0, "phi": 1 / 15}, "const:amp=60pA", 1000.0, 10000.0, 0, 0.0)


def recording(folder: Path, case) -> Path:
    """The case's reference recording, written once to ``folder``."""
    model, preset, _, stimulus, duration, rate, seed, settle = case
    path = folder / f"defaults_{model}_{duration:g}ms_seed{seed}.nwb"
    if not path.exists():
        from neo_pinn.testing.reference_recordings import write_reference_recording

        write_reference_recording(path, model, [stimulus], duration=duration, rate_hz=rate, preset=preset,
                                  noise="white:sigma=1mV", seed=seed, settle_ms=settle)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recordings", default=None, help="folder holding (or receiving) the recordings")
    args = ap.parse_args(argv)
    folder = Path(args.recordings or tempfile.mkdtemp(prefix="bench_defaults_"))
    folder.mkdir(parents=True, exist_ok=True)
    print("| recording | backend | options | start | rel. error % | std % | rmse mV | status | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [(HH, "lsq", {}, 0.5), (HH, "lsq", {}, 2.0), (HH, "ga", {}, None), (HH, "ga", {"refine": "none"}, None),
            (ML, "ga", {}, None)]
    for case, backend, options, factor in runs:
        model, preset, truth, *_ = case
        path = recording(folder, case)
        init = {k: factor * v for k, v in truth.items()} if factor else None
        start = time.perf_counter()
        r = estimate(str(path), model, backend, free=list(truth), preset=preset, init=init, backend_options=options)
        wall = time.perf_counter() - start
        err = ", ".join(f"{100 * (r[k].value / v - 1):+.3f}" for k, v in truth.items())
        std = ", ".join("—" if r[k].std is None else f"{100 * r[k].std / v:.3f}" for k, v in truth.items())
        print(f"| {model} | {backend} | {options or 'default'} | {f'{factor}× truth' if factor else 'bounds'} | "
              f"{err} | {std} | {r.metrics['rmse_mV']:.3f} | {r.status} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
