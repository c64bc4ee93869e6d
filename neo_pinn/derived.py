"""Signals a backend derives from a fitted sweep beyond its reconstructed states: forecasts and corrections.

A :class:`DerivedSignal` belongs to one fitted sweep of an :class:`~neo_pinn.result.EstimationResult`
(``result.signals``). Its ``role`` says what it is:

``"forecast"``
    every model state simulated on past the fitted window, for as long as the user asked
    (``forecast_ms``), on the sweep's own clock; ``observed`` holds the recorded voltage at the forecast's
    times where the recording goes on (NaN where it does not), see :func:`neo_pinn.forecast.compare_forecast`.
``"correction"``
    a learned current the model alone does not explain (``I_correction``, pA) on the sweep's samples.

Times are in ms, regularly spaced; each channel is in its canonical unit (mV, pA, dimensionless ...).
:func:`signal_to_dict` / :func:`signal_from_dict` are the JSON form (arrays as lists, NaN as null).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import ConfigurationError

__all__ = ["DERIVED_ROLES", "DerivedSignal", "signal_to_dict", "signal_from_dict", "signal_summary",
           "sample_nearest"]

#: the roles a derived signal may have
DERIVED_ROLES = ("forecast", "correction")

# Relative deviation of sampling intervals still called regular (float rounding of computed time axes).
_REGULAR_RTOL = 1e-4


@dataclass(frozen=True)
class DerivedSignal:
    """A signal a backend derived from one fitted sweep, beyond the reconstructed states.

    Parameters
    ----------
    sweep : int
        Sweep index; matches the ``sweep`` of one :class:`~neo_pinn.result.SweepFit` of the result.
    role : str
        One of :data:`DERIVED_ROLES`: ``"forecast"`` or ``"correction"``.
    t : numpy.ndarray
        (T,) times in ms, T ≥ 2, regularly spaced, on the sweep's own clock.
    values : numpy.ndarray
        (T, C) values, column c in ``units[c]`` (a (T,) array is one channel). NaN is allowed (a forecast
        that diverged).
    names : tuple of str
        C channel names: the model's state names for a forecast, ``("I_correction",)`` for a correction.
    units : tuple of str
        C canonical units (``"mV"``, ``"dimensionless"``, ``"pA"`` ...).
    observed : numpy.ndarray or None
        (T,) recorded voltage (mV) at ``t`` where the recording goes on, NaN where it does not; None when
        unknown.
    description : str
        What the signal is, in one sentence (shown in Neo, NWB and the report).
    """

    sweep: int
    role: str
    t: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]
    units: tuple[str, ...]
    observed: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        what = f"Derived signal of sweep {self.sweep!r}"
        if isinstance(self.sweep, (bool, np.bool_)) or not isinstance(self.sweep, (int, np.integer)):
            raise ConfigurationError(f"{what}: sweep must be the whole number of a fitted sweep (SweepFit.sweep).")
        if self.role not in DERIVED_ROLES:
            raise ConfigurationError(f"{what}: role {self.role!r} is unknown; give one of {', '.join(DERIVED_ROLES)} "
                                     "(forecast: the states simulated past the fitted window; correction: a learned "
                                     "current in pA).")
        what = f"The {self.role} of sweep {int(self.sweep)}"
        t = _float_array(self.t, f"{what}: t")
        if t.ndim != 1 or t.size < 2:
            raise ConfigurationError(f"{what}: t must be a 1-D array of at least two times in ms; got shape {t.shape}.")
        if not np.isfinite(t).all():
            raise ConfigurationError(f"{what}: t holds NaN or inf; give finite times in ms.")
        steps = np.diff(t)
        dt = float((t[-1] - t[0]) / (t.size - 1))
        if not (dt > 0 and np.all(np.abs(steps - dt) <= _REGULAR_RTOL * dt)):
            raise ConfigurationError(f"{what}: t must rise in regular steps (one sampling interval); resample the "
                                     "signal onto a regular time grid.")
        values = _float_array(self.values, f"{what}: values")
        if values.ndim == 1:
            values = values.reshape(-1, 1)
        if values.ndim != 2 or values.shape[0] != t.size:
            raise ConfigurationError(f"{what}: values have shape {values.shape}; give ({t.size}, C): one row per time "
                                     "in t, one column per channel.")
        names, units = _strings(self.names, f"{what}: names"), _strings(self.units, f"{what}: units")
        if not len(names) == len(units) == values.shape[1]:
            raise ConfigurationError(f"{what}: {values.shape[1]} channel(s) but {len(names)} name(s) and {len(units)} "
                                     "unit(s); give one name and one unit per column of values.")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{what}: the channel names {list(names)} repeat; give each channel its own name.")
        observed = None
        if self.observed is not None:
            observed = _float_array(self.observed, f"{what}: observed")
            if observed.shape != t.shape:
                raise ConfigurationError(f"{what}: observed has shape {observed.shape}; give ({t.size},): the recorded "
                                         "voltage at each time of t (NaN where the recording ends), or None.")
        if not isinstance(self.description, str):
            raise ConfigurationError(f"{what}: description must be text.")
        for name, value in (("sweep", int(self.sweep)), ("t", t), ("values", values), ("names", names),
                            ("units", units), ("observed", observed)):
            object.__setattr__(self, name, value)

    @property
    def dt(self) -> float:
        """Sampling interval in ms."""
        return float((self.t[-1] - self.t[0]) / (self.t.size - 1))

    @property
    def duration(self) -> float:
        """Time the signal spans, ms (last sample minus first)."""
        return float(self.t[-1] - self.t[0])

    def channel(self, name: str) -> np.ndarray:
        """The (T,) values of channel ``name``, in its unit.

        Raises
        ------
        ConfigurationError
            No channel of that name (the message lists them).
        """
        if name not in self.names:
            raise ConfigurationError(f"The {self.role} of sweep {self.sweep} has no channel {name!r}; its channels: "
                                     f"{', '.join(self.names)}.")
        return self.values[:, self.names.index(name)]


def _float_array(x: Any, what: str) -> np.ndarray:
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be numbers (a numpy array); got {type(x).__name__}.") from None


def _strings(x: Any, what: str) -> tuple[str, ...]:
    if isinstance(x, str) or not isinstance(x, (tuple, list)) or not all(isinstance(s, str) for s in x):
        raise ConfigurationError(f"{what} must be a tuple of text, one per channel; got {x!r}.")
    return tuple(x)


def _null_nan(a: np.ndarray) -> list:
    """A float array as (nested) lists, NaN and inf as None (JSON has no NaN)."""
    out = np.asarray(a, dtype=float).astype(object)
    out[~np.isfinite(np.asarray(a, dtype=float))] = None
    return out.tolist()


def signal_to_dict(signal: DerivedSignal) -> dict[str, Any]:
    """The JSON form of a derived signal: arrays as lists, NaN (and inf) as null.

    Parameters
    ----------
    signal : DerivedSignal

    Returns
    -------
    dict
        ``sweep``, ``role``, ``t`` (ms), ``values`` (T lists of C), ``names``, ``units``, ``observed`` (mV,
        null where unknown; null as a whole when None) and ``description``.
    """
    return {"sweep": signal.sweep, "role": signal.role, "names": list(signal.names), "units": list(signal.units),
            "description": signal.description, "t": signal.t.tolist(), "values": _null_nan(signal.values),
            "observed": None if signal.observed is None else _null_nan(signal.observed)}


def signal_from_dict(d: Mapping[str, Any]) -> DerivedSignal:
    """Inverse of :func:`signal_to_dict` (null values come back as NaN).

    Raises
    ------
    ConfigurationError
        A key is missing or a value does not make a valid :class:`DerivedSignal`.
    """
    try:
        t = np.asarray(d["t"], dtype=float)
        values = np.asarray(d["values"], dtype=float).reshape(t.size, -1)
        observed = None if d.get("observed") is None else np.asarray(d["observed"], dtype=float)
        return DerivedSignal(sweep=int(d["sweep"]), role=str(d["role"]), t=t, values=values,
                             names=tuple(str(n) for n in d["names"]), units=tuple(str(u) for u in d["units"]),
                             observed=observed, description=str(d.get("description", "")))
    except KeyError as exc:
        raise ConfigurationError(f"A derived signal in the result JSON lacks {exc}; was it written with "
                                 "include_arrays=True?") from None
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"A derived signal in the result JSON is damaged ({type(exc).__name__}: {exc}).") \
            from None


def signal_summary(signal: DerivedSignal) -> dict[str, Any]:
    """A small description without arrays (``to_dict(include_arrays=False)``): sweep, role, names, units,
    ``t0`` and ``t1`` (first and last time, ms)."""
    return {"sweep": signal.sweep, "role": signal.role, "names": list(signal.names), "units": list(signal.units),
            "t0": float(signal.t[0]), "t1": float(signal.t[-1])}


def sample_nearest(t_rec: np.ndarray, v_rec: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A recording's values at times ``t``: the nearest recorded sample, NaN outside the recording.

    Parameters
    ----------
    t_rec : numpy.ndarray
        (N,) recorded times in ms, rising.
    v_rec : numpy.ndarray
        (N,) recorded values (e.g. voltage in mV).
    t : numpy.ndarray
        (T,) times in ms to sample at.

    Returns
    -------
    numpy.ndarray
        (T,) values; NaN where ``t`` lies more than half a sampling interval before the first or after the
        last recorded sample (or the recording is empty).
    """
    t_rec = np.asarray(t_rec, dtype=float).reshape(-1)
    v_rec = np.asarray(v_rec, dtype=float).reshape(-1)
    t = np.asarray(t, dtype=float).reshape(-1)
    out = np.full(t.shape, np.nan)
    if t_rec.size == 0 or t_rec.size != v_rec.size:
        return out
    half = 0.5 * float(np.median(np.diff(t_rec))) if t_rec.size > 1 else 0.0
    inside = (t >= t_rec[0] - half) & (t <= t_rec[-1] + half)
    idx = np.clip(np.searchsorted(t_rec, t[inside]), 1, max(1, t_rec.size - 1))
    if t_rec.size == 1:
        out[inside] = v_rec[0]
        return out
    left = idx - 1
    nearer_left = np.abs(t[inside] - t_rec[left]) <= np.abs(t_rec[idx] - t[inside])
    out[inside] = v_rec[np.where(nearer_left, left, idx)]
    return out
