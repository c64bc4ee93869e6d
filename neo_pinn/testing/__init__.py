"""Testing helpers for neo_pinn and its plugins: synthetic recordings and a backend compliance mixin."""

from .compliance import BackendCompliance, synthetic_problem
from .efel import efel_agreement

__all__ = ["BackendCompliance", "synthetic_problem", "efel_agreement"]
