"""Deprecated alias of :mod:`neo_pinn.io.stimulus_specs` (stimulus specifications and step summaries)."""

from ..deprecation import warn_moved
from .stimulus_specs import *  # noqa: F401,F403
from .stimulus_specs import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.io.stimulus_specs")
