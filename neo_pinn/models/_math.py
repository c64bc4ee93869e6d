"""Deprecated alias of :mod:`neo_pinn.models.elementwise`."""

from ..deprecation import warn_moved
from .elementwise import *  # noqa: F401,F403
from .elementwise import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.models.elementwise")
