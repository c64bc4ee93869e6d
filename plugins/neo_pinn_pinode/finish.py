"""The single-shooting finish of the model-based fields: Levenberg–Marquardt on one rollout per sweep.

Multiple shooting leaves small gaps between its rollouts and the parameters trade against them; sloppy
directions (a leak conductance next to the spike currents) also make first-order optimisers crawl. With the
model alone as the field the unknowns are few (the free parameters and each sweep's first state), so a
Gauss–Newton step is cheap: every member's Jacobian is taken by forward differences, all perturbed copies
integrated as one batch (the rollout costs about the same for 4 or 40 members on a CPU, where the Python
overhead of the steps dominates). The optimum is the single-shooting least-squares fit — the
maximum-likelihood fit under white noise — and ``(JᵀJ)⁻¹`` at it gives the local (Laplace) uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = ["LMResult", "levenberg_marquardt"]


@dataclass(frozen=True)
class LMResult:
    """What :func:`levenberg_marquardt` returns (per member e of E, K unknowns, N residuals).

    Attributes
    ----------
    x : torch.Tensor
        (E, K) the unknowns at the end.
    cost : numpy.ndarray
        (E,) sum of squared residuals there.
    covariance : numpy.ndarray
        (E, K, K) ``s² (JᵀJ)⁻¹`` with ``s² = cost / (N − K)`` (NaN where singular).
    iterations : int
    costs : list of float
        The members' summed cost after each iteration.
    """

    x: torch.Tensor
    cost: np.ndarray
    covariance: np.ndarray
    iterations: int
    costs: list


def _jacobian(residuals: Callable, x: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals (E, N) at ``x`` (E, K) and their forward-difference Jacobian (E, N, K), in one batched call."""
    E, K = x.shape
    pert = x.unsqueeze(1) + step * torch.eye(K, dtype=x.dtype, device=x.device).unsqueeze(0).expand(E, -1, -1)
    r_all = residuals(torch.cat([x.unsqueeze(1), pert], 1).reshape(E * (K + 1), K)).reshape(E, K + 1, -1)
    r0 = r_all[:, 0]
    return r0, ((r_all[:, 1:] - r0.unsqueeze(1)) / step).transpose(1, 2)


@torch.no_grad()
def levenberg_marquardt(residuals: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor,
                        project: Callable[[torch.Tensor], torch.Tensor], *, max_iter: int, step: float = 1e-6,
                        tol: float = 1e-10) -> LMResult:
    """Minimise ``Σ residuals(x)²`` for every member independently, from ``x0`` (E, K).

    Parameters
    ----------
    residuals : callable
        (B, K) → (B, N) for any batch B, without gradients; non-finite residuals count as a rejected step.
    x0 : torch.Tensor
        (E, K) starting unknowns (dimensionless: log parameters, states in units of their spread).
    project : callable
        (B, K) → (B, K) into the feasible set (bounds, gates in [0, 1]).
    max_iter : int
        Jacobian evaluations at most.
    step : float
        Forward-difference step in the unknowns' units.
    tol : float
        Stop when no member's cost falls by more than ``tol`` (relative) in an iteration.
    """
    x = project(x0.clone())
    lam = torch.full((x.shape[0],), 1e-3, dtype=x.dtype, device=x.device)
    r, jac = _jacobian(residuals, x, step)
    cost = torch.nan_to_num((r * r).sum(1), nan=float("inf"))
    history, it = [float(cost.sum())], 0
    for it in range(1, max(1, int(max_iter)) + 1):
        a = jac.transpose(1, 2) @ jac
        g = jac.transpose(1, 2) @ r.unsqueeze(-1)
        damp = torch.diag_embed(torch.diagonal(a, dim1=1, dim2=2).clamp_min(1e-12)) * lam[:, None, None]
        delta = torch.linalg.solve(a + damp, -g).squeeze(-1)
        trial = project(x + torch.nan_to_num(delta))
        r_t = residuals(trial)
        cost_t = torch.nan_to_num((r_t * r_t).sum(1), nan=float("inf"))
        better = cost_t < cost
        gain = torch.where(better, (cost - cost_t) / cost.clamp_min(1e-300), torch.zeros_like(cost))
        lam = torch.where(better, (lam / 3.0).clamp_min(1e-9), lam * 4.0)
        x = torch.where(better[:, None], trial, x)
        if bool(better.any()):
            r, jac = _jacobian(residuals, x, step)
            cost = torch.nan_to_num((r * r).sum(1), nan=float("inf"))
        history.append(float(cost.sum()))
        if bool(better.any()) and float(gain.max()) < tol or bool((lam > 1e8).all()):
            break
    n, k = r.shape[1], x.shape[1]
    a = (jac.transpose(1, 2) @ jac).cpu().numpy()
    s2 = cost.cpu().numpy() / max(n - k, 1)
    cov = np.full_like(a, np.nan)
    for e in range(a.shape[0]):
        try:
            cov[e] = s2[e] * np.linalg.inv(a[e])
        except np.linalg.LinAlgError:
            pass
    return LMResult(x=x, cost=cost.cpu().numpy(), covariance=cov, iterations=it, costs=history)
