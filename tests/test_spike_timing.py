"""Acceptance test: spike times of the batched simulator agree with a tight scipy reference.

``simulate()`` (RK4, dt = 0.01 ms, float64) against ``solve_ivp`` (LSODA, rtol 1e-10, atol 1e-12) on the
same equations, over 1 s: every spike must be matched and the largest |Δt| must stay below 0.1 ms, for
Morris–Lecar (hopf, snlc, homoclinic presets) and Hodgkin–Huxley (tonic; tonic_strong and rest too).

Spike times are upward crossings of the model's threshold (0 mV), located below the sampling step by
cubic Hermite interpolation between the two samples around the crossing, with the slopes dV/dt taken
from the model's right-hand side at those samples (error O(dt⁴), far below the tolerance). The same
procedure is applied to both solutions, sampled on the same 0.01 ms grid. ``pytest -s`` prints the
max |Δt| per preset.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from neo_pinn.features import spike_times
from neo_pinn.models import HodgkinHuxley, MorrisLecar
from neo_pinn.reference import reference_solution
from neo_pinn.simulation import simulate

DT = 0.01  # ms
DURATION = 1000.0  # ms
TOLERANCE_MS = 0.1
#: Same chunk length as tests/test_models.py: the Hodgkin–Huxley batch below is the very call made
#: there, so when both files run in one session its compiled kernel is reused.
CHUNK = 2

ML, HH = MorrisLecar(), HodgkinHuxley()
BATCHES = {
    "morris_lecar": (ML, ("hopf", "snlc", "homoclinic")),
    "hodgkin_huxley": (HH, ("rest", "tonic", "tonic_strong")),
}
#: (model, preset, minimum number of spikes expected in 1 s)
CASES = [("morris_lecar", "hopf", 10), ("morris_lecar", "snlc", 15), ("morris_lecar", "homoclinic", 20),
         ("hodgkin_huxley", "tonic", 65), ("hodgkin_huxley", "tonic_strong", 110), ("hodgkin_huxley", "rest", 0)]


@functools.lru_cache(maxsize=None)
def _simulated(batch: str):
    """All presets of a model in one simulate() call: t (R,), y (B, R, S)."""
    model, presets = BATCHES[batch]
    n_steps = int(round(DURATION / DT))
    theta = np.stack([model.theta(preset=p) for p in presets])
    y0 = np.stack([model.initial_state(p) for p in presets])
    currents = np.array([model.preset(p).i_ext for p in presets])
    i_ext = np.repeat(currents[:, None], n_steps + 1, axis=1)  # one constant current per row
    sim = simulate(model, theta, y0=y0, i_ext=i_ext, duration=DURATION, dt=DT, method="rk4", dtype=torch.float64,
                   device="cpu", compile=True, chunk_steps=CHUNK)
    return sim.numpy()


def refined_spike_times(model, t, y, theta, i_ext) -> np.ndarray:
    """Upward threshold crossings of y[:, 0], located by cubic Hermite interpolation between samples."""
    v = y[:, 0]
    thr = model.spike_threshold
    linear = spike_times(v, t, thr, model.spike_rearm)
    out = np.empty_like(linear)
    for j, ts in enumerate(linear):
        k = int(np.searchsorted(t, ts, side="right")) - 1
        k = min(max(k, 0), t.size - 2)
        while k > 0 and v[k] >= thr:  # ts fell on a sample: step back to the bracketing interval
            k -= 1
        h = t[k + 1] - t[k]
        f = model.rhs(np.array([t[k], t[k + 1]]), y[k:k + 2], theta, i_ext)[:, 0] * h
        p0, p1, m0, m1 = v[k] - thr, v[k + 1] - thr, f[0], f[1]

        def hermite(s):
            s2, s3 = s * s, s * s * s
            return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1
                    + (s3 - s2) * m1)

        out[j] = t[k] + h * brentq(hermite, 0.0, 1.0, xtol=1e-14) if p0 < 0 <= p1 else ts
    return out


@pytest.mark.parametrize("batch,preset,min_spikes", CASES, ids=[f"{b}-{p}" for b, p, _ in CASES])
def test_spike_times_match_scipy_reference(batch, preset, min_spikes):
    model, presets = BATCHES[batch]
    theta = model.theta(preset=preset)
    i_ext = model.preset(preset).i_ext
    t, y = _simulated(batch)
    y_sim = y[presets.index(preset)]
    t_ref, y_ref = reference_solution(model, preset=preset, duration=DURATION, t_eval=t, method="LSODA",
                                      rtol=1e-10, atol=1e-12)
    st = refined_spike_times(model, t, y_sim, theta, i_ext)
    st_ref = refined_spike_times(model, t_ref, y_ref, theta, i_ext)
    n = st_ref.size
    assert n >= min_spikes, f"{batch}/{preset}: only {n} reference spikes in {DURATION} ms"
    assert st.size == n, f"{batch}/{preset}: simulate found {st.size} spikes, scipy {n}"
    max_dt = float(np.max(np.abs(st - st_ref))) if n else 0.0
    print(f"\n[spike timing] {batch}/{preset}: {n} spikes in {DURATION:g} ms, max |Δt| = {max_dt:.3e} ms "
          f"(RK4 dt = {DT} ms vs LSODA rtol 1e-10)")
    assert max_dt < TOLERANCE_MS, f"{batch}/{preset}: max |Δt| = {max_dt:.4g} ms over {n} spikes (limit {TOLERANCE_MS})"
    if n >= 2:  # sanity: the Hermite refinement only moves the linear estimate by a fraction of a step
        lin = spike_times(y_sim[:, 0], t, model.spike_threshold, model.spike_rearm)
        assert np.max(np.abs(lin - st)) < DT
