"""Smoothing a recording without losing its spikes: the box filter backends use, and a check of its width.

A box filter (centred moving average) keeps noise from making spikes and biasing peaks, but it also
flattens a spike that lasts only a few samples: a narrow interneuron spike peaking at +10 mV at 10 kHz
falls below a 0 mV threshold after a 0.5 ms (5-sample) average. :func:`box_smooth` is the one
implementation of the filter; :func:`spike_preserving_width` counts the spikes of every sweep on the raw
recording (:func:`~neo_pinn.features.spike_times`, the reference the batched features and eFEL agree
with) and after the filter, and gives the widest filter, up to the requested one, that keeps every
spike where it was. Width 1 (no smoothing) always agrees.

"Where it was" allows a shift of the threshold crossing of up to ``tolerance_ms`` (default 1 ms, at
least two samples): on a slow upstroke 1 mV of noise alone moves the raw crossing by several samples
(Morris–Lecar spikes at 20 kHz: up to 0.4 ms after a 2-sample filter), while 1 ms stays well below the
interval between the spikes of a fast-spiking cell, so a lost spike is never matched by a neighbour.
A raw spike that counted only because noise pulled the trough before it below the re-arm level may be
merged with the one before by the filter (:func:`spike_preserving_width` says how many); a flattened one
may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigurationError
from .single_trace import spike_times

__all__ = ["box_smooth", "SmoothingCheck", "spike_preserving_width"]


def box_smooth(v: torch.Tensor, width: int) -> torch.Tensor:
    """Centred moving average over ``width`` samples of every row.

    Parameters
    ----------
    v : torch.Tensor
        Voltages (B, T), any unit (mV here), any float dtype and device.
    width : int
        Filter length in samples; 1 or less returns ``v`` itself. An even width averages samples
        k − width/2 … k + width/2 − 1.

    Returns
    -------
    torch.Tensor
        (B, T), same dtype and device; at the edges the average runs over the samples available.
    """
    if width <= 1:
        return v
    pad = width // 2
    c = torch.nn.functional.pad(v.cumsum(1), (1, 0))
    T = v.shape[1]
    lo = (torch.arange(T, device=v.device) - pad).clamp(0, T)
    hi = (torch.arange(T, device=v.device) - pad + width).clamp(0, T)
    return (c[:, hi] - c[:, lo]) / (hi - lo).to(v.dtype)


@dataclass(frozen=True)
class SmoothingCheck:
    """Whether a box filter keeps the spikes of every sweep (:func:`spike_preserving_width`).

    Attributes
    ----------
    requested_width : int
        Filter length asked for, samples (at least 1).
    width : int
        Largest length ≤ ``requested_width`` at which every sweep keeps its raw spikes (count, and each
        spike's threshold crossing within ``tolerance_ms``), samples; 1 means no smoothing.
    dt_ms : float
        Sampling interval, ms (of the first sweep).
    threshold_mv, rearm_mv : float
        Spike detection levels, mV (an upward crossing of the threshold after the trace was below re-arm).
    tolerance_ms : float
        Largest shift of a spike's threshold crossing still counted as the same spike, ms.
    raw_counts : tuple of int
        Spikes per sweep on the raw recording.
    requested_counts : tuple of int
        Spikes per sweep after the requested filter.
    counts : tuple of int
        Spikes per sweep after the filter of ``width`` (``raw_counts`` less ``merged``).
    max_shift_ms : tuple of float
        Per sweep, the largest shift of a spike's threshold crossing after the filter of ``width``, ms
        (0 without spikes).
    merged : tuple of int
        Per sweep, raw spikes that the filter of ``width`` merges with the one before because the raw
        trace re-armed for them only within the noise (``counts`` = ``raw_counts`` − ``merged``).
    noise_mv : tuple of float
        Per sweep, the noise SD estimated from the sample-to-sample differences, mV.
    """

    requested_width: int
    width: int
    dt_ms: float
    threshold_mv: float
    rearm_mv: float
    tolerance_ms: float
    raw_counts: tuple[int, ...]
    requested_counts: tuple[int, ...]
    counts: tuple[int, ...]
    max_shift_ms: tuple[float, ...]
    merged: tuple[int, ...]
    noise_mv: tuple[float, ...]

    @property
    def adjusted(self) -> bool:
        """True when the requested filter would lose, add or move spikes and a narrower one was chosen."""
        return self.width < self.requested_width

    @property
    def requested_ms(self) -> float:
        """The requested filter's length, ms."""
        return self.requested_width * self.dt_ms

    @property
    def width_ms(self) -> float:
        """The chosen filter's length, ms."""
        return self.width * self.dt_ms

    def describe(self) -> str:
        """One sentence on what the requested filter did to the spikes and which width was chosen."""
        lost = [f"sweep {q}: {r} raw, {s} smoothed" for q, (r, s) in enumerate(zip(self.raw_counts,
                                                                                self.requested_counts)) if r != s]
        why = "; ".join(lost) if lost else f"spike times moved by more than {self.tolerance_ms:.3g} ms"
        return (f"a {self.requested_width}-sample ({self.requested_ms:.3g} ms) box filter changes the recorded "
                f"spikes (threshold {self.threshold_mv:g} mV; {why}); {self.width} samples "
                f"({self.width_ms:.3g} ms) keep every spike")


def _as_sweeps(v_sweeps, t_sweeps_or_dt) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if isinstance(v_sweeps, (np.ndarray, torch.Tensor)) and np.ndim(v_sweeps) == 1:
        v_sweeps = [v_sweeps]
    vs = [np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=float).reshape(-1)
          for v in v_sweeps]
    if isinstance(t_sweeps_or_dt, (int, float, np.number)) or (
            isinstance(t_sweeps_or_dt, (np.ndarray, torch.Tensor)) and t_sweeps_or_dt.ndim == 0):
        dt = float(t_sweeps_or_dt)
        if not dt > 0:
            raise ConfigurationError(f"The sampling interval must be positive; got {dt} ms.")
        ts = [dt * np.arange(v.size) for v in vs]
    else:
        t_in = t_sweeps_or_dt
        if isinstance(t_in, (np.ndarray, torch.Tensor)) and np.ndim(t_in) == 1:
            t_in = [t_in]
        ts = [np.asarray(t, dtype=float).reshape(-1) for t in t_in]
        if len(ts) != len(vs) or any(t.size != v.size for t, v in zip(ts, vs)):
            raise ConfigurationError("Give one time array per sweep, as long as its voltage.")
    return vs, ts


