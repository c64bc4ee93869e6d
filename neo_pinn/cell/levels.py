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
#: a sweep above the threshold for this long (ms) holds a plateau there, not a spike
PLATEAU_MS = 50.0
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
    * **Threshold**: the model's — unless some sweep stays above it for :data:`PLATEAU_MS` or longer (a plateau,
      not a spike: an uncorrected offset, a depolarised cell), where spikes ride above the threshold and its noise
      crosses it. It is then raised by :data:`THRESHOLD_STEP_MV` until no sweep holds a plateau above it and
      counting every crossing (eFEL's rule: a new spike after any fall below the threshold) and counting with the
      re-arm level agree on every sweep.

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
    if max((_longest_run_ms(tr, level) for tr in traces), default=0.0) < PLATEAU_MS:
        return level, level - hysteresis  # the voltage crosses the threshold only briefly: spikes, not a plateau
    for _ in range(MAX_THRESHOLD_RAISES):
        plateau = max(_longest_run_ms(tr, level) for tr in traces) >= PLATEAU_MS
        if not plateau and all(spike_count(tr.v, tr.t, level, level) ==
                               spike_count(tr.v, tr.t, level, level - hysteresis) for tr in traces):
            break
        level += THRESHOLD_STEP_MV
    else:
        level = float(threshold)  # no clean level: keep the model's (the verdict and QC still report counts)
    return level, level - hysteresis


def _longest_run_ms(trace: Trace, level: float) -> float:
    """The longest time (ms) the sweep's voltage stays above ``level`` without a break."""
    above = np.concatenate([[False], trace.v > level, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(above))
    runs = edges[1::2] - edges[::2]
    return float(runs.max() * trace.dt) if runs.size else 0.0
