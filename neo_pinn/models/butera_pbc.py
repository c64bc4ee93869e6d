"""Butera, Rinzel & Smith (1999) model 1: pre-Bötzinger complex pacemaker with persistent Na+.

Equations and values: ``shared/reference/models.md`` §4 (whole-cell units pF, nS, mV, pA, ms).
"""

from __future__ import annotations

from . import elementwise as m
from .base import PASSIVE, Domain, NeuronModel, ParameterSpec, Preset, StateSpec

__all__ = ["ButeraPBC"]

_Y0 = (-60.0, 0.0, 0.6)
#: an activation slope is negative (a positive one would turn the gate into an inactivation; 0 divides by zero)
_ACTIVATION_SLOPE = Domain(hi=0.0, hi_open=True)


def _x_inf(V, theta, sigma):
    """1/(1 + exp((V − θ)/σ))."""
    return m.sigmoid(-(V - theta) / sigma)


class ButeraPBC(NeuronModel):
    """BRS 1999 model 1: V (mV), K+ activation n, NaP inactivation h (slow, τ̄h = 10 s).

    Presets sweep the leak reversal EL (g_tonic = 0): ``silent`` (−65), ``bursting`` (−60, period
    6.85 s), ``bursting_fast`` (−58, 2.18 s), ``tonic`` (−54, 9.5 Hz).
    """

    name = "butera_pbc"
    description = "Butera–Rinzel–Smith 1999 model 1 (pre-Bötzinger pacemaker, I_NaP)"
    reference = "Butera, Rinzel & Smith 1999, J Neurophysiol 82:382"
    states = (
        StateSpec("V", "mV", 40.0, "membrane voltage"),
        StateSpec("n", "dimensionless", 0.3, "K+ activation"),
        StateSpec("h", "dimensionless", 0.1, "NaP inactivation (slow)"),
    )
    parameters = (
        ParameterSpec("C", "pF", 21.0, (1.0, 200.0), True, "membrane capacitance"),
        ParameterSpec("gNaP", "nS", 2.8, (0.05, 50.0), True, "persistent Na+ conductance"),
        ParameterSpec("gNa", "nS", 28.0, (0.5, 500.0), True, "fast Na+ conductance"),
        ParameterSpec("gK", "nS", 11.2, (0.5, 200.0), True, "delayed-rectifier K+ conductance"),
        ParameterSpec("gL", "nS", 2.8, (0.05, 50.0), True, "leak conductance"),
        ParameterSpec("ENa", "mV", 50.0, (0.0, 100.0), False, "Na+ reversal"),
        ParameterSpec("EK", "mV", -85.0, (-120.0, -40.0), False, "K+ reversal"),
        ParameterSpec("EL", "mV", -65.0, (-100.0, -20.0), False, "leak reversal"),
        ParameterSpec("gtonic", "nS", 0.0, (0.0, 20.0), False, "tonic excitatory synaptic conductance"),
        ParameterSpec("Esyn", "mV", 0.0, (-20.0, 20.0), False, "tonic synaptic reversal"),
        ParameterSpec("theta_m", "mV", -34.0, (-80.0, 0.0), False, "fast Na+ half-activation"),
        ParameterSpec("sigma_m", "mV", -5.0, (-20.0, -0.5), False, "fast Na+ slope (negative: activation)",
                      domain=_ACTIVATION_SLOPE),
        ParameterSpec("theta_n", "mV", -29.0, (-80.0, 0.0), False, "K+ half-activation"),
        ParameterSpec("sigma_n", "mV", -4.0, (-20.0, -0.5), False, "K+ slope", domain=_ACTIVATION_SLOPE),
        ParameterSpec("tau_n", "ms", 10.0, (0.5, 100.0), True, "K+ time constant"),
        ParameterSpec("theta_mp", "mV", -40.0, (-80.0, 0.0), False, "NaP half-activation"),
        ParameterSpec("sigma_mp", "mV", -6.0, (-20.0, -0.5), False, "NaP slope", domain=_ACTIVATION_SLOPE),
        ParameterSpec("theta_h", "mV", -48.0, (-80.0, 0.0), False, "NaP half-inactivation"),
        ParameterSpec("sigma_h", "mV", 6.0, (0.5, 20.0), True, "NaP inactivation slope (positive)"),
        ParameterSpec("tau_h", "ms", 10000.0, (100.0, 100000.0), True, "NaP inactivation time constant"),
    )
    presets = {
        "silent": Preset("silent", {"EL": -65.0}, 0.0, _Y0, "rest", "EL = −65: rest at −62.7 mV",
                         {"rate_hz": 0.0}, 30000.0),
        "bursting": Preset("bursting", {"EL": -60.0}, 0.0, _Y0, "bursting",
                           "EL = −60: period 6.85 s, 26 spikes/burst", {"period_ms": 6850.0, "spikes_per_burst": 26},
                           30000.0),
        "bursting_fast": Preset("bursting_fast", {"EL": -58.0}, 0.0, _Y0, "bursting",
                                "EL = −58: period 2.18 s, 10 spikes/burst",
                                {"period_ms": 2180.0, "spikes_per_burst": 10}, 30000.0),
        "tonic": Preset("tonic", {"EL": -54.0}, 0.0, _Y0, "tonic", "EL = −54: tonic 9.5 Hz", {"rate_hz": 9.5},
                        30000.0),
    }
    default_preset = "bursting"
    spike_threshold = -20.0
    spike_rearm = -30.0
    default_free = ("C", "gNaP", "gNa", "gK", "gL", "EL")
    passive_parameters = PASSIVE

    def derivatives(self, t, state, p, i_ext):
        V, n, h = state
        m_inf = _x_inf(V, p["theta_m"], p["sigma_m"])
        mp_inf = _x_inf(V, p["theta_mp"], p["sigma_mp"])
        zn = (V - p["theta_n"]) / p["sigma_n"]
        zh = (V - p["theta_h"]) / p["sigma_h"]
        n_inf = m.sigmoid(-zn)
        h_inf = m.sigmoid(-zh)
        i_nap = p["gNaP"] * mp_inf * h * (V - p["ENa"])
        i_na = p["gNa"] * m_inf * m_inf * m_inf * (1.0 - n) * (V - p["ENa"])
        n2 = n * n
        i_k = p["gK"] * n2 * n2 * (V - p["EK"])
        i_l = p["gL"] * (V - p["EL"])
        i_tonic = p["gtonic"] * (V - p["Esyn"])
        dV = (i_ext - i_nap - i_na - i_k - i_l - i_tonic) / p["C"]
        dn = (n_inf - n) * m.cosh(0.5 * zn) / p["tau_n"]  # τ_x = τ̄_x / cosh((V−θ)/(2σ))
        dh = (h_inf - h) * m.cosh(0.5 * zh) / p["tau_h"]
        return dV, dn, dh
