"""Memory budget of a simulation: refuse work that cannot fit before allocating anything."""

from __future__ import annotations

import math
import os

from ..errors import ConfigurationError

__all__ = ["check_simulation_work", "MAX_RATE_HZ", "MAX_SIMULATION_STEPS", "check_simulation_size", "available_memory_bytes"]


def available_memory_bytes() -> int:
    """Physical memory of this machine in bytes (a conservative 8 GiB where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_simulation_size(n_values: float, *, what: str, itemsize: int = 8, fraction: float = 0.5,
                          hint: str = "shorten the duration, lower the sampling rate or simulate fewer cells") -> int:
    """Raise :class:`ConfigurationError` when ``n_values`` numbers would not fit in memory.

    Parameters
    ----------
    n_values : float
        How many numbers the work holds at once (samples × states × batch, ...); may be inf or NaN.
    what : str
        The work, for the message (e.g. ``"a 1e+08 ms simulation at 20 kHz"``).
    itemsize : int
        Bytes per number (8 for float64).
    fraction : float
        Share of the machine's physical memory the work may take.
    hint : str
        What the user can change, for the message.

    Returns
    -------
    int
        The estimated bytes.
    """
    if not math.isfinite(float(n_values)) or n_values < 0:
        raise ConfigurationError(f"{what} has no finite size; give a finite duration and sampling rate.")
    need = float(n_values) * itemsize
    limit = fraction * available_memory_bytes()
    if need > limit:
        raise ConfigurationError(
            f"{what} would need about {need / 2**30:.3g} GiB of memory, more than {limit / 2**30:.3g} GiB "
            f"({fraction:.0%} of this machine's); {hint}.")
    return int(need)


#: a sampling rate above this (Hz) is faster than any amplifier digitises
MAX_RATE_HZ = 1e6
#: integration steps in all beyond which a simulation would take hours
MAX_SIMULATION_STEPS = 2e8


def check_simulation_work(rate_hz: float, steps: float, *, what: str, hint: str) -> None:
    """Raise :class:`ConfigurationError` for a sampling rate no amplifier has or work that would take hours.

    Parameters
    ----------
    rate_hz : float
        Sampling rate, Hz.
    steps : float
        Integration steps in all (steps per sweep × sweeps).
    what, hint : str
        The work and what the user can change, for the message.
    """
    if rate_hz > MAX_RATE_HZ:
        raise ConfigurationError(f"{what}: a sampling rate of {rate_hz:g} Hz is above {MAX_RATE_HZ:g} Hz, faster than "
                                 "any amplifier digitises; give the recording's sampling rate (e.g. 20000 Hz).")
    if steps > MAX_SIMULATION_STEPS:
        raise ConfigurationError(f"{what} needs {steps:.3g} integration steps, more than {MAX_SIMULATION_STEPS:.0e} "
                                 f"(hours of work); {hint}.")
