"""Per-spike values of a voltage batch: spike detection, AP peaks, AP begins, half widths, AHP troughs.

:func:`batch_spike_times` gives the interpolated threshold crossings and :func:`batch_spike_features`
the per-spike table the scalar features (:func:`~neo_pinn.features.batch_features`) average; both
work on every row at once with the flat-list operations of :mod:`neo_pinn.features.flat_ops`. The
definitions match eFEL's where eFEL has the quantity, so the two can be compared spike by spike
(:mod:`neo_pinn.testing.efel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigurationError
from .catalogue import SPIKE_FEATURE_NAMES
from .flat_ops import count_at_or_before, run_starts, same_row_neighbours, scan, segment_first_arg, to_rows
from .inputs import (
    analysis_window,
    check_derivative_rule,
    check_dt,
    check_level,
    check_spike_levels,
    first_index_at_or_after,
    voltage_batch,
)

__all__ = ["detect_spikes", "crossing_samples", "spike_table", "batch_spike_times", "batch_spike_features"]


def detect_spikes(x: torch.Tensor, threshold: float, rearm: float) -> dict:
    """Counted spikes of every row as flat, row-sorted lists (spike_times' convention).

    An upward crossing between samples k and k+1 (x[k] < threshold ≤ x[k+1]) counts iff the trace was
    below ``rearm`` somewhere in (k₁, k] — k₁ being the previous upward crossing of the row, counted or
    not: if it was, the detector re-armed whatever happened at k₁; if not, it was either disarmed at k₁
    or never armed there. The first crossing of a row counts iff the row starts below threshold or went
    below ``rearm`` before it. That turns the sequential hysteresis of
    :func:`~neo_pinn.features.spike_times` into searches over the sorted starts of the below-``rearm`` runs.

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
    arm_starts = run_starts(below)
    row = torch.div(f_up, T, rounding_mode="floor")
    same_prev, _ = same_row_neighbours(row)
    f_prev = torch.cat([f_up[:1], f_up[:-1]])  # previous crossing's first sample above (same row where used)
    # re-armed in (k₁, k]: the sample after the previous crossing is below re-arm, or a below-re-arm run
    # starts after it and at or before k (= this crossing's f_up − 1).
    runs_between = count_at_or_before(arm_starts, f_up - 1) - count_at_or_before(arm_starts, f_prev)
    rearmed = below.reshape(-1)[f_prev] | (runs_between > 0)
    # first crossing of a row: armed if the row starts below threshold or was below re-arm before it
    row_base = row * T
    runs_before = count_at_or_before(arm_starts, f_up - 1) - count_at_or_before(arm_starts, row_base - 1)
    first_ok = (x[:, 0] < threshold)[row] | (runs_before > 0)
    counted = torch.where(same_prev, rearmed, first_ok)
    return {"row": row[counted], "start": (f_up - row_base)[counted], "below_starts": arm_starts}


def crossing_samples(x: torch.Tensor, row: torch.Tensor, start: torch.Tensor, level: float) -> torch.Tensor:
    """Fractional sample index (float64) where each spike crosses ``level`` between start−1 and start."""
    lo = x[row, start - 1].double()
    hi = x[row, start].double()
    return (start - 1).double() + (level - lo) / (hi - lo)


@dataclass(frozen=True)
class _Kept:
    """The spikes kept in the window as flat, row-sorted lists, and the flattened batch they index.

    ``xf`` is the (B·T,) batch and ``T`` its row length; per spike, ``base`` is its row's flat offset and
    ``p`` its peak sample; ``same_prev``/``same_next`` say whether the neighbour in the list is in the
    same row.
    """

    xf: torch.Tensor
    T: int
    base: torch.Tensor
    p: torch.Tensor
    same_prev: torch.Tensor
    same_next: torch.Tensor


def _spike_extents(x: torch.Tensor, thr: float, rearm: float):
    """Every counted spike: row, start (first sample ≥ threshold), end (first sample below
    min(threshold, re-arm), or T) and peak (the first sample of the maximum in [start, end)), int64."""
    T = x.shape[1]
    xf = x.reshape(-1)
    spikes = detect_spikes(x, thr, rearm)
    row_all, s_all = spikes["row"], spikes["start"]
    level = min(thr, rearm)
    ends_at = spikes["below_starts"] if level == rearm else run_starts(x < level)
    base_all = row_all * T
    nxt = torch.searchsorted(ends_at, base_all + s_all)  # first run of x < level starting after the start
    nxt_pos = ends_at[nxt.clamp(max=max(ends_at.numel() - 1, 0))] if ends_at.numel() else base_all
    e_all = torch.where((nxt < ends_at.numel()) & (nxt_pos < base_all + T), nxt_pos - base_all,
                        torch.full_like(s_all, T))
    # The first sample of the maximum, as eFEL's peak_indices (it scans with a strict '<').
    p_all = segment_first_arg(xf, base_all + s_all, base_all + e_all, largest=True) - base_all
    return row_all, s_all, e_all, p_all


def spike_table(x: torch.Tensor, dt: float, t0: float, thr: float, rearm: float, window: tuple[float, float],
                derivative_threshold: float, derivative_window: int, need_shape: bool) -> dict:
    """Per-spike quantities of the spikes whose peak lies in ``window`` (see :func:`batch_spike_features`).

    Parameters
    ----------
    x : torch.Tensor
        Checked (B, T) voltage batch in mV (:func:`~neo_pinn.features.inputs.voltage_batch`).
    dt, t0 : float
        Sampling interval and time of the first sample, ms.
    thr, rearm : float
        Spike threshold and re-arm level, mV.
    window : (float, float)
        Analysis window in ms, inside the trace.
    derivative_threshold : float
        dV/dt at AP begin, mV/ms.
    derivative_window : int
        Samples dV/dt must stay at or above it.
    need_shape : bool
        Also compute AP begins, amplitudes, half widths and AHP troughs.

    Returns
    -------
    dict
        ``count`` (B,), ``valid`` and the (B, K) tensors of :data:`~neo_pinn.features.SPIKE_FEATURE_NAMES`
        (the shape ones only with ``need_shape``); ``spans`` = (row, start, end) and ``all_peaks`` =
        (row, start, peak), flat int64 lists of every counted spike of the trace, in the window or not.
    """
    B, T = x.shape
    dev = x.device
    xf = x.reshape(-1)
    w0, w1 = window

    # --- spikes: counted crossing → extent [start, first sample below min(threshold, re-arm)) → peak
    row_all, s_all, e_all, p_all = _spike_extents(x, thr, rearm)
    t_peak_all = t0 + p_all.double() * dt

    # --- keep the spikes whose peak is in the window (contiguous within each row: peaks are ordered)
    keep = (t_peak_all >= w0) & (t_peak_all <= w1)
    idx_all = torch.nonzero(keep).squeeze(1)  # position of each kept spike in the full list
    row, s, p = row_all[idx_all], s_all[idx_all], p_all[idx_all]
    base = row * T
    n = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64, device=dev)
    same_prev, same_next = same_row_neighbours(row)
    nan = float("nan")

    def rows(values: torch.Tensor) -> torch.Tensor:
        return to_rows(row, values.double(), B, nan)

    v_peak = xf[base + p].double()
    t_peak = t0 + p.double() * dt
    isi = torch.where(same_next, torch.cat([t_peak[1:], t_peak[:1]]) - t_peak, torch.full_like(t_peak, nan))
    table = {
        "count": n,
        "valid": rows(torch.ones_like(t_peak)) == 1.0,
        "crossing_time_ms": rows(t0 + crossing_samples(x, row, s, thr) * dt),
        "peak_time_ms": rows(t_peak),
        "peak_mv": rows(v_peak),
        "isi_ms": rows(isi),
        "spans": (row_all, s_all, e_all),
        "all_peaks": (row_all, s_all, p_all),
    }
    if not need_shape:
        return table
    filler = torch.full_like(t_peak, nan)
    kept = _Kept(xf, T, base, p, same_prev, same_next)
    table["ahp_mv"] = rows(_ahp_troughs(kept, filler))

    ahp, ahp_ok = _min_ahp_indices(kept, first_index_at_or_after(w1, t0, dt, T))
    begin_ok, b_idx = _ap_begins(kept, ahp, ahp_ok, first_index_at_or_after(w0, t0, dt, T), dt,
                                 derivative_threshold, derivative_window)
    v_begin = xf[base + b_idx].double()
    table["ap_begin_time_ms"] = rows(torch.where(begin_ok, t0 + b_idx.double() * dt, filler))
    table["ap_begin_mv"] = rows(torch.where(begin_ok, v_begin, filler))
    table["ap_amplitude_mv"] = rows(torch.where(begin_ok, v_peak - v_begin, filler))

    # the fall must come before the next spike's peak (any spike of the row, in the window or not)
    _, next_same_all = same_row_neighbours(row_all)
    p_after = torch.where(next_same_all[idx_all], torch.cat([p_all[1:], p_all[:1]])[idx_all], torch.full_like(p, T))
    width_ok, t_rise, t_fall = _half_crossings(kept, begin_ok, b_idx, v_peak, v_begin, p_after)
    table["ap_width_ms"] = rows(torch.where(width_ok, (t_fall - t_rise) * dt, filler))
    table["half_rise_time_ms"] = rows(torch.where(width_ok, t0 + t_rise * dt, filler))
    table["half_fall_time_ms"] = rows(torch.where(width_ok, t0 + t_fall * dt, filler))
    return table


