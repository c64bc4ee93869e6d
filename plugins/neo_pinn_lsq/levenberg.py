"""Batched Levenberg–Marquardt: the iteration loop shared by every stage of an ``lsq`` fit.

A stage is given two functions — ``build`` (the Gauss–Newton system at a point) and ``propose`` (a damped
step from it) — and iterates all live starts together; each start accepts or rejects its own step, adapts
its own damping (Nielsen's rule) and stops on its own convergence test.
"""

from __future__ import annotations

import math

import torch

from .shooting import Condensed

__all__ = ["BatchedLM", "DEFECT_TOL", "DEFECT_SMALL"]

DEFECT_TOL = 1e-7  # largest continuity defect (mV, hidden states scaled to mV) of a converged start
DEFECT_SMALL = 1e-3  # defects below which an exact-phase trial is judged by its data cost


def _take(obj, idx):
    """Rows ``idx`` of every tensor field of a dataclass of per-start tensors."""
    return type(obj)(**{k: getattr(obj, k)[idx] for k in obj.__dataclass_fields__})


def _put(obj, a_idx, new, acc) -> None:
    for k in obj.__dataclass_fields__:
        getattr(obj, k)[a_idx] = getattr(new, k)[acc]


def _cost(sys_) -> torch.Tensor:
    return sys_.cost if hasattr(sys_, "cost") else sys_.merit


class BatchedLM:
    """Levenberg–Marquardt iterations of n starts at once, each with its own damping and convergence test.

    One object runs every stage of a fit, so that ``it`` counts the iterations over all stages and
    ``history_cost``/``history_stage`` record the best live cost after each.
    """

    def __init__(self, n: int, max_iter: int, lambda0: float, kw: dict) -> None:
        self.n, self.max_iter, self.lambda0, self.kw = n, max_iter, float(lambda0), kw
        self.it = 0
        self.history_cost: list[float] = []
        self.history_stage: list[int] = []
        self.bar = None

    def show_progress(self, desc: str) -> None:
        """Show a progress bar of the iterations (none when output is not a terminal: logs, CI)."""
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.max_iter, desc=desc, unit="it", leave=False, disable=None)

    def stage(self, stage, n_stages, z, u, raw, build, propose, ev, tol, cap, abandon=None, only=None):
        """Iterate the starts (those in ``only``, default all) at one stage until each converges or ``cap``."""
        n = self.n
        all_idx = torch.arange(n, device=z.device)
        sys_ = build(raw, u, all_idx)
        lam = torch.full((n,), self.lambda0, **self.kw)
        nu = torch.full((n,), 2.0, **self.kw)
        alive = torch.isfinite(_cost(sys_))
        active = alive.clone() if only is None else alive & only
        for _ in range(max(0, cap)):
            if abandon is not None and bool(alive.any()):
                c = _cost(sys_)
                active &= c <= abandon * c[alive].min()
            idx = torch.nonzero(active).flatten()
            if idx.numel() == 0:
                break
            z_t, u_t, pred = propose(_take(sys_, idx), z[idx], u[idx], lam[idx])
            z_t = torch.where(torch.isfinite(z_t), z_t, z[idx])
            u_t = torch.where(torch.isfinite(u_t), u_t, u[idx])
            raw_t = ev(z_t, u_t)
            sys_t = build(raw_t, u_t, idx)
            old, new = _cost(sys_)[idx], _cost(sys_t)
            acc = torch.isfinite(new) & (new < old)
            if isinstance(sys_t, Condensed):
                # Exact phase: a step closes the gaps only to first order, and the merit would charge its
                # second-order defects at the full weight (the Maratos effect: tiny steps). Once a trial's
                # defects are small it is judged, like the linear model's prediction, by its data cost.
                small = torch.isfinite(new) & (sys_t.max_defect <= DEFECT_SMALL)
                acc |= small & (sys_t.data < sys_.data[idx])
                new = torch.where(small, sys_t.data, new)
            tiny = torch.finfo(old.dtype).tiny
            gain = (old - new) / pred.clamp_min(tiny)
            lam_i, nu_i = lam[idx], nu[idx]
            lam_acc = lam_i * torch.clamp(1 - (2 * gain - 1) ** 3, min=1 / 3)
            lam[idx] = torch.where(acc, lam_acc.clamp_min(1e-12), lam_i * nu_i)
            nu[idx] = torch.where(acc, torch.full_like(nu_i, 2.0), nu_i * 2)
            rel = torch.where(acc, (old - new) / old.clamp_min(tiny), torch.zeros_like(old))
            # converged: an accepted step gained < tol, or the model predicts no gain worth a step (and, in
            # the exact phase, the trajectory is continuous)
            done = (acc & (rel < tol)) | (pred < tol * old)
            if hasattr(sys_t, "max_defect") and hasattr(sys_t, "merit"):
                done &= torch.where(acc, sys_t.max_defect, sys_.max_defect[idx]) <= DEFECT_TOL
            done |= lam[idx] > 1e10
            if bool(acc.any()):
                a_idx = idx[acc]
                z[a_idx] = z_t[acc]
                u[a_idx] = u_t[acc]
                raw.put(a_idx, raw_t.index(acc))
                _put(sys_, a_idx, sys_t, acc)
            active[idx[done]] = False
            self.it += 1
            c = _cost(sys_)
            self.history_cost.append(float(c[alive].min()) if bool(alive.any()) else math.inf)
            self.history_stage.append(stage)
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(stage=f"{stage + 1}/{n_stages}", cost=f"{self.history_cost[-1]:.5g}")
        return z, u, raw, sys_

    def close(self) -> None:
        """Close the progress bar, if any."""
        if self.bar is not None:
            self.bar.close()
