"""Rollouts of a vector field from the shooting nodes: the core's integrator step, or the adjoint method.

Direct rollouts backpropagate through every :func:`neo_pinn.toolkit.step`; with ``adjoint`` the same
fixed-step solver runs inside ``torchdiffeq.odeint_adjoint``, whose backward pass integrates the adjoint
equations instead of storing the steps (memory flat in the horizon, more time per step).
"""

from __future__ import annotations

from typing import Callable

import torch

from neo_pinn.toolkit import step

__all__ = ["rollout", "free_run", "TORCHDIFFEQ_METHODS"]

#: the core's solver names in torchdiffeq (its ``heun2`` is Heun's method, the explicit trapezoid)
TORCHDIFFEQ_METHODS = {"euler": "euler", "heun": "heun2", "rk4": "rk4"}


def rollout(field, params: Callable[[], dict], start: torch.Tensor, current: torch.Tensor, samples: int, sub: int,
            dt: float, method: str, adjoint: bool = False, adjoint_params: tuple = (),
            limits: tuple | None = None) -> torch.Tensor:
    """States (E, N, samples + 1, S) on the sampling grid, from ``start`` (E, N, S).

    Parameters
    ----------
    field
        A vector field with ``derivatives(t, state, p, i_ext)`` (:mod:`neo_pinn_pinode.fields`).
    params : callable
        Returns the parameter mapping (name → (E, 1) tensor); called inside the solver for the adjoint.
    start : torch.Tensor
        (E, N, S) states at the nodes.
    current : torch.Tensor
        (N, ≥ 2·samples·sub + 1) injected current (pA) on the half steps.
    samples, sub : int
        Sampling intervals to cover, and integration steps per interval.
    dt : float
        Integration step, ms.
    method : {"euler", "heun", "rk4"}
    adjoint : bool
        Use ``torchdiffeq.odeint_adjoint`` (gradients for ``start`` and ``adjoint_params``).
    limits : (torch.Tensor, torch.Tensor), optional
        (S,) lowest and highest value of each state: a step that leaves them is clipped back (direct rollouts), so
        a member whose parameters make the solver unstable returns a finite, bad fit instead of NaN.
    """
    if adjoint:
        return _adjoint_rollout(field, params, start, current, samples, sub, dt, method, adjoint_params)
    p = params()
    ys = tuple(start.unbind(-1))
    out = [start]
    for k in range(samples * sub):
        j = 2 * k
        ys = step(field, method, 0.0, ys, p, current[:, j], current[:, j + 1], current[:, j + 2], dt)
        if limits is not None:
            ys = tuple(torch.clamp(y, lo, hi) for y, lo, hi in zip(ys, limits[0], limits[1]))
        if (k + 1) % sub == 0:
            out.append(torch.stack(ys, -1))
    return torch.stack(out, 2)


class _Vector(torch.nn.Module):
    """(t, y) → dy/dt for torchdiffeq: the field with the current looked up on the half-step grid."""

    def __init__(self, field, params, current: torch.Tensor, dt: float) -> None:
        super().__init__()
        self.field, self.params, self.current, self.half = field, params, current, dt / 2.0

    def forward(self, t, y):
        j = int(round(float(t.detach()) / self.half))
        j = min(max(j, 0), self.current.shape[1] - 1)
        d = self.field.derivatives(t, tuple(y.unbind(-1)), self.params(), self.current[:, j])
        return torch.stack(d, -1)


def _adjoint_rollout(field, params, start, current, samples, sub, dt, method, adjoint_params):
    from torchdiffeq import odeint_adjoint

    grid = torch.arange(samples + 1, dtype=start.dtype, device=start.device) * (dt * sub)
    func = _Vector(field, params, current, dt)
    ys = odeint_adjoint(func, start, grid, method=TORCHDIFFEQ_METHODS[method], options={"step_size": dt},
                        adjoint_params=tuple(adjoint_params))
    return ys.permute(1, 2, 0, 3)


@torch.no_grad()
def free_run(field, p: dict, start: torch.Tensor, current: float, samples: int, sub: int, dt: float, method: str,
             every: int = 1, correction: bool = False, limits: tuple | None = None):
    """The field run freely from ``start`` (E, B, S) under a constant current (pA), without gradients.

    Returns
    -------
    (torch.Tensor, torch.Tensor or None)
        States (E, B, samples // every + 1, S) every ``every`` samples, and with ``correction`` the field's
        correction current (E, B, ·) there (None for fields without one). ``limits`` as in :func:`rollout`.
    """
    ys = tuple(start.unbind(-1))
    states, corr = [start], []
    if correction:
        corr.append(field.correction(ys, current))
    for k in range(samples * sub):
        ys = step(field, method, 0.0, ys, p, current, current, current, dt)
        if limits is not None:
            ys = tuple(torch.clamp(y, lo, hi) for y, lo, hi in zip(ys, limits[0], limits[1]))
        if (k + 1) % (sub * every) == 0:
            states.append(torch.stack(ys, -1))
            if correction:
                corr.append(field.correction(ys, current))
    c = None if not correction or corr[0] is None else torch.stack(corr, 2)
    return torch.stack(states, 2), c
