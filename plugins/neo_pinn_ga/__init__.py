"""``ga``: NSGA-II on electrophysiology features with the whole population simulated per generation.

See :class:`neo_pinn_ga.backend.GeneticAlgorithm` for the backend, :mod:`neo_pinn_ga.config` for its
options and :mod:`neo_pinn_ga.evaluate` for the objectives. Importing this package does not import the
backend (nor torch); the names below load it on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GeneticAlgorithm", "GAConfig"]

_LAZY = {"GeneticAlgorithm": "backend", "GAConfig": "config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
