"""Scores of an amortized estimator on simulated data: R², RMSE, interval coverage, temperature.

All functions are plain numpy. Coverage and temperature are computed in the network's scaled coordinate,
where the predictive distribution of each target is Gaussian; central intervals map monotonically to
physical units, so a coverage is the same in either.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtri

__all__ = ["r2_score", "coverage", "temperature", "score", "z_quantile", "LEVELS"]

#: nominal interval levels reported (the issue asks for 50 % and 90 % within ±5 points)
LEVELS = (0.5, 0.9)


def z_quantile(level: float) -> float:
    """Half-width of the central ``level`` interval of a standard normal (1.645 for 0.9)."""
    return float(ndtri(0.5 + 0.5 * float(level)))


def r2_score(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column: 1 − SS_res / SS_tot (truth and pred (N, P))."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    ss_res = ((truth - pred) ** 2).sum(0)
    ss_tot = ((truth - truth.mean(0)) ** 2).sum(0)
    return 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)


def coverage(truth_z: np.ndarray, mean_z: np.ndarray, std_z: np.ndarray, level: float) -> np.ndarray:
    """Fraction of truths inside the central ``level`` interval, per column (scaled coordinate)."""
    return (np.abs(truth_z - mean_z) <= z_quantile(level) * std_z).mean(0)


def temperature(truth_z: np.ndarray, mean_z: np.ndarray, std_z: np.ndarray,
                levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Per-column factor ``τ`` on the predicted std that makes the central intervals' coverage right.

    ``τ`` minimises the summed squared coverage error at ``levels``, searched on a log grid from 1/4 to 4
    around the maximum-likelihood factor ``sqrt(mean(((y − μ)/σ)²))`` — a Gaussian with the wrong tails
    would otherwise trade the 50 % interval against the 90 % one.
    """
    r = np.abs(truth_z - mean_z) / std_z                      # (N, P)
    mle = np.sqrt(np.mean(r * r, 0))
    grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 241))  # relative to the MLE
    out = np.empty(r.shape[1])
    for k in range(r.shape[1]):
        taus = mle[k] * grid
        err = sum(((r[:, k, None] <= z_quantile(lv) * taus[None, :]).mean(0) - lv) ** 2 for lv in levels)
        best = np.flatnonzero(err <= err.min() + 1e-12)
        out[k] = taus[best[len(best) // 2]]                    # the middle of a flat optimum
    return out


def score(truth: np.ndarray, mean: np.ndarray, truth_z: np.ndarray, mean_z: np.ndarray, std_z: np.ndarray,
          names: Sequence[str], levels: Sequence[float] = LEVELS) -> dict[str, dict[str, float]]:
    """Per-target ``r2``, ``rmse`` (physical units), ``coverage_50``/``coverage_90``, ``mean_std_z``.

    Parameters
    ----------
    truth, mean : numpy.ndarray
        True and predicted values, physical units (N, P).
    truth_z, mean_z, std_z : numpy.ndarray
        The same in the scaled coordinate, and the predicted (calibrated) standard deviations there.
    names : sequence of str
        Target names.
    """
    r2 = r2_score(truth, mean)
    rmse = np.sqrt(((np.asarray(truth) - np.asarray(mean)) ** 2).mean(0))
    cov = {lv: coverage(truth_z, mean_z, std_z, lv) for lv in levels}
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(names):
        row: Mapping[str, float] = {"r2": float(r2[k]), "rmse": float(rmse[k]),
                                    **{f"coverage_{round(lv * 100)}": float(cov[lv][k]) for lv in levels},
                                    "mean_std_z": float(np.mean(std_z[:, k]))}
        out[name] = dict(row)
    return out
