"""Registers the ``amortized`` backend through the ``neo_pinn_register_backends`` hook, like any plugin."""

from __future__ import annotations

from neo_pinn.hookspecs import hookimpl


@hookimpl
def neo_pinn_register_backends(registry):
    from .backend import Amortized  # here, so that loading the plugin does not import torch-heavy modules

    registry.register(Amortized)