def spike_preserving_width(v_sweeps: Sequence | np.ndarray | torch.Tensor,
                           t_sweeps_or_dt: Sequence | np.ndarray | float, width: int, threshold: float = 0.0,
                           rearm: float | None = None, *, tolerance_ms: float = 1.0, rearm_margin_sd: float = 3.0,
                           dtype: torch.dtype = torch.float64) -> SmoothingCheck:
    """The widest box filter, up to ``width`` samples, that keeps every recorded spike where it is.

    Spikes are counted on each raw sweep with :func:`~neo_pinn.features.spike_times` and again after
    :func:`box_smooth` of decreasing width, starting at ``width``; the first width at which every sweep
    keeps its raw spikes is returned (width 1, the raw trace, always agrees). A sweep keeps its spikes
    when each filtered threshold crossing lies within ``tolerance_ms`` (or two samples, if longer) of a
    raw one, one to one, and every raw spike has its filtered one — except a spike the raw trace re-armed
    for only by noise: where the dip before it stays within ``rearm_margin_sd`` noise SDs of the re-arm
    level (noise estimated from the sweep's sample-to-sample differences), and the filtered trace still
    crosses the threshold there, the filter may merge it with the spike before (``merged``). Noise on
    troughs that sit at the re-arm level otherwise decides the raw count (Morris–Lecar's homoclinic
    regime: 21–23 spikes for 21 noise-free ones); ``rearm_margin_sd=0`` asks for the raw count exactly.

    Parameters
    ----------
    v_sweeps : sequence of array_like, or array_like
        Recorded voltage per sweep, mV: a sequence of (T_q,) arrays, a (Q, T) array or one (T,) trace.
    t_sweeps_or_dt : sequence of array_like, array_like or float
        Times per sweep in ms (as ``v_sweeps``), or the sampling interval in ms.
    width : int
        Requested filter length, samples (values below 1 count as 1).
    threshold : float
        Spike threshold, mV.
    rearm : float, optional
        Re-arm level, mV (default ``threshold`` − 10 mV, as :func:`~neo_pinn.features.spike_times`).
    tolerance_ms : float
        Largest shift of a threshold crossing that still counts as the same spike, ms (at least two
        samples are allowed; see the module docstring).
    rearm_margin_sd : float
        How far below the re-arm level, in noise SDs, a raw dip may reach and still count as noise.
    dtype : torch.dtype
        Precision of the smoothing; pass the one the smoothed voltage is used in.

    Returns
    -------
    SmoothingCheck
        The chosen width and, per sweep, the raw, requested-width and chosen-width spike counts.

    Raises
    ------
    ConfigurationError
        Time arrays that do not match the sweeps, or a non-positive sampling interval.
    """
    vs, ts = _as_sweeps(v_sweeps, t_sweeps_or_dt)
    rearm = threshold - 10.0 if rearm is None else float(rearm)
    requested = max(1, int(width))
    dt_ms = float(np.median(np.diff(ts[0]))) if ts and ts[0].size > 1 else float("nan")
    raw = [spike_times(v, t, threshold, rearm) for v, t in zip(vs, ts)]
    noise = [_noise_sd(v) for v in vs]
    levels = (float(threshold), rearm)

    def compare(w: int) -> tuple[list[np.ndarray], list[tuple[float, int]] | None]:
        """Spikes of every filtered sweep, and per sweep (largest shift, merged) or None where one differs."""
        found, out = [], []
        for v, t, r, sd in zip(vs, ts, raw, noise):
            x = box_smooth(torch.as_tensor(v, dtype=dtype)[None], w)[0].double().numpy() if w > 1 else v
            s = spike_times(x, t, threshold, rearm)
            found.append(s)
            step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
            tol = max(float(tolerance_ms), 2.0 * step)
            agreed = _same_spikes(r, s, v, x, t, tol, levels, rearm - float(rearm_margin_sd) * sd)
            if agreed is None:
                return found, None
            out.append(agreed)
        return found, out

    at_requested, ok = compare(requested)
    w, found = requested, at_requested
    while ok is None:
        w -= 1
        found, ok = compare(w)
    return SmoothingCheck(
        requested_width=requested, width=w, dt_ms=dt_ms, threshold_mv=float(threshold), rearm_mv=rearm,
        tolerance_ms=max(float(tolerance_ms), 2.0 * dt_ms), raw_counts=tuple(int(r.size) for r in raw),
        requested_counts=tuple(int(s.size) for s in at_requested), counts=tuple(int(s.size) for s in found),
        max_shift_ms=tuple(d for d, _ in ok), merged=tuple(m for _, m in ok), noise_mv=tuple(noise))


