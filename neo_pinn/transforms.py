"""Coordinates for free parameters within their bounds: the one implementation of each transform.

Searches and optimisers work better in coordinates where a step means the same everywhere. Three maps
of the free parameters θ (canonical units) are provided, each built from the problem's free parameters
(bounds and log-scale flags):

* :class:`UnitCube` — ``x ∈ [0, 1]``: log-uniform across the bounds for log-scale parameters, uniform
  otherwise (evolutionary searches, Latin hypercubes, CMA-ES);
* :class:`LogLogit` — unbounded ``z``: ``log θ`` for log-scale parameters (projected into the log-bounds),
  a scaled logit of the position within the bounds otherwise; with the Jacobian dθ/dz (Gauss–Newton);
* :class:`LogLinear` — ``log θ`` for log-scale parameters, ``θ / (a quarter of the span)`` otherwise,
  projected back into the bounds after each step (first-order optimisers such as Adam).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["UnitCube", "LogLogit", "LogLinear", "free_bounds"]


def free_bounds(free) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, log_scale) arrays (F,) of free parameters.

    Parameters
    ----------
    free : EstimationProblem or sequence of FreeParameter
        Anything with ``.free`` (a problem) or the free parameters themselves.
    """
    params: Sequence = getattr(free, "free", free)
    lo = np.array([f.bounds[0] for f in params], dtype=float)
    hi = np.array([f.bounds[1] for f in params], dtype=float)
    log = np.array([f.log_scale for f in params], dtype=bool)
    return lo, hi, log


class UnitCube:
    """θ ↔ x ∈ [0, 1]^F: ``x = (log θ − log lo)/(log hi − log lo)`` (log scale) or ``(θ − lo)/(hi − lo)``.

    Parameters
    ----------
    free : EstimationProblem or sequence of FreeParameter
    """

    def __init__(self, free) -> None:
        self.lo, self.hi, self.log = free_bounds(free)
        self.a = np.where(self.log, np.log(np.where(self.log, self.lo, 1.0)), self.lo)
        self.b = np.where(self.log, np.log(np.where(self.log, self.hi, 1.0)), self.hi)

    def to_theta(self, x: np.ndarray) -> np.ndarray:
        """θ (..., F) of unit coordinates ``x`` (..., F), clipped into the bounds."""
        u = self.a + np.clip(x, 0.0, 1.0) * (self.b - self.a)
        return np.clip(np.where(self.log, np.exp(u), u), self.lo, self.hi)

    def to_x(self, theta: np.ndarray) -> np.ndarray:
        """Unit coordinates (..., F) of values ``theta`` (..., F)."""
        theta = np.clip(np.asarray(theta, dtype=float), self.lo, self.hi)
        u = np.where(self.log, np.log(np.maximum(theta, 1e-300)), theta)
        return np.clip((u - self.a) / (self.b - self.a), 0.0, 1.0)


class LogLogit:
    """θ ↔ unbounded z: ``z = log θ`` (log scale; kept inside the log-bounds by :meth:`clip`) or
    ``z = logit((θ − lo)/(hi − lo))`` (bounded by construction), with dθ/dz for Gauss–Newton steps.

    Parameters
    ----------
    free : EstimationProblem or sequence of FreeParameter
    dtype : torch.dtype
    device : torch.device or str
    """

    def __init__(self, free, dtype: torch.dtype = torch.float64, device="cpu") -> None:
        lo, hi, log = free_bounds(free)
        self.lo_np, self.hi_np, self.log_np = lo, hi, log
        kw = dict(dtype=dtype, device=device)
        self.log = torch.tensor(log, device=device)
        self.lo, self.hi = torch.tensor(lo, **kw), torch.tensor(hi, **kw)
        tiny = torch.finfo(dtype).tiny
        self.zlo = torch.where(self.log, torch.log(self.lo.clamp_min(tiny)), torch.full_like(self.lo, -np.inf))
        self.zhi = torch.where(self.log, torch.log(self.hi.clamp_min(tiny)), torch.full_like(self.hi, np.inf))

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        """z (..., F) of values ``theta`` (..., F) (numpy)."""
        theta = np.clip(np.asarray(theta, dtype=float), self.lo_np, self.hi_np)
        frac = np.clip((theta - self.lo_np) / (self.hi_np - self.lo_np), 1e-6, 1 - 1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.log_np, np.log(np.maximum(theta, 1e-300)), np.log(frac / (1 - frac)))

    def from_z(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """θ and dθ/dz, both shaped like ``z`` (torch, differentiable)."""
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


class LogLinear:
    """θ ↔ z: ``z = log θ`` (log scale) or ``z = θ / width`` with ``width`` a quarter of the bounds' span,
    and the bounds in those coordinates (``zlo``, ``zhi``) for projection after each optimiser step.

    The map is smooth, so projecting z (:meth:`project_`) never cuts a gradient.

    Parameters
    ----------
    free : EstimationProblem or sequence of FreeParameter
    dtype : torch.dtype
        Of the torch side (:meth:`theta`, :meth:`project_`).
    device : torch.device or str
    """

    def __init__(self, free, dtype: torch.dtype = torch.float64, device="cpu") -> None:
        lo, hi, self.log = free_bounds(free)
        self.width = np.where(self.log, 1.0, (hi - lo) / 4.0)
        self.zlo = np.where(self.log, np.log(np.maximum(lo, 1e-300)), lo / self.width)
        self.zhi = np.where(self.log, np.log(np.maximum(hi, 1e-300)), hi / self.width)
        kw = dict(dtype=dtype, device=device)
        self.t_log = torch.tensor(self.log, device=device)
        self.t_width = torch.tensor(self.width, **kw)
        self.t_zlo, self.t_zhi = torch.tensor(self.zlo, **kw), torch.tensor(self.zhi, **kw)

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        """z (..., F) of values ``theta`` (numpy), clipped into the bounds."""
        z = np.where(self.log, np.log(np.maximum(theta, 1e-300)), theta / self.width)
        return np.clip(z, self.zlo, self.zhi)

    def to_theta(self, z: np.ndarray) -> np.ndarray:
        """θ of coordinates ``z`` (numpy)."""
        return np.where(self.log, np.exp(z), z * self.width)

    def theta(self, z: torch.Tensor) -> torch.Tensor:
        """θ of coordinates ``z`` (torch, differentiable)."""
        return torch.where(self.t_log, torch.exp(z), z * self.t_width)

    def project_(self, z: torch.Tensor) -> None:
        """Clip ``z`` into the bounds in place (after an optimiser step)."""
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.t_zhi), self.t_zlo))
