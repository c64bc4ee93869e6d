"""What ``bench_pinode.py`` measures with: ground truth from the reference solver (cached), the spike and forecast
scores, the Hodgkin–Huxley window on the limit cycle, a third-party model with an M-type current, and the choice of
a regularly firing sweep of a real recording.

Ground truth never comes from the simulator the fits use: every true trajectory is
``neo_pinn.reference.reference_solution(..., method="Radau", rtol=1e-9, atol=1e-11)`` (scipy's stiff implicit
solver), sampled every 0.05 ms and cached as ``.npz`` files named by a hash of their settings.

The model :class:`HodgkinHuxleyM` (Hodgkin–Huxley plus a slow M-type K⁺ current) is written and registered exactly
as a third party would: a :class:`neo_pinn.NeuronModel` subclass, and this module's
``@hookimpl neo_pinn_register_models`` registered with :func:`neo_pinn.plugins.register_plugin`
(:func:`register_mcurrent_model`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neo_pinn.hookspecs import hookimpl
from neo_pinn.models.base import NeuronModel, ParameterSpec, Preset, StateSpec
from neo_pinn.models.elementwise import exp, sigmoid
from neo_pinn.models.hodgkin_huxley import HodgkinHuxley

#: the shared recordings beside the repository (override with the environment variable NEO_PINN_RECORDINGS)
RECORDINGS = Path(os.environ.get("NEO_PINN_RECORDINGS",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"))
#: reference solver settings of every ground truth
SOLVER = {"method": "Radau", "rtol": 1e-9, "atol": 1e-11}
DT_OUT = 0.05
#: spike detection (0 mV upward crossings, re-armed below −10 mV)
THRESHOLD, REARM = 0.0, -10.0
MCURRENT_MODEL = "hodgkin_huxley_m"
MCURRENT_PLUGIN = "bench_pinode_mcurrent"


# ---------------------------------------------------------------------------------------------- the third-party model
class HodgkinHuxleyM(NeuronModel):
    """Hodgkin–Huxley with a slow M-type K⁺ current (spike-frequency adaptation): V (mV), m, h, n, w.

    ``I_M = gM·w·(V − EK)``, ``dw/dt = (w∞(V) − w)/τ_w(V)``, ``w∞ = 1/(1 + exp(−(V + 35)/10))``,
    ``τ_w = tau_max/(3.3·exp((V + 35)/20) + exp(−(V + 35)/20))``; the rest is :class:`HodgkinHuxley`.
    """

    name = MCURRENT_MODEL
    description = "Hodgkin–Huxley + slow M-type K+ current (bench_pinode's third-party model)"
    reference = "Hodgkin & Huxley 1952; M-current kinetics as in Yamada, Koch & Adams 1989 / Pospischil et al. 2008"
    states = HodgkinHuxley.states + (StateSpec("w", "dimensionless", 0.3, "M-current activation"),)
    parameters = HodgkinHuxley.parameters + (
        ParameterSpec("gM", "nS", 1.0, (0.0, 20.0), False, "M-type K+ conductance (mS/cm²)"),
        ParameterSpec("tau_max", "ms", 200.0, (10.0, 2000.0), True, "largest M-current time constant"),
    )
    presets = {
        "adapting": Preset("adapting", {}, 20.0, (-64.996, 0.05296, 0.5960, 0.3177, 0.0474), "tonic",
                           "I = 20 µA/cm², gM = 1: tonic firing at 66.4 Hz (plain HH: 86.5 Hz); at I = 10 it stops "
                           "after one spike", {"rate_hz": 66.4}, 300.0),
    }
    default_preset = "adapting"
    spike_threshold = 0.0
    spike_rearm = -10.0
    default_free = ("gNa", "gK", "gL", "gM")

    def derivatives(self, t, state, p, i_ext):
        V, mg, h, n, w = state
        i_m = p["gM"] * w * (V - p["EK"])
        dV, dm, dh, dn = HodgkinHuxley.derivatives(self, t, (V, mg, h, n), p, i_ext - i_m)
        u = (V + 35.0) / 20.0
        w_inf = sigmoid((V + 35.0) / 10.0)
        tau_w = p["tau_max"] / (3.3 * exp(u) + exp(-u))
        return dV, dm, dh, dn, (w_inf - w) / tau_w


def m_current(states: np.ndarray, g_m: float, e_k: float = -77.0) -> np.ndarray:
    """The M current ``gM·w·(V − EK)`` (pA, outward positive) of HodgkinHuxleyM states (T, 5)."""
    return g_m * states[:, 4] * (states[:, 0] - e_k)


@hookimpl
def neo_pinn_register_models(registry):
    """The third party's hook: register :class:`HodgkinHuxleyM`."""
    registry.register(HodgkinHuxleyM())


