"""The screened start: parameters from the integral form of the model's equations along the recording.

Before any rollout, each member's free parameters are fitted to the physics residual of the data itself:
with the hidden states driven by the recorded voltage (or observed), every state's equation integrated over
short intervals (trapezoid) must reproduce the state's change over that interval. The integral form never
differentiates the noisy voltage. The hidden states are driven again with the new parameters and the fit is
repeated (``screen_rounds``). Far starts (0.25×–4×) that would make the first rollouts meaningless begin the
shooting near the answer instead.

The drive starts from a guess (the quasi-steady state at the first sample); until the hidden states have
forgotten it (:func:`settled`), the residual measures the guess, not the parameters, and that stretch is left
out. Kept in, it pulled the leak to its bound and the other conductances far low.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neo_pinn.toolkit import LogLinear, driven_hidden_states

__all__ = ["screen_starts", "drive_hidden", "settled"]


def _integral_residual(model, theta: torch.Tensor, y: torch.Tensor, current: torch.Tensor, dt: float, lag: int,
                       scale: torch.Tensor) -> torch.Tensor:
    """Per member, the mean squared integral residual (E,) over intervals of ``lag`` samples, each state's
    residual in units of ``scale`` (S,) (the spread of its change over an interval)."""
    p = {name: theta[:, k:k + 1] for k, name in enumerate(model.param_names)}
    f = torch.stack(model.derivatives(0.0, tuple(y.unbind(-1)), p, current), -1)  # (E, T, S)
    area = torch.cumsum(0.5 * dt * (f[:, 1:] + f[:, :-1]), 1)
    area = torch.cat([torch.zeros_like(area[:, :1]), area], 1)
    r = (y[:, lag:] - y[:, :-lag]) - (area[:, lag:] - area[:, :-lag])
    r = r / scale
    return (r * r).mean((1, 2))


def screen_starts(layout, sweeps, observed: np.ndarray, starts: np.ndarray, *, rounds: int, steps: int,
                  interval_ms: float, max_dt: float, dtype=torch.float64, device="cpu") -> tuple[np.ndarray, list]:
    """Screened starts (E, F) and the sweeps with their hidden-state guesses driven at them.

    Parameters
    ----------
    layout : neo_pinn_pinode.trainer.Layout
    sweeps : list of SweepData
    observed : numpy.ndarray
        (S,) bool, the observed states.
    starts : numpy.ndarray
        (E, F) starting values (canonical units).
    rounds, steps : int
        Rounds of (drive the hidden states, fit the parameters) and Adam steps per round.
    interval_ms : float
        Length of the integration intervals, ms.
    max_dt : float
        Step of the hidden-state drive, ms.
    """
    model = layout.model
    coords = LogLinear(layout.free, dtype=dtype, device=device)
    z = torch.tensor(coords.to_z(starts), dtype=dtype, device=device).requires_grad_(True)
    theta0 = torch.tensor(layout.theta, dtype=dtype, device=device)
    idx = torch.tensor(layout.free_index, device=device)
    E = starts.shape[0]
    current = starts
    for _ in range(max(1, rounds)):
        sweeps = [drive_hidden(layout, sw, observed, current, max_dt) for sw in sweeps]
        data = []
        for sw in sweeps:
            dt = float(np.median(np.diff(sw.t)))
            lag = max(1, int(round(interval_ms / dt)))
            if sw.t.size <= lag:
                continue
            y = torch.tensor(sw.guess, dtype=dtype, device=device)
            cur = torch.tensor(sw.i_ext, dtype=dtype, device=device).expand(E, -1)
            skip = settled(model, torch.tensor(_full_theta(layout, current), dtype=dtype, device=device), y, cur,
                           observed, dt)
            if sw.t.size - skip > 2 * lag:  # the drive's start is a guess: leave out the time it takes to forget it
                y, cur = y[:, skip:], cur[:, skip:]
            change = (y[:, lag:] - y[:, :-lag]).flatten(0, 1)
            scale = change.std(0).clamp_min(1e-9)
            data.append((y, cur, dt, lag, scale))
        if not data:
            break
        opt = torch.optim.Adam([z], lr=0.05)
        for it in range(steps):
            opt.zero_grad(set_to_none=True)
            th = theta0.expand(E, -1).clone()
            th[:, idx] = coords.theta(z)
            loss = sum(_integral_residual(model, th, *d) for d in data)
            torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum().backward()
            torch.nan_to_num_(z.grad, nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
            coords.project_(z)
        current = coords.to_theta(z.detach().cpu().numpy())
    return current, sweeps


def _full_theta(layout, free_values: np.ndarray) -> np.ndarray:
    """(E, P) every parameter, the free ones at ``free_values`` (E, F)."""
    thetas = np.repeat(layout.theta[None], free_values.shape[0], 0)
    thetas[:, layout.free_index] = free_values
    return thetas


@torch.no_grad()
def settled(model, theta: torch.Tensor, y: torch.Tensor, current: torch.Tensor, observed: np.ndarray, dt: float,
            memory: float = 1e-3) -> int:
    """First sample where every member's driven hidden states have forgotten their starting guess to ``memory``.

    A driven state relaxes at the rate ``−∂f_s/∂s`` along the recording; what is left of an error in its start
    after time t is ``exp(−∫ rate dt)``. ``theta`` (E, P), ``y`` (E, T, S) the driven trajectories, ``current``
    (E, T) pA, ``dt`` the sampling interval (ms). Returns 0 when every state is observed, T when never settled.
    """
    hidden = [s for s in range(y.shape[-1]) if not observed[s]]
    if not hidden:
        return 0
    p = {name: theta[:, k:k + 1] for k, name in enumerate(model.param_names)}
    base = model.derivatives(0.0, tuple(y.unbind(-1)), p, current)
    step = 1e-6
    need = math.log(1.0 / memory)
    first = 0
    for s in hidden:
        bumped = list(y.unbind(-1))
        bumped[s] = bumped[s] + step
        rate = -(model.derivatives(0.0, tuple(bumped), p, current)[s] - base[s]) / step  # (E, T), 1/ms
        forgotten = torch.cumsum(torch.nan_to_num(rate, nan=0.0).clamp_min(0.0), 1) * dt
        done = (forgotten >= need).all(0)
        first = max(first, int(torch.argmax(done.int())) if bool(done.any()) else y.shape[1])
    return first


def drive_hidden(layout, sw, observed: np.ndarray, free_values: np.ndarray, max_dt: float):
    """The sweep with its unobserved hidden states driven by the recorded voltage at ``free_values`` (E, F)."""
    from dataclasses import replace

    model = layout.model
    thetas = _full_theta(layout, free_values)
    guess = sw.guess.copy()
    if model.n_states > 1:
        hidden = driven_hidden_states(model, thetas, sw.t, sw.observed[:, 0], sw.i_ext, layout.gates, max_dt=max_dt)
        for s in range(1, model.n_states):
            if not observed[s]:
                guess[:, :, s] = hidden[:, :, s - 1]
    return replace(sw, guess=guess)
