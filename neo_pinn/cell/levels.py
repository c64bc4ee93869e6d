"""Levels read off a recorded sweep without a model: its noise."""

from __future__ import annotations

import numpy as np

from ..trace import Trace

__all__ = ["noise_level_mV", "recording_rearm", "MIN_HYSTERESIS_MV"]

#: smallest distance (mV) between spike threshold and re-arm level on a recording
MIN_HYSTERESIS_MV = 2.0


def noise_level_mV(trace: Trace) -> float:
    """Standard deviation of the recording noise of a sweep, mV.

    Robust to spikes and slow responses: the median absolute deviation of the first differences,
    scaled to a standard deviation (× 1.4826) and divided by √2 (a difference of two independent samples).
    Correlated (low-pass filtered) noise reads lower than its full standard deviation.
    """
    d = np.diff(trace.v)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def recording_rearm(traces, threshold: float, model_rearm: float) -> float:
    """Re-arm level (mV) of spike detection on a real recording: as near the threshold as its noise allows.

    A model's re-arm level (e.g. 10 mV under the threshold) suits its textbook spikes, but a cell firing
    fast from depolarised troughs never falls that far between spikes, so its spikes would merge (eFEL,
    which re-arms on any downward crossing, counts them). The hysteresis is four noise standard deviations
    (at least :data:`MIN_HYSTERESIS_MV`, at most the model's), so noise alone cannot count a spike twice.

    Parameters
    ----------
    traces : sequence of Trace
    threshold : float
        Spike threshold, mV.
    model_rearm : float
        The model's own re-arm level, mV.

    Returns
    -------
    float
        Re-arm level, mV.
    """
    noise = float(np.median([noise_level_mV(tr) for tr in traces])) if len(traces) else 0.0
    widest = max(float(threshold) - float(model_rearm), MIN_HYSTERESIS_MV)
    return float(threshold) - float(np.clip(4.0 * noise, MIN_HYSTERESIS_MV, widest))
