"""Deprecated alias of :mod:`neo_pinn.io.recording` (the recording loader).

Reading moved to :mod:`neo_pinn.io.reading`, the channel choice to :mod:`neo_pinn.io.channels` and
the stimulus of each sweep to :mod:`neo_pinn.io.stimulus_recovery`.
"""

from ..deprecation import warn_moved
from .recording import *  # noqa: F401,F403
from .recording import __all__  # noqa: F401

warn_moved(__name__, "neo_pinn.io.recording")
