"""Neuron models: the :class:`NeuronModel` contract and the built-in zoo."""

from .base import NeuronModel, ParameterSpec, Preset, StateSpec
from .butera_pbc import ButeraPBC
from .fitzhugh_nagumo import FitzHughNagumo
from .hodgkin_huxley import HodgkinHuxley
from .morris_lecar import MorrisLecar, MorrisLecarBurster

__all__ = ["NeuronModel", "ParameterSpec", "Preset", "StateSpec", "MorrisLecar", "MorrisLecarBurster",
           "HodgkinHuxley", "FitzHughNagumo", "ButeraPBC"]
