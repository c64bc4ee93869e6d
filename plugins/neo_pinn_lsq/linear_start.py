"""Better starts for lsq: the parameters that enter the voltage equation linearly, solved from the recording.

With the hidden states driven by the recorded voltage (:func:`neo_pinn.toolkit.driven_hidden_states`), the
voltage equation of a conductance-based model is affine in its maximal conductances (and leak): over any
stretch [a, b] of the recording, ``V(b) − V(a) = ∫ dV/dt`` is then a linear function of them, solved by least
squares over many short stretches (the integral form keeps the noise of the recorded voltage out of a
derivative). Each start keeps its other parameters; a far start of the conductances is replaced by values the
recording supports, from which the shooting fit no longer falls into a wrong valley (a start at 2× the
Hodgkin–Huxley conductances did).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neo_pinn.models.base import NeuronModel
from neo_pinn.toolkit import driven_hidden_states

__all__ = ["linear_free_parameters", "linear_start"]

#: relative size of the second differences below which the voltage equation counts as linear in a parameter
LINEAR_TOL = 1e-6
#: length of the stretches of the integral form, ms
STRETCH_MS = 1.0


def _voltage_rate(model: NeuronModel, theta: np.ndarray, y: np.ndarray, i_ext: np.ndarray) -> np.ndarray:
    """dV/dt (n, T) of parameter vectors ``theta`` (n, P) at states ``y`` (n, T, S) under currents (T,) in pA."""
    n, T, S = y.shape
    th = np.repeat(theta, T, axis=0)
    with np.errstate(all="ignore"):
        f = model.rhs(0.0, y.reshape(n * T, S), th, np.tile(i_ext, n))
    return np.asarray(f, dtype=float)[:, 0].reshape(n, T)


def _running_integral(g: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∫ g dt from t[0] to every sample (trapezoids), shape of ``t``."""
    return np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(t))])


def linear_free_parameters(model: NeuronModel, theta: np.ndarray, free_index: Sequence[int], y: np.ndarray,
                           i_ext: np.ndarray) -> list[int]:
    """Positions in ``free_index`` of the free parameters in which dV/dt is jointly affine and not constant.

    Parameters
    ----------
    model : NeuronModel
    theta : numpy.ndarray
        One full parameter vector (P,), canonical units (non-zero where tested).
    free_index : sequence of int
        Indices of the free parameters into ``theta``.
    y : numpy.ndarray
        States (T, S) at which the voltage equation is evaluated (V recorded, hidden states driven).
    i_ext : numpy.ndarray
        Current (T,) in pA.
    """
    def rate(scales: dict[int, float]) -> np.ndarray:
        th = theta.copy()
        for k, s in scales.items():
            th[k] *= s
        return _voltage_rate(model, th[None], y[None], i_ext)[0]

    base = rate({})
    if not np.all(np.isfinite(base)):
        return []
    picked: list[int] = []
    for pos, k in enumerate(free_index):
        if theta[k] == 0:
            continue
        f2, f3 = rate({k: 2.0}), rate({k: 3.0})
        slope = np.max(np.abs(f2 - base))
        if not slope > 0 or np.max(np.abs(f3 - 2 * f2 + base)) > LINEAR_TOL * slope:
            continue
        if all(np.max(np.abs(rate({k: 2.0, free_index[j]: 2.0}) - f2 - rate({free_index[j]: 2.0}) + base))
               <= LINEAR_TOL * slope for j in picked):
            picked.append(pos)
    return picked


def linear_start(model: NeuronModel, theta: np.ndarray, free_index: Sequence[int], traces: Sequence,
                 gates: np.ndarray, bounds: np.ndarray, max_dt: float) -> np.ndarray:
    """Each start ``theta`` (n, P) with its linear free parameters solved from the recorded voltage.

    Parameters
    ----------
    model : NeuronModel
    theta : numpy.ndarray
        Full parameter vectors of the starts (n, P), canonical units.
    free_index : sequence of int
        Indices of the free parameters.
    traces : sequence of Trace
        The recorded sweeps (voltage mV, held current pA, times ms).
    gates : numpy.ndarray
        (S,) bool, the gating variables.
    bounds : numpy.ndarray
        (F, 2) bounds of the free parameters; solutions are clipped into them.
    max_dt : float
        Largest step of the driven integration, ms.

    Returns
    -------
    numpy.ndarray
        (n, P): the starts, their linear free parameters replaced where the solve succeeded.
    """
    theta = np.array(theta, dtype=float)
    out = theta.copy()
    hidden_all = [driven_hidden_states(model, theta, tr.t, tr.v, tr.i_ext, gates, max_dt=max_dt) for tr in traces]
    # which parameters are linear is the model's structure: found once, on the first start and sweep
    tr0 = traces[0]
    linear = linear_free_parameters(model, theta[0], free_index,
                                    np.concatenate([tr0.v[:, None], hidden_all[0][0]], 1), tr0.i_ext)
    if not linear:
        return out
    for e in range(theta.shape[0]):
        rows, rhs = [], []
        for tr, hidden in zip(traces, hidden_all):
            y = np.concatenate([tr.v[:, None], hidden[e]], 1)
            cols = [free_index[p] for p in linear]
            f = _voltage_rate(model, theta[e][None], y[None], tr.i_ext)[0]
            basis = []
            for k in cols:  # d(dV/dt)/dθ_k, exact for an affine equation
                th = theta[e].copy()
                th[k] += 1.0
                basis.append(_voltage_rate(model, th[None], y[None], tr.i_ext)[0] - f)
            basis = np.array(basis)                                      # (L, T)
            offset = f - theta[e][cols] @ basis                           # dV/dt with the linear terms removed
            step = max(1, int(round(STRETCH_MS / float(np.median(np.diff(tr.t))))))
            ends = np.arange(0, tr.t.size, step)
            a, b = ends[:-1], ends[1:]
            F0 = _running_integral(offset, tr.t)
            B = np.array([_running_integral(g, tr.t) for g in basis])
            rows.append((B[:, b] - B[:, a]).T)
            rhs.append(tr.v[b] - tr.v[a] - (F0[b] - F0[a]))
        A, r = np.concatenate(rows), np.concatenate(rhs)
        ok = np.all(np.isfinite(A), 1) & np.isfinite(r)
        if ok.sum() < 2 * len(linear):
            continue
        sol, *_ = np.linalg.lstsq(A[ok], r[ok], rcond=None)
        if not np.all(np.isfinite(sol)):
            continue
        for p, value in zip(linear, sol):
            lo, hi = bounds[p]
            out[e, free_index[p]] = float(np.clip(value, lo, hi))
    return out
