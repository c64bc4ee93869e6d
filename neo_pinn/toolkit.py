"""What every estimation backend needs, written once: the public toolkit for built-in and third-party backends.

A backend imports from here (or from the modules named below, which own each piece) and never re-writes
a transform, an integrator step or an RMSE:

=================================  ==============================================================
integration                        :func:`simulate` (batched, differentiable), :func:`step` (one
                                   Euler/Heun/RK4 step), :func:`choose_dt` (a step dividing the
                                   sampling interval), :func:`resolve_device` — :mod:`neo_pinn.simulation`
parameter coordinates              :class:`UnitCube`, :class:`LogLogit`, :class:`LogLinear` —
                                   :mod:`neo_pinn.transforms`
hidden states at rest              :func:`quasi_steady_states`, :func:`gate_mask` — :mod:`neo_pinn.models.base`
hidden states of a recording       :func:`driven_hidden_states` (integrated with the recorded voltage in place
                                   of V), :func:`quasi_steady_hidden` — :mod:`neo_pinn.simulation.driven`
residuals and noise                :func:`voltage_residuals`, :func:`voltage_rmse`, :func:`rms`,
                                   :func:`noise_from_residuals` — :mod:`neo_pinn.residuals`
recorded spikes                    :func:`box_smooth` (the box filter), :func:`spike_preserving_width`
                                   (the widest one that keeps every recorded spike, a
                                   :class:`SmoothingCheck`) — :mod:`neo_pinn.features.recorded`
configuration                      :class:`BackendConfig`, :class:`OptionGroup`, :func:`option`,
                                   :func:`group` and the checks — :mod:`neo_pinn.config`
the fit                            :class:`Estimator`, :class:`FitContext`, :func:`refine` (continue with
                                   another backend inside a fit), :class:`EstimationResult` (``from_fit``)
derived signals                    :class:`DerivedSignal` (a ``"forecast"`` past the fitted window or a
                                   ``"correction"`` current, pA), :data:`DERIVED_ROLES`; return them with
                                   ``EstimationResult.from_fit(..., signals=...)`` — :mod:`neo_pinn.derived`
=================================  ==============================================================
"""

from .config import (BOOL, FINITE, MAPPING, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, STRINGS,
                     BackendConfig, Check, OptionGroup, between, either, group, is_integer, is_number, one_of,
                     option, optional)
from .estimator import Estimator, FitContext, refine
from .features.recorded import SmoothingCheck, box_smooth, spike_preserving_width
from .models.base import gate_mask, quasi_steady_states
from .residuals import noise_from_residuals, rms, voltage_residuals, voltage_rmse
from .result import DERIVED_ROLES, DerivedSignal, EstimationResult
from .simulation import METHODS, Simulation, choose_dt, resolve_device, simulate, step
from .simulation.driven import driven_hidden_states, quasi_steady_hidden
from .transforms import LogLinear, LogLogit, UnitCube, free_bounds

__all__ = [
    "simulate", "Simulation", "step", "choose_dt", "resolve_device", "METHODS",
    "UnitCube", "LogLogit", "LogLinear", "free_bounds",
    "quasi_steady_states", "gate_mask", "driven_hidden_states", "quasi_steady_hidden",
    "voltage_residuals", "voltage_rmse", "rms", "noise_from_residuals",
    "BackendConfig", "OptionGroup", "Check", "option", "group", "one_of", "optional", "either", "between",
    "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE", "NON_NEGATIVE", "FINITE", "BOOL", "STRINGS", "MAPPING",
    "is_integer", "is_number",
    "Estimator", "FitContext", "refine", "EstimationResult", "DerivedSignal", "DERIVED_ROLES",
    "box_smooth", "spike_preserving_width", "SmoothingCheck",
]
