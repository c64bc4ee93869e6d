"""Deprecated alias of :mod:`neo_pinn.io.stimulus_finders` (the built-in stimulus finders, plugin ``core_stimulus``)."""

from ..deprecation import warn_moved
from .stimulus_finders import *  # noqa: F401,F403
from .stimulus_finders import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.io.stimulus_finders")
