"""The ``lsq`` backend: multi-start Levenberg–Marquardt on the voltage trace, by multiple shooting.

Algorithm
---------
1. **Segments.** Every sweep is cut into segments of ``segment_ms``. Each segment starts from its own
   node state — initially the recorded voltage and the hidden states' quasi-steady values there — and
   all segments of all starts are integrated as ONE batch with the model's ``derivatives`` (the
   simulator's fixed-step RK4; ``dt`` the largest step ≤ ``max_dt`` that divides the sampling interval).
   Forward-mode autograd gives, in the same pass, every segment's Jacobian with respect to its node and
   the free parameters.
2. **Continuity homotopy.** Stage k minimises ``½‖V_sim − V_obs‖² + ½ w_k² ‖continuity defects‖²`` with
   ``w_k`` growing (``continuity``). While ``w`` is small the segments stay close to the data and are
   nearly independent, which removes the spike-timing non-convexity of trajectory matching (a start at
   0.5× gCa that would never spike in a whole-trace simulation still fits each 5 ms piece).
3. **Exact phase.** The continuity conditions are then linearised and eliminated (condensing, as in
   Bock's multiple shooting): each Gauss–Newton step also closes the gaps, so the iterates become
   continuous and the final estimate is the optimum of the pure simulation-error least squares — the
   single-shooting problem — with defects below 1e-7 mV (metric ``max_defect``).
4. **Levenberg–Marquardt per start**, batched, each start with its own damping, in unconstrained
   coordinates: log for log-scale parameters (steps clipped to the bounds), scaled logit otherwise,
   logistic for gating variables; ``max_step`` bounds a parameter's change per iteration. In the
   homotopy stages the normal matrix is block tridiagonal in the nodes with a dense parameter border and
   is solved exactly by block elimination; in the exact phase it has only the free parameters and the
   initial states.
5. **Result.** The best start (lowest final cost) is reconstructed at every sample; ``n_success`` counts
   the starts within ``success_tol`` of its cost; ``samples`` holds every start's optimum.

Uncertainty
-----------
``cov = s² (JᵀJ)⁻¹`` with ``J`` the single-shooting Jacobian at the optimum (free parameters and, when
``initial_state == "fit"``, the initial states) and ``s²`` the residual variance; standard deviations are
mapped back to canonical units with the delta method. This is a local, Gaussian (Laplace)
approximation; it ignores any autocorrelation of the residuals unless the problem assumes AR(1) noise.
With :class:`~neo_pinn.noise.AR1Noise` the residuals are whitened with the AR(1) filter (Prais–Winsten;
within segments during the homotopy, over whole sweeps in the exact phase and for the covariance), with
``rho`` re-estimated from the residual at every stage; ``result.noise`` then reports ``sigma`` and
``rho`` (otherwise ``sigma``), estimated from the final residual.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from neo_pinn.errors import ConfigurationError
from neo_pinn.models.base import quasi_steady_states
from neo_pinn.estimator import Estimator, FitContext, build_result, is_integer_option, is_number_option
from neo_pinn.noise import AR1Noise, fit_ar1
from neo_pinn.problem import EstimationProblem
from neo_pinn.simulation import METHODS, simulate

from .shooting import (Condensed, Raw, assemble, condensed, condensed_apply, condensed_solve, evaluate, make_layout,
                       solve)
from .transforms import ParamTransform, StateTransform, gate_mask

__all__ = ["LeastSquares"]

_RANDOM = ("bounds", "jitter")
_CHUNK = 4096  # segments integrated together
_W_EXACT = 1e4  # continuity weight of the merit of the exact phase: large enough that no discontinuous point wins
_DEFECT_TOL = 1e-7  # largest continuity defect (mV, hidden states scaled to mV) of a converged start
_RETRIES = 3  # tighter homotopy stages (×10 continuity weight each) for starts whose gaps did not close
_DEFECT_SMALL = 1e-3  # defects below which an exact-phase trial is judged by its data cost


class LeastSquares(Estimator):
    """Multi-start Levenberg–Marquardt on the voltage trace (multiple shooting with a continuity homotopy).

    Options (``default_config``)
    ----------------------------
    n_starts : int
        Number of starts, all optimised as one batch. Start 0 is the problem's initial guess (free
        parameters without one are drawn at random); the others are drawn as ``random_starts`` says.
    random_starts : {"bounds", "jitter"}
        ``"bounds"``: log-uniform (log-scale) or uniform within the bounds; ``"jitter"``: log-normal
        (relative spread ``jitter``) around start 0.
    jitter : float
        Spread of ``"jitter"`` starts (standard deviation of log θ).
    max_iter : int
        Levenberg–Marquardt iterations in all, over all stages.
    tol : float
        Relative cost decrease below which a start has converged in the last stage.
    stage_tol, stage_iter : float, int
        Convergence tolerance and iteration cap of the earlier homotopy stages.
    continuity : sequence of float
        Continuity weights w of the homotopy stages (a defect of 1 mV weighs like w samples off by 1 mV;
        hidden states are scaled to mV by their typical size). The exact phase that follows them makes
        the trajectory continuous whatever the last weight.
    segment_ms : float or None
        Multiple-shooting segment length in ms; None: single shooting over each whole sweep (no homotopy;
        sequential over the whole recording, so slow, and prone to the local minima of spike timing).
    dt : float or None
        Integration step (ms); None: the largest step ≤ ``max_dt`` that divides the sampling interval.
    max_dt : float
        Upper limit of the automatic step (ms).
    method : {"euler", "heun", "rk4"}
        Fixed-step integrator (the simulator's).
    subsample : int
        Use every k-th sample in the residual (integration is unaffected).
    success_tol : float
        A start is a success when its final cost is within this relative tolerance of the best.
    abandon : float
        In the last (exact) phase, starts whose cost exceeds ``abandon`` times the best are not polished
        any further (they report the point they reached).
    lambda0 : float
        Initial Levenberg–Marquardt damping.
    max_step : float
        Largest change of a parameter's search coordinate in one iteration (natural-log units for log-scale
        parameters: 1.0 is a factor e), a trust region that keeps far starts from jumping into degenerate
        regions of the early, loosely coupled stages.
    gate_states : list of str or None
        States kept in (0, 1) by a logistic transform; None: the model's (in)activation gates.
    jacobian : {"forward", "reverse"}
        How autograd computes the segment Jacobians. Forward mode carries the few directions (node states
        and free parameters) through one pass; reverse mode backpropagates every recorded sample. Measured
        here (1000 ms, 10 kHz): one start 4.7 s forward vs 10.3 s reverse, 20 starts 17.4 s vs 126 s.
    num_threads : int or None
        torch intra-op threads on CPU during the fit (restored afterwards). The batched tensors are small,
        so one thread is as fast as two and does not stall when other processes share the cores (measured:
        18 s with 1 thread, 18–48 s with 2 on a busy 2-core machine); None leaves torch's setting alone.
    """

    name = "lsq"
    description = "multi-start Levenberg–Marquardt on the voltage trace (multiple shooting, forward-mode AD)"
    default_config = {
        "n_starts": 8,
        "random_starts": "bounds",
        "jitter": 0.5,
        "max_iter": 200,
        "tol": 1e-7,
        "stage_tol": 1e-3,
        "stage_iter": 25,
        "continuity": (1.0, 10.0, 100.0, 1e3),
        "segment_ms": 5.0,
        "dt": None,
        "max_dt": 0.05,
        "method": "rk4",
        "subsample": 1,
        "success_tol": 1e-3,
        "abandon": 10.0,
        "lambda0": 1e-2,
        "max_step": 1.0,
        "gate_states": None,
        "num_threads": 1,
        "jacobian": "forward",
    }

    # ------------------------------------------------------------------ options
    def _check_config(self) -> None:
        c = self.config

        bad, is_int, is_num = self._bad_option, is_integer_option, is_number_option

        for key in ("n_starts", "max_iter", "stage_iter", "subsample"):
            if not is_int(c[key]) or c[key] < 1:
                raise bad(key, "give a positive integer")
        if c["num_threads"] is not None and (not is_int(c["num_threads"]) or c["num_threads"] < 1):
            raise bad("num_threads", "give a positive integer or None")
        for key in ("tol", "stage_tol", "success_tol", "lambda0", "jitter", "max_dt", "abandon", "max_step"):
            if not is_num(c[key]) or c[key] <= 0:
                raise bad(key, "give a positive number")
        if c["jacobian"] not in ("forward", "reverse"):
            raise bad("jacobian", "choose forward or reverse")
        if c["random_starts"] not in _RANDOM:
            raise bad("random_starts", f"choose one of {', '.join(_RANDOM)}")
        if c["method"] not in METHODS:
            raise bad("method", f"choose one of {', '.join(METHODS)}")
        if c["dt"] is not None and (not is_num(c["dt"]) or c["dt"] <= 0):
            raise bad("dt", "give a positive step in ms or None (automatic)")
        if c["segment_ms"] is not None and (not is_num(c["segment_ms"]) or c["segment_ms"] <= 0):
            raise bad("segment_ms", "give a positive length in ms or None (single shooting)")
        w = c["continuity"]
        if isinstance(w, (int, float)):
            w = (w,)
        try:
            w = tuple(float(x) for x in w)
        except (TypeError, ValueError):
            raise bad("continuity", "give a sequence of positive weights") from None
        if not w or any(not (x > 0 and math.isfinite(x)) for x in w):
            raise bad("continuity", "give a sequence of positive weights")
        c["continuity"] = w
        g = c["gate_states"]
        if g is not None and (isinstance(g, str) or not all(isinstance(x, str) for x in g)):
            raise bad("gate_states", "give a list of state names or None")

    # ------------------------------------------------------------------ fit
    def _fit(self, problem: EstimationProblem, ctx: FitContext):
        c = self.config
        model = problem.model
        dev, dtype = ctx.device, ctx.dtype
        kw = dict(dtype=dtype, device=dev)
        F = len(problem.free)
        free_index = [model.param_index(n) for n in problem.free_names]
        gates = gate_mask(model, c["gate_states"])
        ptf = ParamTransform(problem, dtype, dev)
        stf = StateTransform(gates, dev, [s.scale for s in model.states], dtype)
        lay = make_layout(problem.traces, c["dt"], c["max_dt"], c["segment_ms"], c["subsample"])
        M = lay.n_segments
        lay_t = {"valid": torch.as_tensor(lay.valid, device=dev), "v_obs": torch.as_tensor(lay.v_obs, **kw),
                 "has_next": torch.as_tensor(lay.has_next, device=dev),
                 "first": torch.as_tensor(lay.first, device=dev)}
        i_half = torch.as_tensor(lay.i_half.T.copy(), **kw)                     # (2K+1, M)
        theta_fixed = torch.as_tensor(problem.theta_full({f.name: _mid(f) for f in problem.free}), **kw)[None]
        # defects of hidden states are weighed in mV: scaled by (voltage scale / state scale)
        scale = torch.tensor([model.states[0].scale / st.scale if k else 1.0 for k, st in enumerate(model.states)],
                             **kw)
        fit_x0 = isinstance(problem.initial_state, str) and problem.initial_state == "fit"

        # ---- starts and nodes
        theta0 = self._starts(problem, ctx.rng)                                 # (n, F)
        n = theta0.shape[0]
        z = ptf.clip(torch.as_tensor(ptf.to_z(theta0), **kw))
        u = self._init_nodes(problem, lay, z, ptf, stf, theta_fixed, free_index, i_half, gates)
        ar1 = isinstance(problem.noise, AR1Noise)
        rho = torch.full((n,), float(problem.noise.rho), **kw) if ar1 else None

        def ev(zz, uu):
            return evaluate(model, c["method"], lay, theta_fixed, free_index, ptf, stf, zz, uu, i_half, _CHUNK,
                            c["jacobian"])

        multiple = M > len(problem.traces)
        first_idx = torch.as_tensor(np.flatnonzero(lay.first), device=dev)
        max_dz = float(c["max_step"])
        penalty = list(c["continuity"]) if multiple else []
        n_stages = len(penalty) + 1
        raw = ev(z, u)
        run = _Run(n=n, max_iter=c["max_iter"], lambda0=c["lambda0"], kw=kw)
        if ctx.progress:
            from tqdm.auto import tqdm

            run.bar = tqdm(total=c["max_iter"], desc=f"lsq {model.name} ×{n} starts", unit="it", leave=False,
                           disable=None)  # None: no bar when output is not a terminal (logs, CI)

        def run_stage(stage: int, kind: str, w: float, only: torch.Tensor | None = None):
            nonlocal z, u, raw, rho
            if ar1 and stage > 0:
                new_rho = _rho_from(raw, lay_t, seq=kind == "exact")
                rho = new_rho if only is None else torch.where(only, new_rho, rho)
            if kind == "penalty":
                def build(raw_, uu, idx, rho=rho):
                    return assemble(raw_, uu, stf, lay_t, w, scale, None if rho is None else rho[idx], not fit_x0)

                def propose(sys_, z_, u_, lam_):
                    du, dz, pred = solve(sys_, lam_)
                    return ptf.clip(z_ + dz.clamp(-max_dz, max_dz)), stf.step(u_, du), pred
            else:
                def build(raw_, uu, idx, rho=rho):
                    return condensed(raw_, uu, stf, lay, lay_t, fit_x0, None if rho is None else rho[idx], w, scale)

                def propose(sys_, z_, u_, lam_):
                    dzeta = torch.nan_to_num(condensed_solve(sys_, lam_))
                    _, pred = condensed_apply(sys_, dzeta)       # the model's decrease for the plain step
                    z_t = ptf.clip(z_ + dzeta[:, :F].clamp(-max_dz, max_dz))
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
            exact = kind == "exact"
            tol = c["tol"] if exact else c["stage_tol"]
            cap = c["max_iter"] - run.it if exact else min(c["stage_iter"], c["max_iter"] - run.it)
            z, u, raw, sys_ = run.stage(stage, n_stages, z, u, raw, build, propose, ev, tol, cap,
                                        abandon=c["abandon"] if exact else None, only=only)
            return sys_

        for stage, w in enumerate(penalty):
            run_stage(stage, "penalty", w)
        cs = run_stage(len(penalty), "exact", _W_EXACT)
        # Where closing the gaps stalled (the linearised closing is poor over long, sensitive stretches, e.g.
        # a slow variable across bursts), tighten the homotopy for those starts and try the exact phase again.
        w_more, stage = (penalty[-1] if penalty else _W_EXACT), len(penalty) + 1
        for _ in range(_RETRIES if multiple else 0):
            ok = torch.isfinite(cs.merit)
            if not bool(ok.any()) or run.it >= c["max_iter"]:
                break
            stalled = ok & (cs.max_defect > _DEFECT_TOL) & (cs.merit <= c["abandon"] * cs.merit[ok].min())
            if not bool(stalled.any()):
                break
            w_more *= 10.0
            n_stages = stage + 2
            run_stage(stage, "penalty", w_more, only=stalled)
            cs = run_stage(stage + 1, "exact", _W_EXACT, only=stalled)
            stage += 2
        run.close()

        # ---- best start, reconstruction, uncertainty, noise
        cost = torch.where(torch.isfinite(cs.merit), cs.merit, torch.full_like(cs.merit, math.inf))
        best = int(torch.argmin(cost))
        if not math.isfinite(float(cost[best])):
            raise ConfigurationError(f"Every start's simulation diverged (NaN/inf) at dt = {lay.dt:g} ms; use a "
                                     "smaller step (option dt or max_dt) and check the bounds and stimulus units.")
        n_success = int((cost <= cost[best] * (1 + c["success_tol"]) + 1e-12).sum())
        max_defect = float(cs.max_defect[best])
        if max_defect > 1e-4:
            warnings.warn(f"lsq: the best start did not reach a continuous trajectory (largest continuity defect "
                          f"{max_defect:.2g} mV), so its estimate is that of the most tightly coupled "
                          f"multiple-shooting stage; raise max_iter (now {c['max_iter']}) or stage_iter, or "
                          "shorten segment_ms.",
                          RuntimeWarning, stacklevel=4)
        theta_free, dth = ptf.from_z(z)
        theta_best = theta_fixed[0].clone()
        theta_best[free_index] = theta_free[best]
        x_nodes, _ = stf.from_u(u[best])
        states = self._reconstruct(problem, lay, theta_best, x_nodes)          # per sweep (T, S), float64
        res_full = [st[:, 0] - tr.v for st, tr in zip(states, problem.traces, strict=True)]
        used = [r[::lay.subsample] for r in res_full]
        rho_used = None
        if ar1:
            num = sum(float(np.dot(r[1:], r[:-1])) for r in used)
            rho_used = float(np.clip(num / max(sum(float(np.dot(r, r)) for r in used), 1e-300), -0.999, 0.999))
            used = [np.concatenate([np.sqrt(1 - rho_used**2) * r[:1], r[1:] - rho_used * r[:-1]]) for r in used]
        sse = float(sum(np.dot(r, r) for r in used))
        n_rows = sum(r.size for r in used)
        std = self._std(problem, raw, u, stf, lay, lay_t, scale, best, fit_x0, dth, rho_used, sse, n_rows)
        res_all = np.concatenate(res_full)
        if ar1:
            est = fit_ar1(res_all)
            noise = {"sigma": est.sigma, "rho": est.rho}
        else:
            noise = {"sigma": float(np.sqrt(np.mean(res_all**2)))}
        tf = theta_free.cpu().double().numpy()
        free_values = {name: float(tf[best, j]) for j, name in enumerate(problem.free_names)}
        init = {name: float(theta0[best, j]) for j, name in enumerate(problem.free_names)}
        metrics = {
            "n_starts": n,
            "n_success": n_success,
            "success_fraction": n_success / n,
            "iterations": run.it,
            "cost": 0.5 * sse,
            "n_segments": M,
            "dt_ms": lay.dt,
            "max_defect": max_defect,
        }
        samples = {name: [float(x) for x in tf[:, j]] for j, name in enumerate(problem.free_names)}
        history = {"cost": run.history_cost, "stage": run.history_stage,
                   "start_cost": [float(x) if math.isfinite(float(x)) else None for x in cost.cpu()],
                   "start_init": theta0.tolist()}
        return build_result(problem, self.name, free_values, states, std=std, init=init, noise=noise,
                            metrics=metrics, history=history, samples=samples)

    # ------------------------------------------------------------------ helpers
    def _starts(self, problem: EstimationProblem, rng: np.random.Generator) -> np.ndarray:
        return problem.starting_points(int(self.config["n_starts"]), rng, self.config["random_starts"],
                                       float(self.config["jitter"]))

    def _init_nodes(self, problem, lay, z, ptf, stf, theta_fixed, free_index, i_half, gates) -> torch.Tensor:
        """Node coordinates u (n, M, S): voltage from the recording, hidden states quasi-steady there."""
        model = problem.model
        n, M, S = z.shape[0], lay.n_segments, model.n_states
        kw = dict(dtype=z.dtype, device=z.device)
        theta_free, _ = ptf.from_z(z)
        theta = theta_fixed.expand(n, -1).clone()
        theta[:, free_index] = theta_free
        V = torch.as_tensor(lay.v_obs[:, 0], **kw).expand(n, M).reshape(-1)
        th = theta.repeat_interleave(M, 0)
        i0 = i_half[0].expand(n, M).reshape(-1)
        preset = model.initial_state(problem.preset) if (problem.preset or model.default_preset) else \
            np.array([s.scale for s in model.states])
        if S == 1:
            return stf.to_u(V.reshape(n, M, 1))
        x = quasi_steady_states(model, th, V, i0, preset, gates=gates, iterations=6, gate_margin=1e-4).reshape(n, M, S)
        if not (isinstance(problem.initial_state, str) and problem.initial_state == "fit"):
            x0 = model.initial_state(problem.preset) if isinstance(problem.initial_state, str) else \
                np.asarray(problem.initial_state, dtype=float)
            if x0.shape != (S,):
                raise ConfigurationError(f"initial_state must have {S} values ({', '.join(model.state_names)}).")
            first = torch.as_tensor(lay.first, device=z.device)
            x = torch.where(first[None, :, None], torch.as_tensor(x0, **kw), x)
        return stf.to_u(x)

    def _reconstruct(self, problem, lay, theta, x_nodes) -> list[np.ndarray]:
        """States of one start at every sample: all its segments simulated side by side from their nodes.

        With the continuity defects at their converged size (metric ``max_defect``) this is the
        single-shooting trajectory; the sequential depth is one segment instead of the whole sweep.
        """
        M, S = x_nodes.shape
        r = lay.steps_per_sample
        i_steps = torch.as_tensor(lay.i_half[:, ::2], dtype=theta.dtype, device=theta.device)   # (M, K+1)
        sim = simulate(problem.model, theta.expand(M, -1), duration=lay.n_steps * lay.dt, dt=lay.dt, i_ext=i_steps,
                       y0=x_nodes, method=self.config["method"], dtype=theta.dtype, device=theta.device,
                       record_every=r, compile=False, check_finite=False)
        seg = sim.y[:, :-1].detach().cpu().double().numpy()                     # (M, L, S), samples s0 + j
        out = []
        for q, tr in enumerate(problem.traces):
            rows = seg[lay.sweep == q].reshape(-1, S)
            out.append(rows[:tr.t.size])
        return out

    def _std(self, problem, raw: Raw, u, stf, lay, lay_t, scale, best, fit_x0, dth, rho, sse,
             n_rows) -> dict[str, float | None]:
        """Standard deviations of the free parameters (canonical units) from the single-shooting Jacobian."""
        F = len(problem.free)
        i = torch.tensor([best], device=u.device)
        rho_t = None if rho is None else torch.full((1,), float(rho), dtype=u.dtype, device=u.device)
        cs = condensed(raw.index(i), u[i], stf, lay, lay_t, fit_x0, rho_t, 1.0, scale)
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


def _rho_from(raw: Raw, lay_t: dict, seq: bool = False) -> torch.Tensor:
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


def _take(obj, idx):
    """Rows ``idx`` of every tensor field of a dataclass of per-start tensors."""
    return type(obj)(**{k: getattr(obj, k)[idx] for k in obj.__dataclass_fields__})


def _put(obj, a_idx, new, acc) -> None:
    for k in obj.__dataclass_fields__:
        getattr(obj, k)[a_idx] = getattr(new, k)[acc]


def _cost(sys_) -> torch.Tensor:
    return sys_.cost if hasattr(sys_, "cost") else sys_.merit


class _Run:
    """Batched Levenberg–Marquardt iterations over the stages, with per-start damping and convergence."""

    def __init__(self, n: int, max_iter: int, lambda0: float, kw: dict) -> None:
        self.n, self.max_iter, self.lambda0, self.kw = n, max_iter, float(lambda0), kw
        self.it = 0
        self.history_cost: list[float] = []
        self.history_stage: list[int] = []
        self.bar = None

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
                small = torch.isfinite(new) & (sys_t.max_defect <= _DEFECT_SMALL)
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
                done &= torch.where(acc, sys_t.max_defect, sys_.max_defect[idx]) <= _DEFECT_TOL
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
        if self.bar is not None:
            self.bar.close()
