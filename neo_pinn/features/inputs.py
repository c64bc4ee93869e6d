"""Checks of the inputs every batched feature function takes: the voltage batch, times and levels.

Each check raises :class:`~neo_pinn.errors.ConfigurationError` (or the data errors) with a message that
names the argument and what it accepts, so the public functions and the eFEL comparison
(:mod:`neo_pinn.testing.efel`) validate their arguments the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigurationError, EmptySignalError, NonFiniteDataError

__all__ = ["voltage_batch", "check_dt", "check_level", "check_span", "first_index_at_or_after",
           "check_spike_levels", "check_derivative_rule", "analysis_window"]


def voltage_batch(v) -> torch.Tensor:
    """A voltage batch as a (B, T) floating tensor on v's device.

    Parameters
    ----------
    v : torch.Tensor or array_like
        Voltage in mV, (B, T) or (T,) (which becomes (1, T)); integers become float64 and half
        precision float32.

    Returns
    -------
    torch.Tensor
        (B, T), B ≥ 1, T ≥ 3, every value finite.

    Raises
    ------
    ConfigurationError, EmptySignalError, NonFiniteDataError
        Not a real-valued (B, T) array; too short; NaN or inf.
    """
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


def check_dt(dt_ms: float) -> float:
    """The sampling interval ``dt_ms`` (ms) as a positive finite float; ConfigurationError otherwise."""
    try:
        dt = float(dt_ms)
    except (TypeError, ValueError):
        raise ConfigurationError(f"dt_ms must be a number (the sampling interval in ms), got {dt_ms!r}.") from None
    if not math.isfinite(dt) or dt <= 0.0:
        raise ConfigurationError(f"dt_ms must be a positive, finite sampling interval in ms, got {dt_ms!r} "
                                 "(e.g. 0.05 for 20 kHz).")
    return dt


def check_level(value, name: str, unit: str = "mV") -> float:
    """``value`` as a finite float; a ConfigurationError names the argument ``name`` and its ``unit``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number in {unit}, got {value!r}.") from None
    if not math.isfinite(x):
        raise ConfigurationError(f"{name} must be finite, got {value!r}.")
    return x


def check_span(span, name: str, t0: float, t_last: float) -> tuple[float, float]:
    """A (start, stop) interval in ms, validated and clipped to the trace [t0, t_last] (ms).

    Parameters
    ----------
    span : (float, float)
        Absolute times in ms, on the clock of ``t0``.
    name : str
        The argument's name, for errors.
    t0, t_last : float
        Times of the first and last sample in ms.

    Returns
    -------
    (float, float)
        The clipped interval in ms.
    """
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


def first_index_at_or_after(time_ms: float, t0: float, dt: float, n: int) -> int:
    """Index of the first sample whose time t0 + i·dt (ms) is ≥ ``time_ms`` (tolerating rounding), in [0, n]."""
    return int(min(max(math.ceil((time_ms - t0) / dt - 1e-9), 0), n))


def check_spike_levels(threshold_mv: float, rearm_mv: float | None) -> tuple[float, float]:
    """Spike threshold and re-arm level in mV (re-arm default: threshold − 10 mV), both finite."""
    thr = check_level(threshold_mv, "threshold_mv")
    rearm = thr - 10.0 if rearm_mv is None else check_level(rearm_mv, "rearm_mv")
    return thr, rearm


def check_derivative_rule(derivative_threshold: float, derivative_window: int) -> tuple[float, int]:
    """The AP-begin rule: dV/dt threshold in mV/ms (finite) and the window in samples (a positive integer)."""
    dth = check_level(derivative_threshold, "derivative_threshold", "mV/ms")
    if not isinstance(derivative_window, (int, np.integer)) or derivative_window < 1:
        raise ConfigurationError(f"derivative_window must be a positive number of samples, got {derivative_window!r}.")
    return dth, int(derivative_window)


def analysis_window(window_ms, t0: float, dt: float, n_samples: int) -> tuple[float, float]:
    """The analysis window in ms: ``window_ms`` checked and clipped to the trace, or the whole trace when None."""
    t_last = t0 + (n_samples - 1) * dt
    return (t0, t_last) if window_ms is None else check_span(window_ms, "window_ms", t0, t_last)
