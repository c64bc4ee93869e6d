"""Sensitivities of a batch of short simulations (the multiple-shooting segments), by autograd.

Every segment starts from its own node state and shares the parameters of its start. Its Jacobian —
R recorded voltages and S end states with respect to the S node states and the F free parameters — is
computed in one of two ways, both through the simulator's own fixed-step integrator
(:func:`neo_pinn.simulation.step`, which calls the model's one ``derivatives``):

* forward mode (:func:`integrate_segments`): ``torch.autograd.forward_ad`` carries the D = S + F tangent
  directions, laid out along a leading dimension, through one pass;
* reverse mode (:func:`integrate_segments_reverse`): one differentiable :func:`neo_pinn.simulation.simulate`
  pass and a backward pass vmapped over the R + S outputs (``is_grads_batched``).

Forward mode carries only the few directions (node states and free parameters) and is the default;
reverse mode, which back-propagates every recorded sample, stays available (``jacobian="reverse"``).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch.overrides import TorchFunctionMode

from neo_pinn.models.base import NeuronModel
from neo_pinn.simulation import step

__all__ = ["integrate_segments", "integrate_segments_reverse"]

_T = torch.Tensor
_BINARY = {
    _T.__add__, _T.__radd__, _T.__sub__, _T.__rsub__, _T.__mul__, _T.__rmul__, _T.__truediv__,
    _T.__rtruediv__, _T.add, _T.sub, _T.mul, _T.div, torch.add, torch.sub, torch.mul, torch.div,
    torch.true_divide, torch.where,
}


class _DualConstants(TorchFunctionMode):
    """Replace Python numbers in binary arithmetic by dual constants with an explicit zero tangent."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.dtype, self.device = dtype, device
        self.cache: dict[float, torch.Tensor] = {}

    def const(self, value: float) -> torch.Tensor:
        c = self.cache.get(value)
        if c is None:
            zero = torch.zeros((), dtype=self.dtype, device=self.device)
            c = fwAD.make_dual(torch.tensor(value, dtype=self.dtype, device=self.device), zero)
            self.cache[value] = c
        return c

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _BINARY:
            args = tuple(self.const(float(a)) if type(a) in (float, int) else a for a in args)
        return func(*args, **(kwargs or {}))


def _dual(primal: torch.Tensor, tangent: torch.Tensor | None = None) -> torch.Tensor:
    if tangent is None:
        tangent = torch.zeros_like(primal)
    return fwAD.make_dual(primal, tangent)


def integrate_segments(
    model: NeuronModel,
    method: str,
    dt: float,
    n_steps: int,
    record_every: int,
    x0: torch.Tensor,
    dx0: torch.Tensor,
    theta: torch.Tensor,
    dtheta: torch.Tensor,
    free_index: Sequence[int],
    i_half: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate Bm segments and their D tangent directions.

    Parameters
    ----------
    model : NeuronModel
    method : str
        ``"euler"``, ``"heun"`` or ``"rk4"``.
    dt : float
        Step (ms).
    n_steps : int
        Steps per segment.
    record_every : int
        Record the voltage every this many steps (the node itself is record 0).
    x0 : torch.Tensor
        Node states, (Bm, S).
    dx0 : torch.Tensor
        Their tangents, (D, Bm, S).
    theta : torch.Tensor
        Full parameter vectors, (Bm, P).
    dtheta : torch.Tensor
        Tangents of the free parameters, (D, Bm, F), in the order of ``free_index``.
    free_index : sequence of int
        Positions of the free parameters in ``theta``.
    i_half : torch.Tensor
        Stimulus on the half-step grid, (2·n_steps + 1, Bm) in pA.

    Returns
    -------
    v, dv : torch.Tensor
        Recorded voltage (Bm, R) and its tangents (D, Bm, R), R = n_steps // record_every.
    end, dend : torch.Tensor
        End states (Bm, S) and their tangents (D, Bm, S).
    """
    D = dx0.shape[0]
    Bm, S = x0.shape
    dtype, device = x0.dtype, x0.device
    names = model.param_names
    free_pos = {k: j for j, k in enumerate(free_index)}
    with warnings.catch_warnings(), fwAD.dual_level(), _DualConstants(dtype, device):
        # torch loads its forward-AD decompositions on first use through the deprecated torch.jit.script
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=DeprecationWarning)
        ys = tuple(_dual(x0[:, k].expand(D, Bm).contiguous(), dx0[..., k].contiguous()) for k in range(S))
        p: dict[str, torch.Tensor] = {}
        for k, name in enumerate(names):
            if k in free_pos:
                p[name] = _dual(theta[:, k].expand(D, Bm).contiguous(), dtheta[..., free_pos[k]].contiguous())
            elif bool((theta[:, k] == theta[0, k]).all()):
                p[name] = _dual(theta[0, k].clone())
            else:
                p[name] = _dual(theta[:, k].contiguous())
        stim = fwAD.make_dual(i_half.contiguous(), torch.zeros_like(i_half, memory_format=torch.contiguous_format))
        rec_v, rec_dv = [], []
        for j in range(n_steps):
            if j % record_every == 0:
                pv = fwAD.unpack_dual(ys[0])
                rec_v.append(pv.primal[0])
                rec_dv.append(pv.tangent)
            i_held = stim[2 * j + 1]  # the current held over the whole step (zero-order hold)
            ys = step(model, method, j * dt, ys, p, i_held, i_held, i_held, dt)
        ends = [fwAD.unpack_dual(y) for y in ys]
    v = torch.stack(rec_v, -1)
    dv = torch.stack(rec_dv, -1)
    end = torch.stack([e.primal[0] for e in ends], -1)
    dend = torch.stack([e.tangent if e.tangent is not None else torch.zeros(D, Bm, dtype=dtype, device=device)
                        for e in ends], -1)
    return v, dv, end, dend


def integrate_segments_reverse(
    model: NeuronModel,
    method: str,
    dt: float,
    n_steps: int,
    record_every: int,
    x0: torch.Tensor,
    theta: torch.Tensor,
    dtheta: torch.Tensor,
    free_index: Sequence[int],
    i_half: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same outputs as :func:`integrate_segments`, by reverse mode.

    ``dtheta`` is (Bm, F): dθ/dz of each free parameter (the node directions are the identity).
    """
    from neo_pinn.simulation import simulate

    Bm, S = x0.shape
    th = theta.detach().clone().requires_grad_(True)
    y0 = x0.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        sim = simulate(model, th, duration=n_steps * dt, dt=dt, i_ext=i_half[::2].T.contiguous(), y0=y0,
                       method=method, dtype=x0.dtype, device=x0.device, record_every=record_every,
                       compile=False, check_finite=False)
        v = sim.y[:, :-1, 0]                                              # (Bm, R)
        end = sim.y[:, -1, :]                                             # (Bm, S)
        out = torch.cat([v, end], 1)
        n_out = out.shape[1]
        eye = torch.eye(n_out, dtype=x0.dtype, device=x0.device)[:, None, :].expand(n_out, Bm, n_out)
        g_th, g_x = torch.autograd.grad(out, [th, y0], grad_outputs=eye, is_grads_batched=True)
    J = torch.cat([g_x, g_th[..., list(free_index)] * dtheta[None]], -1)    # (R + S, Bm, D)
    R = v.shape[1]
    return v.detach(), J[:R].permute(2, 1, 0), end.detach(), J[R:].permute(2, 1, 0)
