"""How an ensemble of PINNs is trained: optimisers, the two stages, loss balancing, records, final evaluation.

Stage 1 (``two_stage``) trains the networks on the data term alone (with the warm-start pull on the hidden
outputs); stage 2 adds the physics and continuity terms and trains networks and parameters jointly, with
warm-up ramps and exponentially decaying learning rates. With ``adaptive_weights`` the stage-2 terms are
weighted ``λ_i = Σ_j g_j / (g_i + ε Σ_j g_j)`` (``g_i`` the norm of term i's gradient with respect to the
network weights, per member), smoothed by a moving average: every term pulls on the network equally hard,
and ε caps a weight at 1/ε.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neo_pinn.errors import EstimationError

from .objective import EnsembleObjective

__all__ = ["Trained", "EnsembleTrainer", "schedule"]


@dataclass
class Trained:
    """What training an ensemble returns.

    Attributes
    ----------
    theta_free : numpy.ndarray
        (E, F) final free-parameter values of every member, canonical units.
    loss : numpy.ndarray
        (E,) final unweighted loss (data + physics + continuity) on every sample.
    loss_terms : dict
        name → (E,) final unweighted terms.
    states : list of numpy.ndarray
        Per sweep, (E, T, S) states of every member at the sweep's samples (canonical units).
    history : dict
        ``step`` (n_log,), ``loss_data``/``loss_physics``/``loss_continuity`` (n_log, E) and ``theta``
        (n_log, E, F) sampled every ``log_every`` steps.
    info : dict
        Segments, frequencies, normalisations, timings.
    """

    theta_free: np.ndarray
    loss: np.ndarray
    loss_terms: dict[str, np.ndarray]
    states: list[np.ndarray]
    history: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def subset(self, members) -> "Trained":
        """The same training restricted to some members (members are independent, so this is exactly
        what training only those members would have given)."""
        idx = np.asarray(members)
        hist = {k: (v[:, idx] if k not in ("step",) and np.ndim(v) >= 2 else v) for k, v in self.history.items()}
        info = dict(self.info)
        for key in ("screened", "screen_misfit"):
            if key in info:
                info[key] = np.asarray(info[key])[idx]
        if "trainable_frequencies_hz" in info:
            info["trainable_frequencies_hz"] = np.asarray(info["trainable_frequencies_hz"])[idx].tolist()
        return Trained(self.theta_free[idx], self.loss[idx], {k: v[idx] for k, v in self.loss_terms.items()},
                       [s_[idx] for s_ in self.states], hist, info)


def schedule(step: int, n: int, lr0: float, lr1: float) -> float:
    """Learning rate at ``step`` of an exponential decay from ``lr0`` to ``lr1`` over ``n`` steps."""
    if n <= 1:
        return lr0
    return lr0 * (lr1 / lr0) ** (min(step, n) / (n - 1))


class EnsembleTrainer(EnsembleObjective):
    """Trains ``E`` independent PINNs, one per row of initial free-parameter values, as one batch.

    Parameters
    ----------
    problem : EstimationProblem
    inits : numpy.ndarray
        (E, F) initial guesses of the free parameters (canonical units).
    cfg : PINNConfig
    ctx : FitContext
        Seed, device, dtype and progress flag.
    """

    def __init__(self, problem, inits, cfg, ctx) -> None:
        super().__init__(problem, inits, cfg, ctx)
        rates, stages, bal = cfg.rates, cfg.stages, cfg.balance
        self.net_params = list(self.net.parameters())
        self.separate = bool(rates.separate_optimizers)
        self.lr_net0, self.lr_net1 = float(rates.lr_net), float(rates.lr_net_final)
        self.lr_par0, self.lr_par1 = (float(rates.lr_params), float(rates.lr_params_final)) if self.separate \
            else (self.lr_net0, self.lr_net1)
        self.opt_net = torch.optim.Adam(self.net_params, lr=self.lr_net0)
        self.opt_par = torch.optim.Adam([self.z], lr=self.lr_par0)
        self.n1 = int(stages.stage1_steps) if stages.two_stage else 0
        self.n2 = int(stages.stage2_steps)
        self.adaptive = bool(bal.adaptive_weights)
        self.eps, self.alpha = float(bal.balance_eps), float(bal.balance_alpha)
        self.n_terms = 1 + self.S + (1 if self.K > 1 else 0)
        self.lam = torch.ones(self.E, self.n_terms, **self.kw)
        self.boost = torch.ones(self.n_terms, **self.kw)
        self.boost[1:1 + self.S] = torch.where(torch.tensor(self.slow, device=self.dev),
                                               float(cfg.slow.slow_weight), 1.0).to(self.dtype)
        self.hist: dict[str, list] = {"step": [], "loss_data": [], "loss_physics": [], "loss_continuity": [],
                                      "theta": [], "weights": []}
        self.log_every = max(1, int(cfg.output.log_every))
        self.held = self.held_parameters()
        self.bar = None
        self.step = 0

    # ------------------------------------------------------------------ run
    def train(self) -> "Trained":
        """Both stages, then the final evaluation on every sample."""
        if self.ctx.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.n1 + self.n2, desc="pinn", unit="step", dynamic_ncols=True, leave=True)
        self.stage1()
        if self.n1:
            self.rescale_after_stage1()
        self.stage2()
        if self.bar is not None:
            self.bar.close()
        return self.evaluate()

    def stage1(self) -> None:
        """Voltage only (and the warm-start pull on the hidden outputs), network weights only."""
        warm_on = bool(self.cfg.stages.warm_start_hidden)
        lr1 = float(self.cfg.rates.lr_stage1)
        for s1 in range(self.n1):
            lr = schedule(s1, self.n1, lr1, lr1 * 0.1)
            for gparam in self.opt_net.param_groups:
                gparam["lr"] = lr
            terms = self.losses(self.sample_points(), self.z, physics=False, warm_term=warm_on)
            loss = terms["data"].sum() + (terms["warm"].sum() if "warm" in terms else 0.0)
            self.opt_net.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_net.step()
            self.log(terms, "1/2 voltage", self.step % self.log_every == 0)

    def rescale_after_stage1(self) -> None:
        """The derivative scale of V from the trained network (what V's physics residual is compared with)
        and, with ``local_weights``, the pointwise weights of V's residual."""
        E, kw = self.E, self.kw
        with torch.no_grad():
            _, du = self.states_at(self.sample_points(), with_ends=False)
            self.rsc[:, 0] = np.maximum(du[..., 0].reshape(E, -1).std(1).cpu().numpy(), 1e-6)
            self.t_rsc = torch.tensor(self.rsc[self.g_of], **kw)[:, None, :]
            if self.cfg.residuals.local_weights:
                self.local_w = self.voltage_weights()

    def voltage_weights(self) -> torch.Tensor:
        """(E, T, S) weights ``1/(|dV/dt|/r_V + local_floor)²`` of V's residual (mean 1 per member; hidden
        states 1): the slow phases between spikes count as much as the upstrokes, whose large derivatives
        would otherwise drown them."""
        E, S, kw, T = self.E, self.S, self.kw, self.flat.t.size
        dv = torch.zeros(E * T, **kw)
        for idx, valid in self.all_sample_chunks():
            _, du = self.states_at(idx, with_ends=False)
            dv[(self.member_of_group[:, None] * T + idx)[valid]] = du[..., 0][valid]
        dv = dv.reshape(E, -1, 1).abs() / self.t_rsc[::self.K, :, :1]
        w = 1.0 / (dv + float(self.cfg.residuals.local_floor)) ** 2
        return torch.cat([w / w.mean(1, keepdim=True), torch.ones(E, T, S - 1, **kw)], -1)

    def held_parameters(self) -> torch.Tensor | None:
        """Positions of the free parameters held at their screened values in stage 2 (None: none).

        Parameters that set a slow state's pace, or trade against a rescaled slow state (a slow gate's
        conductance): the network's smooth slow output can trade its shape against the fast hidden outputs,
        so the residuals barely see the slow time scale and would let them drift, whereas the screen's
        long-interval misfit pins them.
        """
        hold = self.cfg.slow.hold_slow_parameters
        if self.screen.starts is not None and self.screen.slow_params and (hold is True or hold == "auto"):
            return torch.tensor(self.screen.slow_params, device=self.dev)
        return None

    def stage2(self) -> None:
        """Networks and parameters jointly on data, physics and continuity, with warm-up ramps.

        The network first adapts to the physics at gentle rates; the parameters start moving only after
        ``param_delay`` steps (an early, garbage residual would otherwise send a rate parameter to zero, a
        minimum the networks cannot climb out of).
        """
        warmup, delay = int(self.cfg.stages.warmup_steps), int(self.cfg.stages.param_delay)
        every = int(self.cfg.balance.balance_every)
        if not self.separate:
            self.opt_all = torch.optim.Adam(self.net_params + [self.z], lr=self.lr_net0)
        n2 = self.n2
        for s2 in range(n2):
            ramp_n = min(1.0, (s2 + 1) / max(1, warmup))
            ramp_p = min(1.0, max(0.0, (s2 + 1 - delay) / max(1, warmup)))
            lr_n = schedule(s2, n2, self.lr_net0, self.lr_net1) * ramp_n
            lr_p = schedule(s2, n2, self.lr_par0, self.lr_par1) * (ramp_p if self.separate else ramp_n)
            self.set_rates(lr_n, lr_p)
            terms = self.losses(self.sample_points(), self.z, physics=True, warm_term=False)
            if self.adaptive and s2 % every == 0:
                self.rebalance(terms)
            loss = (self.lam * self.boost * self.stack_terms(terms)).sum()
            if not torch.isfinite(loss):
                raise EstimationError("The PINN loss became non-finite; lower lr_net/lr_params or check the data "
                                      "units (voltage in mV, current in pA).")
            self.optimiser_step(loss)
            self.log(terms, "2/2 physics", self.step % self.log_every == 0 or s2 == n2 - 1)

    def set_rates(self, lr_net: float, lr_params: float) -> None:
        """Learning rates of this stage-2 step (one optimiser: the network's for both)."""
        if self.separate:
            for gparam in self.opt_net.param_groups:
                gparam["lr"] = lr_net
            for gparam in self.opt_par.param_groups:
                gparam["lr"] = lr_params
        else:
            for gparam in self.opt_all.param_groups:
                gparam["lr"] = lr_net

    def optimiser_step(self, loss: torch.Tensor) -> None:
        """One Adam step of networks and parameters (held parameters get no gradient), then the parameters
        projected into their bounds."""
        opts = (self.opt_net, self.opt_par) if self.separate else (self.opt_all,)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.held is not None and self.z.grad is not None:
            self.z.grad[:, self.held] = 0.0
        for opt in opts:
            opt.step()
        self.pmap.project_(self.z)

    # ------------------------------------------------------------------ balancing and records
    def stack_terms(self, terms) -> torch.Tensor:
        """(E, n_terms): data, one physics column per state, continuity (with several segments)."""
        cols = [terms["data"][:, None], terms["physics"]]
        if self.K > 1:
            cols.append(terms["continuity"][:, None])
        return torch.cat(cols, 1)

    def rebalance(self, terms) -> None:
        """Update the adaptive weights from the gradient norms of every term (per member)."""
        E, kw = self.E, self.kw
        flat_terms = self.stack_terms(terms)
        params = self.net.network_parameters()
        g = torch.zeros(E, self.n_terms, **kw)
        for j in range(self.n_terms):
            grads = torch.autograd.grad(flat_terms[:, j].sum(), params, retain_graph=True, allow_unused=True)
            sq = torch.zeros(E, **kw)
            for gr in grads:
                if gr is not None:
                    sq = sq + (gr.reshape(E, -1) ** 2).sum(1)
            g[:, j] = sq.sqrt()
        total = g.sum(1, keepdim=True)
        new = total / (g + self.eps * total + 1e-30)
        self.lam = self.alpha * self.lam + (1 - self.alpha) * new.detach()

    def log(self, terms, stage: str, record: bool) -> None:
        """Record the step (when ``record``), update the progress bar and count the step."""
        if record:
            self.record(terms)
            self.show(stage, terms)
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)

    def record(self, terms) -> None:
        """Append the loss terms, parameters and weights of the current step to the history."""
        E, hist = self.E, self.hist
        hist["step"].append(self.step)
        hist["loss_data"].append(terms["data"].detach().cpu().numpy())
        ph = terms.get("physics")
        hist["loss_physics"].append(np.full(E, np.nan) if ph is None else ph.detach().sum(1).cpu().numpy())
        co = terms.get("continuity")
        hist["loss_continuity"].append(np.full(E, np.nan) if co is None else co.detach().cpu().numpy())
        hist["theta"].append(self.pmap.theta(self.z.detach()).cpu().numpy())
        hist["weights"].append(self.lam.detach().cpu().numpy().copy())

    def show(self, stage: str, terms) -> None:
        """Loss terms and median parameters on the progress bar."""
        if self.bar is None:
            return
        th = np.median(self.pmap.theta(self.z.detach()).cpu().numpy(), 0)
        post = {"stage": stage, "data": f"{float(terms['data'].median()):.2e}"}
        if "physics" in terms:
            post["phys"] = f"{float(terms['physics'].sum(1).median()):.2e}"
        post |= {n: f"{v:.4g}" for n, v in zip(self.problem.free_names, th)}
        self.bar.set_postfix(post, refresh=False)

    # ------------------------------------------------------------------ final evaluation
    def evaluate(self) -> "Trained":
        """Unweighted loss terms and states of every member on every sample of every sweep."""
        E, S, K, flat = self.E, self.S, self.K, self.flat
        states = [np.empty((E, int(flat.offsets[k + 1] - flat.offsets[k]), S)) for k in range(len(self.problem.traces))]
        tot = {"data": np.zeros(E), "physics": np.zeros((E, S)), "continuity": np.zeros(E)}
        counts = np.zeros(E)
        with torch.no_grad():
            th_all = self.theta_full_of(self.z)
            for idx, valid in self.all_sample_chunks():
                u, du = self.states_at(idx, with_ends=False)
                self.add_sample_terms(tot, counts, u, du, idx, valid, th_all)
                self.store_states(states, u, idx, valid)
            if K > 1:
                u_end, _ = self.states_at(self.lo_t[:, None], with_ends=True)
                gap = (u_end[:-1, 2] - u_end[1:, 1]) / self.state_scale[:-1]
                gap = torch.where(self.link[:, None], gap, torch.zeros_like(gap))
                per = torch.cat([(gap ** 2).sum(1), torch.zeros(1, **self.kw)]).reshape(E, K).sum(1)
                tot["continuity"] = per.cpu().numpy() / max(1, int(self.seg.linked.sum()))
        tot["data"] /= counts
        tot["physics"] /= counts[:, None]
        loss = tot["data"] + tot["physics"].sum(1) + tot["continuity"]
        theta_free = self.pmap.theta(self.z.detach()).cpu().numpy()
        if not np.all(np.isfinite(theta_free)):
            raise EstimationError("PINN parameters became non-finite; lower lr_params.")
        history = {k: np.array(v) for k, v in self.hist.items()}
        info = self.info(theta_free)
        if not np.isfinite(loss).any():
            raise EstimationError("Every PINN member diverged; lower lr_net/lr_params.")
        return Trained(theta_free=theta_free, loss=loss,
                       loss_terms={"data": tot["data"], "physics": tot["physics"].sum(1),
                                   "continuity": tot["continuity"]},
                       states=states, history=history, info=info)

    def add_sample_terms(self, tot: dict, counts: np.ndarray, u, du, idx, valid, th_all) -> None:
        """Add the data and physics sums of one chunk of samples to ``tot`` and their counts to ``counts``."""
        E, S = self.E, self.S
        f = self.model.rhs(self.tt[idx], u, th_all[self.member_of_group][:, None, :], self.ii[idx])
        r = ((du - f) / self.t_rsc) ** 2
        d = ((u[..., 0] - self.vv[idx]) / self.v_sd) ** 2
        vm = valid.to(self.dtype)
        tot["data"] += (d * vm).reshape(E, -1).sum(1).cpu().numpy()
        tot["physics"] += (r * vm[..., None]).reshape(E, -1, S).sum(1).cpu().numpy()
        counts += vm.reshape(E, -1).sum(1).cpu().numpy()

    def store_states(self, states: list[np.ndarray], u, idx, valid) -> None:
        """Copy the states of one chunk of samples into the per-sweep arrays (E, T, S)."""
        u_np = u.cpu().numpy()
        idx_np = idx.cpu().numpy()
        valid_np = valid.cpu().numpy()
        for g_ in range(self.G):
            e, kseg = divmod(g_, self.K)
            tr_k = int(self.seg.trace[kseg])
            sel = valid_np[g_]
            states[tr_k][e, idx_np[g_, sel] - self.flat.offsets[tr_k]] = u_np[g_, sel]

    def info(self, theta_free: np.ndarray) -> dict[str, Any]:
        """What training found and used besides the parameters: segments, frequencies, slow states, timings."""
        model, seg, problem = self.model, self.seg, self.problem
        info = {"n_segments": self.K, "segment_ms": float(np.median(2 * seg.half)),
                "frequencies_hz": (self.freqs * 1000).tolist(),
                "trainable_frequencies_hz": (torch.exp(self.net.log_freqs.detach()).cpu().numpy() * 1000).tolist(),
                "train_seconds": time.perf_counter() - self.t_start, "screen_seconds": self.t_screen,
                "steps": self.n1 + self.n2, "slow_states": [n for n, f in zip(model.state_names, self.slow) if f],
                "screen_intervals_ms": self.screen.intervals, "spike_sampling": self.frac_fast,
                "fast_share": self.share, "periodic_pairs": int(self.n_per),
                "rate_scaled_states": [model.state_names[j] for j in self.rate_states],
                "held_parameters": [problem.free_names[j] for j in self.screen.slow_params]
                if self.held is not None else []}
        if self.screen.starts is not None:
            info["screened"] = self.screen.starts
            info["screen_misfit"] = self.screen.misfit
        return info
