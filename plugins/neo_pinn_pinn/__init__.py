"""``pinn``: physics-informed network ensemble for joint parameter and hidden-state estimation.

See :class:`neo_pinn_pinn.backend.PINN` for the algorithm and its options.
"""

from __future__ import annotations

from .backend import ABLATIONS, PINN

__all__ = ["PINN", "ABLATIONS"]
