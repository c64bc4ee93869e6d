"""The ``pinode`` backend: a physics-informed neural ODE with scale-aware residuals (PI-NODE-SR).

Algorithm
---------
An ensemble of ``n_members`` independently initialised members is trained as one batch
(:func:`neo_pinn_pinode.trainer.train_members`). Each member owns a vector field (``mode``), a copy of the
free parameters and the states at the shooting nodes:

* ``neural``: an MLP over every state and the current, outputs in units of each state's derivative spread,
  tied to the model's own ``derivatives`` (with the member's parameters) by the physics residual;
* ``hybrid``: the model's ``derivatives`` plus a small learned current (pA) added to the stimulus — what
  the model is missing — a function of the voltage alone by default (so it cannot stand in for a gating
  current), kept small by a penalty when asked (``correction_penalty``);
* ``mechanistic``: the model alone.

1. **Through the solver**: the field is integrated by the core's fixed step (``method``: Heun by default,
   Euler, RK4) on the data grid, and the loss is backpropagated through the steps (or by the adjoint
   method, ``adjoint``).
2. **Multiple shooting with a curriculum**: rollouts start at nodes every ``node_ms``; their horizon grows
   from ``horizon_start_ms`` (``curriculum``); where a rollout reaches the next node the gap is a loss.
3. **Scale-aware residuals** (``scale_aware``): every state's residual is divided by the spread of that
   state's derivative over the window, so fast (V, m) and slow (h, n) states weigh alike.
4. **Controlled physics loss**: the physics weight ramps up over ``ramp_fraction`` of the steps to its cap.
5. **Partial observation**: unobserved states are latent at the nodes, started from the hidden states
   driven by the recorded voltage (toolkit) or from the given initial state.
6. **Multiple shooting by Gauss–Newton** (``mechanistic``; ``ms_finish_steps``): Levenberg–Marquardt on the
   parameters and every node state together, the residuals those of the loss (data and weighted gaps): short
   rollouts keep it nearly linear, so it reaches the optimum where Adam crawls along sloppy directions.
7. **Single-shooting finish** (``mechanistic``, ``hybrid``; ``finish_steps``): Levenberg–Marquardt on the
   parameters and each sweep's first state (in ``hybrid`` also the correction's output layer, in which the
   current is linear) with one rollout over the whole sweep — the least-squares fit the multiple shooting
   approaches — and its local covariance (:mod:`neo_pinn_pinode.finish`).

Result
------
Members whose final loss is within ``accept_factor`` of the best make the estimate (median, log coordinates
for log-scale parameters) and its std (their spread, or the best member's Laplace std from the finish where that
is larger: members that met at one optimum spread less than the data allow). States, forecast and correction current are the best
member's; with ``forecast_ms`` the field runs on past the window under the sweep's last current (a
``forecast`` :class:`~neo_pinn.result.DerivedSignal`), and in ``hybrid`` mode the learned current is a
``correction`` signal in pA. Verdict checks of the backend: ``forecast_finite`` (fail), ``forecast_rate`` and
``continuous_fit`` (warn: the finish was undone for the reported member, so its one continuous rollout does not fit
the window — the mark of a wrong optimum that multiple shooting can still fit piecewise) and ``residual`` (warn: the
window RMSE exceeds 1.5× the recording's noise level — structure the field leaves, in ``mechanistic`` mode often a
current the model lacks).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from neo_pinn.cell import noise_level_mV
from neo_pinn.errors import ConfigurationError
from neo_pinn.features import firing_rate, spike_times
from neo_pinn.problem import EstimationProblem
from neo_pinn.toolkit import (DerivedSignal, EstimationResult, Estimator, FitContext, LogLinear, gate_mask,
                              noise_from_residuals, voltage_residuals)
from neo_pinn.verdict import Check, assess

from .config import PINODEConfig
from .data import GATE_GUESS, SweepData, with_correction_gate
from .screen import drive_hidden, screen_starts
from .trainer import Layout, Trained, train_members

__all__ = ["PINODE", "ABLATIONS"]

#: every technique and the options that switch it off (for ablations)
ABLATIONS = {
    "physics_loss": {"physics": False},
    "scale_aware_residuals": {"scale_aware": False},
    "heun_solver_euler": {"method": "euler"},
    "heun_solver_rk4": {"method": "rk4"},
    "direct_backprop_adjoint": {"adjoint": True},
    "curriculum": {"curriculum": False},
    "multiple_shooting_gauss_newton": {"ms_finish_steps": 0},
}


#: the core's checks that simulate the fitted model alone (without a hybrid field's correction current)
MODEL_ALONE = ("response", "spiking", "rheobase", "firing_rate", "trace_rmse")
#: ``residual`` warns where the window's RMSE exceeds this many times the recording's noise level
RESIDUAL_NOISE_RATIO = 1.5
#: the noise level is at least this fraction of the sweep's voltage range (noise-free or heavily filtered data
#: read near zero noise, and a fit that close is as good as one asks of a model)
RESIDUAL_FLOOR_FRACTION = 0.01


class PINODE(Estimator):
    """Physics-informed neural ODE ensemble (see the module docstring for the algorithm).

    Parameters
    ----------
    config : PINODEConfig, optional
    observed_states : mapping, optional
        Hidden states observed besides the voltage (e.g. a simulation's gates): state name → one (T,) array
        per fitted sweep, on the sweep's samples, canonical units. Recordings observe the voltage only.
    **options
        Options by name (:class:`~neo_pinn_pinode.config.PINODEConfig`), e.g. ``PINODE(mode="neural")``.
    """

    name = "pinode"
    description = "physics-informed neural ODE (Heun, scale-aware residuals, multiple shooting, forecast)"
    config_class = PINODEConfig

    def __init__(self, config: PINODEConfig | None = None, *, observed_states: Mapping[str, Sequence] | None = None,
                 **options: Any) -> None:
        super().__init__(config, **options)
        self.observed_states = {str(k): [np.asarray(a, float) for a in v] for k, v in dict(observed_states or {}).items()}

    # ------------------------------------------------------------------ fit
    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        ens = self.config.ensemble
        starts = problem.starting_points(int(ens.n_members), ctx.rng, ens.random_starts, float(ens.jitter))
        layout = self.layout(problem)
        sweeps, observed = self.sweeps(problem, layout, starts)
        screened = starts
        sc = self.config.screening
        if sc.screen:
            screened, sweeps = screen_starts(layout, sweeps, observed, starts, rounds=int(sc.screen_rounds),
                                             steps=int(sc.screen_steps), interval_ms=float(sc.screen_interval_ms),
                                             max_dt=float(self.config.solver.max_dt), dtype=ctx.dtype,
                                             device=ctx.device)
        fixed = [self.given_start(problem)] * len(sweeps)
        gated = self.config.field.mode == "hybrid" and self.config.field.correction_inputs == "gated"
        if gated:  # the correction's gate is a latent state of the field's own, after the model's
            sweeps, observed = with_correction_gate(sweeps, observed)
            layout = replace(layout, gates=np.append(layout.gates, True))
            # a given initial state says nothing of the gate: it is held at its guess there with the rest
            fixed = [None if f is None else np.append(f, GATE_GUESS) for f in fixed]
        tr = train_members(layout, sweeps, observed, screened, self.config, ctx, fixed)
        if gated:
            n = problem.model.n_states
            rest = float(np.median(np.concatenate([t.v for t in problem.traces])))  # mostly between spikes
            tr.info["correction_gate_ms"] = tr.info["field"].gate_ms_at(rest).tolist()
            tr.states = [s[..., :n] for s in tr.states]
            tr.forecast = [None if f is None else (f[0], f[1][..., :n], f[2]) for f in tr.forecast]
        if sc.screen:
            tr.info |= {f"screened_{n}": screened[:, j].tolist() for j, n in enumerate(problem.free_names)}
        return self.assemble(problem, tr, starts)

    @staticmethod
    def layout(problem: EstimationProblem) -> Layout:
        """Where the free parameters sit among the model's (fixed values, free ones at their first start)."""
        model = problem.model
        theta = problem.theta_full({f.name: (f.init if f.init is not None else math.sqrt(f.bounds[0] * f.bounds[1])
                                             if f.log_scale else 0.5 * sum(f.bounds)) for f in problem.free})
        return Layout(model=model, free=problem.free, theta=np.asarray(theta, float),
                      free_index=np.array([model.param_index(n) for n in problem.free_names]), gates=gate_mask(model))

    def given_start(self, problem: EstimationProblem) -> np.ndarray | None:
        """The sweeps' initial state when the problem gives it ("preset" or a vector), else None (fitted)."""
        init = problem.initial_state
        if isinstance(init, str):
            return None if init == "fit" else np.asarray(problem.model.initial_state(problem.preset), float)
        return np.asarray(init, float)

    def sweeps(self, problem: EstimationProblem, layout: Layout, starts: np.ndarray) -> tuple[list[SweepData], np.ndarray]:
        """Training data per sweep (observed states, driven hidden-state guesses) and the observed-state mask."""
        model = problem.model
        names = model.state_names
        unknown = sorted(set(self.observed_states) - set(names[1:]))
        if unknown:
            raise ConfigurationError(f"observed_states names {unknown}, not hidden states of {model.name} "
                                     f"({', '.join(names[1:])}).")
        observed = np.array([k == 0 or n in self.observed_states for k, n in enumerate(names)])
        out = []
        for j, tr in enumerate(problem.traces):
            obs = np.full((tr.t.size, model.n_states), np.nan)
            obs[:, 0] = tr.v
            for name, arrays in self.observed_states.items():
                if len(arrays) != len(problem.traces) or arrays[j].shape != tr.t.shape:
                    raise ConfigurationError(f"observed_states[{name!r}] needs one array per fitted sweep "
                                             f"({len(problem.traces)}), each on the sweep's {tr.t.size} samples.")
                obs[:, names.index(name)] = arrays[j]
            guess = np.repeat(np.nan_to_num(obs)[None], starts.shape[0], 0)
            out.append(drive_hidden(layout, SweepData(t=tr.t, i_ext=tr.i_ext, observed=obs, guess=guess), observed,
                                    starts, float(self.config.solver.max_dt)))
        return out, observed

    # ------------------------------------------------------------------ result
    def assemble(self, problem: EstimationProblem, tr: Trained, starts: np.ndarray) -> EstimationResult:
        """The :class:`~neo_pinn.result.EstimationResult` of a trained ensemble (see the module docstring)."""
        names = problem.free_names
        finite = np.isfinite(tr.loss)
        if not finite.any():
            tr.loss[:] = np.inf
            finite[:] = True  # every member diverged: report member 0, the verdict will say the rest
        best_loss = float(np.min(tr.loss[finite]))
        accepted = finite & (tr.loss <= float(self.config.ensemble.accept_factor) * best_loss)
        best = int(np.argmin(np.where(finite, tr.loss, np.inf)))
        th = tr.theta_free[accepted]
        logs = np.array([f.log_scale for f in problem.free])
        est = np.where(logs, np.exp(np.median(np.log(np.where(logs, th, 1.0)), 0)), np.median(th, 0))
        std = {n: (float(np.std(th[:, j], ddof=1)) if th.shape[0] > 1 else None) for j, n in enumerate(names)}
        cov = tr.info.pop("finish_covariance_z", None)
        kept = tr.info.get("finish_kept")
        local = self.local_std(problem, tr.theta_free[best], cov if kept is None or kept[best] else None, best)
        if local is not None:  # members that met at one optimum spread less than the data allow: take the larger
            std = {n: float(np.nanmax([x for x in (std[n], local[j]) if x is not None])) for j, n in enumerate(names)}
        states = [s[best] for s in tr.states]
        noise = noise_from_residuals(voltage_residuals(problem.traces, states), problem.noise)
        metrics = {"n_members": int(tr.loss.size), "n_accepted": int(accepted.sum()), "best_member": best,
                   "loss": best_loss, **{f"loss_{k}": float(v[best]) for k, v in tr.loss_terms.items()}}
        if "correction_gate_ms" in tr.info:
            metrics["correction_gate_ms"] = float(tr.info["correction_gate_ms"][best])
        signals, details = self.signals(problem, tr, best)
        metrics |= {k: v for k, v in details.items() if not isinstance(v, list)}
        diagnostics = {"loss": tr.loss.tolist(), "accepted": accepted.astype(int).tolist(),
                       **{f"init_{n}": starts[:, j].tolist() for j, n in enumerate(names)},
                       **{k: v for k, v in details.items() if isinstance(v, list)},
                       **{k: v for k, v in tr.info.items() if k not in ("field", "params")}}
        history = {k: v for k, v in tr.history.items() if k != "theta"}
        history["params"] = {n: [float(np.median(np.asarray(row)[:, j])) for row in tr.history["theta"]]
                             for j, n in enumerate(names)}
        result = EstimationResult.from_fit(problem, self.name, dict(zip(names, est)), states, std=std,
                                           init=dict(zip(names, starts[0])), noise=noise, metrics=metrics,
                                           history=history,
                                           samples={n: tr.theta_free[:, j].tolist() for j, n in enumerate(names)},
                                           diagnostics=diagnostics, signals=tuple(signals))
        return result

    @staticmethod
    def local_std(problem: EstimationProblem, theta: np.ndarray, covariance_z, member: int) -> np.ndarray | None:
        """(F,) Laplace std (canonical units) of one member from the finish's log-coordinate covariance, or None."""
        if covariance_z is None:
            return None
        cov = np.asarray(covariance_z, float)[member]
        if not np.isfinite(cov).all():
            return None
        coords = LogLinear(problem.free)
        z = coords.to_z(np.asarray(theta, float)[None])
        h = 1e-6
        grad = np.array([(coords.to_theta(z + h * np.eye(z.shape[1])[k][None])[0, k] - theta[k]) / h
                         for k in range(z.shape[1])])
        return np.sqrt(np.clip(np.diag(cov), 0.0, None)) * np.abs(grad)

    @staticmethod
    def continuity_check(result: EstimationResult) -> Check:
        """Warn where the single-shooting finish was undone for the reported member: the model run on from the
        first state did not fit the window, and the estimates are those of the piecewise (shooting) fit."""
        kept = result.diagnostics.get("finish_kept")
        if not kept:
            return Check("continuous_fit", "warn", True, "no single-shooting finish in this mode: not checked")
        ok = bool(kept[int(result.metrics.get("best_member", 0))])
        return Check("continuous_fit", "warn", ok, "the model run as one trajectory fits the window" if ok else
                     "the model run as one trajectory from the first state does not fit the window (the finish "
                     "was undone): the estimates come from a piecewise fit the model does not reproduce, which can "
                     "be a wrong optimum; refit from other starts (init=...), or use mode='hybrid' if the model "
                     "may lack a current.")

    def residual_check(self, problem: EstimationProblem, result: EstimationResult) -> Check:
        """Warn where the fit leaves more than :data:`RESIDUAL_NOISE_RATIO` × the recording's noise: structure the
        field does not explain — in ``mechanistic`` mode often a current the model lacks, which ``hybrid`` learns.

        The noise level is the median over the fitted sweeps of :func:`neo_pinn.cell.noise_level_mV` (mV), at least
        :data:`RESIDUAL_FLOOR_FRACTION` of the sweep's voltage range.
        """
        rmse = float(result.metrics.get("rmse_mV", math.nan))
        level = float(np.median([max(noise_level_mV(tr), RESIDUAL_FLOOR_FRACTION * float(np.ptp(tr.v)))
                                 for tr in problem.traces]))
        if not (math.isfinite(rmse) and level > 0):
            return Check("residual", "warn", True, "did not apply: no finite window RMSE")
        ratio = rmse / level
        text = f"window RMSE {rmse:.3g} mV, {ratio:.2g}× the recording's noise level ({level:.3g} mV)"
        if ratio <= RESIDUAL_NOISE_RATIO:
            return Check("residual", "warn", True, f"{text}: the fit explains the window down to its noise.")
        hint = ("the model may lack a current: fit mode='hybrid' and look at the 'correction' signal"
                if self.config.field.mode == "mechanistic" else "structure the fitted field does not explain")
        return Check("residual", "warn", False, f"{text}: {hint} (noise filtered below the sampling rate reads "
                     "low and raises the ratio).")

    def model_alone_checks(self, problem: EstimationProblem, result: EstimationResult) -> list[Check]:
        """In ``hybrid``, the core's checks that simulate the fitted model and failed, as warnings that say so.

        The core simulates the model with the fitted parameters and no correction current; a hybrid fit is the
        model plus the learned current, so a model that alone fires too fast (the current it lacks) is what
        the fit exposes, not a failed fit. A model that diverges or a parameter on its bound still fails.
        """
        if self.config.field.mode != "hybrid":
            return []
        out = []
        for c in assess(problem, result, holdout=problem.holdout).checks:
            if c.name in MODEL_ALONE and c.severity == "fail" and not c.passed:
                out.append(Check(c.name, "warn", False, "the model alone, without the learned correction current: "
                                 f"{c.message} The fit is the model plus the correction (the 'correction' signal "
                                 "shows the current the model lacks)."))
        return out

    def signals(self, problem: EstimationProblem, tr: Trained, best: int) -> tuple[list, dict]:
        """The forecast and correction signals of the best member, and what they show (metrics and per-member)."""
        model = problem.model
        threshold, rearm = problem.spike_levels
        out, details = [], {}
        for j, trace in enumerate(problem.traces):
            if tr.corrections is not None:
                c = tr.corrections[j][best]
                out.append(DerivedSignal(sweep=trace.sweep, role="correction", t=trace.t, values=c[:, None],
                                         names=("I_correction",), units=("pA",),
                                         description="current the model lacks, learned by the hybrid field (pA)"))
                if j == 0:
                    details["correction_rms_pA"] = float(np.sqrt(np.mean(c * c)))
            if tr.forecast[j] is None:
                continue
            t_f, states_f, _ = tr.forecast[j]
            out.append(DerivedSignal(sweep=trace.sweep, role="forecast", t=t_f, values=states_f[best],
                                     names=model.state_names, units=model.state_units,
                                     description=f"{self.config.field.mode} field run on past the fitted window"))
            if j == 0:
                counts = [int(spike_times(s[:, 0], t_f, threshold, rearm).size) if np.isfinite(s).all() else -1
                          for s in states_f]
                details["forecast_spikes_per_member"] = counts
                details["forecast_spikes"] = counts[best]
                details["forecast_finite"] = bool(np.isfinite(states_f[best]).all())
                details["forecast_rate_hz"] = firing_rate(states_f[best][:, 0], t_f, threshold, rearm=rearm)
                details["window_rate_hz"] = firing_rate(trace.v, trace.t, threshold, rearm=rearm)
        return out, details

    def verdict_checks(self, problem: EstimationProblem, result: EstimationResult) -> tuple[Check, ...]:
        """The model run as one trajectory fits the window (warn), down to the recording's noise (warn), the forecast
        keeps firing like the fitted window (warn), and it stays finite (fail); in ``hybrid``,
        :meth:`model_alone_checks`."""
        m = result.metrics
        checks = [self.continuity_check(result), self.residual_check(problem, result)]
        checks += self.model_alone_checks(problem, result)
        if "forecast_finite" in m:
            ok = bool(m["forecast_finite"])
            checks.append(Check("forecast_finite", "fail", ok, "the forecast stays finite" if ok else
                                "the forecast diverged: the learned field is unstable past the window; fit a "
                                "longer window or use mode=hybrid."))
            w, f = m.get("window_rate_hz", math.nan), m.get("forecast_rate_hz", math.nan)
            if math.isfinite(w) and w > 0:
                near = math.isfinite(f) and abs(f - w) <= 0.25 * w
                checks.append(Check("forecast_rate", "warn", near,
                                    f"forecast fires at {f:.3g} Hz, the fitted window at {w:.3g} Hz" + (
                                        "" if near else "; the forecast does not keep the cell's rhythm: do not "
                                        "trust it beyond the window.")))
        return tuple(checks)
