"""Morris–Lecar models (Rinzel–Ermentrout form), spiking and square-wave bursting.

Equations and parameter sets: ``shared/reference/models.md`` §1–2 (Ermentrout & Terman 2010, Table 3.1
and §6.2). Per-area units carry over number for number: µF/cm² → pF, mS/cm² → nS, µA/cm² → pA.
"""

from __future__ import annotations

from . import elementwise as m
from .base import PASSIVE, NeuronModel, ParameterSpec, Preset, StateSpec

__all__ = ["MorrisLecar", "MorrisLecarBurster"]

_SHARED = dict(C=20.0, gL=2.0, gK=8.0, EL=-60.0, EK=-84.0, ECa=120.0, V1=-1.2, V2=18.0)
_HOPF = dict(gCa=4.4, V3=2.0, V4=30.0, phi=0.04)
_SNLC = dict(gCa=4.0, V3=12.0, V4=17.4, phi=1.0 / 15.0)
_HOMOCLINIC = dict(gCa=4.0, V3=12.0, V4=17.4, phi=0.23)

_ML_PARAMETERS = (
    ParameterSpec("C", "pF", 20.0, (1.0, 200.0), True, "membrane capacitance (µF/cm² number for number)"),
    ParameterSpec("gL", "nS", 2.0, (0.05, 50.0), True, "leak conductance"),
    ParameterSpec("gCa", "nS", 4.0, (0.05, 50.0), True, "Ca2+ conductance (instantaneous activation)"),
    ParameterSpec("gK", "nS", 8.0, (0.05, 100.0), True, "delayed-rectifier K+ conductance"),
    ParameterSpec("EL", "mV", -60.0, (-100.0, 0.0), False, "leak reversal"),
    ParameterSpec("ECa", "mV", 120.0, (20.0, 200.0), False, "Ca2+ reversal"),
    ParameterSpec("EK", "mV", -84.0, (-120.0, -40.0), False, "K+ reversal"),
    ParameterSpec("V1", "mV", -1.2, (-40.0, 40.0), False, "m_inf half-activation"),
    ParameterSpec("V2", "mV", 18.0, (2.0, 60.0), True, "m_inf slope"),
    ParameterSpec("V3", "mV", 12.0, (-40.0, 40.0), False, "n_inf half-activation"),
    ParameterSpec("V4", "mV", 17.4, (2.0, 60.0), True, "n_inf slope"),
    ParameterSpec("phi", "1/ms", 1.0 / 15.0, (1e-3, 2.0), True, "K+ gating rate"),
)


def _ml_currents(V, n, p):
    """Leak, Ca and K currents (pA) of the 2-D Morris–Lecar model, and dn/dt."""
    m_inf = m.sigmoid(2.0 * (V - p["V1"]) / p["V2"])  # ½[1 + tanh((V−V1)/V2)]
    x = (V - p["V3"]) / p["V4"]
    n_inf = m.sigmoid(2.0 * x)  # ½[1 + tanh((V−V3)/V4)]
    dn = p["phi"] * m.cosh(0.5 * x) * (n_inf - n)  # φ (n_inf − n) / τ_n, τ_n = 1/cosh((V−V3)/(2V4))
    i_l = p["gL"] * (V - p["EL"])
    i_ca = p["gCa"] * m_inf * (V - p["ECa"])
    i_k = p["gK"] * n * (V - p["EK"])
    return i_l, i_ca, i_k, dn