def _noise_sd(v: np.ndarray) -> float:
    """Robust SD (mV) of white noise on ``v``: the MAD of the first differences over √2 (spikes are rare)."""
    if v.size < 3:
        return 0.0
    d = np.diff(v)
    return float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2.0))


def _same_spikes(r: np.ndarray, s: np.ndarray, v: np.ndarray, x: np.ndarray, t: np.ndarray, tol: float,
                 levels: tuple[float, float], floor: float) -> tuple[float, int] | None:
    """Whether the filtered trace ``x`` has the raw trace ``v``'s spikes (crossing times ``s`` and ``r``, ms).

    Every filtered crossing must lie within ``tol`` ms of its own raw one. A raw spike without a filtered
    one is allowed only when it was merged, not flattened: the filtered trace still reaches the threshold
    within ``tol`` of it, and the raw trace re-armed for it (after the spike before, or after a start at or
    above threshold) by dipping no lower than ``floor`` mV. Returns
    (the largest shift in ms, the number of merged spikes), or None.
    """
    threshold, rearm = levels
    i = k = merged = 0
    shift = 0.0
    while i < r.size or k < s.size:
        if i < r.size and k < s.size and abs(r[i] - s[k]) <= tol:
            shift = max(shift, abs(r[i] - s[k]))
            i, k = i + 1, k + 1
        elif i < r.size and (k >= s.size or r[i] < s[k]):
            if i == 0 and v[0] < threshold:
                return None  # armed from the start, not by a dip
            a, b = np.searchsorted(t, [r[i] - tol, r[i] + tol])
            since = np.searchsorted(t, r[i - 1]) if i else 0
            dip = float(np.min(v[since:np.searchsorted(t, r[i])], initial=np.inf))
            if not (np.max(x[a:b + 1], initial=-np.inf) >= threshold and floor <= dip < rearm):
                return None
            merged += 1
            i += 1
        else:
            return None
    return shift, merged
