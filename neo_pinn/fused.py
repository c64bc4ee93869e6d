"""Deprecated alias of :mod:`neo_pinn.simulation.fused` (the fused kernel now lives with the simulator).

``FEATURE_NAMES`` of this module is :data:`neo_pinn.simulation.fused.ONLINE_FEATURE_NAMES`. The engines
here still accept a registered model name, as they used to; the new ones take the model itself.
"""

import functools

from .api import get_model
from .deprecation import warn_moved
from .simulation.fused import *  # noqa: F401,F403
from .simulation.fused import ONLINE_FEATURE_NAMES as FEATURE_NAMES
from .simulation.fused import __all__ as _moved_names
from .simulation.fused import online_features_fused as _fused
from .simulation.fused import online_features_torch as _torch
from .simulation.fused import population_features as _population

__all__ = [*_moved_names, "FEATURE_NAMES"]


def _by_name(fn):
    """``fn`` accepting a registered model name as well as a model, as the old engines did."""

    @functools.wraps(fn)
    def call(model, theta, **kwargs):
        return fn(get_model(model) if isinstance(model, str) else model, theta, **kwargs)

    return call


online_features_fused = _by_name(_fused)
online_features_torch = _by_name(_torch)
population_features = _by_name(_population)

warn_moved(__name__, "neo_pinn.simulation.fused")
