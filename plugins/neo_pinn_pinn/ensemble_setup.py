"""What is fixed before an ensemble of PINNs trains: starts, layout, warm start, scales and the batch tensors.

:class:`EnsembleSetup` derives everything from the data and the configuration that training then only
reads: the screened starts, the segments and the spectrum, the hidden states driven by the recorded
voltage (warm start), the per-member normalisation of every state and residual, the networks and the
parameter coordinates, and how points are drawn. Members never share anything: every per-member
quantity comes from that member's own warm start.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from neo_pinn.estimator import FitContext
from neo_pinn.models.base import gate_mask
from neo_pinn.problem import EstimationProblem
from neo_pinn.transforms import LogLinear

from .config import PINNConfig
from .driven import driven_hidden_states
from .layout import flatten_traces, make_segments
from .network import EnsembleNet
from .rhythm import dominant_frequencies, median_isi, periodic_pairs
from .screen import screen_starts
from .slow_analysis import slow_state_mask, slow_states
from .spike_weights import fast_share, sampling_weights

__all__ = ["EnsembleSetup"]


class EnsembleSetup:
    """The fixed part of training ``E`` members, each cut into ``K`` segments (``G = E·K`` groups).

    Parameters
    ----------
    problem : EstimationProblem
    inits : numpy.ndarray
        (E, F) initial free-parameter values (canonical units); replaced by the screened starts when the
        screen is on.
    cfg : PINNConfig
    ctx : FitContext
        Seed, device, dtype and progress flag.

    Notes
    -----
    Sizes: ``E`` members, ``K`` segments, ``G`` groups (member-major), ``S`` states. Normalisation (per
    member, (E, S)): ``off``/``scl`` offset and spread of every state, ``rsc`` the spread of its derivative
    (what its residual is divided by); ``t_*`` are the same per group as tensors (G, 1, S).
    """

    def __init__(self, problem: EstimationProblem, inits: np.ndarray, cfg: PINNConfig, ctx: FitContext) -> None:
        self.problem, self.cfg, self.ctx = problem, cfg, ctx
        self.model = model = problem.model
        self.dev, self.dtype = ctx.device, ctx.dtype
        self.kw = dict(dtype=self.dtype, device=self.dev)
        self.gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
        inits = np.atleast_2d(np.asarray(inits, float))
        self.E = inits.shape[0]
        self.S = model.n_states
        self.free_idx = [model.param_index(n) for n in problem.free_names]
        self.gates = gate_mask(model, cfg.network.gate_states)
        self.t_start = time.perf_counter()
        self.flat = flatten_traces(problem)
        self.screen = screen_starts(problem, inits, cfg, self.flat, self.gates, ctx.seed)
        self.inits = self.screen.starts if self.screen.starts is not None else inits
        self.t_screen = time.perf_counter() - self.t_start
        self.theta_init_full = np.tile(problem.theta_full(self.inits[0]), (self.E, 1))
        self.theta_init_full[:, self.free_idx] = self.inits
        self._layout_and_spectrum()
        self._warm_start()
        self._scales()
        self._batch_tensors()
        self._trainables()
        self._point_sampling()
        self._residual_setup()
        self._periodic_setup()
        self.local_w = None  # pointwise weights of the voltage residual (``local_weights``), set after stage 1

    # ------------------------------------------------------------------ data
    def _layout_and_spectrum(self) -> None:
        """Segments, the voltage's dominant frequencies and the trainable ones' starts (sub-harmonics)."""
        net_cfg = self.cfg.network
        self.seg = make_segments(self.problem, self.flat, self.cfg.segments.spikes_per_segment,
                                 self.cfg.segments.segment_ms)
        self.K = self.seg.n
        self.G = self.E * self.K
        use_fourier = bool(net_cfg.fourier_features)
        self.freqs = dominant_frequencies(self.problem, int(net_cfg.n_fourier), float(net_cfg.max_frequency_hz)) \
            if use_fourier else np.zeros(0)
        self.f0 = float(self.freqs[0]) if self.freqs.size else 1.0 / max(float(np.ptp(self.flat.t)), 1e-6)
        n_tr = int(net_cfg.n_trainable_frequencies) if use_fourier else 0
        self.trainable = self.f0 * 2.0 ** (-np.arange(1, n_tr + 1, dtype=float))  # slower time scales

    def _warm_start(self) -> None:
        """Hidden states driven by the recorded voltage at every member's start, and the slow states."""
        flat, model = self.flat, self.model
        spinup = bool(self.cfg.stages.warm_spinup)
        self.warm = np.empty((self.E, flat.t.size, self.S - 1))
        for k in range(len(self.problem.traces)):
            a, b = flat.offsets[k], flat.offsets[k + 1]
            self.warm[:, a:b] = driven_hidden_states(model, self.theta_init_full, flat.t[a:b], flat.v[a:b],
                                                     flat.i_ext[a:b], self.gates, spinup=spinup)
        # slow states get the integral residual in training; with "auto", found at the starts training begins from
        option = self.cfg.slow.slow_states
        self.slow = slow_states(model, self.problem, self.warm) if option == "auto" else \
            slow_state_mask(self.problem, option, self.inits, flat, self.gates, spinup)

    def _scales(self) -> None:
        """Per member: offsets and spreads of the states, and the spreads of their derivatives."""
        E, S, flat, model, warm, f0 = self.E, self.S, self.flat, self.model, self.warm, self.f0
        self.v_mu = float(flat.v.mean())
        self.v_sd = max(float(flat.v.std()), 1.0)
        off = np.zeros((E, S))
        scl = np.ones((E, S))
        off[:, 0], scl[:, 0] = self.v_mu, self.v_sd
        rsc = np.ones((E, S))
        rsc[:, 0] = self.v_sd * 2.0 * math.pi * f0
        dt_flat = np.maximum(np.diff(flat.t), 1e-9)
        for j in range(1, S):
            w = warm[:, :, j - 1]
            off[:, j] = w.mean(1)
            scl[:, j] = np.maximum(w.std(1), max(0.05 * model.states[j].scale, 1e-6))
            d = np.diff(w, axis=1) / dt_flat[None]
            d = np.where(np.isfinite(d), d, 0.0)
            rsc[:, j] = np.maximum(d.std(1), np.maximum(scl[:, j] * 2.0 * math.pi * f0 * 1e-3, 1e-12))
        if self.slow.any():
            # a slow state's integral residual compares changes over long intervals: its scale is the spread
            # of the warm start's changes over half a segment per unit time, not of its (spiky) derivative
            lag = max(1, int(round(0.5 * float(np.median(self.seg.hi - self.seg.lo)))))
            for j in np.flatnonzero(self.slow):
                w = warm[:, :, j - 1]
                d = (w[:, lag:] - w[:, :-lag]) / np.maximum(flat.t[lag:] - flat.t[:-lag], 1e-9)[None]
                rsc[:, j] = np.maximum(d.std(1), 1e-12)
        self.off, self.scl, self.rsc = off, scl, rsc

    # ------------------------------------------------------------------ tensors
    def _batch_tensors(self) -> None:
        """The data, scales and segment geometry as tensors, one row per group."""
        E, K, G, kw, dev, seg = self.E, self.K, self.G, self.kw, self.dev, self.seg
        self.g_of = np.repeat(np.arange(E), K)  # member of each group
        self.t_off = torch.tensor(self.off[self.g_of], **kw)[:, None, :]  # (G, 1, S)
        self.t_scl = torch.tensor(self.scl[self.g_of], **kw)[:, None, :]
        self.t_rsc = torch.tensor(self.rsc[self.g_of], **kw)[:, None, :]
        self.t_gate = torch.tensor(self.gates, device=dev)
        sscale = np.where(self.gates[None, :], 1.0, self.scl)
        self.state_scale = torch.tensor(sscale[self.g_of], **kw)  # (G, S): continuity and warm-start terms
        self.tt = torch.tensor(self.flat.t, **kw)
        self.vv = torch.tensor(self.flat.v, **kw)
        self.ii = torch.tensor(self.flat.i_ext, **kw)
        self.warm_t = torch.tensor(self.warm, **kw)  # (E, T, S-1)
        self.centre = torch.tensor(np.tile(seg.centre, E), **kw)  # (G,)
        self.half = torch.tensor(np.tile(np.maximum(seg.half, 1e-9), E), **kw)
        self.lo_t = torch.tensor(np.tile(seg.lo, E), device=dev)
        self.n_in = torch.tensor(np.tile(seg.hi - seg.lo, E), device=dev)
        self.t_left = torch.tensor(np.tile(seg.t_left, E), **kw)
        self.t_right = torch.tensor(np.tile(seg.t_right, E), **kw)
        self.link = torch.tensor(np.tile(seg.linked, E), device=dev)[:-1] if G > 1 else \
            torch.zeros(0, dtype=torch.bool)
        self.member_of_group = torch.arange(E, device=dev).repeat_interleave(K)

    def _trainables(self) -> None:
        """The networks (seeded weights) and every member's parameters in search coordinates ``z``."""
        net_cfg, kw = self.cfg.network, self.kw
        self.net = EnsembleNet(self.E, self.K, self.S, torch.tensor(self.freqs), torch.tensor(self.trainable),
                               int(net_cfg.width), int(net_cfg.depth), bool(net_cfg.rwf), float(net_cfg.rwf_mean),
                               float(net_cfg.rwf_std), self.gen, self.dtype, self.dev)
        self.pmap = LogLinear(self.problem, self.dtype, self.dev)
        self.z = torch.tensor(self.pmap.to_z(self.inits), **kw).requires_grad_(True)  # (E, F)
        self.theta_fixed = torch.tensor(self.theta_init_full, **kw)
        self.free_idx_t = torch.tensor(self.free_idx, device=self.dev)

    # ------------------------------------------------------------------ points and residuals
    def _point_sampling(self) -> None:
        """Points per group and step, and the share drawn where the voltage moves fast (spikes)."""
        pts = self.cfg.points
        seg, flat = self.seg, self.flat
        # the step's points are shared among a member's segments (so many segments do not multiply the
        # cost), with at least ``min_segment_points`` per segment
        self.m_pts = max(int(pts.min_segment_points), int(math.ceil(int(pts.batch_points) / self.K)))
        w_flat = sampling_weights(flat, float(pts.spike_sampling_ms))
        self.share = fast_share(w_flat)
        if pts.spike_sampling == "auto":
            # only where spikes are rare enough that uniform points miss them (a burster's brief spikes)
            self.frac_fast = 0.5 if self.share < float(pts.spike_sampling_below) else 0.0
        else:
            self.frac_fast = float(pts.spike_sampling)
        self.m_fast = int(round(self.frac_fast * self.m_pts))
        self.w_groups = None
        if self.m_fast > 0:
            len_max = int((seg.hi - seg.lo).max())
            pos = np.arange(len_max)
            w_seg = np.where(pos[None, :] < (seg.hi - seg.lo)[:, None],
                             w_flat[np.minimum(seg.lo[:, None] + pos[None, :], flat.t.size - 1)], 0.0)
            w_seg = w_seg + 1e-12 * (pos[None, :] < (seg.hi - seg.lo)[:, None])  # never an all-zero row
            self.w_groups = torch.tensor(np.tile(w_seg, (self.E, 1)), dtype=torch.float64)  # (G, len_max), CPU

    def _residual_setup(self) -> None:
        """Constants of the integral residuals (short ``weak`` intervals, long slow-state intervals) and of
        the rate-scaled residuals of fast hidden states."""
        res, slow_cfg, seg = self.cfg.residuals, self.cfg.slow, self.seg
        self.form = str(res.residual_form)
        self.relative = res.residual_norm == "relative"
        self.L_w = max(1, int(res.weak_samples))
        self.m_w = max(1, int(res.weak_intervals))
        self.span_w = torch.clamp(self.n_in - 1, min=1)
        self.slow_t = torch.tensor(self.slow, device=self.dev)
        self.Q_s = max(2, int(slow_cfg.slow_points))
        self.m_s = max(1, int(slow_cfg.slow_intervals))
        self.seg_len = self.t_right - self.t_left  # (G,)
        # intervals of about slow_interval_isi inter-spike intervals: long enough to hold whole spikes, short
        # enough that Q_s points sample the spiky drive densely (a sparse quadrature is a noisy regressor, and
        # a noisy regressor biases the rate towards zero just as the pointwise form does)
        isi = median_isi(self.problem)
        self.slow_len = float(slow_cfg.slow_interval_isi) * (isi if isi is not None else 2.0 * float(seg.half.max()))
        self.dt_seg = self.seg_len / self.n_in.to(self.dtype)
        # fast hidden states' residuals divided by their own relaxation rate |∂f_s/∂u_s| (1/τ of a gate): the
        # state error the residual implies. Where spikes are brief, a fast gate's derivative during a spike
        # is far larger than between spikes, so its residual there — where the gate sits at small values
        # that the voltage barely shows — would weigh nothing and the gate would drift
        rs_cfg = res.rate_scaled_residuals
        rate_on = bool(self.frac_fast > 0) if rs_cfg == "auto" else bool(rs_cfg)
        self.rate_states = [j for j in range(1, self.S) if rate_on and not self.slow[j]]
        self.rate_floor = 1.0 / max(float(np.median(2 * seg.half)), 1e-6)  # 1/ms: rates slower than a segment

    def _periodic_setup(self) -> None:
        """Pairs of times one period apart for the slow states' periodicity term, each end evaluated by the
        network of its own segment (its times padded to a common length per segment)."""
        slow_cfg, seg, kw, dev = self.cfg.slow, self.seg, self.kw, self.dev
        self.n_per = 0
        if self.slow.any() and slow_cfg.periodic_slow_states and int(slow_cfg.periodic_pairs) > 0:
            pa_seg, pa_t, pb_seg, pb_t = periodic_pairs(self.flat, seg, int(slow_cfg.periodic_pairs))
            self.n_per = pa_seg.size
        if not self.n_per:
            return
        ends_seg = np.concatenate([pa_seg, pb_seg])
        ends_t = np.concatenate([pa_t, pb_t])
        count = np.bincount(ends_seg, minlength=self.K)
        slot = np.empty(ends_seg.size, int)
        per_t = np.tile(seg.centre[:, None], (1, max(1, int(count.max()))))
        filled = np.zeros(self.K, int)
        for j, (g_, t_) in enumerate(zip(ends_seg, ends_t)):
            slot[j] = filled[g_]
            per_t[g_, filled[g_]] = t_
            filled[g_] += 1
        self.per_rel = torch.tensor(np.tile(per_t, (self.E, 1)), **kw) - self.centre[:, None]  # (G, N_p)
        self.per_a = (torch.tensor(pa_seg, device=dev), torch.tensor(slot[:self.n_per], device=dev))
        self.per_b = (torch.tensor(pb_seg, device=dev), torch.tensor(slot[self.n_per:], device=dev))
        self.per_scale = torch.tensor(self.scl, **kw)[:, None, :]  # (E, 1, S): the slow state's spread
