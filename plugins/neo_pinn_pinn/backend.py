"""The ``pinn`` backend: physics-informed networks for joint parameter and hidden-state estimation.

Algorithm
---------
An ensemble of ``n_members`` independent physics-informed networks is trained as one batch
(:func:`neo_pinn_pinn.training.train_members`). Each member maps time to every state of the model (the
voltage and the unobserved ones) and owns its copy of the free biophysical parameters. The physics is
the model's own ``rhs`` — the equations exist once, in the model zoo.

0. **Screened starts** (``screen_candidates``, :mod:`neo_pinn_pinn.screen`): every member's start is
   replaced by the best parameters for the misfit of the voltage equation with the hidden states driven
   by the recorded voltage, so the fit does not hinge on the initial guess.
1. **Data-derived nondimensionalisation**: time per segment to [−1, 1]; the voltage by its recorded mean
   and spread; hidden states by their warm-start range (gates through a logistic); every residual by the
   spread of its state's derivative.
2. **Fourier features** (``fourier_features``): the voltage spectrum's dominant frequencies plus trainable
   ones per member, for the slower hidden states.
3. **Random weight factorization** (``rwf``) of every dense layer.
4. **Segments**: a sweep with many spikes is cut into segments of about ``spikes_per_segment`` spikes,
   each with its own network, tied by continuity of every state.
5. **Two-stage training** (``two_stage``): stage 1 fits the voltage (and pulls the hidden outputs towards
   their voltage-driven states); stage 2 adds the physics residual of every state equation and trains
   networks and parameters jointly.
6. **Adaptive loss balancing** (``adaptive_weights``): gradient-norm weights, smoothed.
7. **Separate optimisers** (``separate_optimizers``): Adam for the network weights and Adam for the
   parameters in log coordinates, each with its own schedule.

Result
------
Members whose final loss is within ``accept_factor`` of the best are *accepted*; the estimate is their
median, the uncertainty their spread (sample standard deviation; None with a single accepted member).
The states are the accepted members' mean network outputs at every sample; ``samples`` holds every
member's estimate; ``diagnostics`` the per-member losses, acceptance, starts and screen, and the
per-sweep forward check; ``history`` the loss terms and parameter trajectories (median over members);
the noise comes from the voltage residual.
"""

from __future__ import annotations

import math

import numpy as np

from neo_pinn.estimator import Estimator, FitContext
from neo_pinn.features import spike_count
from neo_pinn.problem import EstimationProblem
from neo_pinn.residuals import noise_from_residuals, rms, voltage_residuals
from neo_pinn.result import EstimationResult
from neo_pinn.simulation import simulate

from .config import PINNConfig
from .trainer import Trained
from .training import train_members

__all__ = ["PINN", "ABLATIONS", "relative_l2"]

#: The five techniques of the method (the issue's list), plus the screened start, and the option that
#: switches each off (for ablations).
ABLATIONS = {
    "fourier_features": {"fourier_features": False},
    "random_weight_factorization": {"rwf": False},
    "two_stage_training": {"two_stage": False},
    "adaptive_loss_balancing": {"adaptive_weights": False},
    "separate_optimizers": {"separate_optimizers": False},
    "parameter_screen": {"screen_candidates": 0},
}


