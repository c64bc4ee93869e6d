"""What an ensemble of PINNs minimises: the points of a step, the networks' states there, and each loss term.

All terms are per member (members never interact), means over the step's points in normalised units:

* data: ``mean((V_net − V_obs)² / σ_V²)``;
* warm start (stage 1): the hidden outputs against the voltage-driven hidden states;
* physics, one column per state: the strong (pointwise ``du/dt − f``), weak (change against the integral
  of ``f`` over short intervals) or slow-state (long intervals, plus periodicity) residual, each divided
  by the state's residual scale (and with ``residual_norm="relative"`` by the current spread of both sides);
* continuity of every state where consecutive segments meet.
"""

from __future__ import annotations

import numpy as np
import torch

from .ensemble_setup import EnsembleSetup

__all__ = ["EnsembleObjective"]


class EnsembleObjective(EnsembleSetup):
    """:class:`~neo_pinn_pinn.ensemble_setup.EnsembleSetup` with the points and loss terms of a step."""

    # ------------------------------------------------------------------ states
    def theta_full_of(self, z: torch.Tensor) -> torch.Tensor:
        """Full parameter vectors (E, P) of search coordinates ``z`` (E, F) (differentiable)."""
        th = self.theta_fixed.clone()
        th[:, self.free_idx_t] = self.pmap.theta(z)
        return th

    def decode(self, uh: torch.Tensor, duh: torch.Tensor):
        """Network outputs → states and their time derivatives in canonical units (gates through a logistic)."""
        sig = torch.sigmoid(uh)
        u = torch.where(self.t_gate, sig, self.t_off + self.t_scl * uh)
        du = torch.where(self.t_gate, sig * (1 - sig) * duh, self.t_scl * duh)
        return u, du

    def states_at_offsets(self, rel: torch.Tensor):
        """States and derivatives (G, N, S) at times ``rel`` (G, N) from each group's segment centre, ms."""
        uh, duh = self.net(rel, rel / self.half[:, None], (1.0 / self.half)[:, None])
        return self.decode(uh, duh)

    def states_at_times(self, t_pts: torch.Tensor):
        """States and derivatives (G, N, S) at times ``t_pts`` (G, N), ms from each sweep's start."""
        return self.states_at_offsets(t_pts - self.centre[:, None])

    def states_at(self, idx: torch.Tensor, with_ends: bool):
        """States and derivatives at flat sample indices ``idx`` (G, N) (+ both segment ends)."""
        t_pts = self.tt[idx]
        if with_ends:
            t_pts = torch.cat([t_pts, self.t_left[:, None], self.t_right[:, None]], 1)
        return self.states_at_times(t_pts)

    # ------------------------------------------------------------------ points
    def sample_points(self) -> torch.Tensor:
        """(G, m) random sample indices inside each group's segment (a share drawn on the spikes)."""
        r = torch.rand(self.G, self.m_pts - self.m_fast, generator=self.gen).to(self.dev)
        idx = self.lo_t[:, None] + torch.floor(r * self.n_in[:, None].to(self.dtype)).long()
        if self.m_fast > 0:
            fast = torch.multinomial(self.w_groups, self.m_fast, replacement=True, generator=self.gen).to(self.dev)
            idx = torch.cat([idx, self.lo_t[:, None] + fast], 1)
        return idx

    def all_sample_chunks(self):
        """(idx (G, n), valid (G, n)) covering every sample of every segment, ``eval_chunk`` at a time."""
        max_len = int((self.seg.hi - self.seg.lo).max())
        chunk = max(1, int(self.cfg.output.eval_chunk))
        for a in range(0, max_len, chunk):
            pos = torch.arange(a, min(a + chunk, max_len), device=self.dev)
            valid = pos[None, :] < self.n_in[:, None]
            yield self.lo_t[:, None] + torch.minimum(pos[None, :], self.n_in[:, None] - 1), valid

    # ------------------------------------------------------------------ loss terms
    def normalise(self, sq: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared residual per member and state, (E, S); with ``residual_norm="relative"`` divided by
        the current spread of the two sides (a state cannot satisfy its equation by going flat — rate
        parameter → 0, state constant — the collapse PINNs fall into)."""
        E, S = self.E, self.S
        r2 = sq.reshape(E, -1, S).mean(1)
        if self.relative:
            spread = ((a ** 2).reshape(E, -1, S).mean(1) + (b ** 2).reshape(E, -1, S).mean(1)).detach()
            r2 = r2 / (0.5 * spread + float(self.cfg.residuals.relative_floor))
        return r2

    def data_term(self, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(E,) mean squared voltage error in units of the recording's spread; ``u`` (G, n, S) at ``idx``."""
        v_err = (u[..., 0] - self.vv[idx]) / self.v_sd
        return (v_err ** 2).reshape(self.E, -1).mean(1)

    def warm_term(self, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(E,) hidden outputs against the voltage-driven warm start, summed over the hidden states."""
        target = self.warm_t[self.member_of_group[:, None], idx]  # (G, n, S-1)
        h_err = (u[..., 1:] - target) / self.state_scale[:, None, 1:]
        return (h_err ** 2).reshape(self.E, -1, self.S - 1).mean(1).sum(1)

    def relaxation_rate(self, u: torch.Tensor, f: torch.Tensor, th: torch.Tensor, idx: torch.Tensor, j: int):
        """|∂f_j/∂u_j| at the points (finite difference, no gradient), at least ``rate_floor``."""
        with torch.no_grad():
            step = 1e-3 * (1.0 if self.gates[j] else float(np.median(self.scl[:, j])))
            up = u.detach().clone()
            up[..., j] += step
            d = (self.model.rhs(self.tt[idx], up, th, self.ii[idx])[..., j] - f[..., j].detach()) / step
            return d.abs().clamp(min=self.rate_floor)

    def strong_residual(self, u: torch.Tensor, du: torch.Tensor, th: torch.Tensor, idx: torch.Tensor):
        """(E, S) pointwise residual ``du/dt − f`` at the step's points, divided by the residual scales (the
        fast hidden states' by their relaxation rate with ``rate_scaled_residuals``)."""
        f = self.model.rhs(self.tt[idx], u, th, self.ii[idx])
        den = self.t_rsc
        if self.rate_states:
            den = self.t_rsc.expand_as(f).clone()
            for j in self.rate_states:
                den[..., j] = self.relaxation_rate(u, f, th, idx, j)
        sq = ((du - f) / den) ** 2
        if self.local_w is not None:
            sq = sq * self.local_w[self.member_of_group[:, None], idx]
        return self.normalise(sq, du / den, f / den)

    def weak_residual(self, th: torch.Tensor) -> torch.Tensor:
        """(E, S) integral form over random intervals of ``weak_samples`` samples: the change of every state
        against the trapezoidal integral of its right-hand side, divided by the interval's length.

        Spikes drive brief, steep changes of the hidden states whose derivative a network matches poorly;
        regressed pointwise, that error biases rate parameters towards zero. Their integral over the
        interval is what the state's values must show, and values are what the network represents well.
        """
        G, S, L_w, m_w, dev = self.G, self.S, self.L_w, self.m_w, self.dev
        r = torch.rand(G, m_w, generator=self.gen).to(dev)
        length = torch.minimum(torch.full_like(self.span_w, L_w), self.span_w)  # (G,)
        start = self.lo_t[:, None] + torch.floor(r * (self.n_in - length).clamp(min=1)[:, None].to(self.dtype)).long()
        offs = torch.arange(L_w + 1, device=dev)
        idx_w = start[..., None] + torch.minimum(offs[None, None, :], length[:, None, None])  # (G, m, L+1)
        flat_idx = idx_w.reshape(G, -1)
        uw, _ = self.states_at(flat_idx, with_ends=False)
        fw = self.model.rhs(self.tt[flat_idx], uw, th, self.ii[flat_idx]).reshape(G, m_w, L_w + 1, S)
        uw = uw.reshape(G, m_w, L_w + 1, S)
        tw = self.tt[idx_w]
        dtw = (tw[..., 1:] - tw[..., :-1]).unsqueeze(-1)
        integral = (0.5 * (fw[:, :, 1:] + fw[:, :, :-1]) * dtw).sum(2)  # (G, m, S)
        dur = (tw[..., -1] - tw[..., 0]).clamp(min=1e-9).unsqueeze(-1)
        change = (uw[:, :, -1] - uw[:, :, 0]) / dur / self.t_rsc
        drive = integral / dur / self.t_rsc
        return self.normalise((change - drive) ** 2, change, drive)

    def slow_residual(self, th: torch.Tensor) -> torch.Tensor:
        """(E, S) integral form for the slow states over long random intervals (half to all of a segment):
        the change of the state against ``slow_points`` stratified random samples of its right-hand side
        times the interval's length (an unbiased quadrature).

        A slow state such as Ca jumps a little at every spike; a smooth network cannot follow the jumps, and
        regressed pointwise the spiky drive biases its rate towards zero. Over intervals holding whole
        spikes the change is what the network represents well and the integral of the drive is exact.
        """
        G, S, Q_s, m_s, dev, dtype, gen = self.G, self.S, self.Q_s, self.m_s, self.dev, self.dtype, self.gen
        seg_len, t_left = self.seg_len, self.t_left
        length = torch.minimum(seg_len, torch.full_like(seg_len, self.slow_len))[:, None] * \
            (0.5 + 0.5 * torch.rand(G, m_s, generator=gen).to(dev, dtype))  # (G, m)
        start = t_left[:, None] + (seg_len[:, None] - length) * torch.rand(G, m_s, generator=gen).to(dev, dtype)
        strata = (torch.arange(Q_s, device=dev, dtype=dtype) + torch.rand(G, m_s, Q_s, generator=gen).to(dev, dtype))
        t_q = start[..., None] + length[..., None] * strata / Q_s  # (G, m, Q)
        t_all = torch.cat([start[..., None], t_q, (start + length)[..., None]], -1).reshape(G, -1)
        u, _ = self.states_at_times(t_all)
        sample = self.lo_t[:, None] + torch.clamp(torch.round((t_all - t_left[:, None]) / self.dt_seg[:, None]).long(),
                                                  min=0).minimum(self.n_in[:, None] - 1)
        f = self.model.rhs(t_all, u, th, self.ii[sample]).reshape(G, m_s, Q_s + 2, S)
        u = u.reshape(G, m_s, Q_s + 2, S)
        change = (u[:, :, -1] - u[:, :, 0]) / length[..., None] / self.t_rsc
        drive = f[:, :, 1:-1].mean(2) / self.t_rsc
        return self.normalise((change - drive) ** 2, change, drive)

    def periodic_residual(self) -> torch.Tensor:
        """(E, S) mean squared difference of every state between times one period apart, in units of its
        spread (only the slow states' columns are used)."""
        u, _ = self.states_at_offsets(self.per_rel)
        u = u.reshape(self.E, self.K, -1, self.S)
        diff = (u[:, self.per_a[0], self.per_a[1]] - u[:, self.per_b[0], self.per_b[1]]) / self.per_scale
        return (diff ** 2).mean(1)

    def continuity_term(self, u: torch.Tensor, n: int) -> torch.Tensor:
        """(E,) squared jumps of every state (in units of its scale) where consecutive segments of a sweep
        meet; ``u`` (G, n + 2, S) ends with each segment's left and right end."""
        gap = (u[:-1, n + 1] - u[1:, n]) / self.state_scale[:-1]  # right end of g vs left end of g+1
        gap = torch.where(self.link[:, None], gap, torch.zeros_like(gap))
        per = torch.cat([(gap ** 2).sum(1), torch.zeros(1, **self.kw)])
        return per.reshape(self.E, self.K).sum(1) / max(1, int(self.seg.linked.sum()))

    def physics_term(self, u: torch.Tensor, du: torch.Tensor, idx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(E, S) physics residual of every state in the configured form (slow states in theirs)."""
        th = self.theta_full_of(z)[self.member_of_group][:, None, :]  # (G, 1, P)
        r2 = torch.zeros(self.E, self.S, **self.kw)
        if self.form in ("strong", "both"):
            r2 = r2 + self.strong_residual(u, du, th, idx)
        if self.form in ("weak", "both"):
            r2 = r2 + self.weak_residual(th)
        if self.slow.any():
            r2 = torch.where(self.slow_t, self.slow_residual(th) + (self.periodic_residual() if self.n_per else 0.0),
                             r2)
        return r2

    def losses(self, idx: torch.Tensor, z: torch.Tensor, physics: bool, warm_term: bool) -> dict[str, torch.Tensor]:
        """Per-member loss terms at the points ``idx`` (G, n): ``data`` (E,), ``warm`` (E,), ``physics``
        (E, S), ``continuity`` (E,) (the last two with ``physics``, continuity with several segments)."""
        u, du = self.states_at(idx, with_ends=physics and self.K > 1)
        n = idx.shape[1]
        out = {"data": self.data_term(u[:, :n], idx)}
        if warm_term and self.S > 1:
            out["warm"] = self.warm_term(u[:, :n], idx)
        if physics:
            out["physics"] = self.physics_term(u[:, :n], du[:, :n], idx, z)
            if self.K > 1:
                out["continuity"] = self.continuity_term(u, n)
        return out
