"""``lsq``: multi-start least squares on the voltage trace through the differentiable simulator.

See :class:`neo_pinn_lsq.backend.LeastSquares` for the algorithm and :class:`neo_pinn_lsq.config.LsqConfig`
for its options. Importing this package does not import the backend (torch-heavy): the names below are
loaded on first use.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["LeastSquares", "LsqConfig"]

_LAZY = {"LeastSquares": "backend", "LsqConfig": "config"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
