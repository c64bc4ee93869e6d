"""Electrophysiology features shared by backends, reports and the CLI.

Two layers:

* **numpy, one trace** — :func:`spike_times`, :func:`spike_count`, :func:`firing_rate`,
  :func:`burst_statistics` (used across the package).
* **torch, batched** — :func:`batch_spike_times`, :func:`batch_spike_features` and
  :func:`batch_features` take a (B, T) voltage batch (torch tensor on any device, or numpy) and compute
  every row at once: threshold crossings are found with a few dense boolean passes, everything after
  that works on flat per-spike lists (searchsorted, short gathers, segment reductions). No Python loop
  runs over rows or spikes, and the same code runs on CPU and CUDA. Spike-train features use the AP
  peak times, as eFEL does; :func:`batch_spike_times` gives the interpolated threshold crossings.

Spike detection follows the convention of ``shared/reference/models.md``: a spike is an upward
crossing of a threshold, and a new crossing only counts after the voltage has fallen below a re-arm
level, which keeps noise from being counted twice.

The batched features are defined to match eFEL (``efel`` 5.x, Blue Brain Project) where eFEL has the
feature, so that the two can be compared spike by spike (``tests/test_features.py``,
``benchmarks/bench_features.py``); :data:`FEATURES` and :func:`batch_spike_features` say which eFEL
feature each one corresponds to and where, and why, it differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .errors import ConfigurationError, EmptySignalError, NonFiniteDataError, UnknownNameError

__all__ = [
    "spike_times",
    "spike_count",
    "firing_rate",
    "burst_statistics",
    "FeatureSpec",
    "FEATURES",
    "FEATURE_NAMES",
    "SPIKE_FEATURE_NAMES",
    "batch_spike_times",
    "batch_spike_features",
    "batch_features",
    "efel_agreement",
]


# --------------------------------------------------------------------------------------------------
# numpy, one trace
# --------------------------------------------------------------------------------------------------


def spike_times(v, t, threshold: float = 0.0, rearm: float | None = None) -> np.ndarray:
    """Times of upward threshold crossings, linearly interpolated between samples.

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


def firing_rate(v, t, threshold: float = 0.0, t_from: float | None = None) -> float:
    """Mean firing rate in Hz from the mean inter-spike interval after ``t_from`` (ms); 0 if < 2 spikes."""
    st = spike_times(v, t, threshold)
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
    # whose spikes slow down towards its end (Butera pBC: intra-burst ISIs 30 → 260 ms, then 1.4 s gaps)
    # no longer splits off its last spike whenever one tail ISI crosses gap_factor × median
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


# --------------------------------------------------------------------------------------------------
# torch, batched: feature catalogue
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One scalar feature of :func:`batch_features`.

    Attributes
    ----------
    name : str
        Key in the returned dict.
    unit : str
        ``"ms"``, ``"mV"``, ``"Hz"``, ``"count"`` or ``"1"`` (dimensionless).
    description : str
        Definition, and the eFEL feature it matches where there is one.
    """

    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("spike_count", "count",
                "Spikes whose AP peak lies in the analysis window (eFEL Spikecount with strict_stiminterval)."),
    FeatureSpec("mean_rate_hz", "Hz",
                "spike_count / window duration × 1000 (0 without spikes). Not eFEL's mean_frequency, which "
                "divides by the time from stimulus start to the last spike."),
    FeatureSpec("first_spike_latency_ms", "ms",
                "First AP peak time minus the window start (eFEL time_to_first_spike); NaN without spikes."),
    FeatureSpec("isi_mean_ms", "ms",
                "Mean interval between consecutive AP peaks in the window (mean of eFEL all_ISI_values); "
                "NaN with < 2 spikes."),
    FeatureSpec("isi_cv", "1",
                "Standard deviation (ddof = 1) / mean of those intervals (eFEL ISI_CV with ignore_first_ISI "
                "off); NaN with < 3 spikes."),
    FeatureSpec("adaptation_index", "1",
                "eFEL adaptation_index2: drop the first spike, then the mean of (ISIₖ − ISIₖ₋₁)/(ISIₖ + ISIₖ₋₁) "
                "over consecutive intervals; > 0 when firing slows down. NaN with < 4 spikes."),
    FeatureSpec("ap_peak_mv", "mV", "Mean AP peak voltage (eFEL peak_voltage)."),
    FeatureSpec("ap_amplitude_mv", "mV",
                "Mean of peak minus the voltage at AP begin (eFEL AP_amplitude; AP begin as eFEL "
                "AP_begin_indices: where dV/dt rises through the derivative threshold, 10 mV/ms)."),
    FeatureSpec("ap_width_ms", "ms",
                "Mean AP width at half amplitude measured from AP begin (eFEL AP_duration_half_width), "
                "between linearly interpolated crossings of the half level."),
    FeatureSpec("ahp_depth_mv", "mV",
                "Mean over consecutive spike pairs of the minimum voltage between their peaks (the AHP "
                "trough; eFEL min_voltage_between_spikes); absolute, subtract rest_mv for the depth relative "
                "to rest. NaN with < 2 spikes."),
    FeatureSpec("rest_mv", "mV",
                "Median voltage of the baseline: baseline_ms if given, else the part of the trace before "
                "the window, else the whole trace without the samples near spikes. Not eFEL voltage_base "
                "(mean over 90–100 % of the time before stimulus start)."),
    FeatureSpec("burst_period_ms", "ms",
                "Mean time between burst starts; bursts end at the ISIs above the largest jump of the sorted "
                "ISIs beyond max(gap_factor × median ISI, min_gap_ms), as in burst_statistics; NaN unless "
                "there are ≥ 2 bursts."),
    FeatureSpec("spikes_per_burst", "count",
                "Mean spikes per burst over complete bursts (inner ones when there are > 2); NaN unless "
                "bursting."),
    FeatureSpec("duty_cycle", "1",
                "Mean burst duration (first to last spike) over the same bursts / burst_period_ms; NaN unless "
                "bursting."),
)

#: Names of :data:`FEATURES`, in order.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)

#: Keys of the per-spike tensors returned by :func:`batch_spike_features`.
SPIKE_FEATURE_NAMES: tuple[str, ...] = (
    "crossing_time_ms", "peak_time_ms", "peak_mv", "ap_begin_time_ms", "ap_begin_mv", "ap_amplitude_mv",
    "ap_width_ms", "half_rise_time_ms", "half_fall_time_ms", "ahp_mv", "isi_ms",
)

_SPIKE_TRAIN = {"spike_count", "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv",
                "adaptation_index", "burst_period_ms", "spikes_per_burst", "duty_cycle"}
_SPIKE_SHAPE = {"ap_peak_mv", "ap_amplitude_mv", "ap_width_ms", "ahp_depth_mv"}


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------


def _as_batch(v) -> torch.Tensor:
    """(B, T) floating tensor on v's device; a (T,) input becomes (1, T)."""
    try:
        x = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"The voltage cannot be read as a (B, T) array of numbers ({exc}); stack sweeps of "
                                 "equal length as rows, or call once per sweep.") from None
    if x.dtype == torch.bool or not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32,
                                                                        torch.int64, torch.uint8)):
        raise ConfigurationError(f"The voltage must be a real-valued array in mV, got dtype {x.dtype}.")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype in (torch.float16, torch.bfloat16):
        # Half precision cannot resolve sub-0.1-mV differences at spike voltages; compute in float32.
        x = x.to(torch.float32)
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise ConfigurationError(
            f"The voltage must have shape (B, T) (a batch of traces) or (T,) (one trace), got {tuple(x.shape)}; "
            "stack sweeps of equal length as rows, or call once per sweep.")
    if x.shape[0] == 0 or x.shape[1] < 3:
        raise EmptySignalError(
            f"The voltage batch has shape {tuple(x.shape)}; features need at least one trace of at least 3 samples.")
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise NonFiniteDataError(
            f"The voltage holds NaN or inf in row(s) {bad}{' …' if int((~finite).sum()) > 5 else ''}; cut the "
            "traces to their finite part (or drop those rows) before computing features.")
    return x


