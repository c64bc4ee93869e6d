"""What training sees: the shooting nodes of every sweep, their observation windows and currents, and the scales.

A node is a sample where a rollout starts. Its window holds the observed states for the next ``horizon``
samples (NaN past the sweep's end or where a state is not observed) and the injected current on the
integration grid's half steps (what Euler, Heun and RK4 ask for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError

from .fields import Scales

__all__ = ["SweepData", "Nodes", "build_nodes", "data_scales", "sampling_interval", "with_correction_gate",
           "GATE_GUESS", "GATE_SPREAD"]


@dataclass(frozen=True)
class SweepData:
    """One sweep as training sees it.

    Attributes
    ----------
    t, i_ext : numpy.ndarray
        (T,) times (ms) and injected current (pA).
    observed : numpy.ndarray
        (T, S) the observed states (canonical units); columns of unobserved states are NaN.
    guess : numpy.ndarray
        (E, T, S) each member's starting trajectory: the observed states, and for the others e.g. the hidden
        states driven by the recorded voltage.
    """

    t: np.ndarray
    i_ext: np.ndarray
    observed: np.ndarray
    guess: np.ndarray


@dataclass(frozen=True)
class Nodes:
    """The shooting nodes of all sweeps, stacked.

    Attributes
    ----------
    sweep, index : numpy.ndarray
        (N,) the sweep and sample of each node.
    obs : torch.Tensor
        (N, H+1, S) observed states over each node's window (NaN: not observed / past the end).
    current : torch.Tensor
        (N, 2·H·sub + 1) injected current (pA) on the half steps of the integration grid.
    next_node : numpy.ndarray
        (N,) the next node of the same sweep, −1 for the last.
    spacing, horizon, sub : int
        Samples between nodes, the longest rollout (samples) and integration steps per sample.
    dt : float
        Integration step, ms.
    """

    sweep: np.ndarray
    index: np.ndarray
    obs: torch.Tensor
    current: torch.Tensor
    next_node: np.ndarray
    spacing: int
    horizon: int
    sub: int
    dt: float


def sampling_interval(sweeps: list[SweepData]) -> float:
    """The common sampling interval of the sweeps, ms (refused when they differ or are irregular)."""
    steps = []
    for sw in sweeps:
        d = np.diff(sw.t)
        if d.size == 0 or np.ptp(d) > 1e-6 * max(1.0, float(np.median(d))):
            raise ConfigurationError("pinode needs regularly sampled sweeps with at least two samples.")
        steps.append(float(np.median(d)))
    if np.ptp(steps) > 1e-9 * max(steps):
        raise ConfigurationError(f"The sweeps are sampled at different intervals ({sorted(set(steps))} ms); fit them "
                                 "separately or resample them to one rate.")
    return steps[0]


def build_nodes(sweeps: list[SweepData], spacing: int, horizon: int, sub: int, dt: float,
                dtype: torch.dtype, device) -> Nodes:
    """Nodes every ``spacing`` samples of each sweep (none on its last sample), windows of ``horizon`` samples."""
    S = sweeps[0].observed.shape[1]
    sweep_of, index, obs, cur, nxt = [], [], [], [], []
    half = dt / 2.0
    for j, sw in enumerate(sweeps):
        T = sw.t.size
        first = len(index)
        starts = np.arange(0, max(T - 1, 1), spacing)
        for n, k in enumerate(starts):
            window = np.full((horizon + 1, S), np.nan)
            stop = min(T, k + horizon + 1)
            window[:stop - k] = sw.observed[k:stop]
            times = sw.t[k] + half * np.arange(2 * horizon * sub + 1)
            cur.append(np.interp(times, sw.t, sw.i_ext))
            obs.append(window)
            sweep_of.append(j)
            index.append(int(k))
            nxt.append(first + n + 1 if n + 1 < starts.size else -1)
    kw = dict(dtype=dtype, device=device)
    return Nodes(sweep=np.array(sweep_of), index=np.array(index), obs=torch.tensor(np.array(obs), **kw),
                 current=torch.tensor(np.array(cur), **kw), next_node=np.array(nxt), spacing=int(spacing),
                 horizon=int(horizon), sub=int(sub), dt=float(dt))


def _spread(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x)) if x.size > 1 else 0.0


#: the guess of a correction gate, and its scale (a gate's centre and spread over [0, 1])
GATE_GUESS, GATE_SPREAD = 0.5, 0.25


def with_correction_gate(sweeps: list[SweepData], observed: np.ndarray) -> tuple[list[SweepData], np.ndarray]:
    """The sweeps and observed-state mask with the gate of a ``"gated"`` correction appended as a last, latent
    state (NaN observed, guessed at 0.5 — half open — everywhere)."""
    out = []
    for sw in sweeps:
        obs = np.concatenate([sw.observed, np.full((sw.t.size, 1), np.nan)], 1)
        guess = np.concatenate([sw.guess, np.full(sw.guess.shape[:2] + (1,), GATE_GUESS)], 2)
        out.append(SweepData(t=sw.t, i_ext=sw.i_ext, observed=obs, guess=guess))
    return out, np.append(observed, False)


def data_scales(sweeps: list[SweepData], current_gain: float, n_model: int | None = None,
                gate_ms: float = 50.0) -> Scales:
    """Centres and spreads of each state (observed where observed, else member 0's guess), of its derivative,
    of the current, and the membrane current's spread (``current_gain``: change of dV/dt per pA).

    States past the model's ``n_model`` (the gate of a ``"gated"`` correction: guessed, not driven) take a
    gate's centre and spread, and a derivative spread of ``GATE_SPREAD / gate_ms``.
    """
    S = sweeps[0].observed.shape[1]
    mean, spread, rate = np.zeros(S), np.ones(S), np.ones(S)
    n_model = S if n_model is None else n_model
    for s in range(n_model, S):
        mean[s], spread[s], rate[s] = GATE_GUESS, GATE_SPREAD, GATE_SPREAD / gate_ms
    for s in range(n_model):
        seen = np.isfinite(sweeps[0].observed[:, s]).any()
        cols = [sw.observed[:, s] if seen else sw.guess[0, :, s] for sw in sweeps]
        values = np.concatenate(cols)
        mean[s] = float(np.nanmean(values))
        spread[s] = max(_spread(values), 1e-6 * max(1.0, abs(mean[s])))
        slopes = np.concatenate([np.diff(c) / np.diff(sw.t) for c, sw in zip(cols, sweeps)])
        rate[s] = max(_spread(slopes), 1e-9)
    current = np.concatenate([sw.i_ext for sw in sweeps])
    gain = abs(float(current_gain))
    return Scales(mean=mean, spread=spread, rate=rate, current_mean=float(np.mean(current)),
                  current_spread=max(_spread(current), 1.0),
                  membrane_current=float(rate[0] / gain) if gain > 0 else 1.0)
