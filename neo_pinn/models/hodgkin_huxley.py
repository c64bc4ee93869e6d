"""Hodgkin–Huxley (1952) squid axon, modern sign convention (rest near −65 mV); models.md §3."""

from __future__ import annotations

from . import elementwise as m
from .base import PASSIVE, NeuronModel, ParameterSpec, Preset, StateSpec

__all__ = ["HodgkinHuxley"]

_REST = (-64.996, 0.05296, 0.5960, 0.3177)


class HodgkinHuxley(NeuronModel):
    """Hodgkin–Huxley neuron: V (mV) and gates m, h, n.

    ``C dV/dt = I − gNa m³h (V−ENa) − gK n⁴ (V−EK) − gL (V−EL)``, with the standard α/β rates
    (1/ms). The removable 0/0 of α_m at −40 mV and α_n at −55 mV is guarded (also for autograd).
    """

    name = "hodgkin_huxley"
    description = "Hodgkin–Huxley 1952, modern convention"
    reference = "Hodgkin & Huxley 1952, J Physiol 117:500"
    states = (
        StateSpec("V", "mV", 40.0, "membrane voltage"),
        StateSpec("m", "dimensionless", 0.5, "Na+ activation"),
        StateSpec("h", "dimensionless", 0.3, "Na+ inactivation"),
        StateSpec("n", "dimensionless", 0.3, "K+ activation"),
    )
    parameters = (
        ParameterSpec("C", "pF", 1.0, (0.1, 20.0), True, "membrane capacitance (µF/cm²)"),
        ParameterSpec("gNa", "nS", 120.0, (1.0, 1000.0), True, "Na+ conductance (mS/cm²)"),
        ParameterSpec("gK", "nS", 36.0, (1.0, 500.0), True, "K+ conductance"),
        ParameterSpec("gL", "nS", 0.3, (0.01, 10.0), True, "leak conductance"),
        ParameterSpec("ENa", "mV", 50.0, (0.0, 100.0), False, "Na+ reversal"),
        ParameterSpec("EK", "mV", -77.0, (-120.0, -40.0), False, "K+ reversal"),
        ParameterSpec("EL", "mV", -54.387, (-100.0, 0.0), False, "leak reversal"),
    )
    presets = {
        "rest": Preset("rest", {}, 0.0, _REST, "rest", "I = 0: rest at −65.0 mV", {"rate_hz": 0.0}, 300.0),
        "tonic": Preset("tonic", {}, 10.0, _REST, "tonic", "I = 10 µA/cm²: 68.3 Hz", {"rate_hz": 68.3}, 300.0),
        "tonic_strong": Preset("tonic_strong", {}, 50.0, _REST, "tonic", "I = 50 µA/cm²: 117.0 Hz, smaller spikes",
                               {"rate_hz": 117.0}, 300.0),
    }
    default_preset = "tonic"
    spike_threshold = 0.0
    spike_rearm = -10.0
    default_free = ("C", "gNa", "gK", "gL", "EL")
    passive_parameters = PASSIVE

    def derivatives(self, t, state, p, i_ext):
        V, mg, h, n = state
        a_m = m.safe_x_over_expm1((V + 40.0) / 10.0)  # 0.1(V+40)/(1−exp(−(V+40)/10))
        b_m = 4.0 * m.exp(-(V + 65.0) / 18.0)
        a_h = 0.07 * m.exp(-(V + 65.0) / 20.0)
        b_h = m.sigmoid((V + 35.0) / 10.0)  # 1/(1+exp(−(V+35)/10))
        a_n = 0.1 * m.safe_x_over_expm1((V + 55.0) / 10.0)  # 0.01(V+55)/(1−exp(−(V+55)/10))
        b_n = 0.125 * m.exp(-(V + 65.0) / 80.0)
        n2 = n * n
        i_na = p["gNa"] * mg * mg * mg * h * (V - p["ENa"])
        i_k = p["gK"] * n2 * n2 * (V - p["EK"])
        i_l = p["gL"] * (V - p["EL"])
        dV = (i_ext - i_na - i_k - i_l) / p["C"]
        return dV, a_m * (1.0 - mg) - b_m * mg, a_h * (1.0 - h) - b_h * h, a_n * (1.0 - n) - b_n * n