def _check_dt(dt_ms: float) -> float:
    try:
        dt = float(dt_ms)
    except (TypeError, ValueError):
        raise ConfigurationError(f"dt_ms must be a number (the sampling interval in ms), got {dt_ms!r}.") from None
    if not math.isfinite(dt) or dt <= 0.0:
        raise ConfigurationError(f"dt_ms must be a positive, finite sampling interval in ms, got {dt_ms!r} "
                                 "(e.g. 0.05 for 20 kHz).")
    return dt


def _check_level(value, name: str, unit: str = "mV") -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number in {unit}, got {value!r}.") from None
    if not math.isfinite(x):
        raise ConfigurationError(f"{name} must be finite, got {value!r}.")
    return x


def _check_span(span, name: str, t0: float, t_last: float) -> tuple[float, float]:
    """Validate a (start, stop) interval in ms and clip it to the trace [t0, t_last]."""
    try:
        a, b = (float(span[0]), float(span[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigurationError(f"{name} must be a pair (start_ms, stop_ms), got {span!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b)) or b <= a:
        raise ConfigurationError(f"{name} = {span!r} must be two finite times in ms with start < stop.")
    if b < t0 or a > t_last:
        raise ConfigurationError(
            f"{name} = ({a:g}, {b:g}) ms lies outside the traces ({t0:g} to {t_last:g} ms); times are absolute, "
            "measured on the same clock as t0_ms.")
    return max(a, t0), min(b, t_last)


def _first_index_at_or_after(time_ms: float, t0: float, dt: float, n: int) -> int:
    """Index of the first sample whose time t0 + i·dt is ≥ time_ms (tolerating rounding), clipped to [0, n]."""
    return int(min(max(math.ceil((time_ms - t0) / dt - 1e-9), 0), n))


# --------------------------------------------------------------------------------------------------
# batched building blocks
#
# Every row is handled at once: the batch is scanned densely only to find threshold crossings (a few
# boolean passes and `nonzero`); everything after that works on flat per-spike lists (row, sample)
# sorted by row then time — searchsorted against other event lists, gathers of short windows, and
# segment reductions over the samples of each spike. No Python loop runs over rows or spikes; the few
# loops below run over search-window sizes (at most a handful of passes).
# --------------------------------------------------------------------------------------------------


def _run_starts(mask: torch.Tensor) -> torch.Tensor:
    """Flat (row·T + j) positions, sorted, where a run of True begins in each row (j = 0 included)."""
    starts = mask.clone()
    starts[:, 1:] &= ~mask[:, :-1]
    return torch.nonzero(starts.reshape(-1)).squeeze(1)


def _same_row_neighbours(row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a row-sorted flat list: does the previous / next entry belong to the same row?"""
    same = row[1:] == row[:-1]
    no = torch.zeros(1, dtype=torch.bool, device=row.device)
    return torch.cat([no, same]), torch.cat([same, no])


def _count_at_or_before(sorted_pos: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """How many entries of the sorted flat positions are ≤ each of ``pos``."""
    return torch.searchsorted(sorted_pos, pos, right=True)


def _detect_spikes(x: torch.Tensor, threshold: float, rearm: float) -> dict:
    """Counted spikes of every row as flat, row-sorted lists (spike_times' convention).

    An upward crossing between samples k and k+1 (x[k] < threshold ≤ x[k+1]) counts iff the trace was
    below ``rearm`` somewhere in (k₁, k] — k₁ being the previous upward crossing of the row, counted or
    not: if it was, the detector re-armed whatever happened at k₁; if not, it was either disarmed at k₁
    or never armed there. The first crossing of a row counts iff the row starts below threshold or went
    below ``rearm`` before it. That turns :func:`spike_times`' sequential hysteresis into searches over
    the sorted starts of the below-``rearm`` runs.

    Returns
    -------
    dict
        ``row`` and ``start`` (the sample k+1 at or above threshold), int64 (n,); ``below_starts``, the
        sorted flat run starts of x < rearm (reused to find where each spike ends).
    """
    B, T = x.shape
    at_or_above = x >= threshold
    up = torch.zeros_like(at_or_above)
    up[:, 1:] = at_or_above[:, 1:] & ~at_or_above[:, :-1]
    f_up = torch.nonzero(up.reshape(-1)).squeeze(1)  # flat position of the first sample ≥ threshold
    below = x < rearm
    arm_starts = _run_starts(below)
    row = torch.div(f_up, T, rounding_mode="floor")
    same_prev, _ = _same_row_neighbours(row)
    f_prev = torch.cat([f_up[:1], f_up[:-1]])  # previous crossing's first sample above (same row where used)
    # re-armed in (k₁, k]: the sample after the previous crossing is below re-arm, or a below-re-arm run
    # starts after it and at or before k (= this crossing's f_up − 1).
    runs_between = _count_at_or_before(arm_starts, f_up - 1) - _count_at_or_before(arm_starts, f_prev)
    rearmed = below.reshape(-1)[f_prev] | (runs_between > 0)
    # first crossing of a row: armed if the row starts below threshold or was below re-arm before it
    row_base = row * T
    runs_before = _count_at_or_before(arm_starts, f_up - 1) - _count_at_or_before(arm_starts, row_base - 1)
    first_ok = (x[:, 0] < threshold)[row] | (runs_before > 0)
    counted = torch.where(same_prev, rearmed, first_ok)
    return {"row": row[counted], "start": (f_up - row_base)[counted], "below_starts": arm_starts}


def _scan(lo: torch.Tensor, hi: torch.Tensor, predicate, forward: bool, first_width: int = 64,
          budget: int = 1 << 22) -> torch.Tensor:
    """First (``forward``) or last sample q in [lo, hi] (per item, inclusive) where ``predicate`` holds.

    ``predicate(items, q)`` gets the item indices (U,) and candidate samples (U, w) and returns a bool
    (U, w). Windows of 64, 1024, 16384… samples are tried in turn, so items resolved near their
    start (the usual case: a spike's own rise and fall) cost one short gather; ``budget`` caps U × w
    per pass so that memory stays bounded. Returns −1 where none.
    """
    n = lo.numel()
    out = torch.full((n,), -1, dtype=torch.int64, device=lo.device)
    pending = torch.nonzero(lo <= hi).squeeze(1)
    cur = (lo if forward else hi)[pending]
    width = first_width
    while pending.numel():
        span = (hi[pending] - cur + 1) if forward else (cur - lo[pending] + 1)
        w = min(width, int(span.max()), max(first_width, budget // pending.numel()))
        steps = torch.arange(w, device=lo.device)
        q = cur[:, None] + steps if forward else cur[:, None] - steps
        ok = predicate(pending, q) & (steps < span[:, None])
        hit = ok.any(dim=1)
        first = torch.argmax(ok.to(torch.uint8), dim=1)
        out[pending[hit]] = q[hit, first[hit]]
        more = ~hit & (span > w)
        pending, cur = pending[more], (cur + w if forward else cur - w)[more]
        width *= 16
    return out


def _segment_first_arg(xf: torch.Tensor, f_lo: torch.Tensor, f_hi: torch.Tensor, largest: bool,
                       chunk: int = 1 << 23) -> torch.Tensor:
    """Flat position of the first maximum (``largest``) or minimum of xf over each [f_lo, f_hi) (f_hi > f_lo).

    The samples of all segments are gathered into one flat list and reduced with scatter_reduce; items
    are processed in groups of about ``chunk`` samples so that memory stays bounded.
    """
    n = f_lo.numel()
    if n == 0:
        return f_lo.clone()
    length = f_hi - f_lo
    out = torch.empty_like(f_lo)
    ends = torch.cumsum(length, 0)
    cuts = torch.searchsorted(ends, torch.arange(chunk, int(ends[-1]) + chunk, chunk, device=xf.device))
    start = 0
    for stop in [*torch.unique_consecutive(cuts.clamp(max=n - 1) + 1).tolist()]:
        if stop <= start:
            continue
        lo, ln = f_lo[start:stop], length[start:stop]
        m = stop - start
        seg = torch.repeat_interleave(torch.arange(m, device=xf.device), ln)
        offset = torch.arange(seg.numel(), device=xf.device) - (torch.cumsum(ln, 0) - ln)[seg]
        vals = xf[lo[seg] + offset]
        extreme = torch.full((m,), float("-inf") if largest else float("inf"), dtype=xf.dtype, device=xf.device)
        extreme.scatter_reduce_(0, seg, vals, reduce="amax" if largest else "amin", include_self=True)
        big = torch.iinfo(torch.int64).max
        first = torch.full((m,), big, dtype=torch.int64, device=xf.device)
        first.scatter_reduce_(0, seg, torch.where(vals == extreme[seg], offset, big), reduce="amin",
                              include_self=True)
        out[start:stop] = lo + first
        start = stop
    return out


def _to_rows(row: torch.Tensor, values: torch.Tensor, B: int, fill, width: int | None = None) -> torch.Tensor:
    """Scatter a row-sorted flat list into a (B, K) tensor, each row left-aligned and padded with ``fill``."""
    counts = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64,
                                                                              device=values.device)
    K = int(counts.max()) if width is None else width
    out = torch.full((B, K), fill, dtype=values.dtype, device=values.device)
    if row.numel() and K:
        rank = torch.arange(row.numel(), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]
        keep = rank < K
        out[row[keep], rank[keep]] = values[keep]
    return out


def _nan_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    n = valid.sum(dim=1)
    s = torch.where(valid, values, torch.zeros_like(values)).sum(dim=1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def _nan_median(x: torch.Tensor) -> torch.Tensor:
    """numpy's median of each row ignoring NaN (the mean of the two middle values for an even count).

    ``torch.nanmedian`` returns the lower middle value; the upper one is −nanmedian(−x).
    """
    return 0.5 * (torch.nanmedian(x, dim=1).values - torch.nanmedian(-x, dim=1).values)


# --------------------------------------------------------------------------------------------------
# public batched API
# --------------------------------------------------------------------------------------------------


def batch_spike_times(v, dt_ms: float, *, t0_ms: float = 0.0, threshold_mv: float = 0.0,
                      rearm_mv: float | None = None, max_spikes: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold-crossing spike times of every row of a voltage batch.

    Same convention as :func:`spike_times`: an upward crossing of ``threshold_mv`` (a sample below it
    followed by one at or above it), linearly interpolated between the two samples; a new crossing only
    counts once the trace has fallen below ``rearm_mv`` since the last counted one, and a trace that
    starts above threshold does not count that first spike.

    Parameters
    ----------
    v : torch.Tensor or array_like
        Membrane voltage in mV, shape (B, T) or (T,) (treated as one row); any device.
    dt_ms : float
        Sampling interval in ms (> 0).
    t0_ms : float
        Time of the first sample in ms.
    threshold_mv : float
        Crossing level in mV.
    rearm_mv : float, optional
        Re-arm level in mV (default ``threshold_mv − 10``).
    max_spikes : int, optional
        Keep at most this many times per row (the first ones); default: as many as the busiest row has.

    Returns
    -------
    times : torch.Tensor
        (B, K) spike times in ms, float64 on v's device, left-aligned and NaN-padded.
    counts : torch.Tensor
        (B,) int64 number of spikes of each row (all of them, even beyond ``max_spikes``).

    Raises
    ------
    ConfigurationError
        Wrong shape, non-positive ``dt_ms``, non-finite levels or a negative ``max_spikes``.
    EmptySignalError
        No rows, or fewer than 3 samples.
    NonFiniteDataError
        NaN or inf in the voltage.
    """
    x = _as_batch(v)
    dt = _check_dt(dt_ms)
    t0 = _check_level(t0_ms, "t0_ms", "ms")
    thr = _check_level(threshold_mv, "threshold_mv")
    rearm = thr - 10.0 if rearm_mv is None else _check_level(rearm_mv, "rearm_mv")
    if max_spikes is not None and (not isinstance(max_spikes, (int, np.integer)) or max_spikes < 0):
        raise ConfigurationError(f"max_spikes must be a non-negative integer or None, got {max_spikes!r}.")
    B = x.shape[0]
    spikes = _detect_spikes(x, thr, rearm)
    row, s = spikes["row"], spikes["start"]
    times = t0 + _crossing_samples(x, row, s, thr) * dt
    counts = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64, device=x.device)
    return _to_rows(row, times, B, float("nan"), None if max_spikes is None else int(max_spikes)), counts


def _crossing_samples(x: torch.Tensor, row: torch.Tensor, start: torch.Tensor, level: float) -> torch.Tensor:
    """Fractional sample index (float64) where each spike crosses ``level`` between start−1 and start."""
    lo = x[row, start - 1].double()
    hi = x[row, start].double()
    return (start - 1).double() + (level - lo) / (hi - lo)


def _spike_table(x: torch.Tensor, dt: float, t0: float, thr: float, rearm: float, window: tuple[float, float],
                 derivative_threshold: float, derivative_window: int, need_shape: bool) -> dict:
    """Per-spike quantities of the spikes whose peak lies in ``window`` (see batch_spike_features)."""
    B, T = x.shape
    dev = x.device
    xf = x.reshape(-1)
    w0, w1 = window

    # --- spikes: counted crossing → extent [start, first sample below min(threshold, re-arm)) → peak
    spikes = _detect_spikes(x, thr, rearm)
    row_all, s_all = spikes["row"], spikes["start"]
    level = min(thr, rearm)
    ends_at = spikes["below_starts"] if level == rearm else _run_starts(x < level)
    base_all = row_all * T
    nxt = torch.searchsorted(ends_at, base_all + s_all)  # first run of x < level starting after the start
    nxt_pos = ends_at[nxt.clamp(max=max(ends_at.numel() - 1, 0))] if ends_at.numel() else base_all
    e_all = torch.where((nxt < ends_at.numel()) & (nxt_pos < base_all + T), nxt_pos - base_all,
                        torch.full_like(s_all, T))
    # The first sample of the maximum, as eFEL's peak_indices (it scans with a strict '<').
    p_all = _segment_first_arg(xf, base_all + s_all, base_all + e_all, largest=True) - base_all
    t_peak_all = t0 + p_all.double() * dt

    # --- keep the spikes whose peak is in the window (contiguous within each row: peaks are ordered)
    keep = (t_peak_all >= w0) & (t_peak_all <= w1)
    idx_all = torch.nonzero(keep).squeeze(1)  # position of each kept spike in the full list
    row, s, p = row_all[idx_all], s_all[idx_all], p_all[idx_all]
    base = row * T
    n = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64, device=dev)
    same_prev, same_next = _same_row_neighbours(row)
    nan = float("nan")

    def rows(values: torch.Tensor) -> torch.Tensor:
        return _to_rows(row, values.double(), B, nan)

    v_peak = xf[base + p].double()
    t_peak = t0 + p.double() * dt
    isi = torch.where(same_next, torch.cat([t_peak[1:], t_peak[:1]]) - t_peak, torch.full_like(t_peak, nan))
    table = {
        "count": n,
        "valid": rows(torch.ones_like(t_peak)) == 1.0,
        "crossing_time_ms": rows(t0 + _crossing_samples(x, row, s, thr) * dt),
        "peak_time_ms": rows(t_peak),
        "peak_mv": rows(v_peak),
        "isi_ms": rows(isi),
        "spans": (row_all, s_all, e_all),
        "all_peaks": (row_all, s_all, p_all),
    }
    if not need_shape:
        return table
    filler = torch.full_like(t_peak, nan)

    # --- AHP: the minimum between consecutive peaks of the window (eFEL min_voltage_between_spikes);
    #     the last spike of a row has none.
    p_next = torch.cat([p[1:], p[:1]])
    pair = torch.nonzero(same_next).squeeze(1)
    trough = _segment_first_arg(xf, base[pair] + p[pair], base[pair] + p_next[pair], largest=False)
    ahp_v = filler.clone()
    ahp_v[pair] = xf[trough].double()
    table["ahp_mv"] = rows(ahp_v)

    # --- eFEL min_AHP_indices, which bound the AP-begin search: the first local minimum (a sample the
    #     next two do not go below; failing that, the first global minimum) in [peak_i, peak_{i+1}), the
    #     last spike's up to the window end (the first sample at or after it).
    e_idx = _first_index_at_or_after(w1, t0, dt, T)
    seg_end = torch.where(same_next, p_next, torch.full_like(p, e_idx))

    def local_min(items, q):
        b = base[items][:, None]
        here = xf[b + q.clamp(0, T - 1)]
        return (xf[b + (q + 1).clamp(max=T - 1)] >= here) & (xf[b + (q + 2).clamp(max=T - 1)] >= here)

    ahp = _scan(p, seg_end - 3, local_min, forward=True)
    lost = (ahp < 0) & (seg_end > p)
    if bool(lost.any()):
        fb = torch.nonzero(lost).squeeze(1)
        ahp[fb] = _segment_first_arg(xf, base[fb] + p[fb], base[fb] + seg_end[fb], largest=False) - base[fb]
    ahp_ok = (seg_end > p) & (ahp >= 0) & ~(~same_next & (ahp == e_idx - 1))
    ahp = torch.where(ahp_ok, ahp, torch.zeros_like(ahp))

    # --- AP begin: eFEL AP_begin_indices — searching back from the peak to the previous spike's AHP (to
    #     two samples before the window start for the first spike), the latest sample j whose dV/dt is
    #     ≤ the threshold while dV/dt ≥ it on the next `derivative_window` samples; the AP begins at
    #     j + 1. dV/dt by central differences, one-sided at the ends of the trace (as eFEL).
    W = derivative_window
    s_idx = _first_index_at_or_after(w0, t0, dt, T)
    ahp_prev = torch.cat([ahp[:1], ahp[:-1]])
    lower = torch.where(same_prev, ahp_prev, torch.full_like(p, max(s_idx - 2, 0)))
    prev_ok = torch.cat([ahp_ok[:1], ahp_ok[:-1]])

    def dvdt(b, m):
        a, c = (m - 1).clamp(min=0), (m + 1).clamp(max=T - 1)
        return (xf[b + c].double() - xf[b + a].double()) / ((c - a).double() * dt)

    def begins_here(items, q):
        b = base[items][:, None, None]
        m = q.clamp(0, T - 1)[:, :, None] + torch.arange(W + 1, device=dev)
        d = dvdt(b, m.clamp(max=T - 1))
        return (d[..., 0] <= derivative_threshold) & (d[..., 1:] >= derivative_threshold).all(dim=-1) & (q <= T - 1 - W)

    j_begin = _scan(lower, torch.minimum(p - 1, torch.full_like(p, T - 1 - W)), begins_here, forward=False,
                    budget=(1 << 22) // (W + 1))
    begin_ok = (j_begin >= 0) & (p >= 1) & (~same_prev | prev_ok)
    b_idx = torch.where(begin_ok, j_begin + 1, torch.zeros_like(p))
    v_begin = xf[base + b_idx].double()
    table["ap_begin_time_ms"] = rows(torch.where(begin_ok, t0 + b_idx.double() * dt, filler))
    table["ap_begin_mv"] = rows(torch.where(begin_ok, v_begin, filler))
    table["ap_amplitude_mv"] = rows(torch.where(begin_ok, v_peak - v_begin, filler))

    # --- half width: the last upward crossing of h = (peak + begin)/2 in [begin, peak] and the first
    #     downward one after the peak (before the next spike's peak), each linearly interpolated.
    # (A "begin" above the peak — possible on a noisy, slowly rising trace — has no half level.)
    has_half = begin_ok & (v_peak > v_begin)
    half = torch.where(has_half, 0.5 * (v_peak + v_begin), torch.zeros_like(v_peak))
    rise_lo = torch.where(has_half, b_idx, p)  # an empty range for spikes without a half level

    def under_half(items, q):
        return xf[base[items][:, None] + q.clamp(0, T - 1)].double() < half[items][:, None]

    def at_or_under_half(items, q):
        return xf[base[items][:, None] + q.clamp(0, T - 1)].double() <= half[items][:, None]

    j_rise = _scan(rise_lo, p - 1, under_half, forward=False)
    # the fall must come before the next spike's peak (any spike of the row, in the window or not)
    _, next_same_all = _same_row_neighbours(row_all)
    p_after = torch.where(next_same_all[idx_all], torch.cat([p_all[1:], p_all[:1]])[idx_all], torch.full_like(p, T))
    m_fall = _scan(p + 1, torch.where(has_half, p_after - 1, p), at_or_under_half, forward=True)
    width_ok = has_half & (j_rise >= 0) & (m_fall >= 0)
    jr = j_rise.clamp(min=0)
    jf = (m_fall - 1).clamp(min=0)
    r0, r1 = xf[base + jr].double(), xf[base + (jr + 1).clamp(max=T - 1)].double()
    f0, f1 = xf[base + jf].double(), xf[base + (jf + 1).clamp(max=T - 1)].double()
    one = torch.ones_like(r0)
    t_rise = jr.double() + (half - r0) / torch.where(width_ok, r1 - r0, one)
    t_fall = jf.double() + (f0 - half) / torch.where(width_ok, f0 - f1, one)
    table["ap_width_ms"] = rows(torch.where(width_ok, (t_fall - t_rise) * dt, filler))
    table["half_rise_time_ms"] = rows(torch.where(width_ok, t0 + t_rise * dt, filler))
    table["half_fall_time_ms"] = rows(torch.where(width_ok, t0 + t_fall * dt, filler))
    return table


def batch_spike_features(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                         threshold_mv: float = 0.0, rearm_mv: float | None = None,
                         derivative_threshold: float = 10.0, derivative_window: int = 3) -> dict[str, torch.Tensor]:
    """Per-spike values of every row: the quantities :func:`batch_features` averages.

    A spike is a counted threshold crossing (see :func:`batch_spike_times`); it lasts until the trace
    falls below ``min(threshold_mv, rearm_mv)`` and its **peak** is the first sample of its maximum —
    with ``rearm_mv = threshold_mv`` exactly eFEL's ``peak_indices`` (maximum between an upward and the
    next downward threshold crossing). Only spikes whose peak time lies in the window are kept.

    Parameters
    ----------
    v : torch.Tensor or array_like
        Membrane voltage in mV, shape (B, T) or (T,) (one row); any device.
    dt_ms : float
        Sampling interval in ms.
    t0_ms : float
        Time of the first sample in ms.
    window_ms : (float, float), optional
        Analysis window (start, stop) in ms on the same clock as ``t0_ms`` (eFEL's stim_start/stim_end
        with ``strict_stiminterval``); clipped to the trace. Default: the whole trace.
    threshold_mv, rearm_mv : float
        Spike detection levels in mV (re-arm default ``threshold_mv − 10``).
    derivative_threshold : float
        dV/dt in mV/ms that marks the AP begin (eFEL ``DerivativeThreshold``, default 10).
    derivative_window : int
        Samples after the begin that must all stay at or above it (eFEL ``DerivativeWindow``, default 3).

    Returns
    -------
    dict of str to torch.Tensor
        ``count`` (B,) int64 spikes per row in the window, and (B, K) float64 tensors, left-aligned
        and NaN-padded beyond each row's count (K = the largest count):

        * ``crossing_time_ms`` — the interpolated threshold crossing (as :func:`batch_spike_times`), ms;
        * ``peak_time_ms``, ``peak_mv`` — AP peak sample (eFEL peak_time, peak_voltage);
        * ``ap_begin_time_ms``, ``ap_begin_mv`` — AP begin sample (eFEL AP_begin_indices): searching back
          from the peak to the previous spike's first local minimum after its peak (eFEL min_AHP_indices;
          to two samples before the window start for the first spike), the latest sample whose dV/dt
          (central difference) is ≤ the derivative
          threshold while the next ``derivative_window`` samples are all ≥ it, plus one; NaN where
          there is none (eFEL then leaves the spike out, and shifts its later AP_begin entries);
        * ``ap_amplitude_mv`` — peak − AP begin voltage (eFEL AP_amplitude), mV;
        * ``ap_width_ms`` — time between the last upward crossing of the half level (peak + begin)/2
          between AP begin and peak and the first downward one after the peak (before the next
          spike's peak, else NaN), each linearly interpolated between samples, ms. eFEL's
          AP_duration_half_width takes the sample nearest to the half level on each side instead
          (on the fall only up to its AP end), so the two differ by up to about one sampling interval
          where they measure the same crossings;
        * ``half_rise_time_ms``, ``half_fall_time_ms`` — those two crossings, ms;
        * ``ahp_mv`` — the minimum voltage between this peak and the next one in the window (eFEL
          min_voltage_between_spikes), mV; NaN for the last spike of a row;
        * ``isi_ms`` — next peak time − this peak time (eFEL all_ISI_values), ms; NaN for the last.

    Raises
    ------
    ConfigurationError, EmptySignalError, NonFiniteDataError
        Bad shape, dt, levels or window; empty or non-finite input.
    """
    x = _as_batch(v)
    dt = _check_dt(dt_ms)
    t0 = _check_level(t0_ms, "t0_ms", "ms")
    thr = _check_level(threshold_mv, "threshold_mv")
    rearm = thr - 10.0 if rearm_mv is None else _check_level(rearm_mv, "rearm_mv")
    dth = _check_level(derivative_threshold, "derivative_threshold", "mV/ms")
    if not isinstance(derivative_window, (int, np.integer)) or derivative_window < 1:
        raise ConfigurationError(f"derivative_window must be a positive number of samples, got {derivative_window!r}.")
    t_last = t0 + (x.shape[1] - 1) * dt
    window = (t0, t_last) if window_ms is None else _check_span(window_ms, "window_ms", t0, t_last)
    table = _spike_table(x, dt, t0, thr, rearm, window, dth, int(derivative_window), need_shape=True)
    return {"count": table["count"], **{k: table[k] for k in SPIKE_FEATURE_NAMES}}


def batch_features(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                   baseline_ms: tuple[float, float] | None = None, threshold_mv: float = 0.0,
                   rearm_mv: float | None = None, names: Sequence[str] | None = None,
                   derivative_threshold: float = 10.0, derivative_window: int = 3, gap_factor: float = 5.0,
                   min_gap_ms: float = 50.0, spike_margin_ms: float = 5.0) -> dict[str, torch.Tensor]:
    """Scalar electrophysiology features of every row of a voltage batch.

    Definitions, units and the eFEL feature each one matches are in :data:`FEATURES`; per-spike
    values come from :func:`batch_spike_features` and spike-train features use the AP **peak** times
    (as eFEL), so ``isi_mean_ms`` of a row equals the mean of eFEL's ``all_ISI_values`` on that trace.

    Parameters
    ----------
    v : torch.Tensor or array_like
        Membrane voltage in mV, shape (B, T) or (T,) (then every output has shape (1,)); any device.
    dt_ms : float
        Sampling interval in ms.
    t0_ms : float
        Time of the first sample in ms.
    window_ms : (float, float), optional
        Analysis window in ms (e.g. the current step), on the clock of ``t0_ms`` and clipped to the
        trace. Spike features use the spikes whose peak lies inside it; latency is measured from its
        start. Default: the whole trace (latency from ``t0_ms``).
    baseline_ms : (float, float), optional
        Where ``rest_mv`` is taken (median voltage). Default: from the first sample to the window
        start when a window starts after the first sample, else the whole trace without the samples
        within ``spike_margin_ms`` of a spike (from ``spike_margin_ms`` before its threshold crossing
        to ``spike_margin_ms`` after it falls below ``min(threshold_mv, rearm_mv)``).
    threshold_mv, rearm_mv : float
        Spike detection levels in mV (see :func:`batch_spike_times`; re-arm default threshold − 10).
    names : sequence of str, optional
        Features to compute (default all of :data:`FEATURE_NAMES`); fewer names skip work.
    derivative_threshold : float
        dV/dt in mV/ms at AP begin (eFEL DerivativeThreshold).
    derivative_window : int
        Samples the derivative must stay above it (eFEL DerivativeWindow).
    gap_factor, min_gap_ms : float
        Burst splitting, as :func:`burst_statistics`: bursts end at the ISIs above the largest jump
        (ratio) of the sorted ISIs beyond ``max(gap_factor × median ISI, min_gap_ms)`` (ms); burst
        features need ≥ 3 spikes and ≥ 2 bursts.
    spike_margin_ms : float
        Samples this close (ms) to a spike are left out of the default whole-trace baseline.

    Returns
    -------
    dict of str to torch.Tensor
        Each requested feature as a (B,) tensor of v's floating dtype on v's device (float64 for
        integer input), NaN where undefined (e.g. ISI features with < 2 spikes, burst features of a
        non-bursting row, AP shape features when no AP begin was found).

    Raises
    ------
    UnknownNameError
        A name not in :data:`FEATURE_NAMES`.
    ConfigurationError, EmptySignalError, NonFiniteDataError
        Bad shape, dt, levels, window or baseline; empty or non-finite input.
    """
    x = _as_batch(v)
    dt = _check_dt(dt_ms)
    t0 = _check_level(t0_ms, "t0_ms", "ms")
    thr = _check_level(threshold_mv, "threshold_mv")
    rearm = thr - 10.0 if rearm_mv is None else _check_level(rearm_mv, "rearm_mv")
    dth = _check_level(derivative_threshold, "derivative_threshold", "mV/ms")
    if not isinstance(derivative_window, (int, np.integer)) or derivative_window < 1:
        raise ConfigurationError(f"derivative_window must be a positive number of samples, got {derivative_window!r}.")
    for value, label in ((gap_factor, "gap_factor"), (min_gap_ms, "min_gap_ms"), (spike_margin_ms, "spike_margin_ms")):
        if not (math.isfinite(float(value)) and float(value) >= 0.0):
            raise ConfigurationError(f"{label} must be a finite number ≥ 0, got {value!r}.")
    wanted = list(FEATURE_NAMES) if names is None else list(names)
    unknown = [n for n in wanted if n not in FEATURE_NAMES]
    if unknown:
        raise UnknownNameError(f"Unknown feature name(s) {unknown}; choose from {', '.join(FEATURE_NAMES)}.")
    B, T = x.shape
    t_last = t0 + (T - 1) * dt
    window = (t0, t_last) if window_ms is None else _check_span(window_ms, "window_ms", t0, t_last)
    baseline = None if baseline_ms is None else _check_span(baseline_ms, "baseline_ms", t0, t_last)
    out_dtype = x.dtype
    dev = x.device
    need = set(wanted)
    results: dict[str, torch.Tensor] = {}
    nan = torch.full((B,), float("nan"), dtype=torch.float64, device=dev)

    table = None
    if need & (_SPIKE_TRAIN | _SPIKE_SHAPE) or (need & {"rest_mv"} and baseline is None):
        table = _spike_table(x, dt, t0, thr, rearm, window, dth, int(derivative_window),
                             need_shape=bool(need & _SPIKE_SHAPE))

    if table is not None and need & _SPIKE_TRAIN:
        n = table["count"]
        ptime = table["peak_time_ms"]
        isi = table["isi_ms"]
        isi_ok = torch.isfinite(isi)
        nf = n.double()
        results["spike_count"] = nf
        results["mean_rate_hz"] = nf * 1000.0 / (window[1] - window[0])
        results["first_spike_latency_ms"] = (ptime[:, 0] - window[0]) if ptime.shape[1] else nan
        n_isi = isi_ok.sum(dim=1)
        isi0 = torch.where(isi_ok, isi, torch.zeros_like(isi))
        mean_isi = isi0.sum(dim=1) / n_isi.clamp(min=1)
        results["isi_mean_ms"] = torch.where(n_isi >= 1, mean_isi, nan)
        var = (torch.where(isi_ok, isi - mean_isi[:, None], torch.zeros_like(isi)) ** 2).sum(dim=1) \
            / (n_isi - 1).clamp(min=1)
        results["isi_cv"] = torch.where(n_isi >= 2, var.sqrt() / mean_isi, nan)
        # adaptation_index2: skip the first spike → ISIs 1, 2, …; terms over consecutive pairs of those.
        if isi.shape[1] >= 3:
            a, b = isi[:, 1:-1], isi[:, 2:]
            ok = torch.isfinite(a) & torch.isfinite(b)
            terms = torch.where(ok, (b - a) / (b + a), torch.zeros_like(a))
            results["adaptation_index"] = torch.where(n >= 4, terms.sum(dim=1) / ok.sum(dim=1).clamp(min=1), nan)
        else:
            results["adaptation_index"] = nan
        if need & {"burst_period_ms", "spikes_per_burst", "duty_cycle"}:
            results.update(_burst_features(ptime, isi, n, gap_factor, min_gap_ms))

    if table is not None and need & _SPIKE_SHAPE:
        valid = table["valid"]
        results["ap_peak_mv"] = _nan_mean(table["peak_mv"], valid)
        amp = table["ap_amplitude_mv"]
        results["ap_amplitude_mv"] = _nan_mean(amp, torch.isfinite(amp))
        width = table["ap_width_ms"]
        results["ap_width_ms"] = _nan_mean(width, torch.isfinite(width))
        ahp = table["ahp_mv"]
        results["ahp_depth_mv"] = _nan_mean(ahp, torch.isfinite(ahp))

    if "rest_mv" in need:
        if baseline is not None:
            i0 = _first_index_at_or_after(baseline[0], t0, dt, T)
            i1 = min(int(math.floor((baseline[1] - t0) / dt + 1e-9)), T - 1)
            if i1 < i0:
                raise ConfigurationError(f"baseline_ms = {baseline_ms!r} holds no sample (dt = {dt:g} ms); widen it.")
            part = x[:, i0:i1 + 1]
        elif window_ms is not None and _first_index_at_or_after(window[0], t0, dt, T) > 0:
            part = x[:, :_first_index_at_or_after(window[0], t0, dt, T)]
        else:
            # the whole trace without the samples within spike_margin_ms of a spike (from its threshold
            # crossing until it falls below min(threshold, re-arm)): +1/−1 marks and a running sum
            row_all, s_all, e_all = table["spans"]
            margin = int(math.ceil(spike_margin_ms / dt))
            marks = torch.zeros((B, T + 1), dtype=torch.int32, device=dev)
            one = torch.ones_like(row_all, dtype=torch.int32)
            marks.index_put_((row_all, (s_all - 1 - margin).clamp(min=0)), one, accumulate=True)
            marks.index_put_((row_all, (e_all + margin).clamp(max=T)), -one, accumulate=True)
            near_spike = torch.cumsum(marks[:, :T], dim=1) > 0
            part = torch.where(near_spike, torch.full_like(x, float("nan")), x)
        results["rest_mv"] = _nan_median(part)

    return {name: results[name].to(out_dtype) for name in wanted}


def _burst_features(ptime: torch.Tensor, isi: torch.Tensor, n: torch.Tensor, gap_factor: float,
                    min_gap_ms: float) -> dict[str, torch.Tensor]:
    """burst_period_ms, spikes_per_burst, duty_cycle from the peak times — burst_statistics, batched."""
    B, K = ptime.shape
    dev = ptime.device
    nan = torch.full((B,), float("nan"), dtype=torch.float64, device=dev)
    if K < 3:
        return {"burst_period_ms": nan, "spikes_per_burst": nan, "duty_cycle": nan}
    d = isi[:, :-1]  # (B, K-1): ISI i between spikes i and i+1
    ok = torch.isfinite(d)
    m = ok.sum(dim=1, keepdim=True)
    ordered = torch.sort(torch.where(ok, d, torch.full_like(d, float("inf"))), dim=1).values
    lo, hi = ((m - 1) // 2).clamp(min=0), (m // 2).clamp(min=0)
    median = (0.5 * (ordered.gather(1, lo) + ordered.gather(1, hi))).squeeze(1)
    base = torch.clamp(gap_factor * median, min=min_gap_ms)
    # the largest ratio between consecutive sorted ISIs whose upper side exceeds base (burst_statistics)
    upper = ordered[:, 1:]
    ratio = torch.where(torch.isfinite(upper) & (upper > base[:, None]), upper / ordered[:, :-1],
                        torch.full_like(upper, -1.0))
    j = ratio.argmax(dim=1, keepdim=True)
    edge = torch.where(ratio.gather(1, j) > 0, upper.gather(1, j), torch.full_like(j, float("inf"), dtype=d.dtype))
    brk = ok & (d >= edge)
    n_breaks = brk.sum(dim=1)
    n_bursts = n_breaks + 1
    bursting = (n >= 3) & (n_breaks >= 1)
    i = torch.arange(K - 1, device=dev)
    first_brk = torch.where(brk, i, K).min(dim=1).values
    last_brk = torch.where(brk, i, -1).max(dim=1).values
    last_start = (last_brk + 1).clamp(0, K - 1)
    period = (ptime.gather(1, last_start[:, None]).squeeze(1) - ptime[:, 0]) / n_breaks.clamp(min=1)
    # Complete bursts: the inner ones when there are more than two, else both.
    many = n_bursts > 2
    spikes_inner = torch.where(many, (last_brk - first_brk).double(), n.double())
    bursts_inner = torch.where(many, n_bursts - 2, n_bursts).double()
    burst_id = torch.cumsum(brk.to(torch.int64), dim=1)  # for a non-break ISI: its burst's index
    inner_isi = ok & ~brk & torch.where(many[:, None], (burst_id >= 1) & (burst_id <= (n_bursts - 2)[:, None]),
                                        torch.ones_like(brk))
    duration = torch.where(inner_isi, d, torch.zeros_like(d)).sum(dim=1) / bursts_inner
    return {
        "burst_period_ms": torch.where(bursting, period, nan),
        "spikes_per_burst": torch.where(bursting, spikes_inner / bursts_inner, nan),
        "duty_cycle": torch.where(bursting, duration / period, nan),
    }


# --------------------------------------------------------------------------------------------------
# validation against eFEL (a test dependency: pip install "neo-pinn[test]")
# --------------------------------------------------------------------------------------------------

#: How far (mV) efel_agreement raises samples that sit exactly at the threshold before eFEL sees them.
_EFEL_THRESHOLD_NUDGE_MV = 1e-9

#: eFEL features read by :func:`efel_agreement`.
_EFEL_FEATURES = ("peak_time", "peak_voltage", "AP_begin_indices", "AP_amplitude", "AP_duration_half_width",
                  "AP_rise_indices", "AP_fall_indices", "AP_end_indices", "all_ISI_values",
                  "min_voltage_between_spikes")


def efel_agreement(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                   threshold_mv: float = 0.0, rearm_mv: float | None = None, derivative_threshold: float = 10.0,
                   derivative_window: int = 3, tail_ms: float = 20.0) -> list[dict]:
    """Compare :func:`batch_spike_features` with eFEL on each row, spike by spike.

    eFEL is run on the same samples with the same definitions switched on: ``Threshold`` =
    ``threshold_mv``, ``DerivativeThreshold``/``DerivativeWindow`` as given, ``strict_stiminterval`` on and
    ``stim_start``/``stim_end`` = the window. Three details make the comparison exact rather than
    approximate:

    * eFEL first resamples every trace onto a grid built by adding ``interp_step`` (default 0.1 ms)
      again and again. Even with ``interp_step`` = ``dt_ms`` that grid drifts from the sample times by
      rounding (0.05 ms is not exact in binary), and the resampled voltages differ from the samples in
      the last bits — which decides ties between equal samples (flat peaks and troughs of quantized
      recordings) differently. eFEL is therefore given the **sample index** as its time axis with
      ``interp_step`` = 1, which reproduces the samples exactly; the derivative thresholds are scaled to
      mV per sample (× ``dt_ms``) and eFEL's times are scaled back to ms.
    * eFEL searches the AP end of the last spike (which bounds its half-width fall) up to the end of the
      trace it is given, so a later event (the next spike, or the second current step of a multi-step
      ABF sweep) can replace the spike's own repolarisation. It is given each trace up to ``tail_ms``
      after the window end, and not beyond the threshold crossing of the first spike that peaks
      after the window.
    * eFEL's spike detector needs a sample strictly above the threshold after an upward crossing and
      one strictly below after a downward crossing; a sample exactly at the threshold makes it lose a
      crossing and mis-pair all later ones. Such samples are raised by 1e-9 mV for eFEL, which makes its
      rule the one used here (``≥`` threshold counts as above).

    eFEL's detector has no hysteresis — every upward crossing of the threshold that comes back down is
    a spike — so pass ``rearm_mv = threshold_mv`` to compare the same spikes; with the default re-arm
    level a spike whose trough stays above it is merged with the one before. A trace that ends above
    threshold has one spike more here than in eFEL (which needs the downward crossing).

    Parameters
    ----------
    v, dt_ms, t0_ms, window_ms, threshold_mv, rearm_mv, derivative_threshold, derivative_window
        As :func:`batch_spike_features` (mV, ms, mV/ms, samples).
    tail_ms : float
        How much of the trace after the window eFEL sees, ms.

    Returns
    -------
    list of dict
        One per row: ``spikes`` and ``spikes_efel`` (counts in the window); when they are equal the
        per-spike differences (ours − eFEL, numpy arrays) ``peak_time_ms``, ``isi_ms`` (ms),
        ``amplitude_mv`` (mV), ``width_ms`` (ms), ``ahp_mv`` (mV); an array is empty where eFEL gives no
        one-to-one values, and ``notes`` (list of str) says why. ``width_ms`` holds the spikes whose
        half-level samples in eFEL are the two samples on either side of our interpolated crossings
        (the same crossing, measured by nearest sample there and by interpolation here);
        ``width_excluded`` maps the index of every other spike to the reason eFEL measured a different
        crossing (see :func:`_same_half_crossings`).

    Raises
    ------
    ConfigurationError
        efel is not installed, or a bad argument.
    """
    try:
        import efel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError('efel_agreement needs eFEL: pip install "neo-pinn[test]" (or pip install efel).') \
            from None
    x = _as_batch(v)
    dt = _check_dt(dt_ms)
    t0 = _check_level(t0_ms, "t0_ms", "ms")
    tail = _check_level(tail_ms, "tail_ms", "ms")
    T = x.shape[1]
    t_last = t0 + (T - 1) * dt
    window = (t0, t_last) if window_ms is None else _check_span(window_ms, "window_ms", t0, t_last)
    thr = _check_level(threshold_mv, "threshold_mv")
    rearm = thr - 10.0 if rearm_mv is None else _check_level(rearm_mv, "rearm_mv")
    dth = _check_level(derivative_threshold, "derivative_threshold", "mV/ms")
    if not isinstance(derivative_window, (int, np.integer)) or derivative_window < 1:
        raise ConfigurationError(f"derivative_window must be a positive number of samples, got {derivative_window!r}.")
    table = _spike_table(x, dt, t0, thr, rearm, window, dth, int(derivative_window), need_shape=True)
    ours = {k: table[k].detach().cpu().numpy() for k in ("count", *SPIKE_FEATURE_NAMES)}
    # eFEL sees each row up to tail_ms after the window, and not beyond the start of the first spike
    # whose peak is after the window: it would otherwise search the last spike's AP end into it.
    n_keep = np.full(x.shape[0], min(T, _first_index_at_or_after(window[1] + max(tail, 0.0), t0, dt, T) + 1))
    row_all, s_all, p_all = (a.detach().cpu().numpy() for a in table["all_peaks"])
    later = t0 + p_all * dt > window[1]
    np.minimum.at(n_keep, row_all[later], s_all[later])
    volts_all = x.detach().cpu().double().numpy()
    # eFEL needs V > threshold after an upward and V < threshold after a downward crossing; a sample
    # exactly at the threshold (common in quantized recordings: ABF steps are 0.03 mV, so 0 mV is a
    # level) makes it lose one crossing and pair every later upward crossing with the previous spike's
    # downward one, dropping all later spikes. Raised by 1e-9 mV, such samples count as at-or-above
    # threshold for eFEL too — the rule used here — and nothing else moves measurably. (One ulp is not
    # enough: eFEL's resampling, v[i-1] + (v[i] - v[i-1]), rounds it away.)
    volts = [volts_all[r, :n_keep[r]].copy() for r in range(x.shape[0])]
    for row in volts:
        row[row == thr] = thr + _EFEL_THRESHOLD_NUDGE_MV
    stim = ((window[0] - t0) / dt, (window[1] - t0) / dt)
    efel.reset()
    try:
        for name, value in (("Threshold", float(threshold_mv)), ("interp_step", 1.0),
                            ("DerivativeThreshold", dth * dt),
                            ("DownDerivativeThreshold", efel.get_settings().DownDerivativeThreshold * dt),
                            ("DerivativeWindow", int(derivative_window)), ("strict_stiminterval", True)):
            efel.set_setting(name, value)
        traces = [{"T": np.arange(row.size, dtype=float), "V": row, "stim_start": [stim[0]], "stim_end": [stim[1]]}
                  for row in volts]
        theirs = efel.get_feature_values(traces, list(_EFEL_FEATURES), raise_warnings=False)
    finally:
        efel.reset()

    def arr(values, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
        return np.empty(0) if values is None else np.asarray(values, dtype=float).reshape(-1) * scale + offset

    rows = []
    empty = np.empty(0)
    for r, fe in enumerate(theirs):
        n = int(ours["count"][r])
        peaks = arr(fe["peak_time"], dt, t0)
        row = {"spikes": n, "spikes_efel": int(peaks.size), "peak_time_ms": empty, "isi_ms": empty,
               "amplitude_mv": empty, "width_ms": empty, "width_excluded": {}, "ahp_mv": empty, "notes": []}
        rows.append(row)
        if n != peaks.size:
            row["notes"].append(f"spike counts differ ({n} here, {peaks.size} in eFEL)")
            continue
        if n == 0:
            continue
        row["peak_time_ms"] = ours["peak_time_ms"][r, :n] - peaks
        if n > 1:
            row["isi_ms"] = ours["isi_ms"][r, :n - 1] - arr(fe["all_ISI_values"], dt)
        begin_ok = np.isfinite(ours["ap_begin_mv"][r, :n])
        n_begin_efel = arr(fe["AP_begin_indices"]).size
        if int(begin_ok.sum()) != n_begin_efel:
            row["notes"].append(f"AP begins differ ({int(begin_ok.sum())} here, {n_begin_efel} in eFEL)")
        elif not begin_ok.all():
            why = (f"no AP begin (dV/dt does not rise through {derivative_threshold:g} mV/ms for "
                   f"{derivative_window} samples)")
            if n_begin_efel == 0:
                row["notes"].append(f"{n} of {n} spikes have {why}; no amplitude or width to compare")
            else:
                # eFEL's AP_amplitude and half widths pair the k-th begin with the k-th peak, which is
                # wrong once a spike has no begin; its begin indices themselves are right. Each is
                # matched to the first peak after it and the amplitude taken from eFEL's own values.
                begins = arr(fe["AP_begin_indices"]).astype(int)
                peak_i = np.rint((peaks - t0) / dt).astype(int)
                owner = np.searchsorted(peak_i, begins, side="right")
                ok = np.array_equal(owner, np.flatnonzero(begin_ok))
                if ok:
                    amp = arr(fe["peak_voltage"])[owner] - volts[r][begins]
                    row["amplitude_mv"] = ours["ap_amplitude_mv"][r, owner] - amp
                row["notes"].append(
                    f"{n - n_begin_efel} of {n} spikes have {why}; eFEL's AP_amplitude and half widths then pair "
                    "peaks with later spikes' begins, so amplitudes are compared from its AP_begin_indices and "
                    "peak_voltage" + ("" if ok else " — but its begins fall before other spikes than ours")
                    + ", and widths not at all")
        else:
            amp = arr(fe["AP_amplitude"])
            if amp.size == n:
                row["amplitude_mv"] = ours["ap_amplitude_mv"][r, :n] - amp
            width = arr(fe["AP_duration_half_width"], dt)
            rise_i, fall_i, end_i = (arr(fe[k]) for k in ("AP_rise_indices", "AP_fall_indices", "AP_end_indices"))
            if width.size == n and rise_i.size == n and fall_i.size == n:
                same, reasons = _same_half_crossings(volts[r], (ours["half_rise_time_ms"][r, :n] - t0) / dt,
                                                     (ours["half_fall_time_ms"][r, :n] - t0) / dt,
                                                     rise_i, fall_i, end_i, ours["peak_time_ms"][r, :n],
                                                     ours["ap_begin_mv"][r, :n], ours["peak_mv"][r, :n], t0, dt)
                row["width_ms"] = (ours["ap_width_ms"][r, :n] - width)[same]
                row["width_excluded"] = reasons
                row["notes"].extend(f"spike {k}: {why}" for k, why in reasons.items())
            else:
                row["notes"].append(f"eFEL gives {width.size} half widths for {n} spikes (an AP end is missing)")
        if n > 1:
            ahp = arr(fe["min_voltage_between_spikes"])
            if ahp.size == n - 1:
                row["ahp_mv"] = ours["ahp_mv"][r, :n - 1] - ahp
            else:
                row["notes"].append(f"eFEL gives {ahp.size} minima between {n} spikes")
    return rows


def _same_half_crossings(v: np.ndarray, rise: np.ndarray, fall: np.ndarray, rise_i: np.ndarray, fall_i: np.ndarray,
                         end_i: np.ndarray, peak_ms: np.ndarray, begin_mv: np.ndarray, peak_mv: np.ndarray,
                         t0: float, dt: float) -> tuple[np.ndarray, dict[int, str]]:
    """Which half widths measure the same crossings here and in eFEL, and why the others do not.

    ``rise``/``fall`` are our interpolated half-level crossings and ``rise_i``/``fall_i``/``end_i`` eFEL's
    AP_rise/AP_fall/AP_end indices, all in samples. eFEL takes, on each side, the sample whose voltage
    is nearest to the half level — on the fall only up to its AP end, the first sample after the
    steepest repolarisation where dV/dt is back above DownDerivativeThreshold (−12 mV/ms). It measures
    the same crossing as we do when that sample is one of the two around our crossing. It does not
    when (a) its AP end comes before the half level is reached (a slowly repolarising spike), or
    (b) the trace crosses the half level again later (e.g. a stimulus artifact during repolarisation)
    and a later sample happens to be nearer to the level.
    """
    same = np.ones(rise.size, dtype=bool)
    reasons: dict[int, str] = {}
    for k in range(rise.size):
        rise_same = abs(rise_i[k] - rise[k]) < 1.0
        fall_same = abs(fall_i[k] - fall[k]) < 1.0
        if rise_same and fall_same:
            continue
        same[k] = False
        half = 0.5 * (peak_mv[k] + begin_mv[k])
        if not fall_same and k < end_i.size and fall[k] > end_i[k] - 1 and fall_i[k] == end_i[k] - 1:
            reasons[k] = (f"eFEL's fall search stops at its AP end (sample {int(end_i[k])}, dV/dt back above "
                          f"−12 mV/ms) before the voltage reaches the half level {half:.2f} mV at "
                          f"{t0 + fall[k] * dt:.2f} ms; eFEL's width is {(fall_i[k] - rise_i[k]) * dt:.3f} ms, "
                          f"ours {(fall[k] - rise[k]) * dt:.3f} ms")
            continue
        side, ours_at, theirs_at = ("fall", fall[k], fall_i[k]) if not fall_same else ("rise", rise[k], rise_i[k])
        lo, hi = sorted((int(math.floor(ours_at)), int(theirs_at)))
        seg = v[lo:hi + 2]
        crossings = int(np.sum((seg[:-1] - half) * (seg[1:] - half) <= 0))
        if crossings > 1:
            reasons[k] = (f"the voltage crosses the half level {half:.2f} mV {crossings} times on the {side} "
                          f"(between {t0 + lo * dt:.2f} and {t0 + (hi + 1) * dt:.2f} ms, e.g. a stimulus "
                          f"artifact); eFEL takes the sample nearest to the level, at {t0 + theirs_at * dt:.2f} ms, "
                          f"we the first crossing after the peak at {t0 + ours_at * dt:.2f} ms")
        else:
            reasons[k] = (f"eFEL's {side} sample {t0 + theirs_at * dt:.2f} ms is not next to the half-level "
                          f"crossing at {t0 + ours_at * dt:.2f} ms")
    return same, reasons
