"""The ``lsq`` backend: multi-start Levenberg–Marquardt on the voltage trace, by multiple shooting.

Algorithm
---------
1. **Segments.** Every sweep is cut into segments of ``segment_ms``. Each segment starts from its own
   node state — initially the recorded voltage and the hidden states' quasi-steady values there — and
   all segments of all starts are integrated as one batch by the simulator's fixed-step integrator, with
   forward-mode autograd giving every segment's Jacobian with respect to its node and the free
   parameters in the same pass (:mod:`.shooting`, :mod:`.forward`).
2. **Continuity homotopy.** Stage k minimises ``½‖V_sim − V_obs‖² + ½ w_k² ‖continuity defects‖²`` with
   ``w_k`` growing (``continuity``). While ``w`` is small the segments stay close to the data and are
   nearly independent, which removes the spike-timing non-convexity of trajectory matching.
3. **Exact phase.** The continuity conditions are then linearised and eliminated (condensing, as in
   Bock's multiple shooting), so the iterates become continuous and the estimate is the optimum of the
   single-shooting least squares (metric ``max_defect``: the largest remaining gap, mV).
4. **Levenberg–Marquardt per start**, batched, each start with its own damping, in unconstrained
   coordinates (:class:`~neo_pinn.transforms.LogLogit` for the parameters, logits for gating variables);
   ``max_step`` bounds a parameter's change per iteration (:mod:`.homotopy`, :mod:`.levenberg`).
5. **Result.** The best start (lowest final cost) is reconstructed at every sample; ``n_success`` counts
   the starts within ``success_tol`` of its cost; ``samples`` holds every start's optimum.

Uncertainty: ``cov = s² (JᵀJ)⁻¹`` with ``J`` the single-shooting Jacobian at the optimum (free parameters
and, when ``initial_state == "fit"``, the initial states) and ``s²`` the residual variance, mapped to
canonical units by the delta method — a local, Gaussian (Laplace) approximation. With
:class:`~neo_pinn.noise.AR1Noise` the residuals are whitened by the AR(1) filter (Prais–Winsten) with
``rho`` re-estimated at every stage, and ``result.noise`` reports ``sigma`` and ``rho``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError, EstimationError
from neo_pinn.estimator import Estimator, FitContext
from neo_pinn.models.base import gate_mask, quasi_steady_states
from neo_pinn.noise import AR1Noise
from neo_pinn.problem import EstimationProblem
from neo_pinn.residuals import noise_from_residuals
from neo_pinn.result import EstimationResult
from neo_pinn.simulation import simulate
from neo_pinn.toolkit import driven_hidden_states
from neo_pinn.transforms import LogLogit

from .config import LsqConfig
from .homotopy import Homotopy, Shooting
from .linear_start import linear_start
from .shooting import Condensed, condensed, make_layout
from .transforms import StateTransform

__all__ = ["LeastSquares", "LsqConfig"]

#: times the automatic integration step may be halved when most starts diverge at the first evaluation
MAX_DT_HALVINGS = 3


class LeastSquares(Estimator):
    """Multi-start Levenberg–Marquardt on the voltage trace (multiple shooting with a continuity homotopy).

    The options are those of :class:`~neo_pinn_lsq.config.LsqConfig`; the algorithm is described in the
    module's documentation.
    """

    name = "lsq"
    description = "multi-start Levenberg–Marquardt on the voltage trace (multiple shooting, forward-mode AD)"
    config_class = LsqConfig
    config: LsqConfig

    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        theta0 = self._starts(problem, ctx.rng)                                 # (n, F)
        n = theta0.shape[0]
        given = theta0  # the starts as drawn (reported as each start's init)
        if self.config.linear_start:
            theta0 = self._linear_start(problem, theta0)
        max_dt = self.config.max_dt
        for halving in range(MAX_DT_HALVINGS + 1):
            sh = self._shooting(problem, ctx, max_dt)
            z = sh.ptf.clip(torch.as_tensor(sh.ptf.to_z(theta0), **sh.kw))
            u = self._init_nodes(problem, sh, z)
            rho = torch.full((n,), float(problem.noise.rho), **sh.kw) if isinstance(problem.noise, AR1Noise) else None
            fit = Homotopy(sh, self.config, z, u, rho)
            # A stiff model far from its parameters (large conductances) can be unstable at the automatic step:
            # where most starts' segments diverge at once, the step is halved (a given dt is never changed).
            finite = torch.isfinite(fit.raw.v).flatten(1).all(1) & torch.isfinite(fit.raw.end).flatten(1).all(1)
            if self.config.dt is not None or halving == MAX_DT_HALVINGS or 2 * int(finite.sum()) > n:
                break
            max_dt = sh.lay.dt / 2
        if ctx.progress:
            fit.lm.show_progress(f"lsq {problem.model.name} ×{n} starts")
        cs = fit.solve()
        return self._result(problem, sh, fit, cs, given)

    # ------------------------------------------------------------------ steps of the fit
    def _shooting(self, problem: EstimationProblem, ctx: FitContext, max_dt: float) -> Shooting:
        """Segment layout, coordinates and fixed parameters of this problem (integration step ≤ ``max_dt``, ms)."""
        c = self.config
        model = problem.model
        dev, dtype = ctx.device, ctx.dtype
        kw = dict(dtype=dtype, device=dev)
        gates = gate_mask(model, c.gate_states)
        lay = make_layout(problem.traces, c.dt, max_dt, c.segment_ms, c.subsample)
        lay_t = {"valid": torch.as_tensor(lay.valid, device=dev), "v_obs": torch.as_tensor(lay.v_obs, **kw),
                 "has_next": torch.as_tensor(lay.has_next, device=dev),
                 "first": torch.as_tensor(lay.first, device=dev)}
        # defects of hidden states are weighed in mV: scaled by (voltage scale / state scale)
        scale = torch.tensor([model.states[0].scale / st.scale if k else 1.0 for k, st in enumerate(model.states)],
                             **kw)
        return Shooting(
            model=model, lay=lay, lay_t=lay_t,
            i_half=torch.as_tensor(lay.i_half.T.copy(), **kw),                 # (2K+1, M)
            theta_fixed=torch.as_tensor(problem.theta_full({f.name: _mid(f) for f in problem.free}), **kw)[None],
            free_index=[model.param_index(n) for n in problem.free_names],
            ptf=LogLogit(problem, dtype, dev), stf=StateTransform(gates, dev, [s.scale for s in model.states], dtype),
            gates=gates, scale=scale, fit_x0=isinstance(problem.initial_state, str) and problem.initial_state == "fit",
            multiple=lay.n_segments > len(problem.traces),
            first_index=torch.as_tensor(np.flatnonzero(lay.first), device=dev), kw=kw)

    def _starts(self, problem: EstimationProblem, rng: np.random.Generator) -> np.ndarray:
        """The starts' free-parameter values (n, F): the initial guess, then ``random_starts`` draws."""
        c = self.config
        return problem.starting_points(int(c.n_starts), rng, c.random_starts, float(c.jitter))

    def _linear_start(self, problem: EstimationProblem, theta0: np.ndarray) -> np.ndarray:
        """The starts (n, F) with their linear free parameters solved from the recording (:mod:`.linear_start`)."""
        model = problem.model
        free_index = [model.param_index(name) for name in problem.free_names]
        full = np.repeat(np.asarray(problem.theta_full({f.name: _mid(f) for f in problem.free}), float)[None],
                         theta0.shape[0], 0)
        full[:, free_index] = theta0
        bounds = np.array([f.bounds for f in problem.free], dtype=float)
        solved = linear_start(model, full, free_index, problem.traces, gate_mask(model, self.config.gate_states),
                              bounds, self.config.max_dt)
        return solved[:, free_index]

    def _init_nodes(self, problem: EstimationProblem, sh: Shooting, z: torch.Tensor) -> torch.Tensor:
        """Node coordinates u (n, M, S): voltage from the recording, hidden states quasi-steady there."""
        model, lay = problem.model, sh.lay
        n, M, S = z.shape[0], lay.n_segments, model.n_states
        kw = dict(dtype=z.dtype, device=z.device)
        theta_free, _ = sh.ptf.from_z(z)
        theta = sh.theta_fixed.expand(n, -1).clone()
        theta[:, sh.free_index] = theta_free
        V = torch.as_tensor(lay.v_obs[:, 0], **kw).expand(n, M).reshape(-1)
        th = theta.repeat_interleave(M, 0)
        i0 = sh.i_half[0].expand(n, M).reshape(-1)
        preset = model.initial_state(problem.preset) if (problem.preset or model.default_preset) else \
            np.array([s.scale for s in model.states])
        if S == 1:
            return sh.stf.to_u(V.reshape(n, M, 1))
        x = quasi_steady_states(model, th, V, i0, preset, gates=sh.gates, iterations=6,
                                gate_margin=1e-4).reshape(n, M, S)
        if self.config.node_states == "driven":  # the gates as the recorded voltage drove them, at every node
            theta_np = theta.detach().cpu().double().numpy()
            for q, tr in enumerate(problem.traces):
                seg = np.flatnonzero(lay.sweep == q)
                hidden = driven_hidden_states(model, theta_np, tr.t, tr.v, tr.i_ext, sh.gates,
                                              max_dt=self.config.max_dt)
                x[:, seg, 1:] = torch.as_tensor(hidden[:, lay.sample0[seg], :], **kw)
        if not sh.fit_x0:
            x0 = model.initial_state(problem.preset) if isinstance(problem.initial_state, str) else \
                np.asarray(problem.initial_state, dtype=float)
            if x0.shape != (S,):
                raise ConfigurationError(f"initial_state must have {S} values ({', '.join(model.state_names)}).")
            first = torch.as_tensor(lay.first, device=z.device)
            x = torch.where(first[None, :, None], torch.as_tensor(x0, **kw), x)
        return sh.stf.to_u(x)

    def _best_start(self, sh: Shooting, cs: Condensed) -> tuple[torch.Tensor, int]:
        """Each start's final cost (inf where it diverged) and the best start.

        Raises
        ------
        EstimationError
            Every start's simulation diverged.
        """
        cost = torch.where(torch.isfinite(cs.merit), cs.merit, torch.full_like(cs.merit, math.inf))
        best = int(torch.argmin(cost))
        if not math.isfinite(float(cost[best])):
            raise EstimationError(f"Every start's simulation diverged (NaN/inf) at dt = {sh.lay.dt:g} ms; use a "
                                  "smaller step (option dt or max_dt) and check the bounds and stimulus units.")
        max_defect = float(cs.max_defect[best])
        if max_defect > 1e-4:
            warnings.warn(f"lsq: the best start did not reach a continuous trajectory (largest continuity defect "
                          f"{max_defect:.2g} mV), so its estimate is that of the most tightly coupled "
                          f"multiple-shooting stage; raise max_iter (now {self.config.max_iter}) or stage_iter, or "
                          "shorten segment_ms.",
                          RuntimeWarning, stacklevel=6)  # the caller of api.estimate
        return cost, best

    def _result(self, problem: EstimationProblem, sh: Shooting, fit: Homotopy, cs: Condensed,
                theta0: np.ndarray) -> EstimationResult:
        """The best start's estimate, states at every sample, uncertainty and noise; every start's optimum."""
        lay = sh.lay
        n = theta0.shape[0]
        cost, best = self._best_start(sh, cs)
        n_success = int((cost <= cost[best] * (1 + self.config.success_tol) + 1e-12).sum())
        theta_free, dth = sh.ptf.from_z(fit.z)
        theta_best = sh.theta_fixed[0].clone()
        theta_best[sh.free_index] = theta_free[best]
        x_nodes, _ = sh.stf.from_u(fit.u[best])
        states = self._reconstruct(problem, sh, theta_best, x_nodes)           # per sweep (T, S), float64
        res_full = [st[:, 0] - tr.v for st, tr in zip(states, problem.traces, strict=True)]
        sse, n_rows, rho = _sse(res_full, lay.subsample, problem.noise)
        std = self._std(problem, sh, fit, best, dth, sse, n_rows, rho)
        tf = theta_free.cpu().double().numpy()
        names = problem.free_names
        metrics = {
            "n_starts": n,
            "n_success": n_success,
            "success_fraction": n_success / n,
            "iterations": fit.lm.it,
            "cost": 0.5 * sse,
            "n_segments": lay.n_segments,
            "dt_ms": lay.dt,
            "max_defect": float(cs.max_defect[best]),
        }
        history = {"cost": fit.lm.history_cost, "stage": fit.lm.history_stage,
                   "start_cost": [float(x) if math.isfinite(float(x)) else None for x in cost.cpu()],
                   "start_init": theta0.tolist()}
        return EstimationResult.from_fit(
            problem, self.name, {name: float(tf[best, j]) for j, name in enumerate(names)}, states, std=std,
            init={name: float(theta0[best, j]) for j, name in enumerate(names)},
            noise=noise_from_residuals(res_full, problem.noise), metrics=metrics, history=history,
            samples={name: [float(x) for x in tf[:, j]] for j, name in enumerate(names)})

    # ------------------------------------------------------------------ helpers
    def _reconstruct(self, problem: EstimationProblem, sh: Shooting, theta: torch.Tensor,
                     x_nodes: torch.Tensor) -> list[np.ndarray]:
        """States of one start at every sample: all its segments simulated side by side from their nodes.

        With the continuity defects at their converged size (metric ``max_defect``) this is the
        single-shooting trajectory; the sequential depth is one segment instead of the whole sweep.
        """
        lay = sh.lay
        M, S = x_nodes.shape
        r = lay.steps_per_sample
        i_steps = torch.as_tensor(lay.i_half[:, ::2], dtype=theta.dtype, device=theta.device)   # (M, K+1)
        sim = simulate(problem.model, theta.expand(M, -1), duration=lay.n_steps * lay.dt, dt=lay.dt, i_ext=i_steps,
                       y0=x_nodes, method=self.config.method, dtype=theta.dtype, device=theta.device,
                       record_every=r, compile=False, check_finite=False)
        seg = sim.y[:, :-1].detach().cpu().double().numpy()                     # (M, L, S), samples s0 + j
        out = []
        for q, tr in enumerate(problem.traces):
            rows = seg[lay.sweep == q].reshape(-1, S)
            out.append(rows[:tr.t.size])
        return out

    def _std(self, problem: EstimationProblem, sh: Shooting, fit: Homotopy, best: int, dth: torch.Tensor,
             sse: float, n_rows: int, rho: float | None) -> dict[str, float | None]:
        """Standard deviations of the free parameters (canonical units) from the single-shooting Jacobian.

        ``sse`` is the (whitened) residual sum of squares over ``n_rows`` rows, ``rho`` the AR(1) filter or None.
        """
        F = len(problem.free)
        u = fit.u
        i = torch.tensor([best], device=u.device)
        rho_t = None if rho is None else torch.full((1,), float(rho), dtype=u.dtype, device=u.device)
        cs = condensed(fit.raw.index(i), u[i], sh.stf, sh.lay, sh.lay_t, sh.fit_x0, rho_t, 1.0, sh.scale)
        J = cs.J[0]
        dof = max(1, n_rows - J.shape[1])
        s2 = sse / dof
        H = J.T @ J
        try:
            cov = s2 * torch.linalg.inv(H)
        except RuntimeError:
            cov = s2 * torch.linalg.pinv(H, hermitian=True)
        var = torch.diagonal(cov)[:F]
        sd = dth[best] * torch.sqrt(var.clamp_min(0))
        out = {}
        for j, name in enumerate(problem.free_names):
            v = float(sd[j])
            out[name] = v if math.isfinite(v) and float(var[j]) > 0 else None
        return out


def _mid(f) -> float:
    lo, hi = f.bounds
    return math.sqrt(lo * hi) if f.log_scale else 0.5 * (lo + hi)


def _sse(res_full: list[np.ndarray], subsample: int, noise) -> tuple[float, int, float | None]:
    """Sum of squares of the fitted residual rows (AR(1)-whitened under AR(1) noise), their count and rho.

    ``rho`` is the lag-one correlation of the used rows within sweeps (None for white noise): the filter
    of the covariance, as the exact phase whitens each whole sweep.
    """
    used = [r[::subsample] for r in res_full]
    rho_used = None
    if isinstance(noise, AR1Noise):
        num = sum(float(np.dot(r[1:], r[:-1])) for r in used)
        rho_used = float(np.clip(num / max(sum(float(np.dot(r, r)) for r in used), 1e-300), -0.999, 0.999))
        used = [np.concatenate([np.sqrt(1 - rho_used**2) * r[:1], r[1:] - rho_used * r[:-1]]) for r in used]
    sse = float(sum(np.dot(r, r) for r in used))
    return sse, sum(r.size for r in used), rho_used
