"""Where the voltage moves fast: per-sample weights that put training points on the spikes.

Brief spikes carry the fast gates' whole excursion but fill few samples; drawn uniformly, a step's points
miss them. :func:`sampling_weights` gives every sample a weight for drawing, :func:`fast_share` says how
much of the recording the spikes fill (whether spike sampling is needed at all).
"""

from __future__ import annotations

import numpy as np

from .layout import Flat

__all__ = ["sampling_weights", "fast_share"]


def sampling_weights(flat: Flat, spread_ms: float = 2.0, floor: float = 4.0) -> np.ndarray:
    """Per-sample weight of the fast-moving voltage (spikes), mean 1 in every sweep.

    ``|dV/dt|`` from a cubic Savitzky–Golay differentiator (0.5 ms, at least 5 samples) less ``floor``
    times its median — in a recording that mostly moves slowly the median is the noise's level, so
    noise alone gets no weight — then spread by a moving average ``spread_ms`` wide, so that the whole
    spike with its repolarisation (where the fast gates move) is covered, not only the upstroke.

    Spikes fill a few % of a bursting recording but carry the fast gates' whole excursion; sampled
    uniformly, a network sees them once or twice a step and represents those gates poorly.

    Parameters
    ----------
    flat : Flat
        The problem's sweeps, concatenated.
    spread_ms : float
        Width of the moving average around fast samples, ms.
    floor : float
        Multiple of the median ``|dV/dt|`` subtracted first.

    Returns
    -------
    numpy.ndarray
        (T,) non-negative weights, mean 1 in every sweep (uniform where nothing in a sweep moves fast or
        it is too short to differentiate).
    """
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import savgol_filter

    w = np.ones(flat.t.size)
    for a, b in zip(flat.offsets[:-1], flat.offsets[1:]):
        t, v = flat.t[a:b], flat.v[a:b]
        if t.size < 7:
            continue
        dt = float(np.median(np.diff(t)))
        win = min(max(5, int(round(0.5 / dt)) | 1), t.size if t.size % 2 else t.size - 1)
        d = np.abs(savgol_filter(v, win, 3, deriv=1, delta=dt))
        d = np.maximum(d - floor * np.median(d), 0.0)
        d = uniform_filter1d(d, max(1, int(round(spread_ms / dt))), mode="nearest")
        d[d < 1e-9 * d.max(initial=0.0)] = 0.0  # the running sum's rounding
        if np.isfinite(d).all() and d.mean() > 0:
            w[a:b] = d / d.mean()
    return w


def fast_share(weights: np.ndarray, mass: float = 0.9) -> float:
    """Share of the samples that carry ``mass`` of the fast-voltage weights (:func:`sampling_weights`):
    how much of the recording its spikes fill (small for a burster's brief spikes, larger for broad ones)."""
    w = np.sort(np.asarray(weights, float))[::-1]
    total = w.sum()
    if w.size == 0 or total <= 0:
        return 1.0
    return float(np.searchsorted(np.cumsum(w) / total, mass) + 1) / w.size
