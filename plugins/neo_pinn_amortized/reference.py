"""Test traces from an independent solver: scipy's adaptive LSODA/Radau, never the torch simulator.

The amortized estimator is trained on the fixed-step torch simulator; it is scored on traces solved here
with :func:`scipy.integrate.solve_ivp` (rtol 1e-8, atol 1e-10 by default) from the model's numpy
right-hand side, so a simulator artefact it might have learnt shows up as an error. For speed a block
of parameter sets is solved as one stacked system (LSODA's error test is a weighted max-norm, so every
trace keeps its own tolerance); a stimulus step is honoured by restarting the solver at its edges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from neo_pinn.errors import NonFiniteDataError

from .training_set import GenerativeSpec, add_noise, draw_parameters

__all__ = ["reference_traces", "reference_test_set"]


def _edges(spec: Any, duration: float) -> list[float]:
    """Times (ms) in (0, duration) where a stimulus spec jumps (its protocol edges)."""
    if spec is None:
        return []
    p = dict(spec.params)
    if spec.kind in ("step", "ramp"):
        edges = [p.get("start", 0.0), p.get("stop", math.inf)]
    elif spec.kind == "pulses":
        k_max = int(min(p.get("n", math.inf), math.ceil((duration - p["start"]) / p["period"]) + 1))
        edges = [p["start"] + k * p["period"] + w for k in range(max(k_max, 0)) for w in (0.0, p["width"])]
    else:
        edges = []
    return sorted(e for e in edges if 0.0 < e < duration)


def reference_traces(spec: GenerativeSpec, free_values: np.ndarray, *, method: str = "LSODA", rtol: float = 1e-8,
                     atol: float = 1e-10, block: int = 64) -> np.ndarray:
    """Noise-free state-0 traces (N, T) of the parameter sets ``free_values`` (N, F), solved with solve_ivp.

    Parameters
    ----------
    spec : GenerativeSpec
        Model, preset (fixed parameters, initial state, current) and protocol of the traces.
    free_values : numpy.ndarray
        Free parameters (N, F) in ``spec.free`` order, canonical units.
    method, rtol, atol
        Passed to :func:`scipy.integrate.solve_ivp` ("LSODA" or "Radau").
    block : int
        Parameter sets solved as one stacked system.

    Returns
    -------
    numpy.ndarray
        (N, T) float64 at the protocol's sample times.
    """
    model = spec.neuron_model()
    free_values = np.atleast_2d(np.asarray(free_values, dtype=float))
    theta = np.tile(spec.base_theta(), (free_values.shape[0], 1))
    for k, name in enumerate(spec.free):
        theta[:, model.param_index(name)] = free_values[:, k]
    proto = spec.protocol
    t_eval = proto.times()
    stim = proto.current()
    const = model.preset(spec.preset).i_ext if stim is None else None
    edges = ([-spec.settle_ms] if spec.settle_ms > 0 else []) + [0.0] + _edges(stim, proto.duration_ms) \
        + [proto.duration_ms]  # a settling piece before the protocol holds its current at t = 0
    y0 = model.initial_state(spec.preset)
    S = model.n_states
    out = np.empty((theta.shape[0], t_eval.size))
    for b0 in range(0, theta.shape[0], block):
        th = theta[b0:b0 + block]
        B = th.shape[0]
        y = np.tile(y0, B)
        pieces = []
        for a, b in zip(edges[:-1], edges[1:]):
            eps = 1e-9 * (b - a)  # a piece's current is read inside it, so a step is applied exactly

            def rhs(t, yy, th=th, B=B, a=a, b=b, eps=eps):
                tt = max(min(max(t, a + eps), b - eps), 0.0)  # settling: the current at the protocol's start
                i_ext = const if stim is None else float(stim(np.array([tt]))[0])
                return model.rhs(t, yy.reshape(B, S), th, i_ext).reshape(-1)

            inside = (t_eval >= a) & ((t_eval <= b) if b == edges[-1] else (t_eval < b))
            sol = solve_ivp(rhs, (a, b), y, method=method, t_eval=np.r_[t_eval[inside], b], rtol=rtol, atol=atol)
            if not sol.success or not np.all(np.isfinite(sol.y)):
                raise NonFiniteDataError(f"solve_ivp({method}) failed for {model.name}: {sol.message}")
            pieces.append(sol.y[:, :-1])
            y = sol.y[:, -1]
        u = np.concatenate(pieces, 1).reshape(B, S, -1)[:, 0, :]
        out[b0:b0 + B] = u[:, : t_eval.size]
    return out


def reference_test_set(spec: GenerativeSpec, n: int, seed: int = 12345, **solver: Any
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` noisy reference traces with parameters from the spec's priors.

    Returns
    -------
    traces : numpy.ndarray
        (n, T) float32: reference solution plus the spec's noise.
    truth : numpy.ndarray
        (n, P) float64: the targets (``spec.target_names`` order), canonical units.
    clean : numpy.ndarray
        (n, T) float64: the noise-free reference traces.
    """
    rng = np.random.default_rng(seed)
    free = draw_parameters(spec.priors, n, rng)
    clean = reference_traces(spec, free, **solver)
    noise = draw_parameters(spec.noise_priors, n, rng)
    traces = add_noise(clean, spec.noise, noise, rng).astype(np.float32)
    truth = np.concatenate([free, noise if spec.estimate_noise else noise[:, :0]], 1)
    return traces, truth, clean
