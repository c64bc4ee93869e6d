"""The training loop: an ensemble of vector fields trained through the solver by multiple shooting.

Per member, the loss is

* **data**: every rollout's observed states against the recording, each state in units of its spread;
* **continuity**: where a rollout reaches the next node, the gap to that node's (latent) states;
* **physics** (``neural``): the learned field against the model's own derivatives with the member's
  parameters, at the rollouts' states and along the field's own run beyond the window, each state's
  residual in units of the spread of its derivative (``scale_aware``) — weighted by a ramped, capped factor;
* **correction** (``hybrid``): the mean squared learned current, in units of the membrane current's spread.

The horizon of the rollouts grows from ``horizon_start_ms`` to its last value (``curriculum``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import numpy as np
import torch

from neo_pinn.toolkit import LogLinear, choose_dt

from .config import PINODEConfig, shooting_lengths
from .data import Nodes, SweepData, build_nodes, data_scales, sampling_interval
from .fields import HybridField, MechanisticField, NeuralField, Scales
from .finish import levenberg_marquardt
from .rollout import free_run, rollout

__all__ = ["Layout", "Trained", "train_members", "membrane_gain", "MS_UNKNOWNS"]

#: most unknowns per member (parameters + latent node states) of the multiple-shooting Levenberg–Marquardt step
MS_UNKNOWNS = 1200


@dataclass(frozen=True)
class Layout:
    """Where the free parameters sit in the model's parameter vector.

    Attributes
    ----------
    model : NeuronModel
    free : tuple of FreeParameter
    theta : numpy.ndarray
        (P,) every parameter (free ones at any value), canonical units.
    free_index : numpy.ndarray
        (F,) positions of the free parameters.
    gates : numpy.ndarray
        (S,) bool, states kept in [0, 1].
    """

    model: object
    free: tuple
    theta: np.ndarray
    free_index: np.ndarray
    gates: np.ndarray


@dataclass
class Trained:
    """What :func:`train_members` returns (per member e of E)."""

    theta_free: np.ndarray
    loss: np.ndarray
    loss_terms: dict
    states: list
    corrections: list | None
    forecast: list
    history: dict
    info: dict = dc_field(default_factory=dict)


def membrane_gain(model, theta: np.ndarray, state: np.ndarray, current: float) -> float:
    """Change of dV/dt (mV/ms) per pA of injected current at ``state`` (canonical units)."""
    p = dict(zip(model.param_names, (float(x) for x in theta)))
    ys = tuple(float(x) for x in state)
    a = model.derivatives(0.0, ys, p, current)[0]
    b = model.derivatives(0.0, ys, p, current + 1.0)[0]
    return float(b - a)


def _make_field(cfg: PINODEConfig, layout: Layout, members: int, scales: Scales, dtype, device):
    mode = cfg.field.mode
    if mode == "neural":
        return NeuralField(members, scales, cfg.field.width, cfg.field.depth, dtype, device)
    if mode == "hybrid":
        return HybridField(layout.model, members, scales, cfg.field.correction_width, dtype, device,
                           cfg.field.correction_inputs, float(cfg.field.correction_gate_ms))
    return MechanisticField(layout.model)


class _Problem:
    """The trainable tensors and their maps: parameters in log coordinates, nodes in units of each state."""

    def __init__(self, layout: Layout, starts: np.ndarray, nodes: Nodes, sweeps: list[SweepData], scales: Scales,
                 fixed_start: list, dtype, device) -> None:
        self.layout, self.kw = layout, dict(dtype=dtype, device=device)
        self.coords = LogLinear(layout.free, dtype=dtype, device=device)
        self.z = torch.tensor(self.coords.to_z(starts), **self.kw).requires_grad_(True)
        self.theta0 = torch.tensor(layout.theta, **self.kw)
        self.free_index = torch.tensor(layout.free_index, device=device)
        self.mu = torch.tensor(scales.mean, **self.kw)
        self.sd = torch.tensor(scales.spread, **self.kw)
        E = starts.shape[0]
        start = np.stack([sweeps[j].guess[:, k] for j, k in zip(nodes.sweep, nodes.index)], 1)  # (E, N, S)
        self.u = torch.tensor((start - scales.mean) / scales.spread, **self.kw).requires_grad_(True)
        self.gates = torch.tensor(layout.gates, device=device)
        # where a state may go in a rollout: far outside the data's range (a safeguard, not a constraint)
        lo = torch.where(self.gates, torch.zeros_like(self.mu), self.mu - 20.0 * self.sd)
        hi = torch.where(self.gates, torch.ones_like(self.mu), self.mu + 20.0 * self.sd)
        self.limits = (lo, hi)
        # where the physics residual is asked: the data's neighbourhood (a run that wanders far off it would
        # ask the model for derivatives many orders larger than any in the data)
        self.region = (torch.where(self.gates, torch.zeros_like(self.mu), self.mu - 3.0 * self.sd),
                       torch.where(self.gates, torch.ones_like(self.mu), self.mu + 3.0 * self.sd))
        # nodes whose state is given (initial_state "preset" or a vector): held at it
        held = [(n, fixed_start[j]) for n, (j, k) in enumerate(zip(nodes.sweep, nodes.index))
                if k == 0 and fixed_start[j] is not None]
        self.held = [(n, torch.tensor((np.asarray(x) - scales.mean) / scales.spread, **self.kw)) for n, x in held]
        self.members = E
        self.project()

    def theta(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Every parameter (rows, P) at log coordinates ``z`` (rows, F) of the free ones; None: the members'."""
        z = self.z if z is None else z
        th = self.theta0.expand(z.shape[0], -1).clone()
        th[:, self.free_index] = self.coords.theta(z)
        return th

    def params(self) -> dict:
        th = self.theta()
        return {name: th[:, k:k + 1] for k, name in enumerate(self.layout.model.param_names)}

    def nodes(self) -> torch.Tensor:
        return self.mu + self.sd * self.u

    def project(self) -> None:
        with torch.no_grad():
            self.coords.project_(self.z)
            self.u.copy_(_clip_gates(self, self.u))
            for n, value in self.held:
                self.u[:, n] = value


