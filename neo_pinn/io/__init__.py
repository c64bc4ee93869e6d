"""Recordings in: reading through Neo, stimulus recovery and the Neo↔array boundary.

``load_recording`` reads any Neo-readable file (or takes a user's Neo objects, without changing them),
marks the membrane voltage and the injected current of every sweep, and gives plain-array
:class:`~neo_pinn.trace.Trace` objects through ``Recording.traces()``.
"""

from ..storage import atomic_path, atomic_write_bytes, atomic_write_text, sha256_of
from . import recording as _recording
from . import stimulus_specs as _stimulus_specs
from .convert import array_to_signal, block_to_traces, signal_to_trace, trace_to_signals
from .recording import *  # noqa: F401,F403
from .stimulus_specs import *  # noqa: F401,F403

__all__ = [
    *_recording.__all__,
    "block_to_traces",
    "signal_to_trace",
    "trace_to_signals",
    "array_to_signal",
    *_stimulus_specs.__all__,
    "sha256_of",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
]
