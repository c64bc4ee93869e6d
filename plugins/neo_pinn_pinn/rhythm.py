"""The recording's rhythm: dominant frequencies, inter-spike intervals and where the voltage repeats.

The dominant frequencies are the networks' fixed Fourier features; the median inter-spike interval sets
the slow states' time scale; a repeating voltage lets slow states be asked to repeat too.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neo_pinn.features import spike_times
from neo_pinn.problem import EstimationProblem

from .layout import Flat, Segments

__all__ = ["dominant_frequencies", "median_isi", "repeat_lag", "periodic_pairs"]


def dominant_frequencies(problem: EstimationProblem, n: int, max_hz: float) -> np.ndarray:
    """The ``n`` dominant frequencies (1/ms) of the recorded voltage, strongest first.

    Peaks (local maxima) of the Hann-windowed amplitude spectrum of the longest sweep, between two
    frequency bins and ``max_hz``. The strongest is the fundamental (spike rate or burst rate); the
    others are its harmonics and the faster content of the spikes. (Weighting the spectrum by frequency,
    as for dV/dt, was tried: it ranks white-noise peaks near ``max_hz`` above real harmonics.)
    """
    if n <= 0:
        return np.zeros(0)
    tr = max(problem.traces, key=lambda x: x.t.size)
    dt = float(np.median(np.diff(tr.t)))
    v = tr.v - tr.v.mean()
    spec = np.abs(np.fft.rfft(v * np.hanning(v.size)))
    freqs = np.fft.rfftfreq(v.size, dt)  # 1/ms
    amp = spec
    keep = (np.arange(freqs.size) >= 2) & (freqs <= max_hz / 1000.0)
    peak = np.zeros_like(keep)
    peak[1:-1] = (amp[1:-1] >= amp[:-2]) & (amp[1:-1] > amp[2:])
    cand = np.flatnonzero(keep & peak)
    if cand.size == 0:
        return np.array([1.0 / (tr.t[-1] - tr.t[0])]) if n else np.zeros(0)
    order = cand[np.argsort(amp[cand])[::-1]][:n]
    return freqs[order]


def median_isi(problem: EstimationProblem) -> float | None:
    """Median inter-spike interval of all sweeps, ms (None with fewer than two spikes in every sweep)."""
    model = problem.model
    isis = np.concatenate([np.diff(spike_times(tr.v, tr.t, threshold=model.spike_threshold, rearm=model.spike_rearm))
                           for tr in problem.traces])
    return float(np.median(isis)) if isis.size else None


def repeat_lag(t: np.ndarray, v: np.ndarray, idx: np.ndarray, match: float = 0.1,
                tolerance: float = 0.25) -> int | None:
    """Grid position at which the voltage repeats the window's start best: the lag (between a third of
    the window and its end less the matched stretch) minimising the mean squared difference between the
    first ``match`` of the window and the stretch starting there; ``None`` when even the best match
    leaves more than ``tolerance`` of the voltage's variance (no periodicity to rely on)."""
    vg = v[idx]
    n = vg.size
    w = max(4, int(match * n))
    first = int(n / 3)
    if n - w <= first + 1:
        return None
    windows = sliding_window_view(vg, w)[first:n - w + 1]  # (n_lags, w)
    mse = ((windows - vg[:w][None, :]) ** 2).mean(1)
    best = int(np.argmin(mse))
    if mse[best] > tolerance * max(float(vg.var()), 1e-12):
        return None
    return first + best


def periodic_pairs(flat: Flat, seg: Segments, n_pairs: int = 64, max_grid: int = 2000
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of times one period apart in every sweep whose voltage repeats (:func:`repeat_lag`), as
    (segment, time) of both ends: ``(seg_a, t_a, seg_b, t_b)``, each (P,), times in ms from the sweep's
    start. Empty when no sweep repeats.

    A slow state (NaP inactivation, τ of seconds) forgets its start more slowly than a window of two
    bursts lasts, so its own equation leaves that start free: a trajectory started too low is still a
    solution, and the conductances trade against it. On a periodic recording the slow state must repeat
    with the voltage, which pins it.
    """
    sa, ta, sb, tb = [], [], [], []
    for k in range(flat.offsets.size - 1):
        a, b = int(flat.offsets[k]), int(flat.offsets[k + 1])
        t = flat.t[a:b]
        grid = np.unique(np.linspace(0, t.size - 1, min(t.size, max_grid)).astype(int))
        pos = repeat_lag(t, flat.v[a:b], grid)
        mine = np.flatnonzero(seg.trace == k)
        if pos is None or mine.size == 0:
            continue
        period = float(t[grid[pos]] - t[grid[0]])
        starts = np.linspace(t[0], t[-1] - period, n_pairs)
        edges = np.append(seg.t_left[mine], np.inf)
        for t0 in starts:
            t1 = t0 + period
            sa.append(mine[np.searchsorted(edges, t0, side="right") - 1])
            sb.append(mine[min(np.searchsorted(edges, t1, side="right") - 1, mine.size - 1)])
            ta.append(t0)
            tb.append(t1)
    return np.array(sa, int), np.array(ta, float), np.array(sb, int), np.array(tb, float)
