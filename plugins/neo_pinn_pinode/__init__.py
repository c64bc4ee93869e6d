"""neo_pinn_pinode: the ``pinode`` backend — a physics-informed neural ODE with scale-aware residuals.

Built on the public core toolkit (:mod:`neo_pinn.toolkit`) and registered through the plugin hooks like a
third-party backend. See :mod:`neo_pinn_pinode.backend` for the algorithm.

Importing the package stays light (the command line imports its plugin module to build its parser): every name
below is imported when first used.
"""

from __future__ import annotations

import importlib

__all__ = ["MODES", "PINODEConfig", "PINODE", "ABLATIONS"]

_WHERE = {"MODES": "config", "PINODEConfig": "config", "PINODE": "backend", "ABLATIONS": "backend"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
