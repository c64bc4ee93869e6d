"""Levels read off a recorded sweep without a model: its noise."""

from __future__ import annotations

import numpy as np

from ..features.single_trace import spike_count
from ..trace import Trace

__all__ = ["noise_level_mV", "recording_spike_levels", "MIN_HYSTERESIS_MV", "THRESHOLD_STEP_MV"]

#: smallest distance (mV) between spike threshold and re-arm level on a recording
MIN_HYSTERESIS_MV = 2.0
#: a recording's spike threshold is raised in steps of this many mV until its noise makes no spike
THRESHOLD_STEP_MV = 5.0
#: at most this many raises (up to 60 mV above the model's threshold)
MAX_THRESHOLD_RAISES = 13


def noise_level_mV(trace: Trace) -> float:
    """Standard deviation of the recording noise of a sweep, mV.

    Robust to spikes and slow responses: the median absolute deviation of the first differences,
    scaled to a standard deviation (× 1.4826) and divided by √2 (a difference of two independent samples).
    Correlated (low-pass filtered) noise reads lower than its full standard deviation.
    """
    d = np.diff(trace.v)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def recording_spike_levels(traces, threshold: float, model_rearm: float) -> tuple[float, float]:
    """Spike threshold and re-arm level (mV) for a real recording, such that its noise never makes or merges a spike.

    * **Re-arm level**: as near the threshold as the noise allows — four noise SDs under it (at least
      :data:`MIN_HYSTERESIS_MV`, at most the model's distance). A model's re-arm level (e.g. 10 mV under the
      threshold) suits its textbook spikes, but a cell firing fast from depolarised troughs never falls that far
      between spikes, and its spikes would merge.
    * **Threshold**: the model's, raised by :data:`THRESHOLD_STEP_MV` until counting every crossing (eFEL's rule:
      a new spike after any fall below the threshold) and counting with the re-arm level agree on every sweep.
      They differ only where the voltage hovers around the threshold in its noise — a recording whose plateau
      sits near 0 mV (an uncorrected offset, a depolarised cell), where a 0 mV threshold counts noise as spikes.

    Parameters
    ----------
    traces : sequence of Trace
    threshold, model_rearm : float
        The model's spike threshold and re-arm level, mV.

    Returns
    -------
    (float, float)
        Threshold and re-arm level, mV.
    """
    noise = float(np.median([noise_level_mV(tr) for tr in traces])) if len(traces) else 0.0
    hysteresis = float(np.clip(4.0 * noise, MIN_HYSTERESIS_MV, max(float(threshold) - float(model_rearm),
                                                                    MIN_HYSTERESIS_MV)))
    level = float(threshold)
    for _ in range(MAX_THRESHOLD_RAISES):
        if all(spike_count(tr.v, tr.t, level, level) == spike_count(tr.v, tr.t, level, level - hysteresis)
               for tr in traces):
            break
        level += THRESHOLD_STEP_MV
    else:
        level = float(threshold)  # no clean level: keep the model's (the verdict and QC still report counts)
    return level, level - hysteresis
