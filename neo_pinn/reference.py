"""Reference solutions with scipy's adaptive solvers (LSODA, Radau, ...), for ground truth and tests.

The same model equations as the torch simulator are used: :meth:`NeuronModel.rhs` runs on numpy arrays.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.integrate import solve_ivp

from .errors import ConfigurationError, NonFiniteDataError
from .models.base import NeuronModel

__all__ = ["reference_solution"]


def reference_solution(
    model: NeuronModel,
    theta: Any = None,
    *,
    duration: float,
    t_eval: np.ndarray | None = None,
    dt_out: float = 0.1,
    i_ext: float | Callable[[float], float] | None = None,
    y0: Any = None,
    preset: str | None = None,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_step: float = np.inf,
    t0: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve one model with :func:`scipy.integrate.solve_ivp`.

    Parameters
    ----------
    model : NeuronModel
    theta : mapping or array_like, optional
        Parameter overrides (dict) or a full vector (P,); default the preset's.
    duration : float
        Simulated time in ms.
    t_eval : numpy.ndarray, optional
        Output times in ms (default ``t0 + k·dt_out``).
    dt_out : float
        Output spacing in ms when ``t_eval`` is None.
    i_ext : float or callable, optional
        Injected current in pA, constant or a function of t (ms); default the preset's.
    y0 : array_like, optional
        Initial state (S,); default the preset's.
    preset : str, optional
    method, rtol, atol, max_step
        Passed to ``solve_ivp``.
    t0 : float
        Start time in ms.

    Returns
    -------
    t : numpy.ndarray
        Times in ms, shape (R,).
    y : numpy.ndarray
        States, shape (R, S).
    """
    theta = model.theta(dict(theta or {}), preset=preset) if (theta is None or isinstance(theta, dict)) \
        else np.asarray(theta, dtype=float)
    if theta.shape != (model.n_params,):
        raise ConfigurationError(f"theta must have shape ({model.n_params},), got {theta.shape}.")
    y0 = model.initial_state(preset) if y0 is None else np.asarray(y0, dtype=float)
    if i_ext is None:
        i_ext = model.preset(preset).i_ext
    current = i_ext if callable(i_ext) else (lambda t, c=float(i_ext): c)
    if t_eval is None:
        t_eval = t0 + dt_out * np.arange(int(round(duration / dt_out)) + 1)
    sol = solve_ivp(lambda t, y: model.rhs(t, y, theta, current(t)), (t0, t0 + duration), y0, method=method,
                    t_eval=t_eval, rtol=rtol, atol=atol, max_step=max_step)
    if not sol.success or not np.all(np.isfinite(sol.y)):
        raise NonFiniteDataError(f"solve_ivp({method}) failed for {model.name}: {sol.message}")
    return sol.t, sol.y.T
