"""Deprecated alias of :mod:`neo_pinn.storage` (JSON text, atomic writes, content hashes)."""

from ..deprecation import warn_moved
from ..storage import *  # noqa: F401,F403
from ..storage import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.storage")