def _masked_mean(sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the first (members) of ``sq`` where ``mask``."""
    sq = torch.where(mask, sq, torch.zeros_like(sq))
    return sq.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)


class _Losses:
    """The loss terms of one step, per member (see the module docstring)."""

    def __init__(self, cfg: PINODEConfig, model, nodes: Nodes, scales: Scales, observed: np.ndarray, dtype,
                 device) -> None:
        self.cfg, self.model, self.nodes = cfg, model, nodes
        kw = dict(dtype=dtype, device=device)
        self.sd = torch.tensor(scales.spread, **kw)
        self.rate = torch.tensor(scales.rate, **kw)
        self.plain_rate = torch.full_like(self.rate, float(scales.rate[0]))
        self.plain_sd = torch.full_like(self.sd, float(scales.spread[0]))
        self.observed = torch.tensor(observed, device=device)
        self.membrane_current = float(scales.membrane_current)
        self.has_next = np.flatnonzero(nodes.next_node >= 0)

    def data(self, pred: torch.Tensor, h: int) -> torch.Tensor:
        obs = self.nodes.obs[:, :h + 1]
        mask = torch.isfinite(obs) & self.observed
        diff = (pred - torch.nan_to_num(obs).unsqueeze(0)) / self.sd
        return _masked_mean(diff * diff, mask.unsqueeze(0).expand_as(diff))

    def continuity(self, pred: torch.Tensor, nodes_state: torch.Tensor, h: int) -> torch.Tensor:
        if h < self.nodes.spacing or self.has_next.size == 0:
            return torch.zeros(pred.shape[0], dtype=pred.dtype, device=pred.device)
        sd = self.sd if self.cfg.residuals.scale_aware else self.plain_sd
        gap = (pred[:, self.has_next, self.nodes.spacing] - nodes_state[:, self.nodes.next_node[self.has_next]]) / sd
        return (gap * gap).mean((1, 2))

    def physics(self, field, p: dict, points: torch.Tensor, beyond: torch.Tensor | None = None) -> torch.Tensor:
        """Residual of the learned field against the model, per member, at ``points`` (E, B, S + 1: the states
        and the current) inside the window and at ``beyond`` (past it).

        Past the window only the network learns from it (the parameters are held there): the field's own run
        can wander where the model's derivatives are huge, and shrinking the parameters would be the cheapest
        way to agree with it — the collapse a physics loss must not cause.
        """
        sq = [self._residual(field, p, points)]
        if beyond is not None:
            sq.append(self._residual(field, {k: v.detach() for k, v in p.items()}, beyond))
        return torch.cat(sq, 1).mean(1)

    def _residual(self, field, p: dict, points: torch.Tensor) -> torch.Tensor:
        state, current = tuple(points[..., :-1].unbind(-1)), points[..., -1]
        learned = torch.stack(field.derivatives(0.0, state, p, current), -1)
        target = torch.stack(self.model.derivatives(0.0, state, p, current), -1)
        scale = self.rate if self.cfg.residuals.scale_aware else self.plain_rate
        r = (learned - target) / scale
        return (r * r).mean(-1)

    def correction(self, field, pred: torch.Tensor) -> torch.Tensor:
        c = field.correction(tuple(pred.flatten(1, 2).unbind(-1)), 0.0)
        c = c / self.membrane_current
        return (c * c).mean(1)


def _ramp(cfg: PINODEConfig, it: int, steps: int) -> float:
    """Where the controlled weights stand, 0 … 1: zero for ``physics_start`` of the steps, then a linear ramp."""
    begin = cfg.residuals.physics_start * steps
    ramp = max(1.0, cfg.residuals.ramp_fraction * steps)
    return float(np.clip((it + 1 - begin) / ramp, 0.0, 1.0))


def _horizon(cfg: PINODEConfig, it: int, steps: int, first: int, last: int) -> int:
    if not cfg.shooting.curriculum:
        return last
    grow = max(1, int(cfg.shooting.grow_fraction * steps))
    frac = min(1.0, it / grow)
    return int(round(first * (last / first) ** frac)) if last > first else last


def _collocation(pred: torch.Tensor, nodes: Nodes, h: int) -> torch.Tensor:
    """Points (E, B, S + 1) in the window where the physics residual is evaluated: the rollouts' states (and the
    observed ones where every state is observed) with their current."""
    E = pred.shape[0]
    cur = nodes.current[:, ::2 * nodes.sub][:, :h + 1]
    pts = [torch.cat([pred.detach(), cur.unsqueeze(0).unsqueeze(-1).expand(E, -1, -1, 1)], -1).flatten(1, 2)]
    obs = nodes.obs[:, :h + 1]
    full = torch.isfinite(obs).all(-1)
    if bool(full.any()):
        seen = torch.cat([obs[full], cur[full].unsqueeze(-1)], -1)
        pts.append(seen.unsqueeze(0).expand(E, -1, -1))
    return torch.cat(pts, 1)


def _clamp_points(points: torch.Tensor, region: tuple) -> torch.Tensor:
    """Collocation points (…, S + 1) with each state clipped into ``region`` ((S,), (S,)); the current is kept."""
    states = torch.maximum(torch.minimum(points[..., :-1], region[1]), region[0])
    return torch.cat([states, points[..., -1:]], -1)


def _terms(cfg: PINODEConfig, field, prob: _Problem, losses: _Losses, nodes: Nodes, h: int,
           extra: torch.Tensor | None) -> dict:
    start = prob.nodes()
    adjoint_params = tuple(field.parameters()) + (prob.z,)
    pred = rollout(field, prob.params, start, nodes.current, h, nodes.sub, nodes.dt, cfg.solver.method,
                   cfg.solver.adjoint, adjoint_params, prob.limits)
    zero = torch.zeros(prob.members, dtype=pred.dtype, device=pred.device)
    terms = {"data": losses.data(pred, h), "continuity": losses.continuity(pred, start, h),
             "physics": zero, "correction": zero}
    if cfg.field.mode == "neural" and cfg.residuals.physics:
        p = prob.params()
        if cfg.screening.screen:  # the parameters come from the screen: the field learns the model, not vice versa
            p = {k: v.detach() for k, v in p.items()}
        inside = _clamp_points(_collocation(pred, nodes, h), prob.region)
        terms["physics"] = losses.physics(field, p, inside, None if extra is None else _clamp_points(extra, prob.region))
    if cfg.field.mode == "hybrid":
        terms["correction"] = losses.correction(field, pred)
    return terms | {"pred": pred}


def _total(cfg: PINODEConfig, terms: dict, ramp: float, tie: float = 1.0) -> torch.Tensor:
    """Every term per member: the physics weight at ``ramp`` ∈ [0, 1] of its schedule, the gaps times ``tie``."""
    return (terms["data"] + tie * terms["continuity"] + ramp * float(cfg.residuals.physics_weight) * terms["physics"]
            + cfg.field.correction_penalty * terms["correction"])


def _extrapolation(cfg: PINODEConfig, field, prob: _Problem, pred: torch.Tensor, nodes: Nodes, sweeps,
                   dt_s: float) -> torch.Tensor | None:
    """Collocation points along the field's own run from the window's end (no gradients)."""
    samples = int(round(cfg.residuals.extrapolate_ms / dt_s))
    if samples < 1:
        return None
    last = int(np.flatnonzero(nodes.sweep == 0)[-1])
    reach = min(sweeps[0].t.size - 1 - int(nodes.index[last]), pred.shape[2] - 1)
    start = pred[:, last:last + 1, reach].detach()
    current = float(sweeps[0].i_ext[-1])
    every = max(1, samples // 256)
    states, _ = free_run(field, prob.params(), start, current, samples, nodes.sub, nodes.dt, cfg.solver.method, every,
                         limits=prob.limits)
    states = states[:, 0]
    ok = torch.isfinite(states).all(-1, keepdim=True).all(1, keepdim=True)
    states = torch.where(ok, states, start.expand_as(states))  # a diverged run teaches nothing
    return torch.cat([states, torch.full_like(states[..., :1], current)], -1)


def _setup(layout: Layout, sweeps: list[SweepData], observed: np.ndarray, starts: np.ndarray, cfg: PINODEConfig,
           fixed_start: list, dtype, device):
    dt_s = sampling_interval(sweeps)
    dt, sub = choose_dt(dt_s, None, float(cfg.solver.max_dt))
    longest = max(sw.t.size for sw in sweeps) - 1
    first_ms, horizon, node_ms = shooting_lengths(cfg, dt_s)
    spacing = int(min(max(1, round(node_ms / dt_s)), max(longest, 1)))
    last = spacing if horizon is None else int(min(max(1, round(horizon / dt_s)), longest))
    first = int(min(last, max(1, round(first_ms / dt_s))))
    nodes = build_nodes(sweeps, spacing, max(last, spacing), sub, dt, dtype, device)
    theta = layout.theta.copy()
    theta[layout.free_index] = starts[0]
    n_model = layout.model.n_states
    scales = data_scales(sweeps, membrane_gain(layout.model, theta, sweeps[0].guess[0, 0, :n_model],
                                               float(sweeps[0].i_ext[0])), n_model, float(cfg.field.correction_gate_ms))
    E = starts.shape[0]
    field = _make_field(cfg, layout, E, scales, dtype, device)
    prob = _Problem(layout, starts, nodes, sweeps, scales, fixed_start, dtype, device)
    losses = _Losses(cfg, layout.model, nodes, scales, observed, dtype, device)
    return dt_s, nodes, scales, field, prob, losses, first, last


def train_members(layout: Layout, sweeps: list[SweepData], observed: np.ndarray, starts: np.ndarray,
                  cfg: PINODEConfig, ctx, fixed_start: list | None = None) -> Trained:
    """Train E members (one per row of ``starts``, (E, F) canonical units) as one batch.

    Parameters
    ----------
    layout : Layout
    sweeps : list of SweepData
    observed : numpy.ndarray
        (S,) bool, the observed states (the voltage at least).
    starts : numpy.ndarray
        (E, F) starting values of the free parameters.
    cfg : PINODEConfig
    ctx : FitContext
        Device, dtype and progress.
    fixed_start : list, optional
        Per sweep None (fit the first node's hidden states) or the (S,) state it starts from.
    """
    fixed_start = fixed_start or [None] * len(sweeps)
    dt_s, nodes, scales, field, prob, losses, first, last = _setup(layout, sweeps, observed, starts, cfg,
                                                                  fixed_start, ctx.dtype, ctx.device)
    if cfg.field.mode == "neural" and cfg.residuals.physics and int(cfg.training.pretrain_steps) > 0:
        _pretrain(cfg, field, prob, losses, sweeps, ctx.rng)
    steps = int(cfg.training.steps)
    groups = [torch.optim.Adam([prob.z, prob.u], lr=float(cfg.training.lr_params))]
    if list(field.parameters()):
        groups.append(torch.optim.Adam(field.parameters(), lr=float(cfg.training.lr)))
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda it: 0.1 ** (it / steps)) for o in groups]
    history = {k: [] for k in ("step", "horizon", "loss", "data", "continuity", "physics", "correction", "theta")}
    extra, neural = None, cfg.field.mode == "neural" and cfg.residuals.physics
    bar = _progress(ctx, steps)
    for it in range(steps):
        h = _horizon(cfg, it, steps, first, last)
        weight = _ramp(cfg, it, steps)
        terms = _terms(cfg, field, prob, losses, nodes, h, extra)
        total = _total(cfg, terms, weight)
        for o in groups:
            o.zero_grad(set_to_none=True)
        torch.where(torch.isfinite(total), total, torch.zeros_like(total)).sum().backward()
        for o in groups:
            for g in o.param_groups:
                for q in g["params"]:
                    if q.grad is not None:
                        torch.nan_to_num_(q.grad, nan=0.0, posinf=0.0, neginf=0.0)
            o.step()
        for s in scheds:
            s.step()
        prob.project()
        if neural and (it % 50 == 0 or extra is None):
            extra = _extrapolation(cfg, field, prob, terms["pred"], nodes, sweeps, dt_s)
        if it % int(cfg.output.log_every) == 0 or it == steps - 1:
            _record(history, it, h, total, terms, prob)
            if bar is not None:
                bar.set_postfix(loss=f"{float(np.nanmin(total.detach().cpu().numpy())):.3g}", horizon_ms=f"{h * dt_s:.3g}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if int(cfg.training.polish_steps) > 0:
        polished = _polish(cfg, field, prob, losses, nodes, last, extra)
        history["polish_loss"] = polished
    extra_info: dict = {}
    if cfg.field.mode != "neural":  # skipped inside for a field with weights ('hybrid')
        shooting = _multiple_shooting_lm(cfg, field, prob, losses, nodes, max(last, nodes.spacing))
        extra_info |= {f"ms_{k}": v for k, v in shooting.items()}
    if cfg.field.mode != "neural" and int(cfg.training.finish_steps) > 0:
        with torch.no_grad():
            shooting_data = _terms(cfg, field, prob, losses, nodes, max(last, nodes.spacing), extra)["data"]
        finish = _single_shooting(cfg, field, prob, nodes, sweeps, scales, observed, shooting_data)
        history["finish_loss"] = finish.pop("costs")
        extra_info |= {f"finish_{k}": v for k, v in finish.items()}
    return _finish(cfg, field, prob, losses, nodes, sweeps, dt_s, last, extra, history,
                   info={"dt_ms": nodes.dt, "node_ms": nodes.spacing * dt_s, "horizon_ms": last * dt_s,
                         "n_nodes": int(nodes.index.size), "physics_weight": float(cfg.residuals.physics_weight)}
                   | extra_info)


def _polish(cfg: PINODEConfig, field, prob: _Problem, losses: _Losses, nodes: Nodes, h: int,
            extra: torch.Tensor | None) -> list[float]:
    """L-BFGS (strong Wolfe) on parameters, nodes and networks at the last horizon and the full physics weight.

    Adam leaves the slow phase of a spiking field a little off; a quasi-Newton finish takes the fit to the
    precision a forecast over many periods needs. Returns the loss at each evaluation.
    """
    trainable = [prob.z, prob.u] + list(field.parameters())
    trace: list[float] = []
    cap = float(cfg.shooting.continuity_weight)
    ties = [cap] if cap <= 10.0 else list(np.geomspace(10.0, cap, max(1, int(round(np.log10(cap))))))
    for tie in ties:
        opt = torch.optim.LBFGS(trainable, lr=1.0, max_iter=max(1, int(cfg.training.polish_steps) // len(ties)),
                                history_size=30, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                tolerance_change=1e-14)
        _lbfgs(cfg, opt, field, prob, losses, nodes, h, extra, trainable, float(tie), trace)
    prob.project()
    return trace


def _data_residuals(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """(rows, N) observed residuals of rollouts ``pred`` (rows, …, S) against ``target``, in units of each state's
    spread ``sd`` (S,), where ``mask`` (1, …, S)."""
    diff = (pred - target) / sd
    return diff[mask.expand_as(diff)].reshape(pred.shape[0], -1)


def _multiple_shooting_lm(cfg: PINODEConfig, field, prob: _Problem, losses: _Losses, nodes: Nodes, h: int) -> dict:
    """Levenberg–Marquardt on the parameters and every latent node state at once (Bock's multiple shooting).

    The residuals are the training loss's as a sum of squares: every rollout's data, and the gaps between
    neighbouring rollouts weighted by ``continuity_weight``. Short rollouts keep the residuals nearly linear in
    the unknowns, so Gauss–Newton converges in a few steps where the single-shooting finish (one rollout over
    many spikes) crawls; that finish then starts at the optimum. Only for a field without weights (the model
    alone) and at most ``MS_UNKNOWNS`` unknowns per member (the Jacobian is dense). Returns what it did; empty
    where skipped.
    """
    F, S = prob.z.shape[1], prob.u.shape[-1]
    held = {n for n, _ in prob.held}
    free = [n for n in range(nodes.index.size) if n not in held]
    if list(field.parameters()) or F + len(free) * S > MS_UNKNOWNS or int(cfg.training.ms_finish_steps) < 1:
        return {}
    obs = nodes.obs[:, :h + 1]
    mask = (torch.isfinite(obs) & losses.observed).unsqueeze(0)
    target = torch.nan_to_num(obs).unsqueeze(0)
    links = losses.has_next if h >= nodes.spacing else np.zeros(0, int)
    tie = math.sqrt(float(cfg.shooting.continuity_weight) * float(mask.sum()) / max(1, links.size * S))

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = prob.u.detach()[:1].expand(x.shape[0], -1, -1).clone()  # held nodes are alike in every member
        u[:, free] = x[:, F:].reshape(x.shape[0], len(free), S)
        return x[:, :F], u

    def residuals(x: torch.Tensor) -> torch.Tensor:
        z, u = split(x)
        th = prob.theta(z)
        p = {name: th[:, k:k + 1] for k, name in enumerate(prob.layout.model.param_names)}
        start = prob.mu + prob.sd * u
        pred = rollout(field, lambda: p, start, nodes.current, h, nodes.sub, nodes.dt, cfg.solver.method,
                       limits=prob.limits)
        r = _data_residuals(pred, target, mask, losses.sd)
        if links.size == 0:
            return r
        gap = (pred[:, links, nodes.spacing] - start[:, nodes.next_node[links]]) / losses.sd
        return torch.cat([r, tie * gap.flatten(1)], 1)

    def project(x: torch.Tensor) -> torch.Tensor:
        z, u = split(x)
        z = z.clone()
        prob.coords.project_(z)
        return torch.cat([z, _clip_gates(prob, u)[:, free].flatten(1)], 1)

    x0 = torch.cat([prob.z.detach(), prob.u.detach()[:, free].flatten(1)], 1)
    fit = levenberg_marquardt(residuals, x0, project, max_iter=int(cfg.training.ms_finish_steps))
    with torch.no_grad():
        z, u = split(fit.x)
        prob.z.copy_(z)
        prob.u[:, free] = u[:, free]
    prob.project()
    return {"cost": fit.cost.tolist(), "iterations": fit.iterations, "unknowns": int(x0.shape[1])}


def _single_shooting(cfg: PINODEConfig, field, prob: _Problem, nodes: Nodes, sweeps: list[SweepData], scales: Scales,
                     observed: np.ndarray, shooting_data: torch.Tensor) -> dict:
    """Finish on one rollout per whole sweep from its first state (see :mod:`neo_pinn_pinode.finish`).

    Levenberg–Marquardt on the parameters and first states (with their local covariance); in ``hybrid`` also on
    the correction's output layer, in which the current is linear (the hidden layers, far too many weights for
    Gauss–Newton, are held as trained), with the correction penalty as extra residuals. The shooting nodes are
    then set on that rollout, so what follows (loss, states, forecast) sees one trajectory. Returns what the finish
    did.

    A member whose one continuous rollout fits the data worse than twice its multiple-shooting data term (a field
    that is stable only between nodes) keeps its multiple-shooting fit (``finish_kept``: per member, 1 = finished).
    """
    kw = dict(dtype=prob.mu.dtype, device=prob.mu.device)
    longest = max(max(sw.t.size for sw in sweeps) - 1, 1)
    whole = build_nodes(sweeps, longest, longest, nodes.sub, nodes.dt, **kw)
    losses = _Losses(cfg, prob.layout.model, whole, scales, observed, **kw)
    firsts = [int(np.flatnonzero(nodes.sweep == j)[0]) for j in range(len(sweeps))]
    held = {n for n, _ in prob.held}
    fitted = [c for c, n in enumerate(firsts) if n not in held]  # sweeps whose first state is fitted
    u0 = prob.u[:, firsts].detach().clone()

    def rows_field(last: torch.Tensor | None, points: int):
        """The field for R = E·m rows of ``points`` points each, with each row's output layer ``last`` (R, W)."""
        if last is None:
            return field
        return field.with_last_layer(last.reshape(prob.members, -1, last.shape[-1]).repeat_interleave(points, 1))

    def run(z: torch.Tensor, u: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """States (R, J, H + 1, S) of R = E·m rows (member-major: m copies per member, e.g. perturbed ones):
        each member's copies run as extra points of that member, so a per-member network sees its own."""
        E, J, m = prob.members, u.shape[1], z.shape[0] // prob.members
        th = prob.theta(z)
        p = {name: th[:, k].reshape(E, m).repeat_interleave(J, 1)
             for k, name in enumerate(prob.layout.model.param_names)}
        start = (prob.mu + prob.sd * u).reshape(E, m * J, -1)
        pred = rollout(rows_field(last, J), lambda: p, start, whole.current.repeat(m, 1), whole.horizon, whole.sub,
                       whole.dt, cfg.solver.method, limits=prob.limits)
        return pred.reshape(z.shape[0], J, *pred.shape[2:])

    def correction(pred: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """The correction current (R, J·(H + 1)) along rows ``pred`` (R, J, H + 1, S), in units of its scale."""
        points = pred.shape[1] * pred.shape[2]
        states = pred.reshape(prob.members, -1, pred.shape[-1]).unbind(-1)
        return rows_field(last, points).correction(states, 0.0).reshape(pred.shape[0], -1) / scales.membrane_current

    learned = isinstance(field, HybridField)
    z_before, u_before = prob.z.detach().clone(), prob.u.detach().clone()
    last_before = field.last_layer().detach().clone() if learned else None
    info = _lm_finish(cfg, prob, losses, u0, fitted, run, correction if learned else None, last_before)
    last_after = info.pop("last")
    with torch.no_grad():
        if learned:
            field.set_last_layer(last_after)
        pred = run(prob.z, info.pop("u0"))
        for n in range(nodes.index.size):
            prob.u[:, n] = (pred[:, int(nodes.sweep[n]), int(nodes.index[n])] - prob.mu) / prob.sd
        keep = torch.isfinite(pred).flatten(1).all(1) & (losses.data(pred, whole.horizon) <= 2.0 * shooting_data)
        prob.z.copy_(torch.where(keep[:, None], prob.z, z_before))
        prob.u.copy_(torch.where(keep[:, None, None], prob.u, u_before))
        if learned:
            field.set_last_layer(torch.where(keep[:, None], field.last_layer(), last_before))
    prob.project()
    return info | {"kept": keep.int().tolist()}


def _clip_gates(prob: _Problem, u: torch.Tensor) -> torch.Tensor:
    """States ``u`` (…, S) in units of their spread with the gates clipped into [0, 1]."""
    lo, hi = (0.0 - prob.mu) / prob.sd, (1.0 - prob.mu) / prob.sd
    return torch.where(prob.gates, torch.maximum(torch.minimum(u, hi), lo), u)


def _lm_finish(cfg, prob: _Problem, losses: _Losses, u0: torch.Tensor, fitted: list, run, correction=None,
               last: torch.Tensor | None = None) -> dict:
    """Levenberg–Marquardt on [log parameters | fitted first states | output layer of the correction]; the
    residuals are the data term's and, with a correction, the penalty's (weighted as in the training loss)."""
    F, S = prob.z.shape[1], u0.shape[-1]
    n_u = len(fitted) * S
    obs = losses.nodes.obs
    mask = (torch.isfinite(obs) & losses.observed).unsqueeze(0)
    target = torch.nan_to_num(obs).unsqueeze(0)
    penalty = float(cfg.field.correction_penalty) if correction is not None else 0.0

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        u = u0[:1].expand(x.shape[0], -1, -1).clone()
        if fitted:
            u[:, fitted] = x[:, F:F + n_u].reshape(x.shape[0], len(fitted), S)
        return x[:, :F], u, (x[:, F + n_u:] if last is not None else None)

    def residuals(x: torch.Tensor) -> torch.Tensor:
        z, u, w = split(x)
        pred = run(z, u, w)
        r = _data_residuals(pred, target, mask, losses.sd)
        if penalty > 0.0:
            c = correction(pred, w)
            r = torch.cat([r, c * math.sqrt(penalty * r.shape[1] / c.shape[1])], 1)
        return r

    def project(x: torch.Tensor) -> torch.Tensor:
        z, u, w = split(x)
        z = z.clone()
        prob.coords.project_(z)
        parts = [z, _clip_gates(prob, u)[:, fitted].flatten(1)] + ([w] if w is not None else [])
        return torch.cat(parts, 1)

    parts = [prob.z.detach(), u0[:, fitted].flatten(1)] + ([last] if last is not None else [])
    fit = levenberg_marquardt(residuals, torch.cat(parts, 1), project, max_iter=int(cfg.training.finish_steps))
    with torch.no_grad():
        prob.z.copy_(fit.x[:, :F])
    _, u, w = split(fit.x)
    return {"u0": u, "last": w, "method": "levenberg_marquardt", "cost": fit.cost.tolist(),
            "iterations": fit.iterations, "costs": fit.costs, "covariance_z": fit.covariance[:, :F, :F]}


def _lbfgs(cfg, opt, field, prob, losses, nodes, h, extra, trainable, tie: float, trace: list) -> None:
    """One L-BFGS run at continuity weight ``tie``; a run that ends non-finite is undone."""

    def closure():
        opt.zero_grad(set_to_none=True)
        total = _total(cfg, _terms(cfg, field, prob, losses, nodes, h, extra), 1.0, tie)
        loss = torch.where(torch.isfinite(total), total, torch.zeros_like(total)).sum()
        loss.backward()
        for q in trainable:
            if q.grad is not None:
                torch.nan_to_num_(q.grad, nan=0.0, posinf=0.0, neginf=0.0)
        trace.append(float(loss.detach()))
        return loss

    before = [q.detach().clone() for q in trainable]
    opt.step(closure)
    if not all(torch.isfinite(q).all() for q in trainable):  # a failed line search: keep what came before
        with torch.no_grad():
            for q, b in zip(trainable, before):
                q.copy_(b)
    prob.project()


def _pretrain(cfg: PINODEConfig, field, prob: _Problem, losses: _Losses, sweeps, rng: np.random.Generator) -> None:
    """Fit the neural field to the model's derivatives at the data's states and jittered copies of them.

    Only the network learns (the parameters are held at their screened values): a regression without any
    rollout, cheap enough to take the field close to the model before training through the solver.
    """
    base = np.concatenate([np.concatenate([sw.guess, np.broadcast_to(sw.i_ext[None, :, None], sw.guess.shape[:2] + (1,))],
                                          -1) for sw in sweeps], 1)  # (E, T, S + 1)
    spread = np.append(np.asarray(prob.sd.cpu()), 0.0)
    jitter = [base + 0.05 * spread * rng.standard_normal(base.shape) for _ in range(2)]
    pts = torch.tensor(np.concatenate([base] + jitter, 1), dtype=prob.mu.dtype, device=prob.mu.device)
    pts = _clamp_points(pts, prob.region)
    p = {k: v.detach() for k, v in prob.params().items()}
    params = list(field.parameters())
    steps = int(cfg.training.pretrain_steps)
    opt = torch.optim.Adam(params, lr=float(cfg.training.lr))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.1 ** (it / steps))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        losses.physics(field, p, pts).sum().backward()
        opt.step()
        sched.step()
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=max(1, steps // 4), history_size=30,
                              line_search_fn="strong_wolfe", tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        lbfgs.zero_grad(set_to_none=True)
        loss = losses.physics(field, p, pts).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)


def _progress(ctx, steps: int):
    if not ctx.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="pinode", unit="step")


def _record(history: dict, it: int, h: int, total: torch.Tensor, terms: dict, prob: _Problem) -> None:
    def med(x):
        x = x.detach().cpu().numpy()
        return float(np.nanmedian(x)) if np.isfinite(x).any() else math.nan

    history["step"].append(it)
    history["horizon"].append(h)
    history["loss"].append(med(total))
    for k in ("data", "continuity", "physics", "correction"):
        history[k].append(med(terms[k]))
    history["theta"].append(prob.coords.theta(prob.z).detach().cpu().numpy().tolist())


@torch.no_grad()
def _finish(cfg, field, prob: _Problem, losses: _Losses, nodes: Nodes, sweeps, dt_s: float, last: int, extra,
            history: dict, info: dict) -> Trained:
    """Final loss at the full horizon, the stitched reconstruction, the correction current and the forecast."""
    terms = _terms(cfg, field, prob, losses, nodes, max(last, nodes.spacing), extra)
    total = _total(cfg, terms, 1.0, float(cfg.shooting.continuity_weight)).cpu().numpy()
    pred = terms["pred"]
    p = prob.params()
    states, corrections, forecast = [], [], []
    for j, sw in enumerate(sweeps):
        out = torch.empty(prob.members, sw.t.size, pred.shape[-1], dtype=pred.dtype, device=pred.device)
        for n in np.flatnonzero(nodes.sweep == j):
            k = int(nodes.index[n])
            stop = sw.t.size if nodes.next_node[n] < 0 else k + nodes.spacing
            out[:, k:stop] = pred[:, n, :stop - k]
        states.append(out.cpu().numpy())
        corr = field.correction(tuple(out.unbind(-1)), 0.0)
        corrections.append(None if corr is None else corr.cpu().numpy())
        forecast.append(_forecast(cfg, field, p, out[:, -1], float(sw.i_ext[-1]), float(sw.t[-1]), dt_s, nodes))
    return Trained(theta_free=prob.coords.theta(prob.z).cpu().numpy(), loss=total,
                   loss_terms={k: terms[k].cpu().numpy() for k in ("data", "continuity", "physics", "correction")},
                   states=states, corrections=None if corrections[0] is None else corrections,
                   forecast=forecast, history=history, info=info | {"field": field, "params": p})


def _forecast(cfg, field, p: dict, start: torch.Tensor, current: float, t_end: float, dt_s: float, nodes: Nodes):
    """(times (K,), states (E, K, S), correction (E, K) or None) after the window, or None without a forecast."""
    samples = int(round(float(cfg.output.forecast_ms) / dt_s))
    if samples < 1:
        return None
    states, corr = free_run(field, p, start.unsqueeze(1), current, samples, nodes.sub, nodes.dt, cfg.solver.method,
                            correction=True)
    t = t_end + dt_s * np.arange(1, samples + 1)
    return t, states[:, 0, 1:].cpu().numpy(), None if corr is None else corr[:, 0, 1:].cpu().numpy()
