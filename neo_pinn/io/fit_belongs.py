"""Whether a fitted sweep belongs to a Neo signal: attach refuses a result fitted on another recording."""

from __future__ import annotations

import numpy as np
import quantities as pq

from ..errors import ConfigurationError
from ..result import SweepFit

__all__ = ["check_fit_belongs", "is_voltage_signal"]


def is_voltage_signal(sig) -> bool:
    """Whether a Neo signal's units are a voltage (they rescale to mV)."""
    try:
        sig.units.rescale(pq.mV)
        return True
    except ValueError:
        return False


def check_fit_belongs(fit: SweepFit, signal) -> None:
    """Refuse to attach a fitted sweep to a voltage signal it was not fitted on.

    The fit's sample times must be samples of ``signal`` (the same sampling rate, inside its time range) and the voltage
    the fit read must be the signal's at those samples; a result from another recording, another sweep or
    another sampling rate is refused (a reconstruction on the wrong sweep is a silently wrong result).

    Parameters
    ----------
    fit : SweepFit
        One fitted sweep (times in ms, recorded voltage in mV).
    signal : neo.AnalogSignal or None
        The voltage signal matched to it (None: nothing to compare, nothing refused).

    Raises
    ------
    ConfigurationError
        The fit does not lie on ``signal``.
    """
    if signal is None or fit.t.size == 0 or not is_voltage_signal(signal):
        return
    period = float(signal.sampling_period.rescale("ms").magnitude)
    start = float(signal.t_start.rescale("ms").magnitude)
    pos = (np.asarray(fit.t, dtype=float) - start) / period
    idx = np.rint(pos).astype(np.int64)
    where = (f"sweep {fit.sweep} of the result ({fit.t[0]:g}–{fit.t[-1]:g} ms, every {np.median(np.diff(fit.t)):g} ms) "
             f"does not lie on signal {signal.name!r} ({start:g}–{start + period * signal.shape[0]:g} ms, every "
             f"{period:g} ms)" if fit.t.size > 1 else f"sweep {fit.sweep} of the result does not lie on signal "
             f"{signal.name!r}")
    if fit.t.size > 1 and abs(float(np.median(np.diff(fit.t))) - period) > 1e-6 * period:
        raise ConfigurationError(f"This result belongs elsewhere: {where} — another sampling rate. Attach it to the "
                                 "Block it was fitted on (a fit of a resampled copy does not belong to the original).")
    if np.any(np.abs(pos - idx) > 1e-3) or idx.min() < 0 or idx.max() >= signal.shape[0]:
        raise ConfigurationError(f"This result belongs elsewhere: {where}. Attach it to the Block it was fitted on.")
    recorded = np.asarray(signal.rescale("mV").magnitude, dtype=float)[idx, 0]
    fitted = np.asarray(fit.v_observed, dtype=float)
    both = np.isfinite(recorded) & np.isfinite(fitted)
    if both.any() and np.max(np.abs(recorded[both] - fitted[both])) > 1e-3 + 1e-6 * np.max(np.abs(fitted[both])):
        raise ConfigurationError(f"This result belongs elsewhere: the voltage of sweep {fit.sweep} it was fitted to "
                                 f"differs from signal {signal.name!r}. Attach it to the Block it was fitted on.")
