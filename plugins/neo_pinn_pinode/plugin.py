"""Registers the ``pinode`` backend through the ``neo_pinn_register_backends`` hook, like any plugin."""

from __future__ import annotations

from neo_pinn.hookspecs import hookimpl


@hookimpl
def neo_pinn_register_backends(registry):
    """Register :class:`~neo_pinn_pinode.backend.PINODE` (imported here, so loading the plugin stays light)."""
    from .backend import PINODE

    registry.register(PINODE)
