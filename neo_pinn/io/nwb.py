"""Deprecated alias of :mod:`neo_pinn.io.synthetic_nwb` (synthetic icephys NWB files and their metadata)."""

from ..deprecation import warn_moved
from .synthetic_nwb import *  # noqa: F401,F403
from .synthetic_nwb import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.io.synthetic_nwb")
