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

__all__ = ["Trace", "zero_order_hold", "check_window", "require_finite"]


def _window_end(x, name: str, window) -> float | None:
    if x is None:
        return None
    if hasattr(x, "rescale"):  # a quantities time
        from .units import magnitude_in

        x = magnitude_in(x, "ms", f"window's {name}")
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"window={window!r}: its {name} {x!r} is not a number; give (start, stop) in ms, "
                                 "e.g. window=(0, 300) (CLI --window 0:300).")
    return float(x)


def check_window(window) -> tuple[float | None, float | None] | None:
    """Validate a time window ``(t0, t1)`` in ms (quantities are rescaled) and return it as floats.

    Parameters
    ----------
    window : tuple or None
        ``(start, stop)``: numbers in ms or time quantities; None (or ∓inf) for an open end.

    Returns
    -------
    tuple of (float or None) or None
        The window as floats (None passed through).

    Raises
    ------
    ConfigurationError
        Not a pair (a bare number), an end that is not a number or is NaN, or start ≥ stop.
    """
    if window is None:
        return None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2:
        raise ConfigurationError(f"window={window!r} is not a (start, stop) pair; give two times in ms, e.g. "
                                 "window=(0, 300) (CLI --window 0:300).")
    t0, t1 = _window_end(window[0], "start", window), _window_end(window[1], "stop", window)
    if any(x is not None and np.isnan(x) for x in (t0, t1)):
        raise ConfigurationError(f"window={window!r}: an end is NaN; give (start, stop) in ms (an open end: None or "
                                 "inf), e.g. window=(0, 300).")
    if t0 is not None and t1 is not None and not t0 < t1:
        hint = f"; e.g. window=({t1:g}, {t0:g})" if t0 > t1 else ""
        raise ConfigurationError(f"window={window!r}: the start must come before the stop (ms){hint}.")
    return t0, t1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in ``mask``."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[cut + 1]])
    ends = np.concatenate([idx[cut], [idx[-1]]])
    return list(zip(starts.tolist(), ends.tolist()))


def require_finite(traces) -> None:
    """Refuse traces whose voltage or stimulus holds NaN/inf, naming the samples (what a fit needs).

    Parameters
    ----------
    traces : Trace or sequence of Trace
        The traces as fitted (already cut to the fit window).

    Raises
    ------
    NonFiniteDataError
        Naming the sweep, the signal, how many samples and where (ms, recording time), and what to do.
    """
    for tr in (traces,) if isinstance(traces, Trace) else traces:
        for name, arr in (("voltage", tr.v), ("stimulus", tr.i_ext)):
            bad = ~np.isfinite(arr)
            if not bad.any():
                continue
            runs = _runs(bad)
            where = ", ".join(f"{tr.t[a]:.6g}" + ("" if a == b else f"–{tr.t[b]:.6g}") for a, b in runs[:3])
            more = f" and {len(runs) - 3} more stretch(es)" if len(runs) > 3 else ""
            raise NonFiniteDataError(
                f"The {name} of sweep {tr.sweep} holds NaN/inf at {int(bad.sum())} of its {bad.size} fitted samples "
                f"(t = {where} ms{more}, recording time); choose a window that leaves them out (window=, CLI "
                "--window) or leave the sweep out.")


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
        Membrane voltage in mV, shape (T,). It may hold NaN/inf (a gap in the recording): a fit refuses them
        only inside the window it fits (:func:`require_finite`).
    i_ext : numpy.ndarray
        Injected current in pA, shape (T,) (zeros when none was injected); NaN/inf as for ``v``.
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
        try:
            t = np.ascontiguousarray(self.t, dtype=float).reshape(-1)
            v = np.ascontiguousarray(self.v, dtype=float).reshape(-1)
            i = np.ascontiguousarray(self.i_ext if self.i_ext is not None else np.zeros_like(v),
                                     dtype=float).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"A trace needs numbers: t (ms), v (mV) and i_ext (pA) as arrays of floats "
                                     f"({exc}).") from None
        if t.size < 2:
            raise EmptySignalError("A trace needs at least two samples; check the sweep and the time window.")
        if not (t.shape == v.shape == i.shape):
            raise ConfigurationError(
                f"Trace arrays differ in length (t {t.size}, v {v.size}, i_ext {i.size}); "
                "give the stimulus at the voltage's sampling times."
            )
        if not np.all(np.isfinite(t)):
            raise NonFiniteDataError(f"The sample times of sweep {self.sweep} hold NaN or inf; give finite times (ms).")
        # NaN/inf in v or i_ext are a gap, refused only inside the window a fit reads (require_finite)
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
        """Return the part of the trace with ``t0 <= t <= t1`` (ms); None is open-ended (see :func:`check_window`)."""
        t0, t1 = check_window((t0, t1))
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
