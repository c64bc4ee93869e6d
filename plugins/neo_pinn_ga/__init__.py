"""``ga``: NSGA-II on electrophysiology features with the whole population simulated per generation.

See :class:`neo_pinn_ga.backend.GeneticAlgorithm` for the algorithm and its options and
:mod:`neo_pinn_ga.evaluate` for the objectives.
"""

from __future__ import annotations

from .backend import GeneticAlgorithm

__all__ = ["GeneticAlgorithm"]
