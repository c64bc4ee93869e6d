"""Unconstrained coordinates for the free parameters and the node states.

Parameters: ``z = log θ`` for log-scale parameters (a step is clipped to ``[log lo, log hi]``) and a
scaled logit ``z = logit((θ − lo)/(hi − lo))`` otherwise, so every estimate stays inside its bounds.
States: the voltage and any unbounded state as they are; gating variables through a logistic, so they
stay in (0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neo_pinn.models.base import gate_mask
from neo_pinn.problem import EstimationProblem

__all__ = ["ParamTransform", "StateTransform", "gate_mask"]


class ParamTransform:
    """Map between free-parameter values θ (canonical units) and search coordinates z."""

    def __init__(self, problem: EstimationProblem, dtype: torch.dtype, device: torch.device) -> None:
        lo = np.array([f.bounds[0] for f in problem.free], dtype=float)
        hi = np.array([f.bounds[1] for f in problem.free], dtype=float)
        self.log = torch.tensor([f.log_scale for f in problem.free], device=device)
        self.lo_np, self.hi_np, self.log_np = lo, hi, np.array([f.log_scale for f in problem.free])
        kw = dict(dtype=dtype, device=device)
        self.lo, self.hi = torch.tensor(lo, **kw), torch.tensor(hi, **kw)
        tiny = torch.finfo(dtype).tiny
        self.zlo = torch.where(self.log, torch.log(self.lo.clamp_min(tiny)), torch.full_like(self.lo, -np.inf))
        self.zhi = torch.where(self.log, torch.log(self.hi.clamp_min(tiny)), torch.full_like(self.hi, np.inf))

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        """z of values ``theta`` (..., F)."""
        theta = np.clip(np.asarray(theta, dtype=float), self.lo_np, self.hi_np)
        frac = np.clip((theta - self.lo_np) / (self.hi_np - self.lo_np), 1e-6, 1 - 1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.log_np, np.log(np.maximum(theta, 1e-300)), np.log(frac / (1 - frac)))

    def from_z(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """θ and dθ/dz (both shaped like ``z``)."""
        ez = torch.exp(torch.where(self.log, z, torch.zeros_like(z)))
        s = torch.sigmoid(z)
        width = self.hi - self.lo
        theta = torch.where(self.log, ez, self.lo + width * s)
        jac = torch.where(self.log, ez, width * s * (1 - s))
        return theta, jac

    def clip(self, z: torch.Tensor) -> torch.Tensor:
        """Project z into the bounds (log-scale parameters; logit ones are bounded by construction)."""
        z = torch.maximum(torch.minimum(z, self.zhi), self.zlo)
        return z.clamp(-40.0, 40.0)


class StateTransform:
    """Node-state coordinates u: identity for the voltage and unbounded states, logit for gates.

    Gate logits are kept in ``[-U_MAX, U_MAX]`` (a gate in [6e-6, 1 − 6e-6]) and one step moves a logit
    by at most ``STEP_GATE``, other states by at most ``STEP_SCALE`` times their typical size, so that a
    gate cannot jump into the flat, saturated part of the logistic in one Gauss–Newton step.
    """

    U_MAX = 12.0
    STEP_GATE = 3.0
    STEP_SCALE = 2.0

    def __init__(self, gates: np.ndarray, device: torch.device, scales: Sequence[float] | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        self.gates = torch.tensor(np.asarray(gates, dtype=bool), device=device)
        sc = np.ones(len(gates)) if scales is None else np.asarray(scales, dtype=float)
        self.max_step = torch.tensor(np.where(gates, self.STEP_GATE, self.STEP_SCALE * sc), dtype=dtype, device=device)

    def to_u(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.clamp(1e-6, 1 - 1e-6)
        return self.clip(torch.where(self.gates, torch.log(xc / (1 - xc)), x))

    def clip(self, u: torch.Tensor) -> torch.Tensor:
        """Keep gate logits inside ``[-U_MAX, U_MAX]``."""
        return torch.where(self.gates, u.clamp(-self.U_MAX, self.U_MAX), u)

    def step(self, u: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """``u + du`` with the step limited per component and gate logits kept in range."""
        du = torch.maximum(torch.minimum(du, self.max_step), -self.max_step)
        return self.clip(u + du)

    def from_u(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x and dx/du (shaped like ``u``)."""
        s = torch.sigmoid(u)
        return torch.where(self.gates, s, u), torch.where(self.gates, s * (1 - s), torch.ones_like(u))
