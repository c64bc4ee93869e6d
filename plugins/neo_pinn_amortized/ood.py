"""Out-of-distribution checks of the amortized estimator: is this recording like the training data?

An amortized network always returns a number, confident or not, even for a trace it has never seen the
like of. Two cheap checks say when that number is not to be trusted:

**Features** (:class:`FeatureStats`, :func:`feature_check`). At training time a few summary features of
every training trace (:data:`FEATURE_NAMES`, :func:`trace_features`) are reduced to per-feature robust
statistics — median, scale (1.4826 × MAD, with a floor) and the training range — and stored in the
estimator's manifest. A recorded trace is flagged when one of its features lies outside the training range
*and* more than ``z_limit`` robust scales from the median: both conditions, so that a multimodal feature
(spiking and silent traces) never flags a trace that lies between its modes, and a heavy tail inside the
range never flags either.

**Reconstruction** (:func:`reconstruction_check`). The estimate is simulated through the core and compared
with the recorded trace: the RMSE of the difference (model voltage unit) is set against a reference level,
the larger of the estimated noise standard deviation and the 95th percentile of the same RMSE for
posterior-predictive draws (a parameter set drawn from the posterior, simulated, plus noise drawn with the
drawn noise parameters). The posterior-predictive part matters for oscillating models: a small parameter
error drifts the phase of later spikes, so even a correct estimate of an in-distribution trace is some
noise levels away from it, and the posterior knows by how much. A trace whose reconstruction is more than
``factor`` times worse than that reference is flagged.

All functions are numpy; voltages are in the model's voltage unit (mV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from neo_pinn.errors import ConfigurationError

__all__ = ["FEATURE_NAMES", "FeatureStats", "FeatureCheck", "ReconstructionCheck", "trace_features",
           "feature_stats", "feature_check", "reconstruction_check", "DEFAULT_Z_LIMIT", "DEFAULT_RMSE_FACTOR"]

#: per-trace summary features (see :func:`trace_features`)
FEATURE_NAMES = ("mean", "std", "min", "max", "spikes", "mid_crossings", "diff_std", "diff_lag1")
#: features that count events: their robust scale is at least one event
_COUNTS = ("spikes", "mid_crossings")
#: default robust-z limit of the feature check
DEFAULT_Z_LIMIT = 6.0
#: default factor of the reconstruction check
DEFAULT_RMSE_FACTOR = 3.0
#: traces whose features are computed per chunk (memory: chunk × T × 8 bytes, a few times)
_CHUNK = 4096


def _upward_crossings(x: np.ndarray, high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Upward crossings of ``high`` per row of ``x`` (N, T), re-armed only after the row falls below ``low``."""
    state = np.where(x >= high[:, None], 1, np.where(x <= low[:, None], 0, -1))
    idx = np.where(state >= 0, np.arange(x.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(state, idx, 1)          # the last level reached (−1 before any)
    return ((filled[:, 1:] == 1) & (filled[:, :-1] == 0)).sum(1).astype(float)


def trace_features(traces: Any, spike_threshold: float, spike_rearm: float) -> np.ndarray:
    """Summary features of every trace, (N, len(FEATURE_NAMES)) float64, in :data:`FEATURE_NAMES` order.

    Parameters
    ----------
    traces : array_like
        (N, T) or (T,) voltages (the model's voltage unit, mV).
    spike_threshold, spike_rearm : float
        Spike detection levels of the model (mV): ``spikes`` counts upward crossings of the threshold,
        re-armed below ``spike_rearm``.

    Returns
    -------
    numpy.ndarray
        ``mean``, ``std``, ``min``, ``max`` (mV); ``spikes``; ``mid_crossings`` (upward crossings of
        three quarters of the trace's own range, re-armed below one quarter); ``diff_std`` (standard
        deviation of the first difference, mV: the noise's signature); ``diff_lag1`` (lag-one
        autocorrelation of the first difference: −0.5 for white noise, (ρ − 1)/2 for AR(1) noise).
    """
    x = np.atleast_2d(np.asarray(traces, dtype=float))
    if x.ndim != 2 or x.shape[1] < 3:
        raise ConfigurationError(f"trace_features needs traces of shape (N, T) with T ≥ 3; got {np.shape(traces)}.")
    out = np.empty((x.shape[0], len(FEATURE_NAMES)))
    for i in range(0, x.shape[0], _CHUNK):
        xb = x[i:i + _CHUNK]
        lo, hi = xb.min(1), xb.max(1)
        d = np.diff(xb, axis=1)
        dd = (d[:, 1:] * d[:, :-1]).sum(1) / np.maximum((d * d).sum(1), 1e-300)
        n = xb.shape[0]
        out[i:i + n] = np.stack([
            xb.mean(1), xb.std(1), lo, hi,
            _upward_crossings(xb, np.full(n, float(spike_threshold)), np.full(n, float(spike_rearm))),
            _upward_crossings(xb, lo + 0.75 * (hi - lo), lo + 0.25 * (hi - lo)),
            d.std(1), dd], 1)
    return out


@dataclass(frozen=True)
class FeatureStats:
    """Robust statistics of the training traces' features (stored in the manifest).

    Attributes
    ----------
    names : tuple of str
        Feature names (:data:`FEATURE_NAMES`).
    median, scale, low, high : tuple of float
        Per feature: median, robust scale (1.4826 × MAD, floored) and the training range [low, high].
    spike_threshold, spike_rearm : float
        The spike levels the ``spikes`` feature was counted with (mV).
    n : int
        Training traces summarised.
    """

    names: tuple[str, ...]
    median: tuple[float, ...]
    scale: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    spike_threshold: float
    spike_rearm: float
    n: int

    def __post_init__(self) -> None:
        k = len(self.names)
        if not all(len(v) == k for v in (self.median, self.scale, self.low, self.high)):
            raise ConfigurationError("FeatureStats needs one median, scale, low and high per feature name.")
        if not all(math.isfinite(s) and s > 0 for s in self.scale):
            raise ConfigurationError("FeatureStats scales must be positive, finite numbers.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (read back by :meth:`from_dict`)."""
        return {"features": list(self.names), "median": list(self.median), "scale": list(self.scale),
                "low": list(self.low), "high": list(self.high), "spike_threshold": self.spike_threshold,
                "spike_rearm": self.spike_rearm, "n": self.n,
                "rule": "flag a trace when a feature is outside [low, high] and |feature − median| / scale > z_limit"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureStats":
        """Inverse of :meth:`to_dict` (KeyError/TypeError on a malformed entry, for the loader to report)."""
        names = tuple(str(n) for n in data["features"])
        if names != FEATURE_NAMES:
            raise ConfigurationError(f"The manifest's OOD features {list(names)} are not this version's "
                                     f"{list(FEATURE_NAMES)}; re-train the estimator.")
        return cls(names=names, median=tuple(float(x) for x in data["median"]),
                   scale=tuple(float(x) for x in data["scale"]), low=tuple(float(x) for x in data["low"]),
                   high=tuple(float(x) for x in data["high"]), spike_threshold=float(data["spike_threshold"]),
                   spike_rearm=float(data["spike_rearm"]), n=int(data["n"]))


def feature_stats(traces: Any, spike_threshold: float, spike_rearm: float) -> FeatureStats:
    """The :class:`FeatureStats` of training traces (N, T), mV."""
    f = trace_features(traces, spike_threshold, spike_rearm)
    med = np.median(f, 0)
    mad = 1.4826 * np.median(np.abs(f - med), 0)
    spread = np.percentile(f, 95, 0) - np.percentile(f, 5, 0)
    floor = np.maximum(1e-3 * spread, 1e-9 * (1.0 + np.abs(med)))
    floor = np.where(np.isin(FEATURE_NAMES, _COUNTS), np.maximum(floor, 1.0), floor)
    scale = np.maximum(mad, floor)
    return FeatureStats(names=FEATURE_NAMES, median=tuple(map(float, med)), scale=tuple(map(float, scale)),
                        low=tuple(map(float, f.min(0))), high=tuple(map(float, f.max(0))),
                        spike_threshold=float(spike_threshold), spike_rearm=float(spike_rearm), n=int(f.shape[0]))


@dataclass(frozen=True)
class FeatureCheck:
    """The feature check of N traces.

    Attributes
    ----------
    features, z : numpy.ndarray
        (N, K) features and their robust z-scores ``(feature − median) / scale``.
    outside : numpy.ndarray
        (N, K) whether each feature lies outside the training range.
    flagged : numpy.ndarray
        (N,) whether the trace is out of distribution (some feature outside the range with |z| > limit).
    z_limit : float
    """

    features: np.ndarray
    z: np.ndarray
    outside: np.ndarray
    flagged: np.ndarray
    z_limit: float

    def reasons(self, i: int) -> list[str]:
        """What flagged trace ``i``, in words (empty when it is not flagged)."""
        bad = np.flatnonzero(self.outside[i] & (np.abs(self.z[i]) > self.z_limit))
        return [f"{FEATURE_NAMES[k]} = {self.features[i, k]:.4g} (robust z {self.z[i, k]:+.1f}, outside the "
                f"training range)" for k in bad]

    def max_abs_z(self) -> np.ndarray:
        """(N,) the largest |z| of a feature outside the training range (0 where none is)."""
        return np.where(self.outside, np.abs(self.z), 0.0).max(1)


def feature_check(stats: FeatureStats, traces: Any, z_limit: float = DEFAULT_Z_LIMIT) -> FeatureCheck:
    """Check traces (N, T) against the training-set statistics ``stats`` (see the module documentation)."""
    if not (isinstance(z_limit, (int, float)) and z_limit > 0):
        raise ConfigurationError(f"z_limit={z_limit!r}: give a positive number (e.g. {DEFAULT_Z_LIMIT}).")
    f = trace_features(traces, stats.spike_threshold, stats.spike_rearm)
    z = (f - np.asarray(stats.median)) / np.asarray(stats.scale)
    outside = (f < np.asarray(stats.low)) | (f > np.asarray(stats.high))
    flagged = (outside & (np.abs(z) > z_limit)).any(1)
    return FeatureCheck(features=f, z=z, outside=outside, flagged=flagged, z_limit=float(z_limit))


@dataclass(frozen=True)
class ReconstructionCheck:
    """The reconstruction check of N traces (arrays (N,)).

    Attributes
    ----------
    rmse : numpy.ndarray
        RMSE of recorded − simulated estimate (mV).
    noise_sigma : numpy.ndarray
        The estimated noise standard deviation (mV; NaN when the estimator gives none).
    predictive_rmse : numpy.ndarray
        95th percentile of the same RMSE for posterior-predictive draws (mV; NaN without draws).
    ratio : numpy.ndarray
        ``rmse / max(noise_sigma, predictive_rmse)`` (NaN parts ignored).
    flagged : numpy.ndarray
        ``ratio > factor``, or a simulated estimate that diverged (non-finite RMSE).
    factor : float
    """

    rmse: np.ndarray
    noise_sigma: np.ndarray
    predictive_rmse: np.ndarray
    ratio: np.ndarray
    flagged: np.ndarray
    factor: float

    def reason(self, i: int) -> str:
        """What flagged trace ``i``, in words."""
        if not math.isfinite(self.rmse[i]):
            return "the simulated estimate diverges (NaN/inf) where the recording stays finite"
        return (f"the simulated estimate is {self.rmse[i]:.3g} mV RMSE from the recording, {self.ratio[i]:.1f}× the "
                f"level expected for a trace like the training data (noise {self.noise_sigma[i]:.3g} mV, "
                f"posterior-predictive 95 % {self.predictive_rmse[i]:.3g} mV)")


def reconstruction_check(recorded: Sequence[np.ndarray], simulated: Sequence[np.ndarray],
                         noise_sigma: Any = None, predictive: Sequence[np.ndarray] | None = None,
                         factor: float = DEFAULT_RMSE_FACTOR) -> ReconstructionCheck:
    """Compare the simulated estimate with each recorded trace (see the module documentation).

    Parameters
    ----------
    recorded, simulated : sequence of numpy.ndarray
        Per trace: the recorded voltage (T,) and the simulated estimate's voltage (T,), mV.
    noise_sigma : float or array_like, optional
        Estimated noise standard deviation per trace (or one for all), mV.
    predictive : sequence of numpy.ndarray, optional
        Per trace: posterior-predictive draws (K, T) (simulated draws plus their noise), mV.
    factor : float
        A trace is flagged when its RMSE exceeds ``factor`` times the reference level.
    """
    if not (isinstance(factor, (int, float)) and factor > 0):
        raise ConfigurationError(f"factor={factor!r}: give a positive number (e.g. {DEFAULT_RMSE_FACTOR}).")
    n = len(recorded)
    rmse = np.array([float(np.sqrt(np.mean((np.asarray(r, float) - np.asarray(s, float)) ** 2)))
                     for r, s in zip(recorded, simulated, strict=True)])
    sig = np.full(n, np.nan) if noise_sigma is None else np.broadcast_to(np.asarray(noise_sigma, float), (n,)).copy()
    pred = np.full(n, np.nan)
    if predictive is not None:
        for i, (draws, s) in enumerate(zip(predictive, simulated, strict=True)):
            per = np.sqrt(np.mean((np.asarray(draws, float) - np.asarray(s, float)[None, :]) ** 2, axis=1))
            pred[i] = float(np.percentile(per, 95))
    ref = np.fmax(sig, pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isnan(ref), np.nan, np.where(ref > 0, rmse / ref, np.where(rmse > 0, np.inf, 0.0)))
    flagged = ~np.isfinite(rmse) | (np.isfinite(ref) & (ratio > factor))
    return ReconstructionCheck(rmse=rmse, noise_sigma=sig, predictive_rmse=pred, ratio=ratio, flagged=flagged,
                               factor=float(factor))
