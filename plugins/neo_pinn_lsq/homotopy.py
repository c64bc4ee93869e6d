"""The stages of an ``lsq`` fit: continuity homotopy, exact phase, and retries where the gaps stayed open.

:class:`Shooting` holds what every stage needs (segment layout, transforms, fixed parameters);
:class:`Homotopy` runs the stages on the batch of starts. A penalty stage weighs the continuity defects
by ``w`` and solves the block-tridiagonal normal equations (:func:`~.shooting.assemble`); the exact phase
eliminates the linearised continuity conditions (:func:`~.shooting.condensed`), so that its iterates become
continuous and its optimum is that of single shooting.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch

from neo_pinn.models.base import NeuronModel
from neo_pinn.transforms import LogLogit

from .config import LsqConfig
from .levenberg import DEFECT_TOL, BatchedLM
from .shooting import Condensed, Layout, Raw, assemble, condensed, condensed_apply, condensed_solve, evaluate, solve
from .transforms import StateTransform

__all__ = ["Shooting", "Homotopy", "rho_from", "W_EXACT", "CHUNK", "RETRIES"]

CHUNK = 4096  # segments integrated together
W_EXACT = 1e4  # continuity weight of the merit of the exact phase: large enough that no discontinuous point wins
RETRIES = 3  # tighter homotopy stages (×10 continuity weight each) for starts whose gaps did not close


@dataclass
class Shooting:
    """The fixed parts of one multiple-shooting fit (segments, coordinates, fixed parameters)."""

    model: NeuronModel
    lay: Layout
    lay_t: dict                  # layout arrays as tensors: valid, v_obs, has_next, first
    i_half: torch.Tensor         # (2K+1, M) stimulus on each segment's half-step grid, pA
    theta_fixed: torch.Tensor    # (1, P) full parameter vector (free entries overwritten per start)
    free_index: list[int]        # positions of the free parameters in θ
    ptf: LogLogit                # free parameters ↔ search coordinates z
    stf: StateTransform          # node states ↔ node coordinates u
    gates: np.ndarray            # (S,) which states are gates
    scale: torch.Tensor          # (S,) defect weights: hidden states scaled to mV
    fit_x0: bool                 # whether each sweep's initial state is estimated
    multiple: bool               # more segments than sweeps (otherwise single shooting: no homotopy)
    first_index: torch.Tensor    # indices of each sweep's first segment
    kw: dict                     # dtype and device of the tensors


def rho_from(raw: Raw, lay_t: dict, seq: bool = False) -> torch.Tensor:
    """Lag-one autocorrelation of each start's data residual (pairs within segments, or along sweeps)."""
    valid = lay_t["valid"]
    r = torch.where(valid, raw.v - lay_t["v_obs"], torch.zeros((), dtype=raw.v.dtype, device=raw.v.device))
    if seq:
        n = r.shape[0]
        first = lay_t["first"]
        rf = r.reshape(n, -1)
        pair = (valid.reshape(-1)[1:] & valid.reshape(-1)[:-1])
        start = torch.zeros_like(valid)
        start[first, 0] = True
        pair = pair & ~start.reshape(-1)[1:]
        num = torch.where(pair, rf[:, 1:] * rf[:, :-1], torch.zeros_like(rf[:, 1:])).sum(1)
    else:
        pair = (valid[:, 1:] & valid[:, :-1])
        num = (torch.where(pair, r[:, :, 1:] * r[:, :, :-1], torch.zeros_like(r[:, :, 1:]))).sum((1, 2))
    den = (r**2).flatten(1).sum(1).clamp_min(torch.finfo(r.dtype).tiny)
    rho = (num / den).clamp(-0.99, 0.99)
    return torch.where(torch.isfinite(rho), rho, torch.zeros_like(rho))