class MorrisLecar(NeuronModel):
    """2-D Morris–Lecar neuron: voltage V (mV) and K+ gate n.

    ``C dV/dt = I − gL(V−EL) − gCa m∞(V)(V−ECa) − gK n (V−EK)``, ``dn/dt = φ (n∞(V) − n)/τn(V)``.
    Presets ``hopf``, ``snlc`` and ``homoclinic`` are the three excitability classes of
    Ermentrout & Terman (2010) Table 3.1 at the test currents of models.md.
    """

    name = "morris_lecar"
    description = "Morris–Lecar 2-D (Rinzel–Ermentrout form)"
    reference = "Morris & Lecar 1981; Rinzel & Ermentrout 1998; Ermentrout & Terman 2010 Table 3.1"
    states = (
        StateSpec("V", "mV", 40.0, "membrane voltage"),
        StateSpec("n", "dimensionless", 0.25, "K+ activation"),
    )
    parameters = _ML_PARAMETERS
    presets = {
        "hopf": Preset("hopf", {**_SHARED, **_HOPF}, 100.0, (-60.86, 0.01492), "tonic",
                       "class II (Hopf); 11.7 Hz at 100 µA/cm²", {"rate_hz": 11.7}, 1000.0),
        "snlc": Preset("snlc", {**_SHARED, **_SNLC}, 60.0, (-59.47, 0.000270), "tonic",
                       "class I (SNLC); 17.1 Hz at 60 µA/cm²", {"rate_hz": 17.1}, 1000.0),
        "homoclinic": Preset("homoclinic", {**_SHARED, **_HOMOCLINIC}, 38.0, (10.0, 0.3), "tonic",
                             "homoclinic; 33.4 Hz at 38 µA/cm² from a depolarised start (bistable with rest)",
                             {"rate_hz": 33.4}, 1000.0),
        "snlc_rest": Preset("snlc_rest", {**_SHARED, **_SNLC}, 39.0, (-59.47, 0.000270), "rest",
                            "class I just below onset (39.5 µA/cm²): silent", {"rate_hz": 0.0}, 1000.0),
    }
    default_preset = "snlc"
    spike_threshold = 0.0
    spike_rearm = -10.0
    default_free = ("C", "gL", "gCa", "gK", "phi", "EL")
    passive_parameters = PASSIVE

    def derivatives(self, t, state, p, i_ext):
        V, n = state[0], state[1]
        i_l, i_ca, i_k, dn = _ml_currents(V, n, p)
        dV = (i_ext - i_l - i_ca - i_k) / p["C"]
        return dV, dn


class MorrisLecarBurster(NeuronModel):
    """3-D square-wave bursting Morris–Lecar: adds a Ca-activated K+ current and slow Ca.

    ``I_KCa = gKCa z (V − EK)``, ``z = Ca/(Ca + 1)``, ``dCa/dt = ε(−μ I_Ca − Ca)`` on top of the
    homoclinic set (Ermentrout & Terman 2010 §6.2). I = 40 / 45 / 50 pA gives silent / bursting / tonic.
    """

    name = "morris_lecar_burster"
    description = "Morris–Lecar square-wave burster (Ca-activated K+ current, slow Ca)"
    reference = "Rinzel & Ermentrout 1998; Ermentrout & Terman 2010 §6.2"
    states = (
        StateSpec("V", "mV", 40.0, "membrane voltage"),
        StateSpec("n", "dimensionless", 0.25, "K+ activation"),
        StateSpec("Ca", "dimensionless", 1.0, "intracellular Ca2+ (scaled by its K_d)"),
    )
    parameters = _ML_PARAMETERS + (
        ParameterSpec("gKCa", "nS", 0.25, (0.01, 10.0), True, "Ca-activated K+ conductance"),
        ParameterSpec("mu", "1/pA", 0.02, (1e-3, 1.0), True, "Ca influx per unit Ca current"),
        ParameterSpec("epsilon", "1/ms", 0.001, (1e-5, 0.1), True, "slow Ca removal rate"),
    )
    _BURST = {**_SHARED, **_HOMOCLINIC, "gKCa": 0.25, "mu": 0.02, "epsilon": 0.001}
    presets = {
        "bursting": Preset("bursting", _BURST, 45.0, (-40.0, 0.0, 0.5), "bursting",
                           "ε = 0.001: period 3.49 s, 19 spikes/burst",
                           {"period_ms": 3490.0, "spikes_per_burst": 19}, 5000.0),
        "bursting_fast": Preset("bursting_fast", {**_BURST, "epsilon": 0.005}, 45.0, (-40.0, 0.0, 0.5), "bursting",
                                "ε = 0.005: period 0.93 s, 4 spikes/burst",
                                {"period_ms": 930.0, "spikes_per_burst": 4}, 5000.0),
        "silent": Preset("silent", _BURST, 40.0, (-40.0, 0.0, 0.5), "rest", "I = 40: silent", {"rate_hz": 0.0},
                         5000.0),
        "tonic": Preset("tonic", _BURST, 50.0, (-40.0, 0.0, 0.5), "tonic", "I = 50: tonic 31.0 Hz",
                        {"rate_hz": 31.0}, 5000.0),
    }
    default_preset = "bursting"
    spike_threshold = 0.0
    spike_rearm = -10.0
    default_free = ("C", "gL", "gCa", "gK", "phi", "EL", "gKCa", "epsilon")
    passive_parameters = PASSIVE

    def derivatives(self, t, state, p, i_ext):
        V, n, ca = state[0], state[1], state[2]
        i_l, i_ca, i_k, dn = _ml_currents(V, n, p)
        i_kca = p["gKCa"] * (ca / (ca + 1.0)) * (V - p["EK"])
        dV = (i_ext - i_l - i_ca - i_k - i_kca) / p["C"]
        dca = p["epsilon"] * (-p["mu"] * i_ca - ca)
        return dV, dn, dca