class PINN(Estimator):
    """Physics-informed neural network ensemble (see the module docstring for the algorithm).

    Options: :class:`~neo_pinn_pinn.config.PINNConfig` (every option by its flat name, e.g.
    ``PINN(n_members=4, rwf=False)``).
    """

    name = "pinn"
    description = "physics-informed network ensemble (Fourier features, RWF, two-stage, adaptive weights)"
    config_class = PINNConfig

    # ------------------------------------------------------------------ starts
    def starts(self, problem: EstimationProblem, rng: np.random.Generator) -> np.ndarray:
        """Initial free-parameter values (n_members, F) of the ensemble."""
        ens = self.config.ensemble
        return problem.starting_points(int(ens.n_members), rng, ens.random_starts, float(ens.jitter))

    # ------------------------------------------------------------------ fit
    def _fit(self, problem: EstimationProblem, ctx: FitContext) -> EstimationResult:
        inits = self.starts(problem, ctx.rng)
        tr = train_members(problem, inits, self.config, ctx)
        return self.assemble(problem, tr, inits)

    def assemble(self, problem: EstimationProblem, tr: Trained, inits: np.ndarray) -> EstimationResult:
        """Build the :class:`~neo_pinn.result.EstimationResult` from a trained ensemble.

        Parameters
        ----------
        problem : EstimationProblem
        tr : Trained
            What :func:`~neo_pinn_pinn.training.train_members` returned for these members.
        inits : numpy.ndarray
            (E, F) the members' starts before the screen (canonical units).
        """
        names = problem.free_names
        finite = np.isfinite(tr.loss)
        best = float(np.min(tr.loss[finite]))
        accepted = finite & (tr.loss <= float(self.config.ensemble.accept_factor) * best)
        th = tr.theta_free[accepted]
        # median in log coordinates for log-scale parameters (members' spread is multiplicative)
        logs = np.array([f.log_scale for f in problem.free])
        est = np.where(logs, np.exp(np.median(np.log(th), 0)), np.median(th, 0))
        std = {n: (float(np.std(th[:, j], ddof=1)) if th.shape[0] > 1 else None) for j, n in enumerate(names)}
        best_member = int(np.argmin(np.where(finite, tr.loss, np.inf)))
        states = [s[accepted].mean(0) for s in tr.states]
        noise = noise_from_residuals(voltage_residuals(problem.traces, states), problem.noise)
        metrics = {
            "n_members": int(tr.loss.size), "n_accepted": int(accepted.sum()), "best_member": best_member,
            "loss": best, "loss_data": float(tr.loss_terms["data"][best_member]),
            "loss_physics": float(tr.loss_terms["physics"][best_member]),
            "loss_continuity": float(tr.loss_terms["continuity"][best_member]),
        }
        diagnostics = {"loss": tr.loss.tolist(), "accepted": accepted.astype(int).tolist(),
                       **{f"init_{n}": inits[:, j].tolist() for j, n in enumerate(names)}}
        for key, value in tr.info.items():
            if key in ("screened", "screen_misfit"):
                continue
            if isinstance(value, (bool, int, float, np.integer, np.floating)):
                metrics[key] = value
            else:
                diagnostics[key] = value
        diagnostics.setdefault("trainable_frequencies_hz", [])
        if self.config.output.forward_check:
            check = self.forward_check(problem, dict(zip(names, est)), states)
            diagnostics |= check
            metrics["forward_rmse_max_mV"] = float(np.max(check["forward_rmse_mV"]))
            metrics["forward_spikes_match"] = all(rec == sim for rec, sim in check["forward_spikes"])
        if "screened" in tr.info:
            screened = np.asarray(tr.info["screened"])
            diagnostics |= {f"screened_{n}": screened[:, j].tolist() for j, n in enumerate(names)}
            diagnostics["screen_misfit"] = np.asarray(tr.info["screen_misfit"]).tolist()
        return EstimationResult.from_fit(problem, self.name, dict(zip(names, est)), states, std=std,
                                         init=dict(zip(names, inits[0])), noise=noise, metrics=metrics,
                                         history=self.history(problem, tr),
                                         samples={n: tr.theta_free[:, j].tolist() for j, n in enumerate(names)},
                                         diagnostics=diagnostics)

    @staticmethod
    def history(problem: EstimationProblem, tr: Trained) -> dict:
        """Loss terms and parameter trajectories, median over members per record (nan before stage 2)."""
        def med(a):
            return np.median(a, 1).tolist()

        theta = tr.history["theta"]
        history = {
            "loss_data": med(tr.history["loss_data"]),
            "loss_physics": med(tr.history["loss_physics"]),
            "params": {n: np.median(theta[:, :, j], 1).tolist() for j, n in enumerate(problem.free_names)},
        }
        if tr.info.get("n_segments", 1) > 1:
            history["loss_continuity"] = med(tr.history["loss_continuity"])
        return history

    @staticmethod
    def forward_check(problem: EstimationProblem, estimate: dict[str, float], states: list[np.ndarray]) -> dict:
        """What the fitted model itself does: every sweep simulated (RK4 at the sampling step, on CPU) from
        the reconstructed initial state under the recorded stimulus.

        A network's voltage follows the data whatever the parameters; this forward simulation is the
        honest test of the estimate.

        Returns
        -------
        dict
            ``forward_rmse_mV``: per sweep, the simulated voltage's RMSE against the recording (mV, nan when
            the simulation diverged); ``forward_spikes``: per sweep, [recorded, simulated] spike counts at the
            model's threshold (simulated −1 when it diverged).
        """
        model = problem.model
        theta = problem.theta_full(estimate)
        threshold, rearm = problem.spike_levels
        rmse, spikes = [], []
        for tr, st in zip(problem.traces, states):
            dt = float(np.median(np.diff(tr.t)))
            n_rec = int(spike_count(tr.v, tr.t, threshold=threshold, rearm=rearm))
            try:
                _, y = simulate(model, theta, duration=dt * (tr.t.size - 1), dt=dt, i_ext=tr.i_ext, y0=st[0],
                                device="cpu", compile=False).numpy()
                v = y[0, :, 0]
                rmse.append(rms(v - tr.v))
                spikes.append([n_rec, int(spike_count(v, tr.t, threshold=threshold, rearm=rearm))])
            except Exception:  # a diverging simulation is a finding about the estimate, not a failed fit
                rmse.append(math.nan)
                spikes.append([n_rec, -1])
        return {"forward_rmse_mV": rmse, "forward_spikes": spikes}


def relative_l2(estimate: np.ndarray, truth: np.ndarray) -> float:
    """‖estimate − truth‖₂ / ‖truth‖₂ (nan when the truth is all zero)."""
    den = float(np.linalg.norm(truth))
    return float(np.linalg.norm(np.asarray(estimate) - np.asarray(truth)) / den) if den > 0 else math.nan
