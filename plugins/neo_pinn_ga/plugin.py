"""Registers the ``ga`` backend through the ``neo_pinn_register_backends`` hook, like any plugin."""

from __future__ import annotations

from neo_pinn.hookspecs import hookimpl


@hookimpl
def neo_pinn_register_backends(registry):
    from .backend import GeneticAlgorithm  # here, so that importing the plugin does not import the backend

    registry.register(GeneticAlgorithm)
