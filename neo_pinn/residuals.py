"""Voltage residuals, their RMSE and the observation noise they imply: written once for every backend.

The residual of a sweep is the recorded voltage minus the reconstructed (fitted) one, in mV, on the
sweep's samples. Several sweeps are pooled sample by sample (a long sweep weighs more than a short one).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .noise import AR1Noise, NoiseModel, fit_ar1

__all__ = ["rms", "voltage_residuals", "voltage_rmse", "noise_from_residuals"]


def rms(x) -> float:
    """Root mean square of an array, or of several arrays pooled (same units as ``x``)."""
    if isinstance(x, (list, tuple)):
        x = np.concatenate([np.asarray(a, dtype=float).reshape(-1) for a in x]) if x else np.zeros(0)
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x * x))) if x.size else float("nan")


def voltage_residuals(traces: Sequence, states: Sequence) -> list[np.ndarray]:
    """Recorded minus reconstructed voltage per sweep, mV.

    Parameters
    ----------
    traces : sequence of Trace
        The recorded sweeps.
    states : sequence of numpy.ndarray
        Reconstructed states per sweep, (T, S) with the voltage in column 0, or the voltage alone (T,).
    """
    if len(traces) != len(states):
        raise ValueError(f"{len(states)} reconstructions for {len(traces)} sweeps.")
    out = []
    for tr, st in zip(traces, states):
        st = np.asarray(st, dtype=float)
        v = st[:, 0] if st.ndim == 2 else st
        out.append(np.asarray(tr.v, dtype=float) - v)
    return out


def voltage_rmse(traces: Sequence, states: Sequence) -> float:
    """RMSE (mV) of the reconstructed voltage against the recording, pooled over every sample of every sweep."""
    return rms(voltage_residuals(traces, states))


def noise_from_residuals(residuals, noise: NoiseModel | None = None) -> dict[str, float]:
    """Observation-noise estimate from voltage residuals under the problem's noise model.

    Parameters
    ----------
    residuals : numpy.ndarray or sequence of numpy.ndarray
        Residuals (mV); several sweeps are pooled.
    noise : NoiseModel or None
        The assumed model: :class:`~neo_pinn.noise.AR1Noise` gives ``sigma`` (marginal) and ``rho`` (lag-one
        correlation, moment estimate); anything else gives the white ``sigma`` = RMS of the residual.

    Returns
    -------
    dict
        ``{"sigma": ...}`` or ``{"sigma": ..., "rho": ...}``.
    """
    if isinstance(noise, AR1Noise):
        pooled = np.concatenate([np.asarray(r, float).reshape(-1) for r in residuals]) \
            if isinstance(residuals, (list, tuple)) else np.asarray(residuals, float)
        est = fit_ar1(pooled)
        return {"sigma": float(est.sigma), "rho": float(est.rho)}
    return {"sigma": rms(residuals)}
