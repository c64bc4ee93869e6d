"""The ``pinn`` backend: physics-informed networks for joint parameter and hidden-state estimation.

Algorithm
---------
An ensemble of ``n_members`` independent physics-informed networks is trained as one batch
(:func:`neo_pinn_pinn.training.train_members`). Each member maps time to every state of the model (the
voltage and the unobserved ones) and owns its copy of the free biophysical parameters. The physics is
the model's own ``rhs`` — the equations exist once, in the model zoo.

0. **Screened starts** (``screen_candidates``): before any network is trained, every member's starting
   parameters are replaced by the best found for the misfit of the voltage equation when the hidden
   states are integrated with the recorded voltage in place of V. Conductances that enter the voltage
   equation linearly are solved by least squares for each candidate (variable projection); the rest
   (rates, capacitance, reversal potentials) are searched by a short cross-entropy method. This is what
   makes the fit independent of poor initial guesses: from a start 4× off, gradient training descends
   into the nearest valley (for Morris–Lecar: gK at its bound, phi → 0, n flat).
1. **Data-derived nondimensionalisation**: time per segment to [−1, 1]; the voltage by its recorded mean
   and spread; hidden states by their warm-start range (gates through a logistic, so they stay in (0, 1));
   every residual by the spread of its state's derivative.
2. **Fourier features** (``fourier_features``): ``n_fourier`` dominant frequencies of the voltage's
   spectrum (FFT), plus ``n_trainable_frequencies`` trainable ones per member started at sub-harmonics of
   the fundamental, for the slower hidden states.
3. **Random weight factorization** (``rwf``) of every dense layer.
4. **Segments**: a sweep holding many spikes is cut into segments of about ``spikes_per_segment`` spikes,
   each with its own network (batched), tied by continuity of every state — bursts of ten spikes are
   learned as well as one.
5. **Two-stage training** (``two_stage``): stage 1 fits the recorded voltage only (and, with
   ``warm_start_hidden``, pulls the hidden outputs towards the states their own equations give when
   driven by the recorded voltage); stage 2 adds the physics residual of every state equation and the
   continuity terms, and trains networks and parameters jointly.
6. **Adaptive loss balancing** (``adaptive_weights``): gradient-norm weights with epsilon smoothing
   (``balance_eps``) and an exponential moving average (``balance_alpha``).
7. **Separate optimisers** (``separate_optimizers``): Adam for the network weights (``lr_net`` →
   ``lr_net_final``) and Adam for the parameters in log coordinates (``lr_params`` → ``lr_params_final``),
   each with its own exponential schedule; off, one Adam with the network's rate trains both.

Result
------
Members whose final loss is within ``accept_factor`` of the best are *accepted*; the estimate is their
median, the uncertainty their spread (sample standard deviation; None with a single accepted member).
The states are the accepted members' mean network outputs at every sample; ``samples`` holds every
member's estimate and final loss; ``history`` the loss terms and parameter trajectories (median over
members); the noise ``sigma`` (and ``rho`` for AR(1)) comes from the voltage residual.
"""

from __future__ import annotations

import math

import numpy as np

from neo_pinn.errors import ConfigurationError
from neo_pinn.estimator import Estimator, FitContext, build_result
from neo_pinn.noise import AR1Noise, fit_ar1
from neo_pinn.problem import EstimationProblem

from .training import check_config, train_members

