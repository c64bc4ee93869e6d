"""``lsq``: multi-start least squares on the voltage trace through the differentiable simulator.

See :class:`neo_pinn_lsq.backend.LeastSquares` for the algorithm and its options.
"""

from __future__ import annotations

from .backend import LeastSquares

__all__ = ["LeastSquares"]
