"""Training of an ensemble of physics-informed networks, all members and segments as one batch.

:func:`train_members` is the engine behind the ``pinn`` backend (and the benchmark, which hands it one
member per initial-guess draw). Members never interact: each has its own network weights, trainable
frequencies, biophysical parameters, loss weights and optimiser state, so ``E`` members trained
together give exactly what ``E`` separate fits would, at the cost of one batched pass.

Loss of member ``e`` (all terms are means over the step's points, in normalised units):

* data ``L_d = mean((V_net − V_obs)² / σ_V²)`` — ``σ_V`` the recorded voltage's standard deviation;
* physics, one term per state ``L_s = mean(((du_s/dt − f_s(u, θ, I)) / r_s)²)`` with ``f = model.rhs`` and
  ``r_s`` the spread of that state's derivative in the warm start (scale-aware residuals);
  slow states (``slow_states``, e.g. Ca) instead in integral form over intervals of a few inter-spike
  intervals (the change against a stratified quadrature of ``f_s``), plus on a periodic window their
  mismatch one period later (``periodic_slow_states``); where spikes are brief, the fast hidden states'
  residuals are divided by their relaxation rate ``|∂f_s/∂u_s|`` (``rate_scaled_residuals``) and half of
  the points are drawn on the spikes (``spike_sampling``);
* continuity ``L_c`` of all states (divided by their scales) where consecutive segments meet;
* stage 1 only: the hidden outputs are pulled towards the warm-start states (``warm_start_hidden``).

Before anything is trained, ``screen_candidates`` > 0 replaces every member's start by the best of a
network-free search (:func:`~neo_pinn_pinn.prepare.screen_parameters`).

Stage 1 (``two_stage``) trains the networks on ``L_d`` alone; stage 2 adds the physics and continuity
terms and trains network and parameters jointly. With ``adaptive_weights`` the terms of stage 2 are
weighted ``λ_i = Σ_j g_j / (g_i + ε Σ_j g_j)`` (``g_i`` the norm of term i's gradient with respect to the
network weights, per member), smoothed by an exponential moving average: every term pulls on the
network equally hard, and ε caps a weight at 1/ε however small its gradient becomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.estimator import FitContext
from neo_pinn.models.base import gate_mask
from neo_pinn.problem import EstimationProblem

from .network import EnsembleNet
from .prepare import (
    Flat,
    SearchSpace,
    Segments,
    dominant_frequencies,
    fast_share,
    driven_hidden_states,
    flatten_traces,
    make_segments,
    acting_on_slow_states,
    median_isi,
    misfit_intervals,
    periodic_pairs,
    quasi_steady_hidden,
    sampling_weights,
    scaling_slow_states,
    screen_parameters,
    slow_states,
)

__all__ = ["Trained", "train_members"]


@dataclass
class Trained:
    """What :func:`train_members` returns.

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


class _ParamMap(SearchSpace):
    """:class:`~neo_pinn_pinn.prepare.SearchSpace` with the torch side: the coordinates are projected into
    the bounds after every optimiser step (projected Adam); the map itself is smooth, so no gradient is
    ever cut."""

    def __init__(self, problem: EstimationProblem, dtype, device) -> None:
        super().__init__(problem)
        kw = dict(dtype=dtype, device=device)
        self.t_log = torch.tensor(self.log, device=device)
        self.t_width = torch.tensor(self.width, **kw)
        self.t_zlo, self.t_zhi = torch.tensor(self.zlo, **kw), torch.tensor(self.zhi, **kw)

    def theta(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where(self.t_log, torch.exp(z), z * self.t_width)

    def project_(self, z: torch.Tensor) -> None:
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.t_zhi), self.t_zlo))


def _schedule(step: int, n: int, lr0: float, lr1: float) -> float:
    """Exponential decay from ``lr0`` to ``lr1`` over ``n`` steps."""
    if n <= 1:
        return lr0
    return lr0 * (lr1 / lr0) ** (min(step, n) / (n - 1))


