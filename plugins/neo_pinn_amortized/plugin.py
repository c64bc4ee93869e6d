"""Registers the ``amortized`` backend, the ``amortized`` initializer (``fit --init amortized:DIR``) and the
``neo-pinn train`` command through the plugin hooks, like any plugin.

This module stays light (no torch): the command line imports it to build its parser; every heavy module is
imported inside the function that needs it.
"""

from __future__ import annotations

from neo_pinn.hookspecs import hookimpl


@hookimpl
def neo_pinn_register_backends(registry):
    from .backend import Amortized  # here, so that loading the plugin does not import torch-heavy modules

    registry.register(Amortized)


def amortized_initializer(argument, traces, model, free, device):
    """The ``amortized`` initializer: :func:`neo_pinn_amortized.backend.warm_start` (imported when called)."""
    from .backend import warm_start

    return warm_start(argument, traces, model, free, device)


@hookimpl
def neo_pinn_register_initializers(registry):
    registry.register("amortized", amortized_initializer,
                      "start from a trained amortized estimator's estimate: amortized:DIR (`neo-pinn train --out DIR`)")


@hookimpl
def neo_pinn_register_commands(registry):
    from . import cli_train  # light: argparse only at import

    registry.register("train", cli_train.HELP, cli_train.add_arguments, cli_train.run)
