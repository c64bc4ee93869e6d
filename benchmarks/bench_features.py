#!/usr/bin/env python
"""Batched electrophysiology features: agreement with eFEL, and throughput.

**Agreement.** :func:`neo_pinn.testing.efel.efel_agreement` runs eFEL on the same samples with the same
settings (threshold, window as stim_start/stim_end with strict_stiminterval, derivative threshold
10 mV/ms over 3 samples, re-arm = threshold since eFEL has no hysteresis) and matches spikes one to
one. Cases: simulated Morris–Lecar (Hopf, SNLC) and Hodgkin–Huxley traces from
:func:`neo_pinn.api.simulate`; two square-wave bursters (Morris–Lecar ε = 0.005, Butera pBC EL = −58)
from :func:`neo_pinn.reference.reference_solution` (one trace of seconds is much faster with scipy's
adaptive LSODA than with the fixed-step batch simulator); and every sweep of six real recordings in
../shared/data/recordings, analysed in their current-step window. Bars (issue): spike counts
identical, AP amplitude within 1 mV, half width within 0.1 ms, ISI within 0.1 ms.

**Throughput.** B Morris–Lecar SNLC traces with perturbed parameters (1 s at 10 kHz by default,
simulated once, not timed) go through :func:`~neo_pinn.features.batch_features` (all features) and
:func:`~neo_pinn.features.batch_spike_times`; best of ``--repeat`` runs, traces per second, on CPU and,
where present, CUDA (after a warm-up run, synchronised).

Usage::

    python benchmarks/bench_features.py
    python benchmarks/bench_features.py --batch 1000 --device cpu --threads 1
    python benchmarks/bench_features.py --no-throughput
    neo-pinn bench features --device cuda

Exit status 1 when a case fails the agreement bars.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from neo_pinn.api import get_model, load_recording, simulate
from neo_pinn.features import FEATURE_NAMES, batch_features, batch_spike_times
from neo_pinn.reference import reference_solution
from neo_pinn.testing.efel import efel_agreement

AMPLITUDE_TOL_MV = 1.0
WIDTH_TOL_MS = 0.1
ISI_TOL_MS = 0.1

#: file → (voltage channel, threshold mV). 99111002.nwb: -15 mV baseline offset and a +2…+16 mV
#: plateau in its depolarised sweeps whose noise crosses 0 mV; its APs peak at 53–87 mV.
RECORDINGS = {
    "17o05028_ic_steps.abf": (None, 0.0),
    "2019_07_24_0055_fsi.abf": (None, 0.0),
    "17o05027_ic_ramp.abf": (None, 0.0),
    "190619B_0003.abf": ("IN 0", 0.0),
    "18425108.abf": ("10_Vm", 0.0),
    "99111002.nwb": (None, 30.0),
}
DEFAULT_RECORDINGS = Path(os.environ.get("NEO_PINN_RECORDINGS",
                                         Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"))
#: Morris–Lecar SNLC parameters perturbed for the throughput batch (relative, uniform ± this fraction)
PERTURB = {"gCa": 0.05, "gK": 0.05, "gL": 0.05, "phi": 0.1}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def simulated_cases() -> list[dict]:
    """(label, v (B, T), dt, window, threshold) of the simulated cases."""
    cases = []
    ml = get_model("morris_lecar")
    presets = ["hopf", "snlc"]
    steps = 10000  # 1 s at dt = 0.1 ms
    sim = simulate(ml, np.stack([ml.theta(preset=p) for p in presets]), duration=1000.0, dt=0.1,
                   i_ext=np.repeat([[ml.preset(p).i_ext] for p in presets], steps + 1, axis=1),
                   y0=np.stack([ml.initial_state(p) for p in presets]), states=["V"], device="cpu",
                   dtype=torch.float64, compile=False)
    for k, p in enumerate(presets):
        cases.append({"label": f"Morris–Lecar {p} (sim, 10 kHz)", "v": sim.v[k:k + 1].numpy(), "dt": 0.1,
                      "window": (50.0, 950.0), "threshold": ml.spike_threshold})
    hh = get_model("hodgkin_huxley")
    sim = simulate(hh, None, preset="tonic", duration=300.0, dt=0.025, record_every=2, states=["V"], device="cpu",
                   dtype=torch.float64, compile=False)
    cases.append({"label": "Hodgkin–Huxley tonic (sim, 20 kHz)", "v": sim.v.numpy(), "dt": 0.05,
                  "window": (10.0, 290.0), "threshold": hh.spike_threshold})
    for name, preset, duration, label in (("morris_lecar_burster", "bursting_fast", 5000.0, "ML burster ε=0.005"),
                                          ("butera_pbc", "bursting_fast", 9000.0, "Butera pBC EL=−58")):
        model = get_model(name)
        _, y = reference_solution(model, None, preset=preset, duration=duration, dt_out=0.1, rtol=1e-6, atol=1e-8)
        cases.append({"label": f"{label} (LSODA, 10 kHz)", "v": y[None, :, 0], "dt": 0.1,
                      "window": (100.0, duration - 50.0), "threshold": model.spike_threshold})
    return cases


def recording_cases(folder: Path) -> list[dict]:
    cases = []
    for name, (channel, threshold) in RECORDINGS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = load_recording(folder / name, voltage_channel=channel)
        window = rec.describe()["stimulus_step_window_ms"]
        traces = rec.traces()
        cases.append({"label": name + (f" ({channel})" if channel else ""), "v": np.stack([t.v for t in traces]),
                      "dt": traces[0].dt, "window": None if window is None else tuple(window),
                      "threshold": threshold})
    return cases


def agreement_row(case: dict) -> dict:
    rows = efel_agreement(case["v"], case["dt"], window_ms=case["window"], threshold_mv=case["threshold"],
                          rearm_mv=case["threshold"])
    default = batch_features(case["v"], case["dt"], window_ms=case["window"], threshold_mv=case["threshold"],
                             names=["spike_count"])["spike_count"]

    def gather(key):
        parts = [r[key] for r in rows if r[key].size]
        return np.concatenate(parts) if parts else np.empty(0)

    amp, width, isi = gather("amplitude_mv"), gather("width_ms"), gather("isi_ms")
    notes = []
    for s, r in enumerate(rows):
        notes.extend(f"row {s}: {n}" for n in r["notes"])
    ours, theirs = sum(r["spikes"] for r in rows), sum(r["spikes_efel"] for r in rows)
    ok = (all(r["spikes"] == r["spikes_efel"] for r in rows)
          and (amp.size == 0 or np.max(np.abs(amp)) <= AMPLITUDE_TOL_MV)
          and (width.size == 0 or np.max(np.abs(width)) <= WIDTH_TOL_MS)
          and (isi.size == 0 or np.max(np.abs(isi)) <= ISI_TOL_MS)
          and not any("differ" in n or "but its begins" in n for n in notes))
    return {"label": case["label"], "sweeps": len(rows), "with_spikes": sum(r["spikes"] > 0 for r in rows),
            "rate_khz": 1.0 / case["dt"], "threshold": case["threshold"], "ours": ours, "efel": theirs,
            "default": int(default.sum().item()), "amp": amp, "width": width, "isi": isi, "ok": ok, "notes": notes}


def _mx(a: np.ndarray) -> str:
    return "—" if a.size == 0 else f"{np.max(np.abs(a)):.3g}"


def print_agreement(rows: list[dict]) -> None:
    header = ("| case | sweeps (with spikes) | kHz | thr mV | spikes ours | spikes eFEL | spikes, default re-arm | "
              "amplitudes | max \\|Δ amp\\| mV | widths | max \\|Δ width\\| ms | ISIs | max \\|Δ ISI\\| ms | pass |")
    print(header)
    print("|---" * (header.count(" | ") + 1) + "|")
    for r in rows:
        print(f"| {r['label']} | {r['sweeps']} ({r['with_spikes']}) | {r['rate_khz']:g} | {r['threshold']:g} | "
              f"{r['ours']} | {r['efel']} | {r['default']} | {r['amp'].size} | {_mx(r['amp'])} | {r['width'].size} | "
              f"{_mx(r['width'])} | {r['isi'].size} | {_mx(r['isi'])} | {'PASS' if r['ok'] else 'FAIL'} |", flush=True)
    notes = [(r["label"], n) for r in rows for n in r["notes"]]
    if notes:
        print()
        print("Values not compared one to one, and why:")
        for label, n in notes:
            print(f"* {label}, {n}")


def throughput(batch: int, duration_ms: float, rate_hz: float, devices: list[str], repeat: int, seed: int) -> None:
    model = get_model("morris_lecar")
    rng = np.random.default_rng(seed)
    theta = np.tile(model.theta(preset="snlc"), (batch, 1))
    for name, frac in PERTURB.items():
        theta[:, model.param_index(name)] *= 1.0 + frac * rng.uniform(-1.0, 1.0, batch)
    dt = 1000.0 / rate_hz
    t = time.perf_counter()
    sim = simulate(model, theta, duration=duration_ms, dt=dt, preset="snlc", states=["V"], device="cpu",
                   dtype=torch.float64, compile=False)
    v = sim.v
    print(f"# throughput batch: {batch} Morris–Lecar SNLC traces (gCa, gK, gL ±5 %, φ ±10 %), {duration_ms:g} ms at "
          f"{rate_hz / 1000:g} kHz = {v.shape[1]} samples each (simulated in {time.perf_counter() - t:.0f} s, "
          "not timed)")
    print()
    header = (f"| {'device':<6} | {'dtype':<7} | {'B':>5} | {'T':>6} | {'all features s':>14} | {'traces/s':>9} | "
              f"{'spike times s':>13} | {'traces/s':>9} | {'spikes/trace':>12} |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            x = v.to(device=device, dtype=dtype)
            batch_features(x, dt)  # warm-up (CUDA context, allocator)
            _sync(device)
            best_f = best_s = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                feats = batch_features(x, dt)
                _sync(device)
                best_f = min(best_f, time.perf_counter() - t)
                t = time.perf_counter()
                batch_spike_times(x, dt)
                _sync(device)
                best_s = min(best_s, time.perf_counter() - t)
            assert set(feats) == set(FEATURE_NAMES)
            print(f"| {device:<6} | {str(dtype).replace('torch.', ''):<7} | {batch:>5} | {x.shape[1]:>6} | "
                  f"{best_f:>14.3f} | {batch / best_f:>9.0f} | {best_s:>13.3f} | {batch / best_s:>9.0f} | "
                  f"{feats['spike_count'].float().mean().item():>12.1f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recordings", type=Path, default=DEFAULT_RECORDINGS,
                    help="folder of the shared real recordings (default ../shared/data/recordings beside the repo)")
    ap.add_argument("--no-recordings", action="store_true", help="skip the real recordings")
    ap.add_argument("--no-simulated", action="store_true", help="skip the simulated cases")
    ap.add_argument("--no-throughput", action="store_true", help="skip the throughput table")
    ap.add_argument("--batch", type=int, default=1000, help="traces in the throughput batch (default 1000)")
    ap.add_argument("--duration", type=float, default=1000.0, help="throughput trace length in ms (default 1000)")
    ap.add_argument("--rate", type=float, default=10000.0, help="throughput sampling rate in Hz (default 10000)")
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all",
                    help="throughput on cpu, cuda, or all (= cpu and, where present, cuda; default)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per configuration; the best counts")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            devices.append("cuda")
        elif args.device == "cuda":
            ap.error("--device cuda: CUDA is not available")
    import efel

    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else None
    print("# neo_pinn features benchmark: agreement with eFEL and batched throughput")
    print(f"# host {platform.node() or '?'} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, efel {efel.__version__}"
          + (f", GPU {gpu}" if gpu else ""))
    print(f"# bars: spike counts identical, |Δ amplitude| ≤ {AMPLITUDE_TOL_MV:g} mV, |Δ half width| ≤ "
          f"{WIDTH_TOL_MS:g} ms, |Δ ISI| ≤ {ISI_TOL_MS:g} ms (per spike / per ISI); re-arm = threshold for the "
          "comparison; 'spikes, default re-arm' counts with re-arm 10 mV below threshold")
    print()
    rows = []
    if not args.no_simulated:
        rows += [agreement_row(c) for c in simulated_cases()]
    if not args.no_recordings:
        if args.recordings.is_dir():
            rows += [agreement_row(c) for c in recording_cases(args.recordings)]
        else:
            print(f"# recordings folder {args.recordings} not found: real recordings skipped")
    if rows:
        print_agreement(rows)
        print()
    if not args.no_throughput:
        throughput(args.batch, args.duration, args.rate, devices, args.repeat, args.seed)
    failed = [r["label"] for r in rows if not r["ok"]]
    if rows:
        print()
        print(f"# agreement: {len(rows) - len(failed)}/{len(rows)} cases pass" + (f"; FAIL: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
