"""The ``pinode`` backend's options: a frozen, typed configuration in groups that say what they control.

Every technique of the method has a switch here, for ablations: the solver (``method``: Heun, Euler, RK4),
``adjoint``, ``curriculum``, ``physics`` and ``scale_aware``. Every option keeps its flat name
(``PINODE(method="euler")``, ``--option method=euler``).
"""

from __future__ import annotations

from dataclasses import dataclass

from neo_pinn.toolkit import (BOOL, METHODS, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, BackendConfig, Check, OptionGroup,
                              group, is_number, one_of, option, optional)

__all__ = ["MODES", "shooting_lengths", "PINODEConfig", "FieldOptions", "SolverOptions", "CurriculumOptions", "PhysicsOptions",
           "TrainingOptions", "ScreenOptions", "EnsembleOptions", "OutputOptions"]

#: the vector fields: an MLP over every state, the model plus a learned current, the model alone
MODES = ("hybrid", "neural", "mechanistic")

AT_LEAST_ONE = Check(lambda x: is_number(x) and x >= 1.0, "give a number ≥ 1")
FRACTION = Check(lambda x: is_number(x) and 0.0 <= x <= 1.0, "give a number in [0, 1]")


#: the measured defaults of (first horizon, last horizon, node spacing) in ms per mode (None: one sample / the
#: node spacing); a learned field needs dense nodes and short rollouts, the model alone long ones
_SHOOTING = {"neural": (None, 3.0, 0.5), "hybrid": (1.0, None, 5.0), "mechanistic": (1.0, None, 5.0)}


def shooting_lengths(cfg: "PINODEConfig", sample_ms: float) -> tuple[float, float | None, float]:
    """(first horizon, last horizon or None for the node spacing, node spacing) in ms, the mode's defaults
    where the options are None; ``sample_ms`` is the sampling interval (the shortest horizon)."""
    first, last, node = _SHOOTING[cfg.field.mode]
    sh = cfg.shooting
    return (sh.horizon_start_ms if sh.horizon_start_ms is not None else first if first is not None else sample_ms,
            sh.horizon_ms if sh.horizon_ms is not None else last,
            sh.node_ms if sh.node_ms is not None else node)


@dataclass(frozen=True)
class FieldOptions(OptionGroup):
    """Which vector field is learned, and its networks."""

    mode: str = option("mechanistic", one_of(*MODES),
                       "Vector field: 'mechanistic' (the model alone: the parameters explain the data), 'hybrid' (the "
                       "model plus a learned correction current: what the model lacks, traded against the "
                       "parameters) or 'neural' (an MLP over every state, tied to the model by the physics residual).")
    width: int = option(64, POSITIVE_INT, "Hidden width of the neural vector field ('neural').")
    depth: int = option(3, POSITIVE_INT, "Hidden layers of the neural vector field ('neural').")
    correction_width: int = option(16, POSITIVE_INT, "Hidden width of the correction-current network ('hybrid').")
    correction_inputs: str = option("voltage", one_of("voltage", "states", "gated"),
                                    "What the correction current ('hybrid') depends on: the voltage alone (a missing "
                                    "current-voltage relation; it cannot stand in for a gating current), every "
                                    "state (more freedom, traded against the conductances by the penalty alone), or "
                                    "the voltage and a learned gate of its own (dz/dt = (z∞(V) − z)/τ(V), z∞ and "
                                    "log τ MLPs of V): meant for a missing current with slow kinetics, such as an "
                                    "adapting K+ current (experimental: see benchmarks/README.md).")
    correction_gate_ms: float = option(50.0, POSITIVE, "Starting time constant of the gate of a 'gated' "
                                       "correction, ms (learned).")
    correction_penalty: float = option(0.0, NON_NEGATIVE,
                                       "Weight of the mean squared correction current, in units of the membrane "
                                       "current's spread ('hybrid'): keeps the unexplained current small, and biases "
                                       "it towards zero (the free conductances make up the rest). Off by default: a "
                                       "current of the voltage alone cannot stand in for a gating current; give it "
                                       "with correction_inputs='states'.")


@dataclass(frozen=True)
class SolverOptions(OptionGroup):
    """The solver trained through."""

    method: str = option("heun", one_of(*METHODS), "Fixed-step solver on the data grid (the core's step).")
    max_dt: float = option(0.05, POSITIVE, "Largest integration step, ms (a whole fraction of the sampling interval).")
    adjoint: bool = option(False, BOOL, "Gradients by the adjoint method (torchdiffeq.odeint_adjoint) instead of "
                           "backpropagation through the solver's steps.")


@dataclass(frozen=True)
class CurriculumOptions(OptionGroup):
    """Multiple shooting: rollouts from nodes along the window, their horizon growing during training."""

    curriculum: bool = option(True, BOOL, "Grow the rollout horizon from horizon_start_ms; off: the full horizon "
                              "from the first step.")
    horizon_start_ms: float | None = option(None, optional(POSITIVE),
                                            "First rollout horizon, ms; None: one sample ('neural'), 1 ms otherwise.")
    horizon_ms: float | None = option(None, optional(POSITIVE),
                                      "Last rollout horizon, ms; None: 3 ms ('neural'), else the node spacing "
                                      "(neighbouring rollouts meet).")
    node_ms: float | None = option(None, optional(POSITIVE),
                                   "Spacing of the shooting nodes, ms; None: 0.5 ms ('neural'), 5 ms otherwise.")
    grow_fraction: float = option(0.6, FRACTION, "Share of the steps over which the horizon grows.")
    continuity_weight: float = option(100.0, AT_LEAST_ONE, "Last weight of the gaps between neighbouring rollouts "
                                      "(1 during Adam, raised tenfold per L-BFGS round): multiple shooting "
                                      "tightens towards one continuous trajectory.")


