"""Fixed-step integrators and the choice of their step: the one implementation every backend uses.

:func:`step` advances a tuple of per-state tensors (or arrays) by one Euler, Heun or RK4 step of a model's
``derivatives``; :func:`choose_dt` picks an integration step that divides a recording's sampling interval,
so every sample falls on a step.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import ConfigurationError
from ..models.base import NeuronModel

__all__ = ["METHODS", "step", "choose_dt"]

METHODS = ("euler", "heun", "rk4")


def step(model: NeuronModel, method: str, t, ys: tuple, p: Mapping[str, Any], i0, ih, i1, dt: float) -> tuple:
    """One fixed step of ``model.derivatives`` from time ``t``.

    Parameters
    ----------
    model : NeuronModel
    method : {"euler", "heun", "rk4"}
    t : float or tensor
        Time at the start of the step, ms.
    ys : tuple
        One tensor (or array) per state, canonical units.
    p : mapping
        Parameter values by name.
    i0, ih, i1 : float, tensor or array
        Injected current (pA) at the start, the middle and the end of the step (Euler uses ``i0``, Heun
        ``i0`` and ``i1``, RK4 all three).
    dt : float
        Step, ms.

    Returns
    -------
    tuple
        The states after the step.
    """
    f = model.derivatives
    if method == "euler":
        k1 = f(t, ys, p, i0)
        return tuple(y + dt * a for y, a in zip(ys, k1))
    if method == "heun":
        k1 = f(t, ys, p, i0)
        k2 = f(t + dt, tuple(y + dt * a for y, a in zip(ys, k1)), p, i1)
        return tuple(y + (0.5 * dt) * (a + b) for y, a, b in zip(ys, k1, k2))
    if method != "rk4":
        raise ConfigurationError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    h = 0.5 * dt
    k1 = f(t, ys, p, i0)
    k2 = f(t + h, tuple(y + h * a for y, a in zip(ys, k1)), p, ih)
    k3 = f(t + h, tuple(y + h * a for y, a in zip(ys, k2)), p, ih)
    k4 = f(t + dt, tuple(y + dt * a for y, a in zip(ys, k3)), p, i1)
    return tuple(y + (dt / 6.0) * (a + 2.0 * b + 2.0 * c + d) for y, a, b, c, d in zip(ys, k1, k2, k3, k4))


def choose_dt(sample_dt: float, dt: float | None, max_dt: float) -> tuple[float, int]:
    """Integration step and steps per sample: the largest step ≤ ``max_dt`` that divides the sampling interval.

    Parameters
    ----------
    sample_dt : float
        Sampling interval of the recording, ms.
    dt : float or None
        Requested step, ms (must divide ``sample_dt``); None chooses.
    max_dt : float
        Largest automatic step, ms.

    Returns
    -------
    (float, int)
        The step (ms) and the number of steps per sample.
    """
    if dt is None:
        steps = max(1, math.ceil(sample_dt / max_dt - 1e-9))
        return sample_dt / steps, steps
    steps = sample_dt / float(dt)
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        hint = sample_dt / max(1, math.ceil(sample_dt / dt))
        raise ConfigurationError(f"dt = {dt} ms does not divide the sampling interval {sample_dt:.6g} ms; choose "
                                 f"sampling_interval/k (e.g. {hint:.6g}) or leave dt=None.")
    return sample_dt / round(steps), int(round(steps))
