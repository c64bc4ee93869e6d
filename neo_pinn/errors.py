"""Typed errors of neo_pinn.

Every error a user can provoke with bad input is a :class:`NeoPinnError` subclass whose message says
what went wrong *and what to do about it*. Catch ``NeoPinnError`` to handle all of them.
"""

from __future__ import annotations

__all__ = [
    "NeoPinnError",
    "UnitsError",
    "StimulusError",
    "StimulusNotFoundError",
    "StimulusMismatchWarning",
    "VoltageClampError",
    "NoVoltageChannelError",
    "EmptySignalError",
    "NonFiniteDataError",
    "EstimationError",
    "ConfigurationError",
    "UnknownNameError",
    "DuplicateNameError",
    "PluginLoadWarning",
    "RecordingFormatError",
]


class NeoPinnError(Exception):
    """Base class of every error raised on purpose by neo_pinn."""


class UnitsError(NeoPinnError, ValueError):
    """A quantity has missing or incompatible units (e.g. a voltage channel in pA)."""


class StimulusError(NeoPinnError, ValueError):
    """A stimulus specification or waveform is malformed."""


class StimulusNotFoundError(NeoPinnError, LookupError):
    """No injected-current waveform could be recovered for a sweep."""


class StimulusMismatchWarning(UserWarning):
    """Two stimulus sources of the same sweep disagree."""


class VoltageClampError(NeoPinnError, ValueError):
    """A voltage-clamp recording was given where a current-clamp one is needed."""


class NoVoltageChannelError(NeoPinnError, LookupError):
    """No membrane-voltage channel could be identified in a recording."""


class EmptySignalError(NeoPinnError, ValueError):
    """A segment, signal or time window holds no samples."""


class NonFiniteDataError(NeoPinnError, ValueError):
    """Data contain NaN or infinite values."""


class ConfigurationError(NeoPinnError, ValueError):
    """An estimation problem or backend configuration is inconsistent."""


class EstimationError(NeoPinnError, RuntimeError):
    """An estimation diverged (non-finite loss or parameters) and could not produce a result."""


class UnknownNameError(NeoPinnError, KeyError):
    """A model, preset, parameter, state or backend name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(NeoPinnError, ValueError):
    """Two plugins registered the same model or backend name."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; it was skipped and the others still work."""


class RecordingFormatError(NeoPinnError, OSError):
    """A file cannot be read as an electrophysiology recording."""


class OutputPathError(NeoPinnError, OSError):
    """An output path names an input, another output, an existing file (without overwrite) or an unwritable folder."""


class UnphysiologicalVoltageError(UnitsError):
    """A recorded membrane voltage lies outside the physiological range (most often a unit mistake, e.g. volts
    labelled mV); the message names the likely mistake and the override (``allow_unphysiological``)."""


class ParameterDomainError(ConfigurationError):
    """A parameter value (fixed, initial guess, bound or simulated) lies outside its model's domain or is not finite."""


class InputPathError(NeoPinnError, OSError):
    """An input path is missing or is not a regular file (a folder, a FIFO, a device)."""


class InputFormatError(NeoPinnError, ValueError):
    """An input file's content is not what it must be (garbage, truncated JSON, a JSON that is not a fit result)."""
