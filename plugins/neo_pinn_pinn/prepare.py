"""Deprecated: the PINN's data preparation now lives in modules named for what they hold.

:mod:`~neo_pinn_pinn.layout` (sweeps and segments), :mod:`~neo_pinn_pinn.rhythm` (frequencies, inter-spike
intervals, periodicity), :mod:`~neo_pinn_pinn.spike_weights` (points on the spikes),
:mod:`~neo_pinn_pinn.driven` (voltage-driven hidden states), :mod:`~neo_pinn_pinn.slow_analysis` (slow states)
and :mod:`~neo_pinn_pinn.screen` (the parameter screen). ``SearchSpace`` is :class:`neo_pinn.transforms.LogLinear`.
"""

from neo_pinn.deprecation import warn_moved
from neo_pinn.transforms import LogLinear as SearchSpace  # noqa: F401

from .driven import driven_hidden_states, quasi_steady_hidden  # noqa: F401
from .layout import Flat, Segments, flatten_traces, make_segments  # noqa: F401
from .rhythm import dominant_frequencies, median_isi, periodic_pairs, repeat_lag  # noqa: F401
from .screen import driven_voltage_misfit, linear_parameters, misfit_intervals, screen_parameters  # noqa: F401
from .slow_analysis import acting_on_slow_states, scaling_slow_states, slow_states  # noqa: F401
from .spike_weights import fast_share, sampling_weights  # noqa: F401

__all__ = ["Segments", "dominant_frequencies", "make_segments", "driven_hidden_states", "driven_voltage_misfit",
           "fast_share", "flatten_traces", "median_isi", "acting_on_slow_states", "misfit_intervals", "periodic_pairs",
           "repeat_lag", "sampling_weights", "scaling_slow_states", "screen_parameters", "slow_states"]

warn_moved(__name__, "neo_pinn_pinn.layout, .rhythm, .spike_weights, .driven, .slow_analysis and .screen")
