"""Hidden states driven by the recorded voltage: what the gates would do if the parameters were right.

The hidden states are integrated (RK4) with the recorded voltage in place of V, from where their own
equations are at rest. Backends use them as starting values wherever a hidden state must be guessed from a
recording: lsq's shooting nodes, the pinn's warm start, residual scales and parameter screen.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..models.base import NeuronModel, quasi_steady_states

__all__ = ["quasi_steady_hidden", "integration_grid", "driven_on_grid", "driven_hidden_states"]

#: ``lag(t, v, idx)``: the grid position where the voltage repeats the window's start, or None
RepeatLag = Callable[[np.ndarray, np.ndarray, np.ndarray], "int | None"]


def quasi_steady_hidden(model: NeuronModel, theta: np.ndarray, v0: float, i0: float, gates: np.ndarray,
                        iterations: int = 12) -> np.ndarray:
    """Hidden states (E, S−1) where their own equations are at rest with V clamped at ``v0`` (mV), under
    the current ``i0`` (pA).

    :func:`~neo_pinn.models.base.quasi_steady_states` (float64, CPU), started at 0.5 for gates
    and at each state's scale otherwise; gates are kept inside [1e-4, 1 − 1e-4].
    """
    theta_t = torch.as_tensor(np.asarray(theta, float), dtype=torch.float64)
    E = theta_t.shape[0]
    guess = np.array([float(v0)] + [0.5 if g else s.scale for g, s in zip(gates[1:], model.states[1:])])
    states = quasi_steady_states(model, theta_t, torch.full((E,), float(v0), dtype=torch.float64),
                                 torch.full((E,), float(i0), dtype=torch.float64), guess, gates=gates,
                                 iterations=iterations, gate_margin=1e-4)
    return states[:, 1:].numpy()


def integration_grid(t: np.ndarray, max_dt: float) -> np.ndarray:
    """Sample indices strided down to steps of at most ``max_dt`` (ms), last sample included."""
    dt_s = float(np.median(np.diff(t))) if t.size > 1 else max_dt
    stride = max(1, int(np.floor(max_dt / dt_s + 1e-9)))
    idx = np.arange(0, t.size, stride)
    if idx[-1] != t.size - 1:
        idx = np.append(idx, t.size - 1)
    return idx


def driven_on_grid(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                   gates: np.ndarray, idx: np.ndarray, spinup: RepeatLag | None = None) -> np.ndarray:
    """Hidden states (E, len(idx), S−1) integrated (RK4) over the sample indices ``idx`` (from
    :func:`integration_grid`) with ``v`` (mV) in place of V; times ``t`` in ms, current ``i_ext`` in pA.
    Arguments as in :func:`driven_hidden_states`; non-finite rows are left non-finite."""
    x0 = quasi_steady_hidden(model, theta, float(v[0]), float(i_ext[0]), gates)
    E = theta.shape[0]

    def f(tt, vv, ii, xx):
        y = np.concatenate([np.full((E, 1), vv), xx], 1)
        return model.rhs(tt, y, theta, ii)[:, 1:]

    def integrate(x, upto=None):
        n_out = idx.size if upto is None else upto + 1
        out = np.empty((E, n_out, model.n_states - 1))
        out[:, 0] = x
        with np.errstate(all="ignore"):
            for k in range(n_out - 1):
                a, b = idx[k], idx[k + 1]
                h = t[b] - t[a]
                vm = 0.5 * (v[a] + v[b])
                k1 = f(t[a], v[a], i_ext[a], x)
                k2 = f(t[a] + h / 2, vm, i_ext[a], x + h / 2 * k1)
                k3 = f(t[a] + h / 2, vm, i_ext[a], x + h / 2 * k2)
                k4 = f(t[b], v[b], i_ext[a], x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                x = np.where(gates[1:], np.clip(x, 0.0, 1.0), x)
                out[:, k + 1] = x
        return out

    out = integrate(x0)
    if spinup:
        # the start of the window is the hidden states' least known point. For the (near) periodic windows
        # of oscillating cells the state one period later should equal it: x0 is the fixed point of
        # x0 ↦ x(L; x0), L the lag at which the recording repeats its start. A slow state (Ca, τ of
        # hundreds of ms) forgets a wrong x0 only slowly, and the error biases its rate; the map is
        # (near) affine in x0, so two passes and an Aitken step find the fixed point.
        lag = spinup(t, v, idx)
        ok0 = np.isfinite(out).all(axis=(1, 2))
        if lag is None:
            end = out[:, -1]
            x_fix = np.where(np.isfinite(end), end, x0)
        else:
            a1 = out[:, lag]
            a2 = integrate(np.where(np.isfinite(a1), a1, x0), upto=lag)[:, -1]
            d1, d2 = a1 - x0, a2 - a1
            with np.errstate(all="ignore"):
                s = np.clip(np.where(np.abs(d1) > 1e-12, d2 / d1, 0.0), 0.0, 0.95)
                x_fix = a1 + d2 / (1.0 - s)
            x_fix = np.where(gates[1:], np.clip(x_fix, 0.0, 1.0), x_fix)
            x_fix = np.where(np.isfinite(x_fix), x_fix, np.where(np.isfinite(a2), a2, x0))
        second = integrate(x_fix)
        second_ok = np.isfinite(second).all(axis=(1, 2))
        out = np.where((second_ok | ~ok0)[:, None, None], second, out)
    return out


def driven_hidden_states(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                         gates: np.ndarray, max_dt: float = 0.1, spinup: RepeatLag | None = None) -> np.ndarray:
    """Hidden states (E, T, S−1) integrated (RK4) with the recorded voltage in place of V.

    Parameters
    ----------
    model : NeuronModel
    theta : numpy.ndarray
        (E, P) parameter vectors, one per ensemble member.
    t, v, i_ext : numpy.ndarray
        One sweep: time (ms), voltage (mV) and current (pA), (T,).
    gates : numpy.ndarray
        (S,) bool, states kept in [0, 1].
    max_dt : float
        Largest integration step, ms (the sampling grid is strided down to it; values between steps are
        interpolated linearly).
    spinup : callable, optional
        ``lag(t, v, idx)``: integrate a second time from a better start — the fixed point of one period's map
        at the grid position where the voltage repeats itself (the lag's answer), else where the first pass
        ended. None: one pass.

    Returns
    -------
    numpy.ndarray
        Starting from the quasi-steady state at ``v[0]``; non-finite results are replaced by that state.
    """
    idx = integration_grid(t, max_dt)
    out = driven_on_grid(model, theta, t, v, i_ext, gates, idx, spinup)
    bad = ~np.isfinite(out)
    if bad.any():
        x0 = quasi_steady_hidden(model, theta, float(v[0]), float(i_ext[0]), gates)
        out = np.where(bad, x0[:, None, :], out)
    full = np.empty((theta.shape[0], t.size, model.n_states - 1))
    for j in range(model.n_states - 1):
        for e in range(theta.shape[0]):
            full[e, :, j] = np.interp(t, t[idx], out[e, :, j])
    return full