class Homotopy:
    """Levenberg–Marquardt on a batch of starts through the homotopy stages, the exact phase and the retries.

    Parameters
    ----------
    shooting : Shooting
    config : LsqConfig
    z : torch.Tensor
        Search coordinates of the starts' free parameters, (n, F).
    u : torch.Tensor
        Node coordinates, (n, M, S).
    rho : torch.Tensor or None
        Each start's AR(1) coefficient of the residual (None: white noise).

    After :meth:`solve`, ``z``, ``u`` and ``raw`` hold each start's final point and ``lm`` the iteration
    count and history.
    """

    def __init__(self, shooting: Shooting, config: LsqConfig, z: torch.Tensor, u: torch.Tensor,
                 rho: torch.Tensor | None) -> None:
        self.sh, self.cfg = shooting, config
        self.z, self.u, self.rho = z, u, rho
        self.penalty: list[float] = list(config.continuity_weights) if shooting.multiple else []
        self.n_stages = len(self.penalty) + 1
        self.raw = self.evaluate(z, u)
        self.lm = BatchedLM(n=z.shape[0], max_iter=config.max_iter, lambda0=config.lambda0, kw=shooting.kw)

    def evaluate(self, z: torch.Tensor, u: torch.Tensor) -> Raw:
        """Every segment of every start with its Jacobians (see :func:`~.shooting.evaluate`)."""
        sh = self.sh
        return evaluate(sh.model, self.cfg.method, sh.lay, sh.theta_fixed, sh.free_index, sh.ptf, sh.stf, z, u,
                        sh.i_half, CHUNK, self.cfg.jacobian)

    # ------------------------------------------------------------------ the stages
    def solve(self) -> Condensed:
        """Run the penalty stages, the exact phase and the retries; the exact phase's final system."""
        c = self.cfg
        for stage, w in enumerate(self.penalty):
            self.stage(stage, "penalty", w)
        cs = self.stage(len(self.penalty), "exact", W_EXACT)
        # Where closing the gaps stalled (the linearised closing is poor over long, sensitive stretches, e.g.
        # a slow variable across bursts), tighten the homotopy for those starts and try the exact phase again.
        w_more, stage = (self.penalty[-1] if self.penalty else W_EXACT), len(self.penalty) + 1
        for _ in range(RETRIES if self.sh.multiple else 0):
            ok = torch.isfinite(cs.merit)
            if not bool(ok.any()) or self.lm.it >= c.max_iter:
                break
            stalled = ok & (cs.max_defect > DEFECT_TOL) & (cs.merit <= c.abandon * cs.merit[ok].min())
            if not bool(stalled.any()):
                break
            w_more *= 10.0
            self.n_stages = stage + 2
            self.stage(stage, "penalty", w_more, only=stalled)
            cs = self.stage(stage + 1, "exact", W_EXACT, only=stalled)
            stage += 2
        self.lm.close()
        return cs

    def stage(self, stage: int, kind: str, w: float, only: torch.Tensor | None = None):
        """One stage (``kind`` "penalty" or "exact") at continuity weight ``w`` for the starts in ``only``."""
        c = self.cfg
        if self.rho is not None and stage > 0:
            new_rho = rho_from(self.raw, self.sh.lay_t, seq=kind == "exact")
            self.rho = new_rho if only is None else torch.where(only, new_rho, self.rho)
        exact = kind == "exact"
        build, propose = self._exact(w, self.rho) if exact else self._penalty(w, self.rho)
        tol = c.tol if exact else c.stage_tol
        cap = c.max_iter - self.lm.it if exact else min(c.stage_iter, c.max_iter - self.lm.it)
        self.z, self.u, self.raw, sys_ = self.lm.stage(stage, self.n_stages, self.z, self.u, self.raw, build, propose,
                                                       self.evaluate, tol, cap, abandon=c.abandon if exact else None,
                                                       only=only)
        return sys_

    def _penalty(self, w: float, rho: torch.Tensor | None):
        """``build`` and ``propose`` of a penalty stage (defects weighted by ``w``, nodes free)."""
        sh, max_dz = self.sh, float(self.cfg.max_step)

        def build(raw_, uu, idx):
            return assemble(raw_, uu, sh.stf, sh.lay_t, w, sh.scale, None if rho is None else rho[idx], not sh.fit_x0)

        def propose(sys_, z_, u_, lam_):
            du, dz, pred = solve(sys_, lam_)
            return sh.ptf.clip(z_ + dz.clamp(-max_dz, max_dz)), sh.stf.step(u_, du), pred

        return build, propose

    def _exact(self, w: float, rho: torch.Tensor | None):
        """``build`` and ``propose`` of the exact phase (continuity conditions eliminated by condensing)."""
        sh, max_dz = self.sh, float(self.cfg.max_step)
        F, stf, fit_x0 = len(sh.free_index), sh.stf, sh.fit_x0
        first_idx = sh.first_index

        def build(raw_, uu, idx):
            return condensed(raw_, uu, stf, sh.lay, sh.lay_t, fit_x0, None if rho is None else rho[idx], w, sh.scale)

        def propose(sys_, z_, u_, lam_):
            dzeta = torch.nan_to_num(condensed_solve(sys_, lam_))
            _, pred = condensed_apply(sys_, dzeta)       # the model's decrease for the plain step
            z_t = sh.ptf.clip(z_ + dzeta[:, :F].clamp(-max_dz, max_dz))
            dzeta[:, :F] = z_t - z_
            x_, _ = stf.from_u(u_)
            if fit_x0:
                # the initial states move in their own coordinates (limited like every node step); the
                # later nodes follow the change they actually make, in state units
                u0 = u_[:, first_idx]
                u_first = stf.step(u0, dzeta[:, F:].reshape(u0.shape))
                (x_new, _), (x_old, dx_old) = stf.from_u(u_first), stf.from_u(u0)
                dzeta[:, F:] = ((x_new - x_old) / dx_old).reshape(dzeta[:, F:].shape)
            dx, _ = condensed_apply(sys_, dzeta)
            u_t = stf.to_u(x_ + dx)                      # the other nodes move in state units
            u_t[:, first_idx] = u_first if fit_x0 else u_[:, first_idx]
            return z_t, u_t, pred

        return build, propose
