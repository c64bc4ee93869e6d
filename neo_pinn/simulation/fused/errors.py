"""Why the fused engine cannot run: no Triton or GPU here, or a model equation it cannot translate."""

from __future__ import annotations

from ...errors import ConfigurationError

__all__ = ["FusedUnavailableError", "UnsupportedOpError"]


class UnsupportedOpError(ConfigurationError):
    """A model's ``derivatives`` uses an operation the kernel generator cannot translate."""


class FusedUnavailableError(ConfigurationError):
    """The fused engine cannot run here (no Triton, no CUDA device, or an unsupported dtype)."""