@dataclass(frozen=True)
class PhysicsOptions(OptionGroup):
    """The physics residual: against the model's own derivatives ('neural'), or the shooting defects."""

    physics: bool = option(True, BOOL, "Physics loss on (off: a vanilla neural ODE in 'neural' mode).")
    scale_aware: bool = option(True, BOOL, "Divide each state's residual by the spread of that state's derivative "
                               "(off: plain residuals, every state in the voltage's units).")
    physics_weight: float = option(1.0, NON_NEGATIVE, "Cap of the ramped physics-loss weight.")
    physics_start: float = option(0.2, FRACTION, "Share of the steps fitted to the data alone before the physics "
                                  "weight starts to ramp (a field near zero would pull the parameters to zero).")
    ramp_fraction: float = option(0.3, FRACTION, "Share of the steps over which the physics weight ramps to its cap.")
    extrapolate_ms: float = option(30.0, NON_NEGATIVE, "Collocation points beyond the window, along the learned "
                                   "field's own rollout, ms ('neural'; 0: none).")


@dataclass(frozen=True)
class TrainingOptions(OptionGroup):
    """The optimiser."""

    steps: int = option(600, POSITIVE_INT, "Adam steps through the solver.")
    lr: float = option(3e-3, POSITIVE, "Adam learning rate of the networks (decays tenfold over the steps).")
    lr_params: float = option(2e-2, POSITIVE, "Adam learning rate of the parameters and latent states "
                              "(log coordinates; decays tenfold).")
    pretrain_steps: int = option(2000, NON_NEGATIVE_INT, "'neural' with physics: Adam steps fitting the network to "
                                 "the model's derivatives (screened parameters) around the data before any rollout, "
                                 "then as many L-BFGS iterations / 4 (0: none).")
    polish_steps: int = option(200, NON_NEGATIVE_INT, "L-BFGS iterations on everything after Adam, at the last "
                               "horizon and the full physics weight, shared by the continuity rounds (0: none).")
    ms_finish_steps: int = option(30, NON_NEGATIVE_INT, "'mechanistic': Levenberg–Marquardt iterations on the "
                                  "parameters and every latent node state together after Adam and L-BFGS "
                                  "(multiple shooting by Gauss–Newton; skipped past 1200 unknowns per member; "
                                  "0: none).")
    finish_steps: int = option(100, NON_NEGATIVE_INT, "'mechanistic' and 'hybrid': iterations of a "
                               "single-shooting finish — one rollout per sweep from its first state over the whole "
                               "sweep fitted to the data, the maximum-likelihood fit the multiple shooting approaches "
                               "(Levenberg–Marquardt on the parameters and first states, with their local covariance; "
                               "a 'hybrid' field's network is held; 0: none).")


@dataclass(frozen=True)
class ScreenOptions(OptionGroup):
    """The screened start: parameters fitted to the integral form of the equations along the data first."""

    screen: bool = option(True, BOOL, "Screen every member's start before the shooting (off: start where given).")
    screen_rounds: int = option(3, POSITIVE_INT, "Rounds of (drive the hidden states, fit the parameters).")
    screen_steps: int = option(150, POSITIVE_INT, "Adam steps per round.")
    screen_interval_ms: float = option(1.0, POSITIVE, "Integration interval of the residual, ms.")


@dataclass(frozen=True)
class EnsembleOptions(OptionGroup):
    """Independently initialised members trained as one batch; their spread is the uncertainty."""

    n_members: int = option(4, POSITIVE_INT, "Members (networks and parameter starts) trained as one batch.")
    random_starts: str = option("jitter", one_of("bounds", "jitter"),
                                "Starts after the first: log-uniform within the bounds, or log-normal around member 0.")
    jitter: float = option(0.3, NON_NEGATIVE, "Spread (std of log θ) of 'jitter' starts.")
    accept_factor: float = option(1.2, AT_LEAST_ONE,
                                  "Members whose final loss ≤ accept_factor × the best make the estimate.")


@dataclass(frozen=True)
class OutputOptions(OptionGroup):
    """What is returned, and the resources used."""

    forecast_ms: float = option(0.0, NON_NEGATIVE, "Forecast beyond the fitted window, ms (0: none; CLI --forecast).")
    log_every: int = option(25, POSITIVE_INT, "Steps between history records and progress updates.")
    num_threads: int | None = option(1, optional(POSITIVE_INT), "torch CPU threads during the fit; None: unchanged.")


@dataclass(frozen=True)
class PINODEConfig(BackendConfig):
    """Options of the ``pinode`` backend, by group (every option also by its flat name)."""

    field: FieldOptions = group(FieldOptions)
    solver: SolverOptions = group(SolverOptions)
    shooting: CurriculumOptions = group(CurriculumOptions)
    residuals: PhysicsOptions = group(PhysicsOptions)
    training: TrainingOptions = group(TrainingOptions)
    screening: ScreenOptions = group(ScreenOptions)
    ensemble: EnsembleOptions = group(EnsembleOptions)
    output: OutputOptions = group(OutputOptions)
