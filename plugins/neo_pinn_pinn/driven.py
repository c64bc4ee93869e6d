"""Hidden states driven by the recorded voltage (the core's :mod:`neo_pinn.simulation.driven`), with the pinn's
spin-up: a second pass from the fixed point of one period's map where the recording repeats itself.
"""

from __future__ import annotations

import numpy as np

from neo_pinn.models.base import NeuronModel
from neo_pinn.simulation.driven import driven_hidden_states as _core_driven_hidden_states
from neo_pinn.simulation.driven import driven_on_grid as _core_driven_on_grid
from neo_pinn.simulation.driven import integration_grid, quasi_steady_hidden

from .rhythm import repeat_lag

__all__ = ["quasi_steady_hidden", "integration_grid", "smoothed_voltage", "driven_on_grid", "driven_hidden_states"]


def smoothed_voltage(tr, smooth_ms: float) -> np.ndarray:
    """The voltage (mV) of trace ``tr`` through a Savitzky–Golay filter (cubic, ``smooth_ms`` wide); unchanged when
    that is under 5 samples."""
    from scipy.signal import savgol_filter

    dt = float(np.median(np.diff(tr.t)))
    win = int(round(smooth_ms / dt)) | 1
    if win < 5 or tr.t.size < 5:
        return tr.v
    return savgol_filter(tr.v, min(win, tr.t.size if tr.t.size % 2 else tr.t.size - 1), 3)


def driven_on_grid(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                   gates: np.ndarray, idx: np.ndarray, spinup: bool) -> np.ndarray:
    """:func:`neo_pinn.simulation.driven.driven_on_grid`, spun up over the recording's period when ``spinup``."""
    return _core_driven_on_grid(model, theta, t, v, i_ext, gates, idx, repeat_lag if spinup else None)


def driven_hidden_states(model: NeuronModel, theta: np.ndarray, t: np.ndarray, v: np.ndarray, i_ext: np.ndarray,
                         gates: np.ndarray, max_dt: float = 0.1, spinup: bool = False) -> np.ndarray:
    """:func:`neo_pinn.simulation.driven.driven_hidden_states`, spun up over the recording's period when ``spinup``."""
    return _core_driven_hidden_states(model, theta, t, v, i_ext, gates, max_dt, repeat_lag if spinup else None)
