"""Spike detection and burst statistics of one voltage trace (numpy).

A spike is an upward crossing of a threshold; a new crossing only counts after the voltage has fallen
below a re-arm level, which keeps noise from being counted twice (``shared/reference/models.md``).
These are the reference definitions the batched torch features (:mod:`neo_pinn.features.batched`)
reproduce row by row.
"""

from __future__ import annotations

import numpy as np

__all__ = ["spike_times", "spike_count", "firing_rate", "burst_statistics"]


def spike_times(v, t, threshold: float = 0.0, rearm: float | None = None) -> np.ndarray:
    """Times of upward threshold crossings, linearly interpolated between samples (NaN and inf samples skipped).

    Parameters
    ----------
    v : array_like
        Voltage in mV, shape (T,).
    t : array_like
        Times in ms, shape (T,).
    threshold : float
        Crossing level in mV.
    rearm : float, optional
        Level in mV the trace must fall below before the next crossing counts (default threshold − 10 mV).

    Returns
    -------
    numpy.ndarray
        Spike times in ms.
    """
    v = np.asarray(v, dtype=float).reshape(-1)
    t = np.asarray(t, dtype=float).reshape(-1)
    ok = np.isfinite(v) & np.isfinite(t)
    if not ok.all():  # a recorder's overflow (inf) or a gap (NaN) is not a spike: only finite samples count
        v, t = v[ok], t[ok]
    rearm = threshold - 10.0 if rearm is None else rearm
    up = np.flatnonzero((v[:-1] < threshold) & (v[1:] >= threshold))
    if up.size == 0:
        return np.empty(0)
    # Armed at the start only if the trace starts below threshold (a sweep that opens mid-spike does not
    # count it); afterwards a crossing counts only once the trace has been below `rearm` since the last.
    below = np.flatnonzero(v < rearm)
    keep = []
    last = None if v[0] < threshold else -1
    for k in up:
        if last is None:
            keep.append(k)
            last = k
            continue
        j = np.searchsorted(below, last + 1)
        if j < below.size and below[j] <= k:
            keep.append(k)
            last = k
    if not keep:
        return np.empty(0)
    k = np.asarray(keep)
    frac = (threshold - v[k]) / (v[k + 1] - v[k])
    return t[k] + frac * (t[k + 1] - t[k])


def spike_count(v, t, threshold: float = 0.0, rearm: float | None = None) -> int:
    """Number of spikes (see :func:`spike_times`)."""
    return int(spike_times(v, t, threshold, rearm).size)


def firing_rate(v, t, threshold: float = 0.0, t_from: float | None = None, rearm: float | None = None) -> float:
    """Mean firing rate in Hz from the mean inter-spike interval after ``t_from`` (ms); 0 if < 2 spikes.

    ``threshold`` and ``rearm`` (mV) as in :func:`spike_times`.
    """
    st = spike_times(v, t, threshold, rearm)
    if t_from is not None:
        st = st[st >= t_from]
    if st.size < 2:
        return 0.0
    return float(1000.0 / np.mean(np.diff(st)))


def burst_statistics(spikes_ms, gap_factor: float = 5.0, min_gap_ms: float = 50.0) -> dict:
    """Split spikes into bursts at long inter-spike intervals.

    Parameters
    ----------
    spikes_ms : array_like
        Spike times in ms.
    gap_factor : float
        Only an ISI longer than ``base = max(gap_factor × median ISI, min_gap_ms)`` can end a burst.
    min_gap_ms : float
        Lower bound of ``base`` in ms.

    Notes
    -----
    The ISIs are sorted, and bursts end at every ISI at or above the upper side of the largest ratio
    between consecutive sorted ISIs whose upper side exceeds ``base``. Inter-burst gaps are thus
    separated from intra-burst ISIs where the two are furthest apart, so a burst whose spikes slow
    down towards its end keeps its last spikes; a regular burster splits exactly as with ``base``.

    Returns
    -------
    dict
        ``n_bursts``, ``period_ms`` (mean time between burst starts, nan with < 2 bursts),
        ``spikes_per_burst`` (mean over complete bursts), ``bursting`` (bool).
    """
    st = np.asarray(spikes_ms, dtype=float)
    if st.size < 3:
        return {"n_bursts": 0, "period_ms": float("nan"), "spikes_per_burst": float("nan"), "bursting": False}
    isi = np.diff(st)
    base = max(gap_factor * float(np.median(isi)), min_gap_ms)
    ordered = np.sort(isi)
    # among the ISIs above ``base``, bursts break at the largest jump of the sorted ISIs (ratio): a burst
    # whose spikes slow down towards its end no longer splits off its last spike whenever one tail ISI
    # crosses gap_factor × median
    cand = np.flatnonzero(ordered[1:] > base)
    if cand.size == 0:
        return {"n_bursts": 1, "period_ms": float("nan"), "spikes_per_burst": float(st.size), "bursting": False}
    j = cand[np.argmax(ordered[cand + 1] / ordered[cand])]
    breaks = np.flatnonzero(isi >= ordered[j + 1])  # never empty: the edge is one of the ISIs
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks + 1, [st.size]])
    counts = ends - starts
    # The first and last bursts may be cut by the window; use inner ones when there are any.
    inner = counts[1:-1] if counts.size > 2 else counts
    period = float(np.mean(np.diff(st[starts]))) if starts.size > 1 else float("nan")
    return {"n_bursts": int(starts.size), "period_ms": period, "spikes_per_burst": float(np.mean(inner)),
            "bursting": True}
