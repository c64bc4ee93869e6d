"""``pinn``: physics-informed network ensemble for joint parameter and hidden-state estimation.

See :class:`neo_pinn_pinn.backend.PINN` for the algorithm and :class:`neo_pinn_pinn.config.PINNConfig` for its
options. The public names are loaded on first use, so importing the package (e.g. to register the plugin)
does not import the torch-heavy modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PINN", "ABLATIONS", "PINNConfig", "train_members", "Trained", "EnsembleTrainer"]


def __getattr__(name: str) -> Any:
    if name in ("PINN", "ABLATIONS"):
        from . import backend as module
    elif name == "PINNConfig":
        from . import config as module
    elif name in ("train_members", "Trained", "EnsembleTrainer"):
        from . import training as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
