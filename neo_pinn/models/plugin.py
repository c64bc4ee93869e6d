"""Registers the built-in models through the ``neo_pinn_register_models`` hook, like any plugin."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .butera_pbc import ButeraPBC
from .fitzhugh_nagumo import FitzHughNagumo
from .hodgkin_huxley import HodgkinHuxley
from .morris_lecar import MorrisLecar, MorrisLecarBurster


@hookimpl
def neo_pinn_register_models(registry):
    for cls in (MorrisLecar, MorrisLecarBurster, HodgkinHuxley, FitzHughNagumo, ButeraPBC):
        registry.register(cls())
