"""Deprecated alias of :mod:`neo_pinn.simulation`.

The package-level function ``neo_pinn.simulate(model, theta, ...)`` and this old module path share a name;
importing the module used to replace the function on the package. This module is therefore itself
callable, like the function: ``neo_pinn.simulate(...)`` works whichever of the two the name holds.
"""

import sys
import types

from .deprecation import warn_moved
from .simulation import *  # noqa: F401,F403
from .simulation import __all__  # noqa: F401


class _CallableModule(types.ModuleType):
    def __call__(self, model, theta=None, **kwargs):
        from .api import simulate as api_simulate

        return api_simulate(model, theta, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
warn_moved(__name__, "neo_pinn.simulation")
