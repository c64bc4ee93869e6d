"""Scalar electrophysiology features of every row of a voltage batch (torch, any device).

:func:`batch_features` averages the per-spike table of :mod:`neo_pinn.features.per_spike` into the
features of :data:`~neo_pinn.features.FEATURES` (rates, ISI statistics, AP shape, rest, bursts); spike
train features use the AP peak times, as eFEL does. Backends score populations with it, so every row is
computed at once, without a Python loop over rows or spikes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import ConfigurationError, UnknownNameError
from .catalogue import FEATURE_NAMES
from .flat_ops import nan_mean, nan_median
from .inputs import (
    analysis_window,
    check_derivative_rule,
    check_dt,
    check_level,
    check_span,
    check_spike_levels,
    first_index_at_or_after,
    voltage_batch,
)
from .per_spike import spike_table

__all__ = ["batch_features"]

#: Features computed from the spike train, and from the AP shapes (the others: rest_mv).
_SPIKE_TRAIN = {"spike_count", "mean_rate_hz", "first_spike_latency_ms", "isi_mean_ms", "isi_cv",
                "adaptation_index", "burst_period_ms", "spikes_per_burst", "duty_cycle"}
_SPIKE_SHAPE = {"ap_peak_mv", "ap_amplitude_mv", "ap_width_ms", "ahp_depth_mv"}


def batch_features(v, dt_ms: float, *, t0_ms: float = 0.0, window_ms: tuple[float, float] | None = None,
                   baseline_ms: tuple[float, float] | None = None, threshold_mv: float = 0.0,
                   rearm_mv: float | None = None, names: Sequence[str] | None = None,
                   derivative_threshold: float = 10.0, derivative_window: int = 3, gap_factor: float = 5.0,
                   min_gap_ms: float = 50.0, spike_margin_ms: float = 5.0) -> dict[str, torch.Tensor]:
    """Scalar electrophysiology features of every row of a voltage batch.

    Definitions, units and the eFEL feature each one matches are in :data:`~neo_pinn.features.FEATURES`;
    per-spike values come from :func:`~neo_pinn.features.batch_spike_features` and spike-train features
    use the AP **peak** times (as eFEL), so ``isi_mean_ms`` of a row equals the mean of eFEL's
    ``all_ISI_values`` on that trace.

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
        Spike detection levels in mV (see :func:`~neo_pinn.features.batch_spike_times`; re-arm default
        threshold − 10).
    names : sequence of str, optional
        Features to compute (default all of :data:`~neo_pinn.features.FEATURE_NAMES`); fewer names skip
        work.
    derivative_threshold : float
        dV/dt in mV/ms at AP begin (eFEL DerivativeThreshold).
    derivative_window : int
        Samples the derivative must stay above it (eFEL DerivativeWindow).
    gap_factor, min_gap_ms : float
        Burst splitting, as :func:`~neo_pinn.features.burst_statistics`: bursts end at the ISIs above the largest jump
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
        A name not in :data:`~neo_pinn.features.FEATURE_NAMES`.
    ConfigurationError, EmptySignalError, NonFiniteDataError
        Bad shape, dt, levels, window or baseline; empty or non-finite input.
    """
    x = voltage_batch(v)
    dt = check_dt(dt_ms)
    t0 = check_level(t0_ms, "t0_ms", "ms")
    thr, rearm = check_spike_levels(threshold_mv, rearm_mv)
    dth, window_n = check_derivative_rule(derivative_threshold, derivative_window)
    for value, label in ((gap_factor, "gap_factor"), (min_gap_ms, "min_gap_ms"), (spike_margin_ms, "spike_margin_ms")):
        if not (math.isfinite(float(value)) and float(value) >= 0.0):
            raise ConfigurationError(f"{label} must be a finite number ≥ 0, got {value!r}.")
    wanted = list(FEATURE_NAMES) if names is None else list(names)
    unknown = [n for n in wanted if n not in FEATURE_NAMES]
    if unknown:
        raise UnknownNameError(f"Unknown feature name(s) {unknown}; choose from {', '.join(FEATURE_NAMES)}.")
    B, T = x.shape
    t_last = t0 + (T - 1) * dt
    window = analysis_window(window_ms, t0, dt, T)
    baseline = None if baseline_ms is None else check_span(baseline_ms, "baseline_ms", t0, t_last)
    out_dtype = x.dtype
    need = set(wanted)
    results: dict[str, torch.Tensor] = {}

    table = None
    if need & (_SPIKE_TRAIN | _SPIKE_SHAPE) or (need & {"rest_mv"} and baseline is None):
        table = spike_table(x, dt, t0, thr, rearm, window, dth, window_n, need_shape=bool(need & _SPIKE_SHAPE))
    if table is not None and need & _SPIKE_TRAIN:
        results.update(_spike_train_features(table, window, need, gap_factor, min_gap_ms))
    if table is not None and need & _SPIKE_SHAPE:
        results.update(_spike_shape_features(table))
    if "rest_mv" in need:
        if baseline is not None:
            part = _baseline_part(x, baseline, baseline_ms, t0, dt)
        elif window_ms is not None and first_index_at_or_after(window[0], t0, dt, T) > 0:
            part = x[:, :first_index_at_or_after(window[0], t0, dt, T)]
        else:
            part = _away_from_spikes(x, table["spans"], spike_margin_ms, dt)
        results["rest_mv"] = nan_median(part)

    return {name: results[name].to(out_dtype) for name in wanted}


def _spike_train_features(table: dict, window: tuple[float, float], need: set, gap_factor: float,
                          min_gap_ms: float) -> dict[str, torch.Tensor]:
    """Count, rate, latency, ISI mean and CV, adaptation index and (when asked) burst features, (B,) float64."""
    n = table["count"]
    nan = torch.full((n.shape[0],), float("nan"), dtype=torch.float64, device=n.device)
    results: dict[str, torch.Tensor] = {}
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
    return results


def _spike_shape_features(table: dict) -> dict[str, torch.Tensor]:
    """Mean AP peak, amplitude, half width and AHP trough of each row over the spikes that have one, (B,)."""
    valid = table["valid"]
    amp = table["ap_amplitude_mv"]
    width = table["ap_width_ms"]
    ahp = table["ahp_mv"]
    return {
        "ap_peak_mv": nan_mean(table["peak_mv"], valid),
        "ap_amplitude_mv": nan_mean(amp, torch.isfinite(amp)),
        "ap_width_ms": nan_mean(width, torch.isfinite(width)),
        "ahp_depth_mv": nan_mean(ahp, torch.isfinite(ahp)),
    }


def _baseline_part(x: torch.Tensor, baseline: tuple[float, float], baseline_ms, t0: float, dt: float) -> torch.Tensor:
    """The samples of the (clipped) ``baseline`` interval in ms; ConfigurationError when it holds none."""
    T = x.shape[1]
    i0 = first_index_at_or_after(baseline[0], t0, dt, T)
    i1 = min(int(math.floor((baseline[1] - t0) / dt + 1e-9)), T - 1)
    if i1 < i0:
        raise ConfigurationError(f"baseline_ms = {baseline_ms!r} holds no sample (dt = {dt:g} ms); widen it.")
    return x[:, i0:i1 + 1]


def _away_from_spikes(x: torch.Tensor, spans, spike_margin_ms: float, dt: float) -> torch.Tensor:
    """The whole trace with NaN within ``spike_margin_ms`` (ms) of a spike (from its threshold crossing
    until it falls below min(threshold, re-arm)): +1/−1 marks and a running sum."""
    B, T = x.shape
    row_all, s_all, e_all = spans
    margin = int(math.ceil(spike_margin_ms / dt))
    marks = torch.zeros((B, T + 1), dtype=torch.int32, device=x.device)
    one = torch.ones_like(row_all, dtype=torch.int32)
    marks.index_put_((row_all, (s_all - 1 - margin).clamp(min=0)), one, accumulate=True)
    marks.index_put_((row_all, (e_all + margin).clamp(max=T)), -one, accumulate=True)
    near_spike = torch.cumsum(marks[:, :T], dim=1) > 0
    return torch.where(near_spike, torch.full_like(x, float("nan")), x)


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
