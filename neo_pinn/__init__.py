"""neo_pinn — estimate parameters, hidden states and noise of neuron models from Neo recordings.

Importing the package loads neither plugins nor CUDA; registries fill on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (estimate, get_backend, get_model, list_backends, list_models, load_recording, simulate,
                  synthetic_trace)
from .errors import NeoPinnError
from .config import BackendConfig
from .estimator import Estimator, FitContext
from .hookspecs import HOOKSPEC_VERSION
from .models.base import NeuronModel, ParameterSpec, Preset, StateSpec
from .problem import EstimationProblem, FreeParameter
from .result import EstimationResult, ParameterEstimate, SweepFit, build_result
from .trace import Trace

__all__ = [
    "__version__", "estimate", "simulate", "synthetic_trace", "load_recording", "get_model", "get_backend",
    "list_models", "list_backends", "NeoPinnError", "Estimator", "FitContext", "BackendConfig", "build_result",
    "NeuronModel", "ParameterSpec", "Preset", "StateSpec", "EstimationProblem", "FreeParameter", "EstimationResult",
    "ParameterEstimate", "SweepFit", "Trace", "HOOKSPEC_VERSION",
]


def attach(result, target, **kwargs):
    """Append a result's reconstructed signals to a Neo tree; see :func:`neo_pinn.io.attach.attach`."""
    from .io.attach import attach as attach_result

    return attach_result(result, target, **kwargs)


__all__.append("attach")
