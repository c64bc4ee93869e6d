"""Free simulation of one parameter set on recorded sweeps, under their sampled stimulus (zero-order hold)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..models.base import NeuronModel
from ..trace import Trace
from .integrators import choose_dt
from .simulator import simulate

__all__ = ["simulate_traces"]


def simulate_traces(model: NeuronModel, theta: np.ndarray, traces: Sequence[Trace], y0: np.ndarray, *,
                    max_dt: float = 0.05, method: str = "rk4", device: str = "cpu") -> list[np.ndarray]:
    """Free float64 simulation of one parameter set on several recorded sweeps, under their sampled stimulus.

    Sweeps of the same length and sampling interval run as one batch of :func:`simulate`, each on its own time from
    its start (the models are autonomous; the ga backend batches sweeps the same way). Each
    stimulus sample is held until the next (zero-order hold, as the amplifier applied it and as every backend
    does); the step is the largest divisor of the sampling interval ≤ ``max_dt`` (:func:`choose_dt`).

    Parameters
    ----------
    model : NeuronModel
    theta : numpy.ndarray
        Full parameter vector (P,), canonical units.
    traces : sequence of Trace
    y0 : numpy.ndarray
        Initial state per trace, (n_traces, S).
    max_dt : float
        Largest integration step, ms.
    method, device
        Passed to :func:`simulate`.

    Returns
    -------
    list of numpy.ndarray
        States (T, S) on each trace's samples; a diverged simulation holds NaN/inf (never raises).
    """
    out: list[np.ndarray | None] = [None] * len(traces)
    groups: dict[tuple, list[int]] = {}
    for k, tr in enumerate(traces):
        groups.setdefault((tr.t.size, round(tr.dt, 9)), []).append(k)
    for (n, _), idx in groups.items():
        first = traces[idx[0]]
        dt, r = choose_dt(first.dt, None, max_dt)
        n_steps = (n - 1) * r
        tk = dt * np.arange(n_steps + 1)  # from each sweep's own start, as the ga backend batches its sweeps
        stim = np.stack([traces[k].held_current(traces[k].t[0] + tk) for k in idx])
        with np.errstate(all="ignore"):
            sim = simulate(model, np.asarray(theta, dtype=float), duration=n_steps * dt, dt=dt, i_ext=stim,
                           y0=np.asarray(y0, dtype=float)[idx], method=method, dtype=torch.float64, device=device,
                           record_every=r, t0=0.0, compile=False, check_finite=False)
        y = sim.y.detach().cpu().numpy()
        for j, k in enumerate(idx):
            out[k] = y[j, :n]
    return out
