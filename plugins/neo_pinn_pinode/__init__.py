"""neo_pinn_pinode: the ``pinode`` backend — a physics-informed neural ODE with scale-aware residuals.

Built on the public core toolkit (:mod:`neo_pinn.toolkit`) and registered through the plugin hooks like a
third-party backend. See :mod:`neo_pinn_pinode.backend` for the algorithm.
"""

from .config import MODES, PINODEConfig

__all__ = ["MODES", "PINODEConfig", "PINODE", "ABLATIONS"]


def __getattr__(name: str):
    if name in ("PINODE", "ABLATIONS"):  # torch-heavy: imported when first used
        from . import backend

        return getattr(backend, name)
    raise AttributeError(name)