def register_mcurrent_model() -> NeuronModel:
    """Register this module as a plugin (once) and return the model from the registry, as a user would get it."""
    from neo_pinn import plugins
    from neo_pinn.api import get_model, list_models

    if MCURRENT_MODEL not in list_models():
        plugins.register_plugin(sys.modules[__name__], name=MCURRENT_PLUGIN)
    return get_model(MCURRENT_MODEL)


# ---------------------------------------------------------------------------------------------- cached ground truth
def reference(model: NeuronModel, theta: dict[str, float] | None, duration: float, i_ext: float, y0: Sequence[float],
              cache: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The Radau solution (t, states, info) from t = 0, sampled every 0.05 ms; read from ``cache`` when there.

    ``info`` holds the settings, whether it came from the cache and the solve's wall time.
    """
    from neo_pinn.reference import reference_solution

    full = model.theta(dict(theta or {}))
    settings = {"model": model.name, "theta": [float(x) for x in full], "param_names": list(model.param_names),
                "duration_ms": float(duration), "dt_out_ms": DT_OUT, "i_ext_pA": float(i_ext),
                "y0": [float(x) for x in y0], **SOLVER}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = None if cache is None else Path(cache) / f"{model.name}_{duration:g}ms_{key}.npz"
    if path is not None and path.exists():
        with np.load(path) as z:
            return z["t"], z["y"], settings | {"cached": True, "solve_s": float(z["solve_s"]), "file": str(path)}
    start = time.perf_counter()
    t, y = reference_solution(model, full, duration=duration, dt_out=DT_OUT, i_ext=float(i_ext),
                              y0=np.asarray(y0, float), **SOLVER)
    wall = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, t=t, y=y, solve_s=wall, settings=json.dumps(settings))
        os.replace(tmp, path)
    return t, y, settings | {"cached": False, "solve_s": wall, "file": None if path is None else str(path)}


# ---------------------------------------------------------------------------------------------- spikes and scores
def spikes(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """0 mV upward crossings (interpolated), ms; none when ``v`` is not finite throughout."""
    from neo_pinn.features import spike_times

    if not np.isfinite(v).all():
        return np.empty(0)
    return spike_times(v, t, THRESHOLD, REARM)


def rate_hz(times: np.ndarray) -> float:
    """Firing rate from the mean inter-spike interval, Hz (0 with fewer than two spikes)."""
    return float(1000.0 / np.mean(np.diff(times))) if times.size >= 2 else 0.0


def rel_l2(est: np.ndarray, true: np.ndarray) -> float:
    """||est − true|| / ||true||."""
    est, true = np.asarray(est, float), np.asarray(true, float)
    if not np.isfinite(est).all():
        return math.nan
    return float(np.linalg.norm(est - true) / np.linalg.norm(true))


def trajectory_scores(t: np.ndarray, v_pred: np.ndarray, v_true: np.ndarray, *, drift_at: float = 100.0,
                      amplitude_after: float = 20.0) -> dict[str, Any]:
    """Forecast scores of a predicted voltage against the truth on the same times (ms from the window start).

    Returns spike counts, ``period_error`` (|mean ISI predicted − true| / true), ``amplitude_error`` (relative
    error of the peak-to-trough voltage over t > ``amplitude_after``) and ``drift_ms`` (the predicted spike nearest
    to the truth's last spike at or before ``drift_at``, minus that spike's time: robust to a spike missed earlier
    and to a spike drifting across ``drift_at``, exact while |drift| < half a period); NaN where undefined.
    """
    s_true, s_pred = spikes(v_true, t), spikes(v_pred, t)
    late = t > amplitude_after
    finite = bool(np.isfinite(v_pred).all())
    amp_true = float(np.ptp(v_true[late]))
    amp_pred = float(np.ptp(v_pred[late])) if finite else math.nan
    isi_true = float(np.mean(np.diff(s_true))) if s_true.size >= 2 else math.nan
    isi_pred = float(np.mean(np.diff(s_pred))) if s_pred.size >= 2 else math.nan
    k = int(np.searchsorted(s_true, drift_at, side="right")) - 1
    drift = float(s_pred[np.argmin(np.abs(s_pred - s_true[k]))] - s_true[k]) if k >= 0 and s_pred.size else math.nan
    return {"spikes_true": int(s_true.size), "spikes_pred": int(s_pred.size), "finite": finite,
            "period_true_ms": isi_true, "period_pred_ms": isi_pred,
            "period_error": abs(isi_pred - isi_true) / isi_true if math.isfinite(isi_pred) else math.nan,
            "amplitude_true_mV": amp_true, "amplitude_pred_mV": amp_pred,
            "amplitude_error": abs(amp_pred - amp_true) / amp_true if math.isfinite(amp_pred) else math.nan,
            "drift_ms": drift, "spike_times_true": s_true.tolist(), "spike_times_pred": s_pred.tolist()}


#: the forecast pass marks of the seed experiment
MARKS = {"period_error": 0.01, "amplitude_error": 0.05, "drift_ms": 1.0}


def forecast_passes(s: dict[str, Any]) -> bool:
    """Same spike count, period within 1 %, amplitude within 5 %, |drift| within 1 ms."""
    return (s["spikes_pred"] == s["spikes_true"] and _le(s["period_error"], MARKS["period_error"])
            and _le(s["amplitude_error"], MARKS["amplitude_error"]) and _le(abs(s["drift_ms"]), MARKS["drift_ms"]))


def _le(x: float, bar: float) -> bool:
    return math.isfinite(x) and x <= bar


def predicted_voltage(result, t_window: np.ndarray, span_ms: float) -> np.ndarray:
    """The fit's voltage on the window followed by its forecast, on ``t_window``'s grid from its start over
    ``span_ms`` (NaN where the fit gives nothing)."""
    dt = float(np.median(np.diff(t_window)))
    n = int(round(span_ms / dt)) + 1
    out = np.full(n, np.nan)
    fit = result.fits[0]
    idx = np.rint((fit.t - t_window[0]) / dt).astype(int)
    ok = (idx >= 0) & (idx < n)
    out[idx[ok]] = fit.states[ok, 0]
    for f in result.signals_of("forecast"):
        idx = np.rint((f.t - t_window[0]) / dt).astype(int)
        ok = (idx >= 0) & (idx < n)
        out[idx[ok]] = f.values[ok, 0]
    return out


# ---------------------------------------------------------------------------------------------- windows and data
def limit_cycle_window(t: np.ndarray, v: np.ndarray, after_ms: float, before_ms: float = 2.0,
                       extra_ms: float = 1.0) -> tuple[float, float, float]:
    """(start, length, period) of one oscillation: from ``before_ms`` before the first spike after ``after_ms``,
    one period (mean ISI after ``after_ms``) + ``extra_ms`` long."""
    s = spikes(v, t)
    late = s[s > after_ms]
    if late.size < 2:
        raise RuntimeError(f"the truth fires {late.size} spike(s) after {after_ms:g} ms; no limit cycle to cut")
    period = float(np.mean(np.diff(late)))
    return float(late[0] - before_ms), period + extra_ms, period


def cut(t: np.ndarray, y: np.ndarray, start: float, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples of ``[start, start + length]`` with time re-based to 0 at ``start`` (on the 0.05 ms grid)."""
    i0 = int(round((start - t[0]) / DT_OUT))
    n = int(round(length / DT_OUT)) + 1
    if i0 < 0 or i0 + n > t.size:
        raise RuntimeError(f"window {start:g}+{length:g} ms lies outside the truth (0–{t[-1]:g} ms)")
    return t[i0:i0 + n] - t[i0], y[i0:i0 + n]


def noisy(v: np.ndarray, percent: float, seed: int) -> tuple[np.ndarray, float]:
    """``v`` + white noise of sigma = ``percent`` % of its range (seeded); (noisy, sigma)."""
    sigma = percent / 100.0 * float(np.ptp(v))
    return v + sigma * np.random.default_rng(seed).standard_normal(v.size), sigma


def log_uniform_inits(truth: dict[str, float], draws: int, seed: int, low: float = 0.25,
                      high: float = 4.0) -> list[dict[str, float]]:
    """``draws`` initial guesses, each parameter log-uniform over [low, high] × its true value (seeded)."""
    rng = np.random.default_rng(seed)
    return [{k: float(v * math.exp(rng.uniform(math.log(low), math.log(high)))) for k, v in truth.items()}
            for _ in range(draws)]


# ---------------------------------------------------------------------------------------------- a real sweep
def pick_sweep(traces, *, min_spikes: int = 5) -> tuple[Any, dict[str, Any]] | tuple[None, str]:
    """The sweep that fires most regularly in its current step (or throughout, without a step protocol).

    Every sweep's step (:func:`neo_pinn.cell.protocol_steps`; the whole sweep when none) is scanned for 0 mV
    crossings; of the sweeps with at least ``min_spikes`` there, the one with the lowest coefficient of variation
    of its inter-spike intervals (the first interval left out: onset adaptation) wins, more spikes breaking ties.
    Returns (trace, why) or (None, reason).
    """
    from neo_pinn.cell import protocol_steps

    steps = protocol_steps(traces)
    rows = []
    for k, tr in enumerate(traces):
        a, b = (steps[k].onset_ms, steps[k].offset_ms) if steps else (float(tr.t[0]), float(tr.t[-1]))
        inside = (tr.t >= a) & (tr.t < b)
        s = spikes(tr.v[inside], tr.t[inside])
        if s.size < min_spikes:
            continue
        isi = np.diff(s)[1:]
        cv = float(np.std(isi) / np.mean(isi)) if isi.size >= 2 else math.inf
        rows.append((cv, -s.size, k, a, b, s))
    if not rows:
        return None, f"no sweep fires {min_spikes} or more spikes in its step"
    cv, neg, k, a, b, s = min(rows, key=lambda r: r[:3])
    tr = traces[k]
    before = spikes(tr.v, tr.t)
    before = before[before < a]
    why = {"sweep": int(tr.sweep), "step_ms": (a, b), "spikes": int(-neg), "isi_cv": cv,
           "step_pA": None if not steps else steps[k].amplitude_pA, "candidates": len(rows),
           "spike_times_ms": s.tolist(), "last_spike_before_ms": float(before[-1]) if before.size else None,
           "protocol": "step" if steps else "whole sweep (no step protocol)"}
    return tr, why


def real_window(why: dict[str, Any], fraction: float = 0.4, lead_ms: float = 20.0,
                after_spike_ms: float = 5.0) -> tuple[float, float, float]:
    """(fit start, fit end, forecast length) in the sweep's time.

    The fit starts ``lead_ms`` before the step (before the first spike without a step protocol), or
    ``after_spike_ms`` after a spike fired in that lead (never mid-spike), and ends midway between spike k and
    k + 1 of the step, k = max(3, ``fraction`` of its spikes); the forecast runs to the step's end.
    """
    s = np.asarray(why["spike_times_ms"])
    k = min(max(3, int(round(fraction * s.size))), s.size - 1)
    a, b = why["step_ms"]
    t0 = a - lead_ms if why["protocol"] == "step" else max(a, s[0] - lead_ms)
    prev = why.get("last_spike_before_ms")
    if prev is not None:
        t0 = max(t0, prev + after_spike_ms)
    t1 = 0.5 * (s[k - 1] + s[k])
    return float(t0), float(t1), float(b - t1)
