"""FitzHugh–Nagumo in the form of Rudi, Bessac & Lenzi (2022); models.md §5.

``du/dt = γ(u − u³/3 + v + ζ + I)``, ``dv/dt = −(u − θ0 + θ1 v)/γ`` with γ = 3, ζ = −0.4 fixed and
(θ0, θ1) estimated. Time and voltage are dimensionless (read as ms and mV by convention).
"""

from __future__ import annotations

from .base import NeuronModel, ParameterSpec, Preset, StateSpec

__all__ = ["FitzHughNagumo"]


class FitzHughNagumo(NeuronModel):
    """FitzHugh–Nagumo with parameters theta0, theta1 (Ramsay et al. 2007 form plus ζ).

    The injected current (default 0) adds to ζ.
    """

    name = "fitzhugh_nagumo"
    description = "FitzHugh–Nagumo (Rudi, Bessac & Lenzi 2022 form)"
    reference = "Ramsay et al. 2007; Rudi, Bessac & Lenzi 2022 (arXiv:2012.06691)"
    states = (
        StateSpec("u", "mV", 2.0, "fast (voltage-like) variable"),
        StateSpec("v", "dimensionless", 1.0, "slow recovery variable"),
    )
    parameters = (
        ParameterSpec("theta0", "dimensionless", 0.4, (-0.2, 1.0), False, "θ0 (Ramsay's a)"),
        ParameterSpec("theta1", "dimensionless", 0.4, (-0.4, 1.2), False, "θ1 (Ramsay's b)"),
        ParameterSpec("gamma", "dimensionless", 3.0, (0.5, 10.0), True, "time-scale ratio γ (Ramsay's c)"),
        ParameterSpec("zeta", "dimensionless", -0.4, (-2.0, 2.0), False, "constant drive ζ"),
    )
    presets = {
        "oscillating": Preset("oscillating", {"theta0": 0.4, "theta1": 0.4}, 0.0, (0.0, 0.0), "tonic",
                              "prior centre: relaxation oscillation, period 9.16", {"period_ms": 9.16}, 40.0),
        "rest": Preset("rest", {"theta0": 0.085, "theta1": 1.01}, 0.0, (0.0, 0.0), "rest",
                       "stable rest at u ≈ −0.99", {"rate_hz": 0.0}, 40.0),
    }
    default_preset = "oscillating"
    spike_threshold = 1.0
    spike_rearm = 0.0
    default_free = ("theta0", "theta1")

    def derivatives(self, t, state, p, i_ext):
        u, v = state
        g = p["gamma"]
        du = g * (u - u * u * u / 3.0 + v + p["zeta"] + i_ext)
        dv = -(u - p["theta0"] + p["theta1"] * v) / g
        return du, dv
