"""Plain-array view of one current-clamp sweep, in canonical units.

A :class:`Trace` is what every backend sees of a recording: time (ms), membrane voltage (mV) and the
injected current (pA), plus a reference back to where it came from. It is made once, in
:mod:`neo_pinn.io.convert` (from Neo) or by :func:`neo_pinn.api.simulate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigurationError, EmptySignalError, NonFiniteDataError

__all__ = ["Trace", "zero_order_hold"]


def zero_order_hold(t: np.ndarray, values: np.ndarray, t_query) -> np.ndarray:
    """Sampled values as an amplifier applies them: each sample held until the next one.

    Parameters
    ----------
    t : numpy.ndarray
        Sample times (ms), shape (T,), increasing.
    values : numpy.ndarray
        Samples (e.g. a command current in pA), shape (T,) or (..., T).
    t_query : array_like
        Times (ms) at which the held value is wanted. A query within a millionth of the sampling interval
        of a sample time takes that sample (so step times computed in floating point land on it); before
        the first sample the first value holds, after the last the last.

    Returns
    -------
    numpy.ndarray
        The held values, shape ``values.shape[:-1] + t_query.shape``.
    """
    t = np.asarray(t, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float)
    tq = np.asarray(t_query, dtype=float)
    spacing = float(np.min(np.diff(t))) if t.size > 1 else 1.0
    idx = np.searchsorted(t, tq + 1e-6 * spacing, side="right") - 1
    return values[..., np.clip(idx, 0, t.size - 1)]



@dataclass(frozen=True)
class Trace:
    """One sweep of voltage under a known injected current.

    Parameters
    ----------
    t : numpy.ndarray
        Sample times in ms, shape (T,), strictly increasing and uniformly spaced.
    v : numpy.ndarray
        Membrane voltage in mV, shape (T,).
    i_ext : numpy.ndarray
        Injected current in pA, shape (T,) (zeros when none was injected).
    stimulus_source : str
        Where ``i_ext`` came from: ``"abf2-protocol"``, ``"abf1-command"``, ``"recorded-channel"``,
        ``"nwb-stimulus"``, ``"user"``, ``"simulation"`` or ``"none"``.
    sweep : int
        Sweep (episode) index in the source recording, 0-based.
    source : dict
        Provenance: file name, sha256, segment index, signal and channel names.
    """

    t: np.ndarray
    v: np.ndarray
    i_ext: np.ndarray
    stimulus_source: str = "none"
    sweep: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = np.ascontiguousarray(self.t, dtype=float).reshape(-1)
        v = np.ascontiguousarray(self.v, dtype=float).reshape(-1)
        i = np.ascontiguousarray(self.i_ext if self.i_ext is not None else np.zeros_like(v), dtype=float).reshape(-1)
        if t.size < 2:
            raise EmptySignalError("A trace needs at least two samples; check the sweep and the time window.")
        if not (t.shape == v.shape == i.shape):
            raise ConfigurationError(
                f"Trace arrays differ in length (t {t.size}, v {v.size}, i_ext {i.size}); "
                "give the stimulus at the voltage's sampling times."
            )
        for name, arr in (("time", t), ("voltage", v), ("stimulus", i)):
            if not np.all(np.isfinite(arr)):
                raise NonFiniteDataError(
                    f"The {name} of sweep {self.sweep} holds NaN or inf; cut the window to the valid part (--window)."
                )
        if np.any(np.diff(t) <= 0):
            raise ConfigurationError("Trace times must increase strictly.")
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "v", v)
        object.__setattr__(self, "i_ext", i)

    @property
    def dt(self) -> float:
        """Sampling interval in ms."""
        return float((self.t[-1] - self.t[0]) / (self.t.size - 1))

    @property
    def duration(self) -> float:
        """Duration in ms (last minus first sample time)."""
        return float(self.t[-1] - self.t[0])

    def window(self, t0: float | None = None, t1: float | None = None) -> "Trace":
        """Return the part of the trace with ``t0 <= t <= t1`` (ms); None means open-ended."""
        lo = -np.inf if t0 is None else t0
        hi = np.inf if t1 is None else t1
        keep = (self.t >= lo) & (self.t <= hi)
        if keep.sum() < 2:
            raise EmptySignalError(
                f"Window {t0}–{t1} ms holds fewer than two samples of a trace spanning "
                f"{self.t[0]:.3f}–{self.t[-1]:.3f} ms; choose a window inside it."
            )
        return dataclasses.replace(self, t=self.t[keep], v=self.v[keep], i_ext=self.i_ext[keep])

    def held_current(self, t_query) -> np.ndarray:
        """Injected current (pA) at times ``t_query`` (ms), each sample held until the next (zero-order hold)."""
        return zero_order_hold(self.t, self.i_ext, t_query)

    def decimate(self, factor: int) -> "Trace":
        """Keep every ``factor``-th sample (the stimulus is averaged over each block)."""
        if factor <= 1:
            return self
        n = (self.t.size // factor) * factor
        i = self.i_ext[:n].reshape(-1, factor).mean(axis=1)
        return dataclasses.replace(self, t=self.t[:n:factor], v=self.v[:n:factor], i_ext=i)
