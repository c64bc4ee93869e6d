"""Levels read off a recorded sweep without a model: its noise."""

from __future__ import annotations

import numpy as np

from ..trace import Trace

__all__ = ["noise_level_mV"]


def noise_level_mV(trace: Trace) -> float:
    """Standard deviation of the recording noise of a sweep, mV.

    Robust to spikes and slow responses: the median absolute deviation of the first differences,
    scaled to a standard deviation (× 1.4826) and divided by √2 (a difference of two independent samples).
    Correlated (low-pass filtered) noise reads lower than its full standard deviation.
    """
    d = np.diff(trace.v)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))
