"""Recordings in and out: Neo adapters, stimulus recovery and the Neo↔array boundary.

``load_recording`` reads any Neo-readable file (or takes a user's Neo objects, without changing them),
marks the membrane voltage and the injected current of every sweep, and gives plain-array
:class:`~neo_pinn.trace.Trace` objects through ``Recording.traces()``.
"""

from .adapters import MODES, Recording, RecordingNotFoundError, SweepInfo, load_recording
from .convert import array_to_signal, block_to_traces, signal_to_trace, trace_to_signals
from .files import atomic_path, atomic_write_bytes, atomic_write_text, sha256_of
from .stimulus import (
    STIMULUS_SYNTAX,
    StimulusSpec,
    compare_stimuli,
    describe_step_family,
    describe_steps,
    parse_stimulus,
    step_amplitudes,
    summarize_steps,
)

__all__ = [
    "load_recording",
    "Recording",
    "SweepInfo",
    "RecordingNotFoundError",
    "MODES",
    "block_to_traces",
    "signal_to_trace",
    "trace_to_signals",
    "array_to_signal",
    "StimulusSpec",
    "parse_stimulus",
    "summarize_steps",
    "describe_steps",
    "step_amplitudes",
    "describe_step_family",
    "compare_stimuli",
    "STIMULUS_SYNTAX",
    "sha256_of",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
]