def _ahp_troughs(k: _Kept, filler: torch.Tensor) -> torch.Tensor:
    """The minimum between consecutive peaks of the window (eFEL min_voltage_between_spikes), mV;
    ``filler`` (NaN) for the last spike of a row."""
    xf, base, p = k.xf, k.base, k.p
    p_next = torch.cat([p[1:], p[:1]])
    pair = torch.nonzero(k.same_next).squeeze(1)
    trough = segment_first_arg(xf, base[pair] + p[pair], base[pair] + p_next[pair], largest=False)
    ahp_v = filler.clone()
    ahp_v[pair] = xf[trough].double()
    return ahp_v


def _min_ahp_indices(k: _Kept, e_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """eFEL min_AHP_indices, which bound the AP-begin search, and whether each spike has one.

    The first local minimum (a sample the next two do not go below; failing that, the first global
    minimum) in [peak_i, peak_{i+1}); the last spike's up to the window end (``e_idx``, the first
    sample at or after it).
    """
    xf, T, base, p, same_next = k.xf, k.T, k.base, k.p, k.same_next
    p_next = torch.cat([p[1:], p[:1]])
    seg_end = torch.where(same_next, p_next, torch.full_like(p, e_idx))

    def local_min(items, q):
        b = base[items][:, None]
        here = xf[b + q.clamp(0, T - 1)]
        return (xf[b + (q + 1).clamp(max=T - 1)] >= here) & (xf[b + (q + 2).clamp(max=T - 1)] >= here)

    ahp = scan(p, seg_end - 3, local_min, forward=True)
    lost = (ahp < 0) & (seg_end > p)
    if bool(lost.any()):
        fb = torch.nonzero(lost).squeeze(1)
        ahp[fb] = segment_first_arg(xf, base[fb] + p[fb], base[fb] + seg_end[fb], largest=False) - base[fb]
    ahp_ok = (seg_end > p) & (ahp >= 0) & ~(~same_next & (ahp == e_idx - 1))
    return torch.where(ahp_ok, ahp, torch.zeros_like(ahp)), ahp_ok


def _ap_begins(k: _Kept, ahp: torch.Tensor, ahp_ok: torch.Tensor, s_idx: int, dt: float,
               derivative_threshold: float, derivative_window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """eFEL AP_begin_indices: whether each spike has an AP begin, and its sample (0 where not).

    Searching back from the peak to the previous spike's AHP (to two samples before the window start
    ``s_idx`` for the first spike), the latest sample j whose dV/dt is ≤ the threshold while dV/dt ≥
    it on the next ``derivative_window`` samples; the AP begins at j + 1. dV/dt by central
    differences, one-sided at the ends of the trace (as eFEL).
    """
    xf, T, base, p, same_prev = k.xf, k.T, k.base, k.p, k.same_prev
    dev = xf.device
    W = derivative_window
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

    j_begin = scan(lower, torch.minimum(p - 1, torch.full_like(p, T - 1 - W)), begins_here, forward=False,
                   budget=(1 << 22) // (W + 1))
    begin_ok = (j_begin >= 0) & (p >= 1) & (~same_prev | prev_ok)
    return begin_ok, torch.where(begin_ok, j_begin + 1, torch.zeros_like(p))


def _half_crossings(k: _Kept, begin_ok: torch.Tensor, b_idx: torch.Tensor, v_peak: torch.Tensor,
                    v_begin: torch.Tensor, p_after: torch.Tensor):
    """The half-level crossings of each spike, in fractional samples: (ok, rise, fall).

    The last upward crossing of h = (peak + begin)/2 in [begin, peak] and the first downward one after
    the peak (before the next spike's peak ``p_after``), each linearly interpolated. A "begin" above
    the peak — possible on a noisy, slowly rising trace — has no half level.
    """
    xf, T, base, p = k.xf, k.T, k.base, k.p
    has_half = begin_ok & (v_peak > v_begin)
    half = torch.where(has_half, 0.5 * (v_peak + v_begin), torch.zeros_like(v_peak))
    rise_lo = torch.where(has_half, b_idx, p)  # an empty range for spikes without a half level

    def under_half(items, q):
        return xf[base[items][:, None] + q.clamp(0, T - 1)].double() < half[items][:, None]

    def at_or_under_half(items, q):
        return xf[base[items][:, None] + q.clamp(0, T - 1)].double() <= half[items][:, None]

    j_rise = scan(rise_lo, p - 1, under_half, forward=False)
    m_fall = scan(p + 1, torch.where(has_half, p_after - 1, p), at_or_under_half, forward=True)
    width_ok = has_half & (j_rise >= 0) & (m_fall >= 0)
    jr = j_rise.clamp(min=0)
    jf = (m_fall - 1).clamp(min=0)
    r0, r1 = xf[base + jr].double(), xf[base + (jr + 1).clamp(max=T - 1)].double()
    f0, f1 = xf[base + jf].double(), xf[base + (jf + 1).clamp(max=T - 1)].double()
    one = torch.ones_like(r0)
    t_rise = jr.double() + (half - r0) / torch.where(width_ok, r1 - r0, one)
    t_fall = jf.double() + (f0 - half) / torch.where(width_ok, f0 - f1, one)
    return width_ok, t_rise, t_fall


def batch_spike_times(v, dt_ms: float, *, t0_ms: float = 0.0, threshold_mv: float = 0.0,
                      rearm_mv: float | None = None, max_spikes: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold-crossing spike times of every row of a voltage batch.

    Same convention as :func:`~neo_pinn.features.spike_times`: an upward crossing of ``threshold_mv`` (a sample below it
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
    x = voltage_batch(v)
    dt = check_dt(dt_ms)
    t0 = check_level(t0_ms, "t0_ms", "ms")
    thr, rearm = check_spike_levels(threshold_mv, rearm_mv)
    if max_spikes is not None and (not isinstance(max_spikes, (int, np.integer)) or max_spikes < 0):
        raise ConfigurationError(f"max_spikes must be a non-negative integer or None, got {max_spikes!r}.")
    B = x.shape[0]
    spikes = detect_spikes(x, thr, rearm)
    row, s = spikes["row"], spikes["start"]
    times = t0 + crossing_samples(x, row, s, thr) * dt
    counts = torch.bincount(row, minlength=B) if row.numel() else torch.zeros(B, dtype=torch.int64, device=x.device)
    return to_rows(row, times, B, float("nan"), None if max_spikes is None else int(max_spikes)), counts


def batch_spike_features(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                         threshold_mv: float = 0.0, rearm_mv: float | None = None,
                         derivative_threshold: float = 10.0, derivative_window: int = 3) -> dict[str, torch.Tensor]:
    """Per-spike values of every row: the quantities :func:`~neo_pinn.features.batch_features` averages.

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
    x = voltage_batch(v)
    dt = check_dt(dt_ms)
    t0 = check_level(t0_ms, "t0_ms", "ms")
    thr, rearm = check_spike_levels(threshold_mv, rearm_mv)
    dth, window_n = check_derivative_rule(derivative_threshold, derivative_window)
    window = analysis_window(window_ms, t0, dt, x.shape[1])
    table = spike_table(x, dt, t0, thr, rearm, window, dth, window_n, need_shape=True)
    return {"count": table["count"], **{k: table[k] for k in SPIKE_FEATURE_NAMES}}
