"""Deprecated alias: Neo file writing moved to :mod:`neo_pinn.io.neo_writers`, reading to
:mod:`neo_pinn.io.neo_files_reader`, ``json_default`` to :mod:`neo_pinn.storage`."""

from ..deprecation import warn_moved
from ..storage import json_default  # noqa: F401
from .neo_files_reader import *  # noqa: F401,F403
from .neo_files_reader import NWB_PAYLOAD_KEY, decode_nwb_payload, read_block  # noqa: F401
from .neo_writers import *  # noqa: F401,F403

__all__ = ["write_block", "read_block", "json_default", "decode_nwb_payload", "input_files_of"]

warn_moved(__name__, "neo_pinn.io.neo_writers")
