"""Reference solutions with scipy's adaptive solvers (LSODA, Radau, ...), for ground truth and tests.

The same model equations as the torch simulator are used: :meth:`NeuronModel.rhs` runs on numpy arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

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
    breakpoints: Sequence[float] = (),
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
    breakpoints : sequence of float
        Times (ms) where ``i_ext`` jumps (the edges of a protocol step). The solver restarts there and
        reads the current of each piece from its inside, so a step is applied exactly — never smoothed
        or shifted by the adaptive step size.

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
    t_eval = np.asarray(t_eval, dtype=float)
    t_end = t0 + duration
    edges = [t0] + sorted({float(b) for b in breakpoints if t0 < float(b) < t_end}) + [t_end]
    ts, ys = [], []
    y = np.asarray(y0, dtype=float)
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == len(edges) - 2
        inner = (t_eval >= a) & ((t_eval <= b) if last else (t_eval < b))
        eps = 1e-9 * (b - a)

        def piece(t, yy, a=a, b=b, eps=eps):
            return model.rhs(t, yy, theta, current(min(max(t, a + eps), b - eps)))

        sol = solve_ivp(piece, (a, b), y, method=method, t_eval=np.r_[t_eval[inner], b] if not last else t_eval[inner],
                        rtol=rtol, atol=atol, max_step=max_step, dense_output=False)
        if not sol.success or not np.all(np.isfinite(sol.y)):
            raise NonFiniteDataError(f"solve_ivp({method}) failed for {model.name}: {sol.message}")
        n_in = int(inner.sum())
        ts.append(sol.t[:n_in])
        ys.append(sol.y.T[:n_in])
        if not last:
            y = sol.y[:, -1]
    return np.concatenate(ts), np.concatenate(ys, 0)
