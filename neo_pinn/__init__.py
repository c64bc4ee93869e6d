"""neo_pinn — estimate parameters, hidden states and noise of neuron models from Neo recordings.

Importing the package loads neither plugins nor CUDA nor torch: the public names below are imported on
first use (module ``__getattr__``), so ``neo-pinn --help`` and scripts that only need ``__version__`` start
in a fraction of a second. ``from neo_pinn import estimate`` works as before; registries fill on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the submodule that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    **dict.fromkeys(("estimate", "get_backend", "get_model", "list_backends", "list_models", "load_recording",
                     "simulate", "synthetic_trace"), "api"),
    "NeoPinnError": "errors",
    "BackendConfig": "config",
    "Estimator": "estimator", "FitContext": "estimator",
    "HOOKSPEC_VERSION": "hookspecs",
    **dict.fromkeys(("NeuronModel", "ParameterSpec", "Preset", "StateSpec"), "models.base"),
    "EstimationProblem": "problem", "FreeParameter": "problem",
    **dict.fromkeys(("EstimationResult", "ParameterEstimate", "SweepFit", "DerivedSignal", "build_result"), "result"),
    "compare_forecast": "forecast",
    "Trace": "trace",
    "attach_copy": "io.attach",
    **dict.fromkeys(("result_from_block", "parameters_of"), "io.attach_read"),
    "StimulusSpec": "io.stimulus_specs",
    **dict.fromkeys(("write_result_nwb", "read_result_nwb"), "io.nwb_results"),
}

__all__ = [
    "__version__", "estimate", "simulate", "synthetic_trace", "load_recording", "get_model", "get_backend",
    "list_models", "list_backends", "NeoPinnError", "Estimator", "FitContext", "BackendConfig", "build_result",
    "NeuronModel", "ParameterSpec", "Preset", "StateSpec", "EstimationProblem", "FreeParameter", "EstimationResult",
    "DerivedSignal", "ParameterEstimate", "SweepFit", "Trace", "HOOKSPEC_VERSION", "attach", "attach_copy",
    "result_from_block", "parameters_of", "StimulusSpec", "write_result_nwb", "read_result_nwb", "compare_forecast",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from .api import (estimate, get_backend, get_model, list_backends, list_models, load_recording,  # noqa: F401
                      simulate, synthetic_trace)
    from .config import BackendConfig  # noqa: F401
    from .errors import NeoPinnError  # noqa: F401
    from .estimator import Estimator, FitContext  # noqa: F401
    from .hookspecs import HOOKSPEC_VERSION  # noqa: F401
    from .models.base import NeuronModel, ParameterSpec, Preset, StateSpec  # noqa: F401
    from .problem import EstimationProblem, FreeParameter  # noqa: F401
    from .forecast import compare_forecast  # noqa: F401
    from .result import DerivedSignal, EstimationResult, ParameterEstimate, SweepFit, build_result  # noqa: F401
    from .io.attach import attach_copy  # noqa: F401
    from .io.attach_read import parameters_of, result_from_block  # noqa: F401
    from .io.nwb_results import read_result_nwb, write_result_nwb  # noqa: F401
    from .io.stimulus_specs import StimulusSpec  # noqa: F401
    from .trace import Trace  # noqa: F401


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it on the package (later uses cost nothing)."""
    module = _LAZY.get(name)
    if module is None:
        # AttributeError (not ImportError) lets ``from neo_pinn import submodule`` fall back to the submodule
        raise AttributeError(f"module 'neo_pinn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def attach(result, target, **kwargs):
    """Append a result's reconstructed signals to a Neo tree; see :func:`neo_pinn.io.attach.attach`."""
    from .io.attach import attach as attach_result

    return attach_result(result, target, **kwargs)
