"""Deprecated aliases: old module paths keep working, with a :class:`DeprecationWarning` naming the new one."""

from __future__ import annotations

import warnings

__all__ = ["warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """Warn (once per import of ``old``) that module ``old`` is now ``new``.

    Parameters
    ----------
    old, new : str
        Dotted module paths.
    """
    warnings.warn(f"{old} is deprecated and will be removed; import from {new} instead.", DeprecationWarning,
                  stacklevel=3)