def train_members(problem: EstimationProblem, inits: np.ndarray, cfg: dict, ctx: FitContext) -> Trained:
    """Train ``E = len(inits)`` independent PINNs, one per row of initial free-parameter values.

    Parameters
    ----------
    problem : EstimationProblem
    inits : numpy.ndarray
        (E, F) initial guesses of the free parameters (canonical units).
    cfg : dict
        The backend's configuration (see :class:`neo_pinn_pinn.backend.PINN`).
    ctx : FitContext
        Seed, device, dtype and progress flag.

    Returns
    -------
    Trained
    """
    import time

    model = problem.model
    dev, dtype = ctx.device, ctx.dtype
    kw = dict(dtype=dtype, device=dev)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    inits = np.atleast_2d(np.asarray(inits, float))
    E = inits.shape[0]
    S = model.n_states
    free_idx = [model.param_index(n) for n in problem.free_names]
    gates = gate_mask(model, cfg.get("gate_states"))
    t_start = time.perf_counter()
    flat: Flat = flatten_traces(problem)
    screened = None
    slow_params: list[int] = []
    intervals = [float(cfg["screen_interval_ms"])]
    if int(cfg["screen_candidates"]) > 0:
        # replace every member's start by the best of a search on the voltage misfit of the
        # voltage-driven hidden states (no network needed); see prepare.screen_parameters. When a free
        # parameter sets the pace of a slow state (Ca, NaP inactivation; found in the hidden states driven
        # at the initial guesses) the misfit needs long intervals to see it
        slow = _slow_mask(problem, cfg, inits, flat, gates)
        tr0 = problem.traces[0]
        pick = np.linspace(0, tr0.t.size - 1, 64).astype(int)
        theta0 = problem.theta_full(inits[0])
        y_test = np.concatenate([tr0.v[pick, None], np.tile(quasi_steady_hidden(
            model, theta0[None], float(tr0.v[0]), float(tr0.i_ext[0]), gates), (64, 1))], 1)
        acting = acting_on_slow_states(model, theta0, free_idx, slow, y_test, tr0.i_ext[pick])
        # held after the screen as well: conductances a network could trade for a rescaled slow state
        scaling = scaling_slow_states(model, theta0, free_idx, slow, y_test, tr0.i_ext[pick])
        slow_params = sorted(set(acting) | set(scaling))
        intervals = misfit_intervals(problem, float(cfg["screen_interval_ms"]), bool(acting),
                                     held=bool(slow_params) and cfg["hold_slow_parameters"] is not False)
        screened, misfit = screen_parameters(problem, inits, gates, int(cfg["screen_candidates"]),
                                             int(cfg["screen_rounds"]), float(cfg["screen_spread"]),
                                             intervals, np.random.default_rng(ctx.seed),
                                             smooth_ms=float(cfg["screen_smooth_ms"]))
        inits = screened
    t_screen = time.perf_counter() - t_start
    theta_base = problem.theta_full(inits[0])
    theta_init_full = np.tile(theta_base, (E, 1))
    theta_init_full[:, free_idx] = inits

    # ---------------------------------------------------------------- data, segments, spectrum
    seg: Segments = make_segments(problem, flat, cfg["spikes_per_segment"], cfg["segment_ms"])
    K = seg.n
    G = E * K
    use_fourier = bool(cfg["fourier_features"])
    freqs = dominant_frequencies(problem, int(cfg["n_fourier"]), float(cfg["max_frequency_hz"])) if use_fourier \
        else np.zeros(0)
    f0 = float(freqs[0]) if freqs.size else 1.0 / max(float(np.ptp(flat.t)), 1e-6)
    n_tr = int(cfg["n_trainable_frequencies"]) if use_fourier else 0
    trainable = f0 * 2.0 ** (-np.arange(1, n_tr + 1, dtype=float))  # sub-harmonics: slower time scales

    # ---------------------------------------------------------------- warm start of the hidden states
    warm = np.empty((E, flat.t.size, S - 1))
    for k in range(len(problem.traces)):
        a, b = flat.offsets[k], flat.offsets[k + 1]
        warm[:, a:b] = driven_hidden_states(model, theta_init_full, flat.t[a:b], flat.v[a:b], flat.i_ext[a:b], gates,
                                            spinup=bool(cfg["warm_spinup"]))

    # slow states get the integral residual in training; with "auto", found at the starts training begins from
    slow = slow_states(model, problem, warm) if cfg["slow_states"] == "auto" else _slow_mask(problem, cfg, inits,
                                                                                             flat, gates)

    # ---------------------------------------------------------------- normalisation
    # per member (members never share anything): the hidden states' offsets/scales and residual scales
    # come from that member's own warm start
    v_mu = float(flat.v.mean())
    v_sd = max(float(flat.v.std()), 1.0)
    off = np.zeros((E, S))
    scl = np.ones((E, S))
    off[:, 0], scl[:, 0] = v_mu, v_sd
    rsc = np.ones((E, S))
    rsc[:, 0] = v_sd * 2.0 * math.pi * f0
    dt_flat = np.maximum(np.diff(flat.t), 1e-9)
    for j in range(1, S):
        w = warm[:, :, j - 1]
        off[:, j] = w.mean(1)
        scl[:, j] = np.maximum(w.std(1), max(0.05 * model.states[j].scale, 1e-6))
        d = np.diff(w, axis=1) / dt_flat[None]
        d = np.where(np.isfinite(d), d, 0.0)
        rsc[:, j] = np.maximum(d.std(1), np.maximum(scl[:, j] * 2.0 * math.pi * f0 * 1e-3, 1e-12))

    if slow.any():
        # a slow state's integral residual compares changes over long intervals: its scale is the spread
        # of the warm start's changes over half a segment per unit time, not of its (spiky) derivative
        lag = max(1, int(round(0.5 * float(np.median(seg.hi - seg.lo)))))
        for j in np.flatnonzero(slow):
            w = warm[:, :, j - 1]
            d = (w[:, lag:] - w[:, :-lag]) / np.maximum(flat.t[lag:] - flat.t[:-lag], 1e-9)[None]
            rsc[:, j] = np.maximum(d.std(1), 1e-12)
    g_of = np.repeat(np.arange(E), K)  # member of each group
    t_off = torch.tensor(off[g_of], **kw)[:, None, :]  # (G, 1, S)
    t_scl = torch.tensor(scl[g_of], **kw)[:, None, :]
    t_rsc = torch.tensor(rsc[g_of], **kw)[:, None, :]
    t_gate = torch.tensor(gates, device=dev)
    sscale = np.where(gates[None, :], 1.0, scl)
    state_scale = torch.tensor(sscale[g_of], **kw)  # (G, S): continuity and warm-start terms

    def decode(uh: torch.Tensor, duh: torch.Tensor):
        """Network outputs → states in canonical units (gates through a logistic)."""
        sig = torch.sigmoid(uh)
        u = torch.where(t_gate, sig, t_off + t_scl * uh)
        du = torch.where(t_gate, sig * (1 - sig) * duh, t_scl * duh)
        return u, du

    tt = torch.tensor(flat.t, **kw)
    vv = torch.tensor(flat.v, **kw)
    ii = torch.tensor(flat.i_ext, **kw)
    warm_t = torch.tensor(warm, **kw)  # (E, T, S-1)
    centre = torch.tensor(np.tile(seg.centre, E), **kw)  # (G,)
    half = torch.tensor(np.tile(np.maximum(seg.half, 1e-9), E), **kw)
    lo_t = torch.tensor(np.tile(seg.lo, E), device=dev)
    n_in = torch.tensor(np.tile(seg.hi - seg.lo, E), device=dev)
    t_left = torch.tensor(np.tile(seg.t_left, E), **kw)
    t_right = torch.tensor(np.tile(seg.t_right, E), **kw)
    link = torch.tensor(np.tile(seg.linked, E), device=dev)[:-1] if G > 1 else torch.zeros(0, dtype=torch.bool)
    member_of_group = torch.arange(E, device=dev).repeat_interleave(K)

    net = EnsembleNet(E, K, S, torch.tensor(freqs), torch.tensor(trainable), int(cfg["width"]), int(cfg["depth"]),
                      bool(cfg["rwf"]), float(cfg["rwf_mean"]), float(cfg["rwf_std"]), gen, dtype, dev)
    pmap = _ParamMap(problem, dtype, dev)
    z = torch.tensor(pmap.to_z(inits), **kw).requires_grad_(True)  # (E, F)
    theta_fixed = torch.tensor(theta_init_full, **kw)
    free_idx_t = torch.tensor(free_idx, device=dev)

    def theta_full_of(zz: torch.Tensor) -> torch.Tensor:
        th = theta_fixed.clone()
        th[:, free_idx_t] = pmap.theta(zz)
        return th

    # the step's points are shared among a member's segments (so many segments do not multiply the cost),
    # with at least ``min_segment_points`` per segment
    m_pts = max(int(cfg["min_segment_points"]), int(math.ceil(int(cfg["batch_points"]) / K)))
    relative = cfg["residual_norm"] == "relative"

    # a share of each step's points is drawn where the voltage moves fast (spikes), so that brief
    # excursions of the fast gates are sampled every step; the rest uniformly
    w_flat = sampling_weights(flat, float(cfg["spike_sampling_ms"]))
    share = fast_share(w_flat)
    if cfg["spike_sampling"] == "auto":
        # only where spikes are rare enough that uniform points miss them (a burster's brief spikes)
        frac_fast = 0.5 if share < float(cfg["spike_sampling_below"]) else 0.0
    else:
        frac_fast = float(cfg["spike_sampling"])
    m_fast = int(round(frac_fast * m_pts))
    if m_fast > 0:
        len_max = int((seg.hi - seg.lo).max())
        pos = np.arange(len_max)
        w_seg = np.where(pos[None, :] < (seg.hi - seg.lo)[:, None],
                         w_flat[np.minimum(seg.lo[:, None] + pos[None, :], flat.t.size - 1)], 0.0)
        w_seg = w_seg + 1e-12 * (pos[None, :] < (seg.hi - seg.lo)[:, None])  # never an all-zero row
        w_groups = torch.tensor(np.tile(w_seg, (E, 1)), dtype=torch.float64)  # (G, len_max), CPU sampler

    def sample_points():
        """(G, m) random sample indices inside each group's segment."""
        r = torch.rand(G, m_pts - m_fast, generator=gen).to(dev)
        idx = lo_t[:, None] + torch.floor(r * n_in[:, None].to(dtype)).long()
        if m_fast > 0:
            fast = torch.multinomial(w_groups, m_fast, replacement=True, generator=gen).to(dev)
            idx = torch.cat([idx, lo_t[:, None] + fast], 1)
        return idx

    def run(idx: torch.Tensor, with_ends: bool):
        """States and derivatives at flat sample indices ``idx`` (G, N) (+ both segment ends)."""
        t_pts = tt[idx]
        if with_ends:
            t_pts = torch.cat([t_pts, t_left[:, None], t_right[:, None]], 1)
        rel = t_pts - centre[:, None]
        uh, duh = net(rel, rel / half[:, None], (1.0 / half)[:, None])
        return decode(uh, duh)

    form = str(cfg["residual_form"])
    if form not in ("strong", "weak", "both"):
        raise ConfigurationError("pinn option residual_form must be 'strong', 'weak' or 'both'.")
    L_w = max(1, int(cfg["weak_samples"]))
    m_w = max(1, int(cfg["weak_intervals"]))
    span_w = torch.clamp(n_in - 1, min=1)

    def normalise(sq: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean squared residual per member and state, (E, S); with ``residual_norm="relative"`` divided by
        the current spread of the two sides (a state cannot satisfy its equation by going flat — rate
        parameter → 0, state constant — the collapse PINNs fall into)."""
        r2 = sq.reshape(E, -1, S).mean(1)
        if relative:
            spread = ((a ** 2).reshape(E, -1, S).mean(1) + (b ** 2).reshape(E, -1, S).mean(1)).detach()
            r2 = r2 / (0.5 * spread + float(cfg["relative_floor"]))
        return r2

    def weak_residual(th: torch.Tensor) -> torch.Tensor:
        """Integral form over random intervals of ``weak_samples`` samples: the change of every state
        against the trapezoidal integral of its right-hand side, divided by the interval's length. Spikes
        drive brief, steep changes of the hidden states (Ca jumps, gates flip) whose derivative a network
        matches poorly; regressed pointwise, that error biases rate parameters towards zero (attenuation).
        Their integral over the interval is what the state's values must show, and values are what the
        network represents well."""
        r = torch.rand(G, m_w, generator=gen).to(dev)
        length = torch.minimum(torch.full_like(span_w, L_w), span_w)  # (G,)
        start = lo_t[:, None] + torch.floor(r * (n_in - length).clamp(min=1)[:, None].to(dtype)).long()
        offs = torch.arange(L_w + 1, device=dev)
        idx_w = start[..., None] + torch.minimum(offs[None, None, :], length[:, None, None])  # (G, m, L+1)
        flat_idx = idx_w.reshape(G, -1)
        uw, _ = run(flat_idx, with_ends=False)
        fw = model.rhs(tt[flat_idx], uw, th, ii[flat_idx]).reshape(G, m_w, L_w + 1, S)
        uw = uw.reshape(G, m_w, L_w + 1, S)
        tw = tt[idx_w]
        dtw = (tw[..., 1:] - tw[..., :-1]).unsqueeze(-1)
        integral = (0.5 * (fw[:, :, 1:] + fw[:, :, :-1]) * dtw).sum(2)  # (G, m, S)
        dur = (tw[..., -1] - tw[..., 0]).clamp(min=1e-9).unsqueeze(-1)
        change = (uw[:, :, -1] - uw[:, :, 0]) / dur / t_rsc
        drive = integral / dur / t_rsc
        return normalise((change - drive) ** 2, change, drive)

    slow_t = torch.tensor(slow, device=dev)
    Q_s = max(2, int(cfg["slow_points"]))
    m_s = max(1, int(cfg["slow_intervals"]))
    seg_len = t_right - t_left  # (G,)
    # intervals of about slow_interval_isi inter-spike intervals: long enough to hold whole spikes, short
    # enough that Q_s points sample the spiky drive densely (a sparse quadrature is a noisy regressor, and
    # a noisy regressor biases the rate towards zero just as the pointwise form does)
    isi = median_isi(problem)
    slow_len = float(cfg["slow_interval_isi"]) * (isi if isi is not None else 2.0 * float(seg.half.max()))
    dt_seg = seg_len / n_in.to(dtype)

    def slow_residual(th: torch.Tensor) -> torch.Tensor:
        """Integral form for the slow states over long random intervals (half to all of the segment):
        the change of the state against ``Q_s`` stratified random samples of its right-hand side times
        the interval's length (an unbiased quadrature). A slow state such as Ca jumps a little at every
        spike; a smooth network cannot follow the jumps, and regressed pointwise the spiky drive then
        biases its rate towards zero (attenuation). Over intervals holding whole spikes the change is
        what the network represents well and the integral of the drive is exact."""
        length = torch.minimum(seg_len, torch.full_like(seg_len, slow_len))[:, None] * \
            (0.5 + 0.5 * torch.rand(G, m_s, generator=gen).to(dev, dtype))  # (G, m)
        start = t_left[:, None] + (seg_len[:, None] - length) * torch.rand(G, m_s, generator=gen).to(dev, dtype)
        strata = (torch.arange(Q_s, device=dev, dtype=dtype) + torch.rand(G, m_s, Q_s, generator=gen).to(dev, dtype))
        t_q = start[..., None] + length[..., None] * strata / Q_s  # (G, m, Q)
        t_all = torch.cat([start[..., None], t_q, (start + length)[..., None]], -1).reshape(G, -1)
        rel = t_all - centre[:, None]
        uh, duh = net(rel, rel / half[:, None], (1.0 / half)[:, None])
        u, _ = decode(uh, duh)
        sample = lo_t[:, None] + torch.clamp(torch.round((t_all - t_left[:, None]) / dt_seg[:, None]).long(),
                                             min=0).minimum(n_in[:, None] - 1)
        f = model.rhs(t_all, u, th, ii[sample]).reshape(G, m_s, Q_s + 2, S)
        u = u.reshape(G, m_s, Q_s + 2, S)
        change = (u[:, :, -1] - u[:, :, 0]) / length[..., None] / t_rsc
        drive = f[:, :, 1:-1].mean(2) / t_rsc
        return normalise((change - drive) ** 2, change, drive)

    # slow states repeat with the voltage: pairs of times one period apart, each end evaluated by the
    # network of its own segment (its times padded to a common length per segment)
    n_per = 0
    if slow.any() and cfg["periodic_slow_states"] and int(cfg["periodic_pairs"]) > 0:
        pa_seg, pa_t, pb_seg, pb_t = periodic_pairs(flat, seg, int(cfg["periodic_pairs"]))
        n_per = pa_seg.size
    if n_per:
        ends_seg = np.concatenate([pa_seg, pb_seg])
        ends_t = np.concatenate([pa_t, pb_t])
        count = np.bincount(ends_seg, minlength=K)
        slot = np.empty(ends_seg.size, int)
        per_t = np.tile(seg.centre[:, None], (1, max(1, int(count.max()))))
        filled = np.zeros(K, int)
        for j, (g_, t_) in enumerate(zip(ends_seg, ends_t)):
            slot[j] = filled[g_]
            per_t[g_, filled[g_]] = t_
            filled[g_] += 1
        per_rel = torch.tensor(np.tile(per_t, (E, 1)), **kw) - centre[:, None]  # (G, N_p)
        per_a = (torch.tensor(pa_seg, device=dev), torch.tensor(slot[:n_per], device=dev))
        per_b = (torch.tensor(pb_seg, device=dev), torch.tensor(slot[n_per:], device=dev))
        per_scale = torch.tensor(scl, **kw)[:, None, :]  # (E, 1, S): the slow state's spread

    def periodic_residual() -> torch.Tensor:
        """(E, S) mean squared difference of every state between times one period apart, in units of
        its spread (only the slow states' columns are used)."""
        uh, duh = net(per_rel, per_rel / half[:, None], (1.0 / half)[:, None])
        u, _ = decode(uh, duh)
        u = u.reshape(E, K, -1, S)
        diff = (u[:, per_a[0], per_a[1]] - u[:, per_b[0], per_b[1]]) / per_scale
        return (diff ** 2).mean(1)

    # fast hidden states' residuals divided by their own relaxation rate |∂f_s/∂u_s| (1/τ of a gate): the
    # state error the residual implies. Where spikes are brief, a fast gate's derivative during a spike
    # is hundreds of times its derivative between spikes, so its residual there — where the gate sits at
    # small values that the voltage (through n⁴) barely shows — weighs nothing and the gate drifts
    # (measured on Butera: n half its value 5–60 ms after spikes, 5 % relative L2)
    rs_cfg = cfg["rate_scaled_residuals"]
    rate_on = bool(frac_fast > 0) if rs_cfg == "auto" else bool(rs_cfg)
    rate_states = [j for j in range(1, S) if rate_on and not slow[j]]
    rate_floor = 1.0 / max(float(np.median(2 * seg.half)), 1e-6)  # 1/ms: rates slower than a segment

    def relaxation_rate(u: torch.Tensor, f: torch.Tensor, th: torch.Tensor, idx: torch.Tensor, j: int):
        """|∂f_j/∂u_j| at the points (finite difference, no gradient), at least ``rate_floor``."""
        with torch.no_grad():
            step = 1e-3 * (1.0 if gates[j] else float(np.median(scl[:, j])))
            up = u.detach().clone()
            up[..., j] += step
            d = (model.rhs(tt[idx], up, th, ii[idx])[..., j] - f[..., j].detach()) / step
            return d.abs().clamp(min=rate_floor)

    def losses(idx: torch.Tensor, z_cur: torch.Tensor, physics: bool, warm_term: bool):
        """Per-member loss terms (each (E,) or (E, S))."""
        u, du = run(idx, with_ends=physics and K > 1)
        n = idx.shape[1]
        out = {}
        v_err = (u[:, :n, 0] - vv[idx]) / v_sd
        out["data"] = (v_err ** 2).reshape(E, -1).mean(1)
        if warm_term and S > 1:
            target = warm_t[member_of_group[:, None], idx]  # (G, n, S-1)
            h_err = (u[:, :n, 1:] - target) / state_scale[:, None, 1:]
            out["warm"] = (h_err ** 2).reshape(E, -1, S - 1).mean(1).sum(1)
        if physics:
            th = theta_full_of(z_cur)[member_of_group][:, None, :]  # (G, 1, P)
            r2 = torch.zeros(E, S, **kw)
            if form in ("strong", "both"):
                f = model.rhs(tt[idx], u[:, :n], th, ii[idx])
                den = t_rsc
                if rate_states:
                    den = t_rsc.expand_as(f).clone()
                    for j in rate_states:
                        den[..., j] = relaxation_rate(u[:, :n], f, th, idx, j)
                sq = ((du[:, :n] - f) / den) ** 2
                if local_w is not None:
                    sq = sq * local_w[member_of_group[:, None], idx]
                r2 = r2 + normalise(sq, du[:, :n] / den, f / den)
            if form in ("weak", "both"):
                r2 = r2 + weak_residual(th)
            if slow.any():
                r2 = torch.where(slow_t, slow_residual(th) + (periodic_residual() if n_per else 0.0), r2)
            out["physics"] = r2
            if K > 1:
                gap = (u[:-1, n + 1] - u[1:, n]) / state_scale[:-1]  # right end of g vs left end of g+1
                gap = torch.where(link[:, None], gap, torch.zeros_like(gap))
                per = torch.cat([(gap ** 2).sum(1), torch.zeros(1, **kw)])
                out["continuity"] = per.reshape(E, K).sum(1) / max(1, int(seg.linked.sum()))
        return out

    # ---------------------------------------------------------------- optimisers
    net_params = list(net.parameters())
    separate = bool(cfg["separate_optimizers"])
    lr_net0, lr_net1 = float(cfg["lr_net"]), float(cfg["lr_net_final"])
    lr_par0, lr_par1 = (float(cfg["lr_params"]), float(cfg["lr_params_final"])) if separate else (lr_net0, lr_net1)
    opt_net = torch.optim.Adam(net_params, lr=lr_net0)
    opt_par = torch.optim.Adam([z], lr=lr_par0)
    n1 = int(cfg["stage1_steps"]) if cfg["two_stage"] else 0
    n2 = int(cfg["stage2_steps"])
    adaptive = bool(cfg["adaptive_weights"])
    eps, alpha = float(cfg["balance_eps"]), float(cfg["balance_alpha"])
    n_terms = 1 + S + (1 if K > 1 else 0)
    lam = torch.ones(E, n_terms, **kw)
    boost = torch.ones(n_terms, **kw)
    boost[1:1 + S] = torch.where(torch.tensor(slow, device=dev), float(cfg["slow_weight"]), 1.0).to(dtype)
    hist: dict[str, list] = {"step": [], "loss_data": [], "loss_physics": [], "loss_continuity": [], "theta": [],
                             "weights": []}
    log_every = max(1, int(cfg["log_every"]))

    bar = None
    if ctx.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n1 + n2, desc="pinn", unit="step", dynamic_ncols=True, leave=True)

    def stack_terms(terms) -> torch.Tensor:
        cols = [terms["data"][:, None], terms["physics"]]
        if K > 1:
            cols.append(terms["continuity"][:, None])
        return torch.cat(cols, 1)  # (E, n_terms)

    def rebalance(terms) -> None:
        nonlocal lam
        flat_terms = stack_terms(terms)
        params = net.network_parameters()
        g = torch.zeros(E, n_terms, **kw)
        for j in range(n_terms):
            grads = torch.autograd.grad(flat_terms[:, j].sum(), params, retain_graph=True, allow_unused=True)
            sq = torch.zeros(E, **kw)
            for gr in grads:
                if gr is not None:
                    sq = sq + (gr.reshape(E, -1) ** 2).sum(1)
            g[:, j] = sq.sqrt()
        total = g.sum(1, keepdim=True)
        new = total / (g + eps * total + 1e-30)
        lam = alpha * lam + (1 - alpha) * new.detach()

    def record(step, terms):
        hist["step"].append(step)
        hist["loss_data"].append(terms["data"].detach().cpu().numpy())
        ph = terms.get("physics")
        hist["loss_physics"].append(np.full(E, np.nan) if ph is None else ph.detach().sum(1).cpu().numpy())
        co = terms.get("continuity")
        hist["loss_continuity"].append(np.full(E, np.nan) if co is None else co.detach().cpu().numpy())
        hist["theta"].append(pmap.theta(z.detach()).cpu().numpy())
        hist["weights"].append(lam.detach().cpu().numpy().copy())

    def show(stage, terms):
        if bar is None:
            return
        th = np.median(pmap.theta(z.detach()).cpu().numpy(), 0)
        post = {"stage": stage, "data": f"{float(terms['data'].median()):.2e}"}
        if "physics" in terms:
            post["phys"] = f"{float(terms['physics'].sum(1).median()):.2e}"
        post |= {n: f"{v:.4g}" for n, v in zip(problem.free_names, th)}
        bar.set_postfix(post, refresh=False)

    max_len = int((seg.hi - seg.lo).max())
    chunk = max(1, int(cfg["eval_chunk"]))

    def all_sample_chunks():
        """(idx (G, n), valid (G, n)) covering every sample of every segment, ``eval_chunk`` at a time."""
        for a in range(0, max_len, chunk):
            pos = torch.arange(a, min(a + chunk, max_len), device=dev)
            valid = pos[None, :] < n_in[:, None]
            yield lo_t[:, None] + torch.minimum(pos[None, :], n_in[:, None] - 1), valid

    local_w = None

    # ---------------------------------------------------------------- stage 1: voltage only
    warm_on = bool(cfg["warm_start_hidden"])
    step = 0
    for s1 in range(n1):
        lr = _schedule(s1, n1, float(cfg["lr_stage1"]), float(cfg["lr_stage1"]) * 0.1)
        for gparam in opt_net.param_groups:
            gparam["lr"] = lr
        terms = losses(sample_points(), z, physics=False, warm_term=warm_on)
        loss = terms["data"].sum() + (terms["warm"].sum() if "warm" in terms else 0.0)
        opt_net.zero_grad(set_to_none=True)
        loss.backward()
        opt_net.step()
        if step % log_every == 0:
            record(step, terms)
            show("1/2 voltage", terms)
        step += 1
        if bar is not None:
            bar.update(1)
    if n1:
        # derivative scale of V from the trained network: what the physics residual of V is compared with
        with torch.no_grad():
            _, du = run(sample_points(), with_ends=False)
            rsc[:, 0] = np.maximum(du[..., 0].reshape(E, -1).std(1).cpu().numpy(), 1e-6)
            t_rsc = torch.tensor(rsc[g_of], **kw)[:, None, :]
            if cfg["local_weights"]:
                # pointwise weights of the voltage residual, 1/(|dV/dt|/r_V + floor)², mean 1 per member: the
                # slow phases between spikes (where slow currents such as I_KCa decide the dynamics) count
                # as much as the upstrokes, whose large derivatives would otherwise drown them
                dv = torch.zeros(E * flat.t.size, **kw)
                for idx, valid in all_sample_chunks():
                    _, du = run(idx, with_ends=False)
                    dv[(member_of_group[:, None] * flat.t.size + idx)[valid]] = du[..., 0][valid]
                dv = dv.reshape(E, -1, 1).abs() / t_rsc[::K, :, :1]
                w = 1.0 / (dv + float(cfg["local_floor"])) ** 2
                # (E, T, S): the voltage weighted, hidden states unweighted
                local_w = torch.cat([w / w.mean(1, keepdim=True), torch.ones(E, flat.t.size, S - 1, **kw)], -1)

    # ---------------------------------------------------------------- stage 2: joint, physics-informed
    # parameters that set a slow state's pace (ε of a Ca-activated K burster) are held at their screened
    # values: the network's smooth slow output can trade its shape against the fast hidden outputs, so
    # the pointwise and short-interval residuals barely see the slow time scale and drift it (measured:
    # ε from within 1 % of the truth to −60…−80 %), whereas the screen's long-interval misfit pins it.
    # So are conductances of a slow gate (Butera's gNaP·h): the network traded them against a rescaled
    # slow state (measured: gNaP +30 %, h 25 % low)
    hold_cfg = cfg["hold_slow_parameters"]
    held = None
    if screened is not None and slow_params and (hold_cfg is True or hold_cfg == "auto"):
        held = torch.tensor(slow_params, device=dev)
    warmup, delay = int(cfg["warmup_steps"]), int(cfg["param_delay"])
    if not separate:
        opt_all = torch.optim.Adam(net_params + [z], lr=lr_net0)
    for s2 in range(n2):
        # warm-up: the network first adapts to the physics at gentle rates, the parameters start moving
        # only after ``param_delay`` steps (a garbage early residual would otherwise send a rate parameter
        # to zero, a minimum the networks cannot climb out of)
        ramp_n = min(1.0, (s2 + 1) / max(1, warmup))
        ramp_p = min(1.0, max(0.0, (s2 + 1 - delay) / max(1, warmup)))
        lr_n = _schedule(s2, n2, lr_net0, lr_net1) * ramp_n
        lr_p = _schedule(s2, n2, lr_par0, lr_par1) * (ramp_p if separate else ramp_n)
        if separate:
            for gparam in opt_net.param_groups:
                gparam["lr"] = lr_n
            for gparam in opt_par.param_groups:
                gparam["lr"] = lr_p
        else:
            for gparam in opt_all.param_groups:
                gparam["lr"] = lr_n
        terms = losses(sample_points(), z, physics=True, warm_term=False)
        if adaptive and s2 % int(cfg["balance_every"]) == 0:
            rebalance(terms)
        st = stack_terms(terms)
        loss = (lam * boost * st).sum()
        if not torch.isfinite(loss):
            raise EstimationError("The PINN loss became non-finite; lower lr_net/lr_params or check the data "
                                  "units (voltage in mV, current in pA).")
        if separate:
            opt_net.zero_grad(set_to_none=True)
            opt_par.zero_grad(set_to_none=True)
            loss.backward()
            if held is not None and z.grad is not None:
                z.grad[:, held] = 0.0
            opt_net.step()
            opt_par.step()
        else:
            opt_all.zero_grad(set_to_none=True)
            loss.backward()
            if held is not None and z.grad is not None:
                z.grad[:, held] = 0.0
            opt_all.step()
        pmap.project_(z)
        if step % log_every == 0 or s2 == n2 - 1:
            record(step, terms)
            show("2/2 physics", terms)
        step += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # ---------------------------------------------------------------- final evaluation on every sample
    states = [np.empty((E, int(flat.offsets[k + 1] - flat.offsets[k]), S)) for k in range(len(problem.traces))]
    tot = {"data": np.zeros(E), "physics": np.zeros((E, S)), "continuity": np.zeros(E)}
    counts = np.zeros(E)
    with torch.no_grad():
        th_all = theta_full_of(z)
        for idx, valid in all_sample_chunks():
            u, du = run(idx, with_ends=False)
            f = model.rhs(tt[idx], u, th_all[member_of_group][:, None, :], ii[idx])
            r = ((du - f) / t_rsc) ** 2
            d = ((u[..., 0] - vv[idx]) / v_sd) ** 2
            vm = valid.to(dtype)
            tot["data"] += (d * vm).reshape(E, -1).sum(1).cpu().numpy()
            tot["physics"] += (r * vm[..., None]).reshape(E, -1, S).sum(1).cpu().numpy()
            counts += vm.reshape(E, -1).sum(1).cpu().numpy()
            u_np = u.cpu().numpy()
            idx_np = idx.cpu().numpy()
            valid_np = valid.cpu().numpy()
            for g_ in range(G):
                e, kseg = divmod(g_, K)
                tr_k = int(seg.trace[kseg])
                sel = valid_np[g_]
                states[tr_k][e, idx_np[g_, sel] - flat.offsets[tr_k]] = u_np[g_, sel]
        if K > 1:
            u_end, _ = run(lo_t[:, None], with_ends=True)
            gap = (u_end[:-1, 2] - u_end[1:, 1]) / state_scale[:-1]
            gap = torch.where(link[:, None], gap, torch.zeros_like(gap))
            per = torch.cat([(gap ** 2).sum(1), torch.zeros(1, **kw)]).reshape(E, K).sum(1)
            tot["continuity"] = per.cpu().numpy() / max(1, int(seg.linked.sum()))
    tot["data"] /= counts
    tot["physics"] /= counts[:, None]
    loss = tot["data"] + tot["physics"].sum(1) + tot["continuity"]
    theta_free = pmap.theta(z.detach()).cpu().numpy()
    if not np.all(np.isfinite(theta_free)):
        raise EstimationError("PINN parameters became non-finite; lower lr_params.")
    history = {"step": np.array(hist["step"]),
               "loss_data": np.array(hist["loss_data"]), "loss_physics": np.array(hist["loss_physics"]),
               "loss_continuity": np.array(hist["loss_continuity"]), "theta": np.array(hist["theta"]),
               "weights": np.array(hist["weights"])}
    info = {"n_segments": K, "segment_ms": float(np.median(2 * seg.half)), "frequencies_hz": (freqs * 1000).tolist(),
            "trainable_frequencies_hz": (torch.exp(net.log_freqs.detach()).cpu().numpy() * 1000).tolist(),
            "train_seconds": time.perf_counter() - t_start, "screen_seconds": t_screen, "steps": n1 + n2,
            "slow_states": [n for n, f in zip(model.state_names, slow) if f], "screen_intervals_ms": intervals,
            "spike_sampling": frac_fast, "fast_share": share, "periodic_pairs": int(n_per),
            "rate_scaled_states": [model.state_names[j] for j in rate_states],
            "held_parameters": [problem.free_names[j] for j in slow_params] if held is not None else []}
    if screened is not None:
        info["screened"] = screened
        info["screen_misfit"] = misfit
    if not np.isfinite(loss).any():
        raise EstimationError("Every PINN member diverged; lower lr_net/lr_params.")
    return Trained(theta_free=theta_free, loss=loss,
                   loss_terms={"data": tot["data"], "physics": tot["physics"].sum(1), "continuity": tot["continuity"]},
                   states=states, history=history, info=info)


def _slow_mask(problem: EstimationProblem, cfg: dict, inits: np.ndarray, flat: Flat, gates: np.ndarray) -> np.ndarray:
    """(S,) bool: the slow states — the ``slow_states`` option, or with "auto" those
    :func:`~neo_pinn_pinn.prepare.slow_states` finds in the hidden states driven at the initial guesses
    (their mean over members in search coordinates)."""
    model = problem.model
    slow_cfg = cfg["slow_states"]
    if slow_cfg != "auto":
        names = list(slow_cfg or [])
        unknown = [n for n in names if n not in model.state_names[1:]]
        if unknown:
            raise ConfigurationError(f"pinn option slow_states: {unknown} are not hidden states of {model.name} "
                                     f"({', '.join(model.state_names[1:])}).")
        return np.array([n in names for n in model.state_names])
    space = SearchSpace(problem)  # the centre in search coordinates (log for positive, linear for e.g. EL)
    centre = problem.theta_full(space.to_theta(space.to_z(inits).mean(0, keepdims=True))[0])[None, :]
    warm = np.empty((1, flat.t.size, model.n_states - 1))
    for k in range(len(problem.traces)):
        a, b = flat.offsets[k], flat.offsets[k + 1]
        warm[:, a:b] = driven_hidden_states(model, centre, flat.t[a:b], flat.v[a:b], flat.i_ext[a:b], gates,
                                            spinup=bool(cfg["warm_spinup"]))
    return slow_states(model, problem, warm)


def check_config(cfg: dict) -> None:
    """Raise :class:`ConfigurationError` for options out of range."""
    for key in ("width", "depth", "batch_points", "n_members"):
        if int(cfg[key]) < 1:
            raise ConfigurationError(f"pinn option {key} must be ≥ 1, got {cfg[key]!r}.")
    for key in ("stage1_steps", "stage2_steps", "n_fourier", "n_trainable_frequencies"):
        if int(cfg[key]) < 0:
            raise ConfigurationError(f"pinn option {key} must be ≥ 0, got {cfg[key]!r}.")
    if not 0.0 <= float(cfg["balance_alpha"]) < 1.0:
        raise ConfigurationError("pinn option balance_alpha must lie in [0, 1).")
    if float(cfg["balance_eps"]) <= 0:
        raise ConfigurationError("pinn option balance_eps must be > 0 (it caps the adaptive weights at 1/eps).")
    if int(cfg["screen_candidates"]) < 0 or int(cfg["screen_rounds"]) < 1 or float(cfg["screen_interval_ms"]) <= 0 \
            or float(cfg["screen_smooth_ms"]) < 0:
        raise ConfigurationError("pinn options: screen_candidates ≥ 0 (0: no screening), screen_rounds ≥ 1, "
                                 "screen_interval_ms > 0 and screen_smooth_ms ≥ 0.")
    ss = cfg["spike_sampling"]
    if not (ss == "auto" or (isinstance(ss, (int, float)) and not isinstance(ss, bool) and 0.0 <= ss < 1.0)) \
            or float(cfg["spike_sampling_ms"]) <= 0 or not 0.0 <= float(cfg["spike_sampling_below"]) <= 1.0:
        raise ConfigurationError("pinn options: spike_sampling (the share of points drawn where the voltage "
                                 "moves fast) must be 'auto' or lie in [0, 1), spike_sampling_ms must be > 0 "
                                 "and spike_sampling_below in [0, 1].")
    if cfg["periodic_slow_states"] not in (True, False) or int(cfg["periodic_pairs"]) < 0:
        raise ConfigurationError("pinn options: periodic_slow_states must be true or false and periodic_pairs "
                                 "≥ 0.")
    if cfg["rate_scaled_residuals"] not in ("auto", True, False):
        raise ConfigurationError("pinn option rate_scaled_residuals must be 'auto', true or false.")
    if cfg["hold_slow_parameters"] not in ("auto", True, False):
        raise ConfigurationError("pinn option hold_slow_parameters must be 'auto', true or false.")
    if int(cfg["stage2_steps"]) < 1:
        raise ConfigurationError("pinn needs stage2_steps ≥ 1 (the physics stage estimates the parameters).")