__all__ = ["PINN", "ABLATIONS"]

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

    Options (``default_config``)
    ----------------------------
    n_members : int
        Independently initialised networks (and parameter starts), trained as one batch.
    random_starts : {"bounds", "jitter"}
        Starting parameters of members after the first: log-uniform within the bounds, or log-normal
        around the first member's start with spread ``jitter``. Member 0 starts at the problem's initial
        guess (random within bounds where it has none).
    jitter : float
        Spread of ``"jitter"`` starts (standard deviation of log θ).
    width, depth : int
        Hidden-layer width and number of hidden layers of each network.
    fourier_features : bool
        FFT dominant-frequency features (and the trainable ones); off: the local time is the only input.
    n_fourier, n_trainable_frequencies : int
        Number of fixed (spectral) and trainable frequencies.
    max_frequency_hz : float
        Highest spectral frequency used as a feature.
    rwf : bool
        Random weight factorization; ``rwf_mean``/``rwf_std`` the initial log-scale factors.
    spikes_per_segment : float
        Target number of spikes per segment (0: one segment per sweep).
    segment_ms : float or None
        Fixed segment length instead (ms).
    two_stage : bool
        Stage 1 (voltage only) before the physics stage; off: physics from the first step.
    warm_start_hidden : bool
        In stage 1, pull the hidden outputs towards the voltage-driven solution of their own equations.
    warm_spinup : bool
        Start that voltage-driven integration at the fixed point of one period's map where the window
        repeats itself (periodic activity; else where a first pass ended) instead of from rest at the
        first sample.
    stage1_steps, stage2_steps : int
        Adam steps of each stage.
    batch_points : int
        Random collocation/data points (samples of the recording) per member and step, shared among the
        member's segments.
    min_segment_points : int
        Lower limit of the points per segment and step.
    spike_sampling : float or "auto"
        Share of each step's points drawn with probability ∝ the voltage's speed above its noise level
        (:func:`~neo_pinn_pinn.prepare.sampling_weights`), the rest uniformly: brief spikes, where the fast
        gates move, are then sampled every step. 0: all uniform. "auto": 0.5 when the spikes fill under
        ``spike_sampling_below`` of the samples (:func:`~neo_pinn_pinn.prepare.fast_share`), else 0.
    spike_sampling_ms : float
        Width around fast samples that shares their weight (the spike's repolarisation), ms.
    rate_scaled_residuals : "auto" or bool
        Divide the pointwise residual of every fast hidden state by its relaxation rate ``|∂f/∂u|``
        (1/τ of a gate), so it measures the state error in the state's units; "auto": where spikes are
        sampled (brief spikes, see ``spike_sampling``), whose steep derivative otherwise drowns the
        gate's residual between spikes.
    spike_sampling_below : float
        The share of samples below which "auto" samples the spikes (measured: Butera's bursts 1.5 %,
        Morris–Lecar's broad spikes 6–9 %).
    lr_stage1 : float
        Network learning rate of stage 1 (decays tenfold).
    lr_net, lr_net_final, lr_params, lr_params_final : float
        Start and end of the exponential schedules of stage 2 (parameters in log coordinates).
    warmup_steps, param_delay : int
        Stage 2 ramps the learning rates up linearly over ``warmup_steps``; the parameters stay fixed for
        the first ``param_delay`` steps (the networks first adapt to the physics).
    separate_optimizers : bool
        Two optimisers with their own schedules; off: one Adam (``lr_net`` schedule) for both.
    adaptive_weights : bool
        Gradient-norm loss balancing; off: every term weighs 1.
    balance_every, balance_alpha, balance_eps : int, float, float
        Steps between weight updates, moving-average factor, and ε (weights ≤ 1/ε).
    residual_form : {"strong", "weak", "both"}
        Physics residual: pointwise (``du/dt − f``), integral over short intervals (the change of each
        state against the integral of its right-hand side), or both.
    weak_samples, weak_intervals : int
        Interval length in samples and number of intervals per segment and step of the integral form.
    residual_norm : {"relative", "fixed"}
        ``"fixed"``: each state's residual divided by the spread of its warm-start derivative;
        ``"relative"``: further divided by the current spread of the network's and the model's derivative
        of that state, so a state cannot satisfy its equation by flattening (rate parameter → 0).
    relative_floor : float
        Floor of that spread (normalised units).
    local_weights : bool
        Weight the voltage residual pointwise by ``1/(|dV/dt|/r_V + local_floor)²`` (from the stage-1
        network, mean 1), so slow phases count as much as spike upstrokes.
    local_floor : float
        See ``local_weights``.
    accept_factor : float
        Members whose final loss ≤ ``accept_factor`` × the best are accepted into the estimate.
    gate_states : list of str or None
        States kept in (0, 1); None: the model's (in)activation gates.
    log_every : int
        Steps between history records and progress-bar updates.
    eval_chunk : int
        Samples per segment evaluated at once for the final reconstruction (memory bound).
    num_threads : int or None
        torch intra-op threads on CPU during the fit (restored afterwards); None leaves torch's setting.
    slow_states : "auto" or list of str
        Hidden states whose physics residual is taken in integral form over long intervals (half to all of
        a segment) instead of pointwise: states that move on the burst time scale and jump a little at
        every spike (Ca, NaP inactivation), whose rate a pointwise residual biases towards zero. "auto":
        those with ≥ 90 % of their warm-start variance below half the firing rate
        (:func:`neo_pinn_pinn.prepare.slow_states`); [] for none.
    slow_points, slow_intervals : int
        Stratified random quadrature points per interval, and intervals per segment and step.
    slow_weight : float
        Extra factor on the slow states' residual terms (on top of the adaptive weights).
    slow_interval_isi : float
        Length of those intervals, in median inter-spike intervals (at most a segment; each interval is
        drawn between half and all of it).
    forward_check : bool
        After training, simulate the fitted model from the reconstructed initial state under the recorded
        stimulus and put the voltage RMSE and spike counts in the metrics (:meth:`forward_check`).
    screen_candidates : int
        Before training, each member's start is replaced by the best parameters of a search on the
        misfit of the voltage equation with the hidden states driven by the recorded voltage
        (:func:`neo_pinn_pinn.prepare.screen_parameters`): conductances that enter the voltage equation
        linearly are solved by least squares, the others searched with this many candidates per member
        and round. 0 switches the screen off (the members start where ``random_starts`` puts them).
    screen_rounds : int
        Rounds of that (cross-entropy) search.
    screen_spread : float
        Spread of the first round's candidates around the start (log units); half of them are drawn
        uniformly within the bounds instead.
    screen_interval_ms : float
        The screen compares the recorded voltage's change over intervals of this length with the
        integral of the voltage equation (no derivative of the noisy recording is needed), ms. When a free
        parameter acts on a slow state (ε of a burster's Ca), two longer intervals are added, up to an
        eighth of the dominant (burst) period (:func:`neo_pinn_pinn.prepare.misfit_intervals`): only over
        those does the slow time scale show above the noise.
    screen_smooth_ms : float
        Optional Savitzky–Golay smoothing of the voltage that drives the screen's hidden states, ms (0: none).
    periodic_slow_states : bool
        Where a sweep's voltage repeats (:func:`~neo_pinn_pinn.prepare.repeat_lag`), the slow states'
        residual also asks them to repeat one period later (``periodic_pairs`` pairs of times per sweep):
        a slow state that forgets its start over seconds is otherwise free to start anywhere.
    periodic_pairs : int
        Pairs of times per repeating sweep.
    hold_slow_parameters : "auto" or bool
        Hold the free parameters that act on a slow state, or whose effect equals a rescaling of one (a
        slow gate's conductance), at their screened values during stage 2 ("auto"/True: whenever the
        screen ran; False: train them with the rest). The network's residuals barely see the slow time
        scale, and left free they drift.
    """

    name = "pinn"
    description = "physics-informed network ensemble (Fourier features, RWF, two-stage, adaptive weights)"
    default_config = {
        "n_members": 6,
        "random_starts": "jitter",
        "jitter": 0.7,
        "width": 64,
        "depth": 3,
        "fourier_features": True,
        "n_fourier": 24,
        "n_trainable_frequencies": 4,
        "max_frequency_hz": 500.0,
        "rwf": True,
        "rwf_mean": 0.5,
        "rwf_std": 0.1,
        "spikes_per_segment": 2.0,
        "segment_ms": None,
        "two_stage": True,
        "warm_start_hidden": True,
        "warm_spinup": True,
        "stage1_steps": 1000,
        "stage2_steps": 8000,
        "batch_points": 256,
        "min_segment_points": 48,
        "spike_sampling": "auto",
        "spike_sampling_ms": 2.0,
        "spike_sampling_below": 0.03,
        "rate_scaled_residuals": "auto",
        "lr_stage1": 3e-3,
        "lr_net": 1e-3,
        "lr_net_final": 5e-5,
        "lr_params": 2e-2,
        "lr_params_final": 1e-4,
        "warmup_steps": 300,
        "param_delay": 300,
        "separate_optimizers": True,
        "adaptive_weights": True,
        "balance_every": 50,
        "balance_alpha": 0.9,
        "balance_eps": 1e-3,
        "residual_form": "strong",
        "weak_samples": 40,
        "weak_intervals": 16,
        "residual_norm": "relative",
        "local_weights": False,
        "local_floor": 0.1,
        "relative_floor": 1e-4,
        "accept_factor": 1.25,
        "gate_states": None,
        "log_every": 25,
        "eval_chunk": 4096,
        "num_threads": None,
        "forward_check": True,
        "slow_states": "auto",
        "slow_points": 128,
        "slow_interval_isi": 3.0,
        "slow_intervals": 4,
        "slow_weight": 1.0,
        "periodic_slow_states": True,
        "periodic_pairs": 64,
        "screen_candidates": 64,
        "screen_rounds": 6,
        "screen_spread": 1.0,
        "screen_interval_ms": 1.0,
        "screen_smooth_ms": 0.0,
        "hold_slow_parameters": "auto",
    }

    def _check_config(self) -> None:
        c = self.config
        if c["random_starts"] is True:  # the CLI's --init random
            c["random_starts"] = "bounds"
        if c["random_starts"] not in ("bounds", "jitter"):
            raise ConfigurationError("pinn option random_starts must be 'bounds' or 'jitter'.")
        check_config(c)

    # ------------------------------------------------------------------ starts
    def starts(self, problem: EstimationProblem, rng: np.random.Generator) -> np.ndarray:
        """Initial free-parameter values (n_members, F) of the ensemble."""
        return problem.starting_points(int(self.config["n_members"]), rng, self.config["random_starts"],
                                       float(self.config["jitter"]))

    # ------------------------------------------------------------------ fit
    def _fit(self, problem: EstimationProblem, ctx: FitContext):
        inits = self.starts(problem, ctx.rng)
        tr = train_members(problem, inits, self.config, ctx)
        return self.assemble(problem, tr, inits)

    def assemble(self, problem: EstimationProblem, tr, inits: np.ndarray):
        """Build the :class:`~neo_pinn.result.EstimationResult` from a trained ensemble."""
        names = problem.free_names
        finite = np.isfinite(tr.loss)
        best = float(np.min(tr.loss[finite]))
        accepted = finite & (tr.loss <= float(self.config["accept_factor"]) * best)
        th = tr.theta_free[accepted]
        # median in log coordinates for log-scale parameters (members' spread is multiplicative)
        logs = np.array([f.log_scale for f in problem.free])
        est = np.where(logs, np.exp(np.median(np.log(th), 0)), np.median(th, 0))
        std = {n: (float(np.std(th[:, j], ddof=1)) if th.shape[0] > 1 else None) for j, n in enumerate(names)}
        best_member = int(np.argmin(np.where(finite, tr.loss, np.inf)))
        states = [s[accepted].mean(0) for s in tr.states]
        resid = np.concatenate([t.v - s[:, 0] for t, s in zip(problem.traces, states)])
        noise: dict[str, float] = {"sigma": float(np.sqrt(np.mean(resid ** 2)))}
        if isinstance(problem.noise, AR1Noise):
            ar = fit_ar1(resid)
            noise = {"sigma": float(ar.sigma), "rho": float(ar.rho)}
        med = lambda a: np.median(a, 1).tolist()  # noqa: E731  median over members per record (nan before stage 2)
        history = {
            "loss_data": med(tr.history["loss_data"]),
            "loss_physics": med(tr.history["loss_physics"]),
            "params": {n: np.median(tr.history["theta"][:, :, j], 1).tolist() for j, n in enumerate(names)},
        }
        if tr.info.get("n_segments", 1) > 1:
            history["loss_continuity"] = med(tr.history["loss_continuity"])
        samples = {n: tr.theta_free[:, j].tolist() for j, n in enumerate(names)}
        samples |= {"loss": tr.loss.tolist(), "accepted": accepted.astype(int).tolist(),
                    **{f"init_{n}": inits[:, j].tolist() for j, n in enumerate(names)}}
        metrics = {
            "n_members": int(tr.loss.size), "n_accepted": int(accepted.sum()), "best_member": best_member,
            "loss": best, "loss_data": float(tr.loss_terms["data"][best_member]),
            "loss_physics": float(tr.loss_terms["physics"][best_member]),
            "loss_continuity": float(tr.loss_terms["continuity"][best_member]),
        } | {k: v for k, v in tr.info.items() if k not in ("trainable_frequencies_hz", "screened", "screen_misfit")}
        if self.config["forward_check"]:
            metrics |= self.forward_check(problem, dict(zip(names, est)), states)
        samples["trainable_frequencies_hz"] = tr.info.get("trainable_frequencies_hz", [])
        if "screened" in tr.info:
            samples |= {f"screened_{n}": np.asarray(tr.info["screened"])[:, j].tolist() for j, n in enumerate(names)}
            samples["screen_misfit"] = np.asarray(tr.info["screen_misfit"]).tolist()
        return build_result(problem, self.name, dict(zip(names, est)), states, std=std,
                            init=dict(zip(names, inits[0])), noise=noise, metrics=metrics, history=history,
                            samples=samples)


    @staticmethod
    def forward_check(problem: EstimationProblem, estimate: dict[str, float], states: list[np.ndarray]) -> dict:
        """What the fitted model itself does: every sweep simulated (RK4 at the sampling step, on CPU) from
        the reconstructed initial state under the recorded stimulus.

        A network's voltage follows the data whatever the parameters; this forward simulation is the
        honest test of the estimate. Returns ``forward_rmse_mV`` (per sweep, the simulated voltage against
        the recording) and ``forward_spikes`` (per sweep, [recorded, simulated] spike counts at the
        model's threshold); a diverging simulation gives nan and -1.
        """
        from neo_pinn.features import spike_count
        from neo_pinn.simulate import simulate

        model = problem.model
        theta = problem.theta_full(estimate)
        rmse, spikes = [], []
        for tr, st in zip(problem.traces, states):
            dt = float(np.median(np.diff(tr.t)))
            n_rec = int(spike_count(tr.v, tr.t, threshold=model.spike_threshold, rearm=model.spike_rearm))
            try:
                _, y = simulate(model, theta, duration=dt * (tr.t.size - 1), dt=dt, i_ext=tr.i_ext, y0=st[0],
                                device="cpu", compile=False).numpy()
                v = y[0, :, 0]
                rmse.append(float(np.sqrt(np.mean((v - tr.v) ** 2))))
                spikes.append([n_rec, int(spike_count(v, tr.t, threshold=model.spike_threshold,
                                                      rearm=model.spike_rearm))])
            except Exception:  # a diverging simulation is a finding about the estimate, not a failed fit
                rmse.append(math.nan)
                spikes.append([n_rec, -1])
        return {"forward_rmse_mV": rmse, "forward_spikes": spikes}


def relative_l2(estimate: np.ndarray, truth: np.ndarray) -> float:
    """‖estimate − truth‖₂ / ‖truth‖₂ (nan when the truth is all zero)."""
    den = float(np.linalg.norm(truth))
    return float(np.linalg.norm(np.asarray(estimate) - np.asarray(truth)) / den) if den > 0 else math.nan
